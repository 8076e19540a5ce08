"""An http_connection_manager's filters meet its routes' typed_per_filter_config:
what mosnx runs with them, and what it warns about or refuses; then the snapshot
built from it runs each filter where, and as, the routes say."""
from __future__ import annotations

import copy
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import L, ctx, msg  # noqa: E402
import mosnx.runtime.filters  # noqa: E402,F401  (registers the kinds)
from mosnx.runtime.actions import LocalReply  # noqa: E402
from mosnx.runtime.envoy import protos  # noqa: E402
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.listeners import translate_listener  # noqa: E402
from mosnx.runtime.model import ClusterConfig, Config, Endpoint  # noqa: E402
from mosnx.runtime.snapshot import build_snapshot  # noqa: E402

T = "type.googleapis.com/"
HF = "envoy.extensions.filters.http."
FAULT = T + HF + "fault.v3.HTTPFault"
RL = T + HF + "local_ratelimit.v3.LocalRateLimit"
FC = T + "envoy.config.route.v3.FilterConfig"
TEAPOT = {"@type": FAULT, "abort": {"http_status": 418, "percentage": {"numerator": 100}}}
BUCKET = {"@type": RL, "stat_prefix": "rl", "token_bucket": {"max_tokens": 2, "fill_interval": "1000s"},
          "filter_enabled": {"default_value": {"numerator": 100}}, "filter_enforced": {"default_value": {"numerator": 100}}}

FILTERS = [
    {"name": "envoy.filters.http.cors", "typed_config": {"@type": T + HF + "cors.v3.Cors"}},
    {"name": "envoy.filters.http.fault", "typed_config": {
        "@type": FAULT, "abort": {"http_status": 503, "percentage": {"numerator": 0}}}},
    {"name": "envoy.filters.http.local_ratelimit", "typed_config": {"@type": RL, "stat_prefix": "rl"}},
    {"name": "authz", "is_optional": True, "typed_config": {"@type": T + HF + "buffer.v3.Buffer",
                                                             "max_request_bytes": 10}},
    {"name": "envoy.filters.http.router", "typed_config": {"@type": T + HF + "router.v3.Router"}}]

ROUTES = {"name": "local", "virtual_hosts": [
    {"name": "faulty", "domains": ["faulty.test"],
     "typed_per_filter_config": {"envoy.filters.http.fault": TEAPOT},
     "routes": [{"match": {"prefix": "/healthy"}, "route": {"cluster": "a"},
                 "typed_per_filter_config": {"envoy.filters.http.fault": {"@type": FC, "disabled": True}}},
                {"match": {"prefix": "/"}, "route": {"cluster": "a"}}]},
    {"name": "rest", "domains": ["*"], "routes": [
        {"match": {"prefix": "/limited"}, "route": {"cluster": "a"},
         "typed_per_filter_config": {"envoy.filters.http.local_ratelimit": BUCKET}},
        {"match": {"prefix": "/cors"}, "route": {"cluster": "a"}, "typed_per_filter_config": {
            "envoy.filters.http.cors": {"@type": T + HF + "cors.v3.CorsPolicy",
                                        "allow_origin_string_match": [{"exact": "https://a.example"}]}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "a"}}]}]}


def listener(routes: dict = ROUTES, filters: list = FILTERS) -> dict:
    return {"name": "edge", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18600}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": protos.HCM, "stat_prefix": "edge", "route_config": routes, "http_filters": filters}}]}]}


def translate(d: dict, sink: Sink | None = None):
    return translate_listener(msg(L, d), Findings(L, "edge", "", sink))


def test_filters_without_settings_of_their_own_run_only_where_routes_give_them():
    sink = Sink()
    lc = translate(listener(), sink)
    assert [(s.kind, s.name, s.own) for s in lc.filters] == [
        ("cors", "envoy.filters.http.cors", False), ("fault", "envoy.filters.http.fault", True),
        ("rate_limit", "envoy.filters.http.local_ratelimit", False)]
    assert any("no token_bucket" in w.message for w in sink.warnings)


def test_the_snapshot_runs_each_filter_where_the_routes_say():
    lc = translate(listener())
    snap = build_snapshot(Config("<t>", None, (lc,), (ClusterConfig("a", (Endpoint("127.0.0.1", 9),)),)))
    lst = snap.listeners["edge"]
    assert not lst.pipeline.request          # everything moved after routing: the listener keeps its short path

    def first(path: str, host: str = "x.test", **headers: str):
        c = ctx(path, host, **headers)
        vh = lst.routes.vhost_of(c.request)
        route = vh.match(c)
        c.cluster_name = "a"
        for step in route.pipeline.request:
            out = step(c)
            if out is not None:
                return out
        return None
    assert first("/", "faulty.test").status == 418                  # the vhost's settings
    assert first("/healthy", "faulty.test") is None                  # the route turns it off
    assert first("/") is None                                        # the listener's (0%) settings
    assert [first("/limited") for _ in range(2)] == [None, None]
    over = first("/limited")
    assert isinstance(over, LocalReply) and over.status == 429
    assert all(first("/other") is None for _ in range(5))            # no bucket of its own elsewhere
    pre = first("/cors", method="OPTIONS", origin="https://a.example", access_control_request_method="GET")
    assert pre.status == 200 and ("access-control-allow-origin", "https://a.example") in pre.headers
    assert first("/", method="OPTIONS", origin="https://a.example", access_control_request_method="GET") is None
    assert lst.routes.vhosts[1].routes[2].plain is None    # the 0% fault still runs on it


def with_route_settings(settings: dict) -> dict:
    r = copy.deepcopy(ROUTES)
    r["virtual_hosts"][1]["routes"][2]["typed_per_filter_config"] = settings
    return r


@pytest.mark.parametrize("settings,message", [
    ({"envoy.filters.http.fault": BUCKET}, "is rate_limit settings, but that filter is fault"),
    ({"envoy.filters.http.fault": {"@type": T + HF + "buffer.v3.BufferPerRoute", "disabled": True}},
     "cannot configure the fault filter"),
])
def test_settings_a_running_filter_cannot_take_are_refused(settings, message):
    with pytest.raises(Rejected) as e:
        translate(listener(with_route_settings(settings)))
    assert message in e.value.rejection.message


@pytest.mark.parametrize("settings,message", [
    ({"authz": {"@type": T + HF + "buffer.v3.BufferPerRoute", "disabled": True}}, "which is skipped (is_optional)"),
    ({"nope": TEAPOT}, "which is not among the listener's HTTP filters"),
    ({"envoy.filters.http.fault": {"@type": FC, "is_optional": True, "config": {
        "@type": T + HF + "buffer.v3.BufferPerRoute", "disabled": True}}}, "ignored (is_optional)"),
])
def test_settings_for_filters_mosnx_does_not_run_are_warnings(settings, message):
    sink = Sink()
    translate(listener(with_route_settings(settings)), sink)
    assert any(message in w.message for w in sink.warnings), [w.message for w in sink.warnings]


def test_a_cors_policy_without_a_cors_filter_is_a_warning():
    r = copy.deepcopy(ROUTES)
    r["virtual_hosts"][1]["cors"] = {"allow_origin_string_match": [{"exact": "https://a.example"}]}
    sink = Sink()
    translate(listener(r, FILTERS[1:]), sink)
    assert any("has a CORS policy but the listener has no CORS filter" in w.message for w in sink.warnings)


def test_over_xds_a_route_update_is_met_with_its_listeners_filters():
    """RDS brings the settings: apply() serves them, and refuses by the listener's name
    the listener whose filter cannot take a later table's settings."""
    from mosnx.runtime.config import load_config_text
    from mosnx.runtime.envoy.apply import apply
    base = load_config_text("clusters:\n- {name: a, endpoints: [127.0.0.1:9100]}\n", "<base>")
    lst = listener()
    hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
    del hcm["route_config"]
    hcm["rds"] = {"route_config_name": "local", "config_source": {"ads": {}}}
    R = protos.ROUTE
    config, rejected = apply(base, {L: {"edge": msg(L, lst)}, R: {"local": msg(R, ROUTES)}})
    assert rejected == [] and [lc.name for lc in config.listeners] == ["edge"]
    snap = build_snapshot(config)
    assert snap.listeners["edge"].routes.vhosts[1].routes[0].pipeline.request
    bad = with_route_settings({"envoy.filters.http.fault": BUCKET})
    config, rejected = apply(base, {L: {"edge": msg(L, lst)}, R: {"local": msg(R, bad)}})
    [rj] = rejected
    assert config.listeners == () and (rj.type_url, rj.name) == (L, "edge")
    assert "is rate_limit settings, but that filter is fault" in rj.message


def test_mutated_per_route_settings_are_served_or_refused():
    """Generated input: the listener and routes above, mutated anywhere (a value
    replaced, a key dropped or added), give apply() a listener or a Rejection, and a
    snapshot or a ConfigError, never another exception."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    from mosnx.runtime.config import load_config_text
    from mosnx.runtime.diagnostics import ConfigError
    from mosnx.runtime.envoy.apply import apply
    from mosnx.runtime.envoy.decode import parse
    from test_decode_generated import _mutate, _paths, values

    doc = listener()
    paths = _paths(doc)[1:]
    base = load_config_text("clusters:\n- {name: a, endpoints: [127.0.0.1:9100]}\n", "<base>")

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(paths), st.sampled_from(["replace", "drop", "add"]), values,
                              st.text(min_size=1, max_size=8)), min_size=1, max_size=3))
    def check(mutations):
        d = doc
        for path, how, value, key in mutations:
            try:
                d = _mutate(d, path, how, value, key)
            except (KeyError, IndexError, TypeError):
                continue
        m, errors = parse(d, protos.RESOURCE_TYPES[L], None)
        if m is None:
            assert errors
            return
        config, rejected = apply(base, {L: {m.name or "edge": m}})
        assert all(r.message for r in rejected)
        try:
            build_snapshot(config)
        except ConfigError as e:
            assert all(x.code and x.message for x in e.diagnostics)
    check()


def test_a_fault_filter_without_a_fault_of_its_own_waits_for_the_routes():
    """Istio puts an empty HTTPFault on every listener, and faults on routes."""
    filters = copy.deepcopy(FILTERS)
    filters[1]["typed_config"] = {"@type": FAULT}
    lc = translate(listener(filters=filters))
    assert [(s.kind, s.own) for s in lc.filters][1] == ("fault", False)
    snap = build_snapshot(Config("<t>", None, (lc,), (ClusterConfig("a", (Endpoint("127.0.0.1", 9),)),)))
    routes = snap.listeners["edge"].routes
    faulty, rest = routes.vhosts
    c = ctx("/", "faulty.test")
    assert faulty.routes[1].pipeline.request[0](c).status == 418
    assert rest.routes[2].plain is not None        # nothing runs there: the short path stays open


RBAC_DENY_ALL = {"@type": T + HF + "rbac.v3.RBAC", "rules": {"action": "DENY", "policies": {
    "all": {"permissions": [{"any": True}], "principals": [{"any": True}]}}}}
RBAC_PER_ROUTE = T + HF + "rbac.v3.RBACPerRoute"


def test_rbac_per_route_replaces_the_rules_or_turns_the_filter_off():
    allow_admin = {"@type": RBAC_PER_ROUTE, "rbac": {"rules": {"action": "ALLOW", "policies": {"admin": {
        "permissions": [{"any": True}],
        "principals": [{"header": {"name": "x-role", "string_match": {"exact": "admin"}}}]}}}}}
    routes = {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/open"}, "route": {"cluster": "a"},
         "typed_per_filter_config": {"envoy.filters.http.rbac": {"@type": RBAC_PER_ROUTE}}},
        {"match": {"prefix": "/admin"}, "route": {"cluster": "a"},
         "typed_per_filter_config": {"envoy.filters.http.rbac": allow_admin}},
        {"match": {"prefix": "/"}, "route": {"cluster": "a"}}]}]}
    filters = [{"name": "envoy.filters.http.rbac", "typed_config": RBAC_DENY_ALL}, FILTERS[-1]]
    lc = translate(listener(routes, filters))
    snap = build_snapshot(Config("<t>", None, (lc,), (ClusterConfig("a", (Endpoint("127.0.0.1", 9),)),)))
    lst = snap.listeners["edge"]

    def status(path: str, **headers: str) -> int:
        c = ctx(path, "x.test", **headers)
        route = lst.routes.vhost_of(c.request).match(c)
        c.cluster_name = "a"
        for step in lst.pipeline.request + route.pipeline.request:
            out = step(c)
            if out is not None:
                return out.status
        return 200
    assert status("/") == 403                          # the listener's own rules: deny all
    assert status("/open") == 200                      # RBACPerRoute without rbac: off there
    assert status("/admin") == 403 and status("/admin", x_role="admin") == 200
