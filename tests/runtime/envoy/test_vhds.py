"""VHDS: a RouteConfiguration with vhds takes the VirtualHost resources of its
namespace (`<route config>/<host>`), over a delta stream only, as Envoy."""
from __future__ import annotations

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import ctx, msg, pick  # noqa: E402
from mosnx.proxy.xds.resources import TYPES  # noqa: E402
from mosnx.runtime.config import load_config_text  # noqa: E402
from mosnx.runtime.envoy.apply import Translations, apply, needed_names  # noqa: E402
from mosnx.runtime.envoy.protos import LISTENER as L, ROUTE as R, VIRTUAL_HOST as VH  # noqa: E402
from mosnx.runtime.model import XdsConfig  # noqa: E402
from mosnx.runtime.snapshot import build_snapshot  # noqa: E402


def _base(mode: str):
    base = load_config_text("clusters:\n- {name: a, endpoints: [127.0.0.1:9100]}\n"
                            "- {name: b, endpoints: [127.0.0.1:9101]}\n", "<base>")
    return dataclasses.replace(base, xds=XdsConfig(host="127.0.0.1", port=18000, mode=mode))


LISTENER = {"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18640}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                         "HttpConnectionManager", "stat_prefix": "l",
                "rds": {"route_config_name": "rc", "config_source": {"ads": {}}},
                "http_filters": [{"name": "router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}
RC = {"name": "rc", "vhds": {"config_source": {"ads": {}}}}


def _vhost(name: str, domain: str, cluster: str, prefix: str = "/"):
    return msg(VH, {"name": name, "domains": [domain], "routes": [
        {"match": {"prefix": prefix}, "route": {"cluster": cluster}}]})


def test_the_virtual_hosts_of_its_namespace_join_the_route_configuration():
    base = _base("delta")
    resources = {L: {"l": msg(L, LISTENER)}, R: {"rc": msg(R, RC)}}
    assert needed_names(resources, base)[VH] == {"rc"}
    vhosts = {"rc/one.test": _vhost("rc/one.test", "one.test", "a"),
              "rc/two.test": _vhost("rc/two.test", "two.test", "b"),
              "other/x": _vhost("other/x", "*", "b")}          # another namespace: not this one's
    cache = Translations()
    config, rejected = apply(base, {**resources, VH: vhosts}, cache=cache)
    assert rejected == []
    routes = build_snapshot(config).listeners["l"].routes
    assert pick(routes, ctx("/", host="one.test")).action.cluster == "a"
    assert pick(routes, ctx("/", host="two.test")).action.cluster == "b"
    assert routes.vhost_of(ctx("/", host="elsewhere").request) is None
    # the same messages again: the same translation
    again, _ = apply(base, {**resources, VH: vhosts}, cache=cache)
    assert again.listeners[0].route_table is config.listeners[0].route_table


def test_a_bad_virtual_host_is_rejected_by_its_own_name():
    bad = msg(VH, {"name": "rc/bad", "domains": ["bad.test"], "routes": [
        {"match": {"safe_regex": {"regex": "("}}, "route": {"cluster": "a"}}]})
    config, rejected = apply(_base("delta"), {L: {"l": msg(L, LISTENER)}, R: {"rc": msg(R, RC)},
                                              VH: {"rc/bad": bad}})
    assert [(r.type_url, r.name) for r in rejected] == [(VH, "rc/bad")]
    assert rejected[0].field_path.startswith("routes[0]")


def test_vhds_over_state_of_the_world_is_refused_as_envoy_does():
    config, rejected = apply(_base("sotw"), {L: {"l": msg(L, LISTENER)}, R: {"rc": msg(R, RC)}})
    assert [(r.type_url, r.name, r.field_path) for r in rejected] == [(R, "rc", "vhds")]
    assert "DELTA_GRPC" in rejected[0].message
    assert VH not in needed_names({R: {"rc": msg(R, RC)}}, _base("sotw"))


def test_a_namespace_subscribes_to_its_resources():
    vh = TYPES[VH]
    assert vh.wants("rc/one.test", frozenset({"rc"})) and vh.wants("a/b/c:80", frozenset({"a/b"}))
    assert not vh.wants("other/x", frozenset({"rc"})) and not TYPES[R].wants("rc/x", frozenset({"rc"}))
