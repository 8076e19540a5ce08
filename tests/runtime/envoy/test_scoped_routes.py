"""Scoped routes (SRDS): the key built from headers picks a scope, then its table the vhost."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import ctx, msg, pick  # noqa: E402
from mosnx.runtime.config import load_config_text  # noqa: E402
from mosnx.runtime.envoy.apply import apply, needed_names  # noqa: E402
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.protos import LISTENER as L, ROUTE as R, SCOPED_ROUTE as SR  # noqa: E402
from mosnx.runtime.envoy.scoped_routes import WILDCARD, ScopedRouteTable, key_builder  # noqa: E402
from mosnx.runtime.snapshot import build_snapshot  # noqa: E402
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2  # noqa: E402
from google.protobuf import json_format  # noqa: E402

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {"name": "router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def _base():
    return load_config_text("clusters:\n- {name: a, endpoints: [127.0.0.1:9100]}\n"
                            "- {name: b, endpoints: [127.0.0.1:9101]}\n", "<base>")


def _scoped(spec: dict, port: int = 18600) -> dict:
    return {"name": "scoped", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": HCM, "stat_prefix": "s", "http_filters": [ROUTER], "scoped_routes": {
                    "name": "by-tenant", "rds_config_source": {"ads": {}},
                    "scope_key_builder": {"fragments": [{"header_value_extractor": {
                        "name": "x-tenant", "index": 0}}]}, **spec}}}]}]}


SRDS = {"scoped_rds": {"scoped_rds_config_source": {"ads": {}}}}


def _route(name: str, cluster: str) -> dict:
    return {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]}


def _scope(name: str, route: str, *key: str) -> dict:
    return {"name": name, "route_configuration_name": route,
            "key": {"fragments": [{"string_key": k} for k in key]}}


def test_srds_scopes_pick_the_route_table_by_header():
    resources = {L: {"scoped": msg(L, _scoped(SRDS))},
                 SR: {"one": msg(SR, _scope("one", "ra", "t1")), "two": msg(SR, _scope("two", "rb", "t2"))},
                 R: {"ra": msg(R, _route("ra", "a")), "rb": msg(R, _route("rb", "b"))}}
    # the scoped listener subscribes to SRDS by wildcard, and RDS to what the scopes name
    names = needed_names(resources)
    assert names[SR] == {WILDCARD} and names[R] == {"ra", "rb"}
    config, rejected = apply(_base(), resources)
    assert rejected == [] and [lc.name for lc in config.listeners] == ["scoped"]
    routes = build_snapshot(config).listeners["scoped"].routes
    assert isinstance(routes, ScopedRouteTable)
    assert pick(routes, ctx("/x", x_tenant="t1")).action.cluster == "a"
    assert pick(routes, ctx("/x", x_tenant="t2")).action.cluster == "b"
    # no scope for the key, or no header to build one: no vhost (the core answers 404)
    assert routes.vhost_of(ctx("/x", x_tenant="t3").request) is None
    assert routes.vhost_of(ctx("/x").request) is None
    assert routes.clusters() == {"a", "b"}


def test_a_scoped_listener_warms_until_its_scopes_and_their_routes_come():
    sink = Sink()
    lst = {"scoped": msg(L, _scoped(SRDS))}
    config, rejected = apply(_base(), {L: lst}, sink)
    assert config.listeners == () and rejected == []
    assert "no ScopedRouteConfiguration has been received" in sink.waiting[0].message
    sink = Sink()
    config, rejected = apply(_base(), {L: lst, SR: {"one": msg(SR, _scope("one", "ra", "t1"))}}, sink)
    assert config.listeners == () and rejected == []
    assert 'RouteConfiguration "ra" of scope "one" has not been received' in sink.waiting[0].message


def test_scope_key_conflict_and_bad_scopes_are_rejected_by_name():
    resources = {L: {"scoped": msg(L, _scoped(SRDS))},
                 SR: {"one": msg(SR, _scope("one", "ra", "t1")), "two": msg(SR, _scope("two", "ra", "t1")),
                      "nokey": msg(SR, {"name": "nokey", "route_configuration_name": "ra"}),
                      "noroute": msg(SR, {"name": "noroute", "key": {"fragments": [{"string_key": "z"}]}})},
                 R: {"ra": msg(R, _route("ra", "a"))}}
    config, rejected = apply(_base(), resources)
    assert sorted((r.type_url, r.name, r.field_path) for r in rejected) == [
        (SR, "nokey", "key"), (SR, "noroute", "route_configuration_name"), (SR, "two", "key")]
    assert [lc.name for lc in config.listeners] == ["scoped"]


def test_inline_scopes_and_inline_route_configuration():
    spec = {"scoped_route_configurations_list": {"scoped_route_configurations": [
        _scope("one", "ra", "t1"),
        {"name": "two", "key": {"fragments": [{"string_key": "t2"}]}, "route_configuration": _route("inl", "b")}]}}
    lst = {"scoped": msg(L, _scoped(spec))}
    assert needed_names({L: lst})[R] == {"ra"} and SR not in needed_names({L: lst})
    config, _ = apply(_base(), {L: lst})
    assert config.listeners == ()       # waits for "ra"
    config, rejected = apply(_base(), {L: lst, R: {"ra": msg(R, _route("ra", "a"))}})
    assert rejected == []
    routes = build_snapshot(config).listeners["scoped"].routes
    assert pick(routes, ctx("/", x_tenant="t1")).action.cluster == "a"
    assert pick(routes, ctx("/", x_tenant="t2")).action.cluster == "b"


def _builder(frag: dict):
    kb = json_format.ParseDict({"fragments": [{"header_value_extractor": frag}]},
                               hcm_pb2.ScopedRoutes.ScopeKeyBuilder())
    return key_builder(kb, Findings(L, "x"))


def test_header_value_extractor_as_envoy_reads_it():
    by_index = _builder({"name": "x-k", "element_separator": ";", "index": 1})
    assert by_index.key_of(ctx("/", x_k="a;b;c").request) == ("b",)
    assert by_index.key_of(ctx("/", x_k="a").request) is None       # out of range: no key
    element = _builder({"name": "x-k", "element_separator": ";", "element": {"key": "tenant", "separator": "="}})
    assert element.key_of(ctx("/", x_k="a=1;tenant=blue=x").request) == ("blue=x",)
    assert element.key_of(ctx("/", x_k="a=1").request) is None
    whole = _builder({"name": "Host", "index": 0})      # Host is :authority, as in Envoy
    assert whole.key_of(ctx("/", host="127.0.0.1:9000").request) == ("127.0.0.1:9000",)


@pytest.mark.parametrize("frag, field", [
    ({"name": "x", "index": 2}, "index"),                      # no separator: index must be 0
    ({"name": "", "index": 0}, "name"),
    ({"name": "\u0100", "index": 0}, "name"),                 # not a header name
    ({"name": "x k", "index": 0}, "name"),
    ({"name": "x"}, ""),
    ({"name": "x", "element": {"key": "", "separator": "="}}, "key"),
])
def test_bad_key_builders_are_rejected_with_a_field(frag: dict, field: str):
    with pytest.raises(Rejected) as e:
        _builder(frag)
    assert e.value.rejection.field_path.endswith(field) and e.value.rejection.message


def test_scoped_listener_with_cluster_missing_is_rejected_like_any_listener():
    resources = {L: {"scoped": msg(L, _scoped(SRDS))}, SR: {"one": msg(SR, _scope("one", "rz", "t1"))},
                 R: {"rz": msg(R, _route("rz", "nowhere"))}}
    config, rejected = apply(_base(), resources)
    assert config.listeners == () and 'unknown cluster "nowhere"' in rejected[0].message


def test_removing_a_scope_takes_its_key_away():
    both = {"one": msg(SR, _scope("one", "ra", "t1")), "two": msg(SR, _scope("two", "rb", "t2"))}
    rs = {"ra": msg(R, _route("ra", "a")), "rb": msg(R, _route("rb", "b"))}
    lst = {"scoped": msg(L, _scoped(SRDS))}
    config, _ = apply(_base(), {L: lst, SR: {"one": both["one"]}, R: rs})
    routes = build_snapshot(config).listeners["scoped"].routes
    assert routes.vhost_of(ctx("/", x_tenant="t2").request) is None
    assert pick(routes, ctx("/", x_tenant="t1")).action.cluster == "a"


# -- generated input: mutated scoped listeners, scopes and VHDS resources ---------------
from hypothesis import given, strategies as st  # noqa: E402
from test_decode_generated import SETTINGS, _mutate, _paths, values  # noqa: E402
from mosnx.runtime.envoy import protos  # noqa: E402
from mosnx.runtime.envoy.decode import parse  # noqa: E402
from mosnx.runtime.model import XdsConfig  # noqa: E402

GEN = {protos.LISTENER: _scoped({**SRDS, "scope_key_builder": {"fragments": [
           {"header_value_extractor": {"name": "x", "element_separator": ";", "element": {"key": "k", "separator": "="}}},
           {"header_value_extractor": {"name": "host", "index": 0}}]}}),
       protos.SCOPED_ROUTE: _scope("one", "ra", "t1", "h"),
       protos.ROUTE: {"name": "ra", "vhds": {"config_source": {"ads": {}}}, **_route("ra", "a")},
       protos.VIRTUAL_HOST: {"name": "ra/x.test", "domains": ["x.test"], "routes": [
           {"match": {"prefix": "/"}, "route": {"cluster": "b"}}]}}
GPATHS = [(t, p) for t, d in GEN.items() for p in _paths(d)[1:]]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(GPATHS), st.sampled_from(["replace", "drop", "add"]), values,
                          st.text(min_size=1, max_size=8)), min_size=1, max_size=3),
       st.sampled_from(["sotw", "delta"]))
def test_mutated_scoped_resources_are_applied_or_rejected(mutations, mode):
    import dataclasses
    docs = dict(GEN)
    for (t, path), how, value, key in mutations:
        try:
            docs[t] = _mutate(docs[t], path, how, value, key)
        except (KeyError, IndexError, TypeError):
            continue
    resources: dict = {}
    for t, d in docs.items():
        m, errors = parse(d, protos.RESOURCE_TYPES[t], None)
        if m is None:
            assert errors
            continue
        resources.setdefault(t, {})[m.name] = m
    base = dataclasses.replace(_base(), xds=XdsConfig(host="127.0.0.1", port=18000, mode=mode))
    needed_names(resources, base)
    config, rejected = apply(base, resources)
    for r in rejected:
        assert r.type_url in protos.RESOURCE_TYPES and r.message
    for lc in config.listeners:
        t = lc.route_table
        if t is not None:
            t.vhost_of(ctx("/", x="a;k=v").request)


def test_a_new_scope_with_a_held_scopes_key_is_the_one_rejected():
    from mosnx.runtime.envoy.apply import Translations
    cache = Translations()
    lst = {"scoped": msg(L, _scoped(SRDS))}
    rs = {"ra": msg(R, _route("ra", "a")), "rb": msg(R, _route("rb", "b"))}
    held = {"z": msg(SR, _scope("z", "rb", "t1"))}
    base = _base()
    apply(base, {L: lst, SR: held, R: rs}, cache=cache)
    # "a" sorts first but comes later: the scope already serving keeps its key
    config, rejected = apply(base, {L: lst, SR: {**held, "a": msg(SR, _scope("a", "ra", "t1"))}, R: rs},
                             cache=cache)
    assert [(r.name, r.field_path) for r in rejected] == [("a", "key")]
    assert pick(build_snapshot(config).listeners["scoped"].routes, ctx("/", x_tenant="t1")).action.cluster == "b"
