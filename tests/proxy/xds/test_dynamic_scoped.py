"""The sink's subscriptions for scoped routes: SRDS by wildcard only while a listener
uses scoped_rds, RDS for what the scopes name, and a removed scope taken away."""
from __future__ import annotations

from mosnx.proxy.xds.dynamic import effective
from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, ROUTE, SCOPED_ROUTE

from .test_dynamic import BASE, Harness, cla, cluster, msg, routes, run


def scoped_listener(name, port):
    return msg(LISTENER, {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                          "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                              "stat_prefix": name, "scoped_routes": {
                                  "name": "s", "rds_config_source": {"ads": {}},
                                  "scope_key_builder": {"fragments": [{"header_value_extractor": {
                                      "name": "x-scope", "index": 0}}]},
                                  "scoped_rds": {"scoped_rds_config_source": {"ads": {}}}},
                              "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                                  "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})


def scope(name, route, key):
    return msg(SCOPED_ROUTE, {"name": name, "route_configuration_name": route,
                              "key": {"fragments": [{"string_key": key}]}})


def test_srds_is_asked_by_wildcard_once_a_listener_uses_it_and_scopes_name_routes():
    h = Harness()
    assert h.d.subscriptions(SCOPED_ROUTE) == frozenset()        # no scoped listener: nothing asked
    run(lambda: h.d.apply(CLUSTER, "1", {"up": cluster("up")}, set()))
    run(lambda: h.d.apply(ENDPOINT, "1", {"up": cla("up", 9000)}, set()))
    run(lambda: h.d.apply(LISTENER, "1", {"l": scoped_listener("l", 18630)}, set()))
    assert h.d.subscriptions(SCOPED_ROUTE) is None and SCOPED_ROUTE in h.asked
    assert h.d.resources[LISTENER] and not h.d.last_errors      # warming, not refused
    assert run(lambda: h.d.apply(SCOPED_ROUTE, "1", {"a": scope("a", "ra", "1"), "b": scope("b", "rb", "2")},
                                 set())) == []
    assert h.d.subscriptions(ROUTE) == {"ra", "rb"} and ROUTE in h.asked
    assert run(lambda: h.d.apply(ROUTE, "1", {"ra": routes("ra"), "rb": routes("rb")}, set())) == []
    assert [lc.name for lc in effective(BASE, h.d.payload()).listeners] == ["l"]
    # a scope removed (delta's removed_resources, or left out of a SotW response)
    pushes = h.pushes
    assert run(lambda: h.d.apply(SCOPED_ROUTE, "2", {}, {"b"})) == []
    assert set(h.d.resources[SCOPED_ROUTE]) == {"a"} and h.d.subscriptions(ROUTE) == {"ra"}
    assert h.pushes == pushes + 1


def test_a_bad_scope_is_nacked_by_name_and_the_others_kept():
    h = Harness()
    run(lambda: h.d.apply(LISTENER, "1", {"l": scoped_listener("l", 18631)}, set()))
    bad = msg(SCOPED_ROUTE, {"name": "bad", "route_configuration_name": "ra"})
    rejected = run(lambda: h.d.apply(SCOPED_ROUTE, "1", {"a": scope("a", "ra", "1"), "bad": bad}, set()))
    assert [r.name for r in rejected] == ["bad"] and "key" in rejected[0].detail
    assert set(h.d.resources[SCOPED_ROUTE]) == {"a"}


def test_config_dump_lists_the_scopes_as_envoys_scoped_routes_dump():
    from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2
    from google.protobuf import json_format
    h = Harness()
    run(lambda: h.d.apply(LISTENER, "1", {"l": scoped_listener("l", 18632)}, set()))
    run(lambda: h.d.apply(SCOPED_ROUTE, "7", {"a": scope("a", "ra", "1"), "b": scope("b", "rb", "2")}, set()))
    dump = json_format.ParseDict(h.d.dump(), config_dump_pb2.ConfigDump())
    kinds = [c.type_url.rsplit(".", 1)[-1] for c in dump.configs]
    assert kinds == ["ClustersConfigDump", "ListenersConfigDump", "ScopedRoutesConfigDump", "RoutesConfigDump",
                     "EndpointsConfigDump"]
    srds = config_dump_shared_pb2.ScopedRoutesConfigDump()
    dump.configs[2].Unpack(srds)
    [d] = srds.dynamic_scoped_route_configs
    assert d.name == "s" and d.version_info == "7" and len(d.scoped_route_configs) == 2
