"""Envoy RouteConfiguration -> RouteTable: vhosts by domain, first-match order, every
match kind, the route actions, header edits per level, and rejections naming the field."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import (ASSIGNMENT, CLUSTER, LISTENER, ROUTES, C, E, L, R, ctx, msg, pick,  # noqa: E402,F401
                           table)
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.routes import translate_route_config  # noqa: E402
from mosnx.runtime.routes import DirectResponse, RedirectAction, RouteAction  # noqa: E402


def test_vhosts_by_domain_and_routes_in_order():
    t = table()
    assert pick(t, ctx("/v1/x", "api.example.com", x_canary="yes")).action.cluster == "canary"
    assert pick(t, ctx("/v1/x", "a.api.test", x_canary="no")).action.weighted_clusters == (("a", 3), ("b", 1))
    assert pick(t, ctx("/v1?debug", "api.example.com")).action.cluster == "debug"
    assert pick(t, ctx("/v1x", "api.example.com")) is None          # path_separated_prefix needs / or end
    health = pick(t, ctx("/health", "api.example.com")).action
    assert isinstance(health, DirectResponse) and (health.status, health.body) == (200, b"ok")
    users = pick(t, ctx("/users/42", "api.example.com")).action
    assert users.cluster == "users" and users.regex_rewrite[1] == "/u/"
    assert pick(t, ctx("/users/x", "api.example.com")) is None
    assert pick(t, ctx("/anything", "other.host")).action.cluster == "web"
    assert pick(t, ctx("/anything", "other.host", method="POST")) is None    # inverted :method match
    redirect = pick(t, ctx("/OLD/page", "other.host")).action
    assert isinstance(redirect, RedirectAction) and redirect.status == 308


def test_route_actions():
    a = pick(table(), ctx("/v1/x", "api.example.com")).action
    assert isinstance(a, RouteAction)
    assert a.prefix_rewrite == ("/v1", "/api") and a.host_rewrite == "backend"
    assert a.retry.retry_on == frozenset({"5xx", "connect-failure"}) and a.retry.num_retries == 2
    assert a.retry.per_try_timeout == 0.5
    assert [(m.cluster, m.percent) for m in a.mirrors] == [("shadow", 25.0)]
    assert a.hash_key == 'request.headers["x-user"]' and a.timeout == 15.0
    assert pick(table(), ctx("/v1?debug", "api.example.com")).action.timeout is None


def test_unsupported_retry_condition_is_a_warning():
    sink = Sink()
    table(sink)
    [w] = sink.warnings
    assert w.severity == "warning" and "unknown-thing" in w.message and "retry_policy.retry_on" in w.message


def test_header_edits_run_at_each_level():
    t = table()
    c = ctx("/v1/x", "api.example.com", x_vhost="client")
    route = pick(t, c)
    vh = t.vhost_of(c.request)
    for step in vh.pipeline.upstream_request + route.pipeline.upstream_request:
        step(c)
    assert c.request.headers.get_all("x-vhost") == ["api"]         # append: false overwrites


def test_bad_regex_is_a_rejection_naming_the_field():
    bad = {"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
        {"match": {"safe_regex": {"regex": "(unclosed"}}, "route": {"cluster": "c"}}]}]}
    with pytest.raises(Rejected) as e:
        translate_route_config(msg(R, bad), Findings(R, "r"))
    rj = e.value.rejection
    assert (rj.type_url, rj.name) == (R, "r")
    assert rj.field_path == "virtual_hosts[0].routes[0].match.safe_regex.regex"


def _gateway(domains: list[str], **top: object) -> dict:
    return {"name": "http.8080", **top, "virtual_hosts": [{"name": "v", "domains": domains, "routes": [
        {"match": {"prefix": "/get"}, "route": {"cluster": "httpbin"}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "x" * 10}}}]}]}


def test_ignore_port_in_host_matching_is_served():
    # Istio's gateways set it: a Host with a port finds the vhost of the name alone
    sink = Sink()
    t = translate_route_config(msg(R, _gateway(["httpbin.example.com"], ignore_port_in_host_matching=True)),
                               Findings(R, "http.8080", "", sink))
    assert sink.warnings == []
    assert pick(t, ctx("/get", "httpbin.example.com:8080")).action.cluster == "httpbin"
    assert pick(t, ctx("/get", "httpbin.example.com")).action.cluster == "httpbin"
    # a domain with a port: Envoy then matches it never, mosnx still does; said
    sink = Sink()
    translate_route_config(msg(R, _gateway(["a.example.com:8080", "[::1]"], ignore_port_in_host_matching=True)),
                           Findings(R, "http.8080", "", sink))
    [w] = sink.warnings
    assert "virtual_hosts[0].domains[0]" in w.message and '"a.example.com:8080"' in w.message


def test_max_direct_response_body_size_bytes_bounds_the_bodies():
    sink = Sink()
    translate_route_config(msg(R, _gateway(["*"], max_direct_response_body_size_bytes=10)),
                           Findings(R, "http.8080", "", sink))
    assert sink.warnings == []
    with pytest.raises(Rejected) as e:
        translate_route_config(msg(R, _gateway(["*"], max_direct_response_body_size_bytes=9)), Findings(R, "r"))
    rj = e.value.rejection
    assert rj.field_path == "virtual_hosts[0].routes[1].direct_response.body"
    assert rj.message == "the body is 10 bytes, more than max_direct_response_body_size_bytes (9)"


def _many(n: int, retry: int | None = None, flip: int = -1) -> dict:
    vh: dict = {"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": f"/r{i}/"}, "route": {"cluster": "b" if i == flip else "a"}} for i in range(n)]}
    if retry is not None:
        vh["retry_policy"] = {"retry_on": "5xx", "num_retries": retry}
    return {"name": "many", "virtual_hosts": [vh]}


def _translate(doc: dict, memo: dict | None, keep: dict) -> object:
    return translate_route_config(msg(R, doc), Findings(R, "many"), memo, keep)


def test_a_resent_configuration_keeps_the_routes_that_did_not_change():
    first: dict = {}
    t1 = _translate(_many(50), None, first)
    second: dict = {}
    t2 = _translate(_many(50, flip=7), first, second)
    r1, r2 = t1.vhosts[0].routes, t2.vhosts[0].routes
    assert [r.index for r in r2] == list(range(50))
    assert all(r2[i] is r1[i] for i in range(50) if i != 7)
    assert r2[7] is not r1[7] and r2[7].action.cluster == "b" and r1[7].action.cluster == "a"
    assert r2[7].name == r1[7].name == "virtual_hosts[0].routes[7]"
    # the memo holds what this translation made, no more: the old route 7 is gone from it
    assert len(second) == 50 and r1[7] not in second.values()
    assert pick(t2, ctx("/r7/x", "h")).action.cluster == "b"


def test_what_the_virtual_host_gives_its_routes_is_part_of_the_memo():
    first: dict = {}
    t1 = _translate(_many(5, retry=1), None, first)
    t2 = _translate(_many(5, retry=3), first, {})
    assert all(a is not b for a, b in zip(t1.vhosts[0].routes, t2.vhosts[0].routes))
    assert t2.vhosts[0].routes[0].action.retry.num_retries == 3


def test_a_moved_route_is_translated_at_its_new_place():
    doc = _many(3)
    first: dict = {}
    t1 = _translate(doc, None, first)
    moved = {"name": "many", "virtual_hosts": [dict(doc["virtual_hosts"][0], routes=doc["virtual_hosts"][0]["routes"][::-1])]}
    t2 = _translate(moved, first, {})
    assert [r.name for r in t2.vhosts[0].routes] == [f"virtual_hosts[0].routes[{i}]" for i in range(3)]
    assert [r.path_prefix for r in t2.vhosts[0].routes] == ["/r2/", "/r1/", "/r0/"]
    assert t2.vhosts[0].routes[1] is t1.vhosts[0].routes[1]      # the one that kept its place
