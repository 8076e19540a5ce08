"""Envoy resources -> mosnx model: route matching and actions as a request meets
them, clusters, listeners, and apply()/needed_names() over a set of resources."""
from __future__ import annotations

from typing import Any

import pytest

from mosnx.runtime.config import load_config_text
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.envoy import protos
from mosnx.runtime.envoy.apply import apply, needed_names
from mosnx.runtime.envoy.decode import parse
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink
from mosnx.runtime.envoy.translate import translate_cluster, translate_listener, translate_route_config
from mosnx.runtime.headers import Headers
from mosnx.runtime.routes import DirectResponse, RedirectAction, RouteAction
from mosnx.runtime.snapshot import build_snapshot

L, R, C, E = protos.LISTENER, protos.ROUTE, protos.CLUSTER, protos.ENDPOINT


def msg(type_url: str, d: dict) -> Any:
    m, errors = parse(d, protos.RESOURCE_TYPES[type_url], None)
    assert not errors, errors
    return m


def ctx(path: str, host: str = "example.com", method: str = "GET", **headers: str) -> StreamContext:
    pairs = [("host", host)] + [(k.replace("_", "-"), v) for k, v in headers.items()]
    return StreamContext(RequestHead(method, path, Headers.from_pairs(pairs)))


ROUTES = {
    "name": "main",
    "response_headers_to_add": [{"header": {"key": "x-config", "value": "1"}}],
    "virtual_hosts": [
        {"name": "api", "domains": ["api.example.com", "*.api.test"],
         "request_headers_to_add": [{"header": {"key": "x-vhost", "value": "api"}, "append": False}],
         "routes": [
             {"match": {"prefix": "/v1", "headers": [{"name": "x-canary", "string_match": {"exact": "yes"}}]},
              "route": {"cluster": "canary"}},
             {"match": {"path": "/health"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}},
             {"match": {"safe_regex": {"regex": "/users/[0-9]+"}},
              "route": {"cluster": "users", "regex_rewrite": {"pattern": {"regex": "^/users/"},
                                                                "substitution": "/u/"}}},
             {"match": {"prefix": "/v1", "query_parameters": [{"name": "debug", "present_match": True}]},
              "route": {"cluster": "debug", "timeout": "0s"}},
             {"match": {"path_separated_prefix": "/v1"},
              "route": {"weighted_clusters": {"clusters": [{"name": "a", "weight": 3}, {"name": "b", "weight": 1}]},
                        "prefix_rewrite": "/api", "host_rewrite_literal": "backend",
                        "retry_policy": {"retry_on": "5xx,connect-failure,unknown-thing", "num_retries": 2,
                                         "per_try_timeout": "0.5s"},
                        "request_mirror_policies": [{"cluster": "shadow", "runtime_fraction": {
                            "default_value": {"numerator": 25}}}],
                        "hash_policy": [{"header": {"header_name": "X-User"}}]}},
         ]},
        {"name": "www", "domains": ["*"],
         "routes": [
             {"match": {"prefix": "/old", "case_sensitive": False},
              "redirect": {"prefix_rewrite": "/new", "response_code": "PERMANENT_REDIRECT"}},
             {"match": {"prefix": "/", "headers": [{"name": ":method", "string_match": {"exact": "POST"},
                                                     "invert_match": True}]},
              "route": {"cluster": "web"}},
         ]},
    ],
}


def table(sink: Sink | None = None):
    return translate_route_config(msg(R, ROUTES), Findings(R, "main", "", sink))


def pick(t, c: StreamContext):
    vh = t.vhost_of(c.request)
    return vh.match(c) if vh is not None else None


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


CLUSTER = {"name": "app", "type": "EDS", "eds_cluster_config": {"service_name": "app-eps"},
           "lb_policy": "LEAST_REQUEST", "connect_timeout": "0.25s",
           "circuit_breakers": {"thresholds": [{"max_connections": 7, "max_retries": 1}]},
           "outlier_detection": {"consecutive_5xx": 3, "base_ejection_time": "10s"},
           "health_checks": [{"timeout": "1s", "interval": "2s", "unhealthy_threshold": 2, "healthy_threshold": 1,
                              "http_health_check": {"path": "/healthz"}}]}
ASSIGNMENT = {"cluster_name": "app-eps", "endpoints": [{"lb_endpoints": [
    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9001}}},
     "load_balancing_weight": 3},
    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9002}}},
     "health_status": "UNHEALTHY"}]}]}


def test_eds_cluster_with_its_assignment():
    c = translate_cluster(msg(C, CLUSTER), Findings(C, "app"), msg(E, ASSIGNMENT))
    assert (c.lb, c.connect_timeout, c.circuit_breakers.max_connections) == ("least_request", 0.25, 7)
    assert [(e.address, e.weight) for e in c.endpoints] == [("127.0.0.1:9001", 3)]
    assert c.options["outlier_detection"].consecutive_5xx == 3
    hc = c.options["health_check"]
    assert (hc.interval, hc.http.path, hc.unhealthy_threshold) == (2.0, "/healthz", 2)
    assert translate_cluster(msg(C, CLUSTER), Findings(C, "app")).endpoints == ()


LISTENER = {"name": "edge", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18500}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": protos.HCM, "stat_prefix": "edge", "merge_slashes": True,
                "rds": {"route_config_name": "main", "config_source": {"ads": {}}},
                "http_filters": [
                    {"name": "fault", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                        "abort": {"http_status": 503, "percentage": {"numerator": 10}}}},
                    {"name": "cors", "is_optional": True, "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
                    {"name": "router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}


def test_listener_filters_and_rds():
    sink = Sink()
    lc = translate_listener(msg(L, LISTENER), Findings(L, "edge", "", sink), {"main": table()})
    assert lc.route_config == "main" and lc.route_table is not None
    [fault] = lc.filters
    assert fault.kind == "fault" and fault.config == {"abort": {"percentage": 10.0, "http_status": 503}}
    assert lc.path_normalization.merge_slashes and not lc.path_normalization.normalize
    assert any("Cors" in w.message and "skipped" in w.message for w in sink.warnings)
    required = dict(LISTENER)
    hcm = required["filter_chains"][0]["filters"][0]["typed_config"]
    del hcm["http_filters"][1]["is_optional"]
    with pytest.raises(Rejected) as e:
        translate_listener(msg(L, required), Findings(L, "edge"), {"main": table()})
    assert e.value.rejection.field_path == "filter_chains[0].filters[0].typed_config.http_filters[1]"
    hcm["http_filters"][1]["is_optional"] = True


def _base():
    return load_config_text("clusters:\n- {name: web, endpoints: [127.0.0.1:9100]}\n", "<base>")


def test_apply_adds_good_resources_and_names_the_bad():
    from mosnx import plugins
    plugins.load()          # the fault filter's factory
    resources = {
        L: {"edge": msg(L, LISTENER)},
        R: {"main": msg(R, ROUTES)},
        C: {n: msg(C, {"name": n, "load_assignment": {"cluster_name": n, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9200}}}}]}]}})
            for n in ("canary", "users", "debug", "a", "b", "shadow")} | {
            "app": msg(C, CLUSTER),
            "bad": msg(C, {"name": "bad", "lb_policy": "CLUSTER_PROVIDED"})},
        E: {"app-eps": msg(E, ASSIGNMENT)},
    }
    assert needed_names(resources) == {R: {"main"}, E: {"app-eps"}}
    config, rejected = apply(_base(), resources)
    assert [(r.type_url, r.name, r.field_path) for r in rejected] == [(C, "bad", "lb_policy")]
    assert {c.name for c in config.clusters} == {"web", "canary", "users", "debug", "a", "b", "shadow", "app"}
    assert [lc.name for lc in config.listeners] == ["edge"]
    snap = build_snapshot(config)
    assert pick(snap.listeners["edge"].routes, ctx("/v1/x", "api.example.com", x_canary="yes")).action.cluster == "canary"


def test_apply_holds_a_listener_back_until_its_routes_and_clusters_come():
    config, rejected = apply(_base(), {L: {"edge": msg(L, LISTENER)}})
    assert config.listeners == () and "has not been received" in rejected[0].message
    config, rejected = apply(_base(), {L: {"edge": msg(L, LISTENER)}, R: {"main": msg(R, ROUTES)}})
    assert config.listeners == () and 'unknown cluster "a"' in rejected[0].message
