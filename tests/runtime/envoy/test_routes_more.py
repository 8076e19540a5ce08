"""Envoy RouteConfiguration -> RouteTable, the newer parts: cluster_header,
runtime_fraction (one draw per request, from a seeded source here), and
typed_per_filter_config / cors at every level as each route's FilterOverrides."""
from __future__ import annotations

import os
import random
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import R, ctx, msg  # noqa: E402
from mosnx.runtime.envoy import routes as envoy_routes  # noqa: E402
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.routes import translate_route_config  # noqa: E402
from mosnx.runtime.routes import CORS_POLICY, FilterOverride, RouteAction  # noqa: E402

T = "type.googleapis.com/"
FAULT = T + "envoy.extensions.filters.http.fault.v3.HTTPFault"
RL = T + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
CORS = T + "envoy.extensions.filters.http.cors.v3.CorsPolicy"
FC = T + "envoy.config.route.v3.FilterConfig"


def config(routes: list, **vhost) -> dict:
    return {"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": routes, **vhost}]}


def translate(d: dict, sink: Sink | None = None):
    return translate_route_config(msg(R, d), Findings(R, "r", "", sink))


def rejection(d: dict):
    with pytest.raises(Rejected) as e:
        translate(d)
    return e.value.rejection


def test_cluster_header():
    t = translate(config([{"match": {"prefix": "/"}, "route": {"cluster_header": "X-Cluster"}}]))
    a = t.vhosts[0].routes[0].action
    assert isinstance(a, RouteAction) and (a.cluster, a.cluster_header) == (None, "x-cluster")
    assert t.clusters() == set()
    rj = rejection(config([{"match": {"prefix": "/"}, "route": {"cluster_header": ":path"}}]))
    assert rj.field_path == "virtual_hosts[0].routes[0].route.cluster_header"
    rj = rejection(config([{"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
        {"cluster_header": "x-c", "weight": 1}]}}}]))
    assert "cluster_header here is not supported" in rj.message


def test_cluster_not_found_response_code_other_than_503_is_a_warning():
    sink = Sink()
    translate(config([{"match": {"prefix": "/"}, "route": {"cluster_header": "x-c",
                                                          "cluster_not_found_response_code": "NOT_FOUND"}}]), sink)
    [w] = sink.warnings
    assert "answered 503" in w.message


def fractional(monkeypatch, seed: int, *shares: int, key: str = "", runtime: dict | None = None):
    monkeypatch.setattr(envoy_routes, "random_source", random.Random(seed).random)
    routes = [{"match": {"prefix": "/", "runtime_fraction": {
        "default_value": {"numerator": n, "denominator": "HUNDRED"}, **({"runtime_key": key} if key else {})}},
        "route": {"cluster": f"c{n}"}} for n in shares]
    sink = Sink(runtime=runtime or {})
    t = translate(config(routes + [{"match": {"prefix": "/"}, "route": {"cluster": "rest"}}]), sink)
    return t, sink


def picks(t, n: int) -> dict[str, int]:
    out: dict[str, int] = {}
    vh = t.vhosts[0]
    for _ in range(n):
        c = vh.match(ctx("/x")).action.cluster
        out[c] = out.get(c, 0) + 1
    return out


def test_runtime_fraction_matches_its_share_of_requests(monkeypatch):
    t, sink = fractional(monkeypatch, 11, 30, key="routing.canary")
    got = picks(t, 2000)
    assert 500 <= got["c30"] <= 700 and got["c30"] + got["rest"] == 2000     # 30% of 2,000 is 600
    assert sink.warnings == []      # a key the runtime does not set: its default, as in Envoy


def test_a_runtime_value_overrides_the_default_share(monkeypatch):
    # the runtime (static or RTDS layers) sets the key: its number is the numerator
    t, _ = fractional(monkeypatch, 5, 30, key="routing.canary", runtime={"routing.canary": 100})
    assert picks(t, 50) == {"c30": 50}
    t, _ = fractional(monkeypatch, 5, 30, key="routing.canary", runtime={"routing.canary": 0})
    assert picks(t, 50) == {"rest": 50}
    t, _ = fractional(monkeypatch, 5, 30, key="routing.canary",
                      runtime={"routing.canary": {"numerator": 1, "denominator": "TEN_THOUSAND"}})
    assert picks(t, 50).get("c30", 0) <= 5


def test_one_draw_per_request_as_envoy(monkeypatch):
    # 30% then 60%: with one draw per request the second takes 60 - 30 = 30%, as in Envoy
    t, _ = fractional(monkeypatch, 3, 30, 60)
    got = picks(t, 3000)
    assert 750 <= got["c30"] <= 1050 and 750 <= got["c60"] <= 1050 and 1050 <= got["rest"] <= 1350


def test_none_and_all(monkeypatch):
    t, _ = fractional(monkeypatch, 1, 0, 100)
    assert picks(t, 50) == {"c100": 50}


def test_typed_per_filter_config_at_each_level():
    abort = {"@type": FAULT, "abort": {"http_status": 418, "percentage": {"numerator": 100}}}
    d = config([
        {"match": {"prefix": "/own"}, "route": {"cluster": "a"},
         "typed_per_filter_config": {"fault": {"@type": FC, "disabled": True},
                                     "rl": {"@type": RL, "token_bucket": {"max_tokens": 2, "fill_interval": "60s"}}}},
        {"match": {"prefix": "/split"}, "route": {"weighted_clusters": {"clusters": [
            {"name": "a", "weight": 1},
            {"name": "b", "weight": 1, "typed_per_filter_config": {"fault": {"@type": FC, "config": abort}}}]}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "a"}}],
        typed_per_filter_config={"fault": abort, "cors": {"@type": CORS, "allow_origin_string_match": [
            {"exact": "https://a.example"}], "allow_methods": "GET", "max_age": "60"}})
    own, split, rest = translate(d).vhosts[0].routes
    assert own.filters["fault"] == FilterOverride(disabled=True)
    assert own.filters["rl"] == FilterOverride("rate_limit", {"token_bucket": {
        "max_tokens": 2, "tokens_per_fill": 1, "fill_interval": 60.0}})
    assert rest.filters["fault"] == FilterOverride("fault", {"abort": {"percentage": 100.0, "http_status": 418}})
    assert rest.filters["cors"] is own.filters["cors"]          # the vhost's one settings, shared
    assert rest.filters["cors"].config == {"allow_origin_string_match": [{"exact": "https://a.example"}],
                                           "allow_methods": "GET", "max_age": "60"}
    assert set(split.cluster_filters) == {"b"} and split.cluster_filters["b"]["fault"].kind == "fault"
    assert translate(d).filter_names() == {"fault", "rl", "cors"}


def test_filter_config_wrapping_and_unknown_types():
    buf = {"@type": T + "envoy.extensions.filters.http.buffer.v3.BufferPerRoute", "disabled": True}
    r = translate(config([{"match": {"prefix": "/"}, "route": {"cluster": "a"}, "typed_per_filter_config": {
        "off": {"@type": FC, "disabled": True},
        "buf": buf,
        "opt": {"@type": FC, "is_optional": True, "config": buf}}}])).vhosts[0].routes[0]
    assert r.filters["off"] == FilterOverride(disabled=True)
    assert r.filters["buf"].kind is None and r.filters["buf"].type_name.endswith("BufferPerRoute")
    assert r.filters["opt"].optional and r.filters["opt"].kind is None


def test_cors_fields_merge_route_over_vhost_and_skip_direct_responses():
    d = config([
        {"match": {"prefix": "/a"}, "route": {"cluster": "a", "cors": {"allow_methods": "PUT",
                                                                      "allow_credentials": True}}},
        {"match": {"prefix": "/d"}, "direct_response": {"status": 200}},
        {"match": {"prefix": "/"}, "route": {"cluster": "a"}}],
        cors={"allow_origin_string_match": [{"suffix": ".example", "ignore_case": True}], "allow_methods": "GET",
              "filter_enabled": {"default_value": {"numerator": 50, "denominator": "HUNDRED"}}})
    a, direct, rest = translate(d).vhosts[0].routes
    assert a.filters[CORS_POLICY].config == {
        "allow_origin_string_match": [{"suffix": ".example", "ignore_case": True}], "allow_methods": "PUT",
        "allow_credentials": True, "filter_enabled": {"numerator": 50, "denominator": "HUNDRED"}}
    assert rest.filters[CORS_POLICY].config["allow_methods"] == "GET"
    assert CORS_POLICY not in direct.filters


def test_bad_per_filter_settings_are_rejections_at_their_field():
    rj = rejection(config([{"match": {"prefix": "/"}, "route": {"cluster": "a"}, "typed_per_filter_config": {
        "f": {"@type": FC}}}]))
    assert rj.field_path == "virtual_hosts[0].routes[0].typed_per_filter_config.f" and "needs config" in rj.message
    rj = rejection(config([{"match": {"prefix": "/"}, "route": {"cluster": "a"}, "typed_per_filter_config": {
        "cors": {"@type": CORS, "allow_origin_string_match": [{"safe_regex": {"regex": "("}}]}}}]))
    assert rj.field_path == ("virtual_hosts[0].routes[0].typed_per_filter_config.cors"
                             ".allow_origin_string_match[0].safe_regex.regex")
    rj = rejection(config([{"match": {"prefix": "/"}, "route": {"cluster": "a"}, "typed_per_filter_config": {
        "f": {"@type": FAULT, "abort": {"grpc_status": 14}}}}]))
    assert rj.field_path == "virtual_hosts[0].routes[0].typed_per_filter_config.f.abort"


def test_a_route_fault_without_delay_or_abort_injects_nothing_there():
    r = translate(config([{"match": {"prefix": "/"}, "route": {"cluster": "a"}, "typed_per_filter_config": {
        "f": {"@type": FAULT}}}])).vhosts[0].routes[0]
    assert r.filters["f"] == FilterOverride("fault", disabled=True)
