"""Scoped routes over xDS, end to end: a listener whose HttpConnectionManager takes
scoped_routes from SRDS serves two scopes, each with its RouteConfiguration from RDS
and its own upstream, chosen per request by a header; a request whose key no scope
has gets 404, and a scope the control plane removes stops serving. State of the
world and delta, against the in-repo ADS server. And VHDS over delta: a
RouteConfiguration's virtual hosts come as VirtualHost resources of its namespace."""
from __future__ import annotations

import http.client

import pytest
from google.protobuf import json_format

pytest.importorskip("envoy.config.route.v3.scoped_route_pb2")

from envoy.config.listener.v3 import listener_pb2  # noqa: E402
from envoy.config.route.v3 import scoped_route_pb2  # noqa: E402

from mosnx.runtime.envoy.protos import CLUSTER, LISTENER, ROUTE, SCOPED_ROUTE  # noqa: E402

from .conftest import HOST, free_port  # noqa: E402
from .test_xds_e2e import cluster, control, routes  # noqa: E402,F401  (the ADS server fixture)

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def scoped_listener(name: str, port: int):
    return json_format.ParseDict({
        "name": name,
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
            "@type": HCM, "stat_prefix": name,
            "scoped_routes": {
                "name": "tenants", "rds_config_source": {"ads": {}},
                "scope_key_builder": {"fragments": [{"header_value_extractor": {
                    "name": "x-route", "element_separator": ";", "element": {"key": "tenant", "separator": "="}}}]},
                "scoped_rds": {"scoped_rds_config_source": {"ads": {}}}},
            "http_filters": [{"name": "router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}],
    }, listener_pb2.Listener())


def scope(name: str, route: str, key: str):
    return json_format.ParseDict({"name": name, "route_configuration_name": route,
                                  "key": {"fragments": [{"string_key": key}]}},
                                 scoped_route_pb2.ScopedRouteConfiguration())


def route_to(name: str, cluster_name: str):
    rc = routes(name)
    rc.virtual_hosts[0].routes[0].route.cluster = cluster_name
    return rc


def _get(port: int, path: str, tenant: str | None) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    headers = {"host": "example.com"}
    if tenant is not None:
        headers["x-route"] = f"region=eu;tenant={tenant}"
    try:
        conn.request("GET", path, headers=headers)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_a_scoped_listener_serves_two_scopes_chosen_by_a_header(mosnx, control, upstream, mode):  # noqa: F811
    blue, green = upstream(), upstream()
    port = free_port()
    control.push(CLUSTER, "1", [cluster("blue", blue.port), cluster("green", green.port)])
    control.push(ROUTE, "1", [route_to("r-blue", "blue"), route_to("r-green", "green")])
    control.push(SCOPED_ROUTE, "1", [scope("s-blue", "r-blue", "blue"), scope("s-green", "r-green", "green")])
    control.push(LISTENER, "1", [scoped_listener("scoped", port)])
    proxy = mosnx(config={
        "listeners": [{"name": "static", "address": f"{HOST}:{free_port()}", "route": {"cluster": "web"}}],
        "clusters": [{"name": "web", "endpoints": [blue.address]}],
        "xds": {"address": f"{HOST}:{control.port}", "node": {"id": "scoped"}, "mode": mode,
                "initial_fetch_timeout": "20s"}})
    proxy.wait_until(lambda: _get(port, "/b", "blue") == 200, what="the scoped listener serving")
    assert _get(port, "/g", "green") == 200
    assert blue.requests_for("/b") and not blue.requests_for("/g")
    assert green.requests_for("/g") and not green.requests_for("/b")
    # a key no scope has, and a request without the header: no route, as Envoy answers
    assert _get(port, "/none", "red") == 404 and _get(port, "/none", None) == 404
    # SRDS by wildcard, RDS by the names the scopes give
    if mode == "sotw":
        assert any(set(r.names) == {"r-blue", "r-green"} for r in control.server.of(ROUTE))
        assert all(r.names == () for r in control.server.of(SCOPED_ROUTE))
    else:
        assert {"r-blue", "r-green"} <= {n for r in control.server.of(ROUTE) for n in r.subscribe}
    # the control plane removes a scope: its key no longer routes, the other still does
    control.push(SCOPED_ROUTE, "2", [scope("s-blue", "r-blue", "blue")])
    proxy.wait_until(lambda: _get(port, "/g2", "green") == 404, what="the removed scope gone")
    assert _get(port, "/b2", "blue") == 200
    assert proxy.stats()["scoped_rds.update_success"] >= 2


def test_vhds_virtual_hosts_serve_a_route_configuration_over_delta(mosnx, control, upstream):  # noqa: F811
    from envoy.config.route.v3 import route_components_pb2, route_pb2
    from mosnx.runtime.envoy.protos import VIRTUAL_HOST
    from .test_xds_e2e import listener
    up = upstream()
    port = free_port()

    def vhost(domain: str, cluster_name: str):
        return json_format.ParseDict({"name": f"rc/{domain}", "domains": [domain], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}]}, route_components_pb2.VirtualHost())
    control.push(CLUSTER, "1", [cluster("xds-up", up.port)])
    control.push(ROUTE, "1", [json_format.ParseDict({"name": "rc", "vhds": {"config_source": {"ads": {}}}},
                                                    route_pb2.RouteConfiguration())])
    control.push(VIRTUAL_HOST, "1", [vhost("one.test", "xds-up"), vhost("two.test", "xds-up")])
    control.push(LISTENER, "1", [listener("dyn", port, "rc")])
    proxy = mosnx(config={
        "listeners": [{"name": "static", "address": f"{HOST}:{free_port()}", "route": {"cluster": "web"}}],
        "clusters": [{"name": "web", "endpoints": [up.address]}],
        "xds": {"address": f"{HOST}:{control.port}", "node": {"id": "vhds"}, "mode": "delta",
                "initial_fetch_timeout": "20s"}})

    def get(host: str, path: str) -> int:
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            conn.request("GET", path, headers={"host": host})
            return conn.getresponse().status
        except OSError:
            return 0
        finally:
            conn.close()
    proxy.wait_until(lambda: get("one.test", "/1") == 200, what="a VHDS virtual host serving")
    assert get("two.test", "/2") == 200 and get("three.test", "/3") == 404
    assert up.requests_for("/1") and up.requests_for("/2")
    # subscribed by the route configuration's name, as a namespace
    assert any("rc" in r.subscribe for r in control.server.of(VIRTUAL_HOST))
    # a virtual host removed over delta stops serving
    control.push(VIRTUAL_HOST, "2", [vhost("one.test", "xds-up")])
    proxy.wait_until(lambda: get("two.test", "/2b") == 404, what="the removed virtual host gone")
