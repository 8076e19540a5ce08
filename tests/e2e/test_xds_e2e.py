"""mosnx as an xDS data plane, end to end: `mosnx run` with an `xds:` block takes a
listener, its RDS route configuration and a cluster from an ADS server (the
in-repo one, on grpcio), serves real requests with them, follows a route change on
a connection already open, NACKs a bad resource with a precise error_detail while
the last good configuration keeps serving, and holds /ready at 503 until the first
listeners and clusters came. One worker and two."""
from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest
from google.protobuf import json_format

pytest.importorskip("envoy.config.listener.v3.listener_pb2")

from envoy.config.cluster.v3 import cluster_pb2  # noqa: E402
from envoy.config.listener.v3 import listener_pb2  # noqa: E402
from envoy.config.route.v3 import route_pb2  # noqa: E402

from mosnx.runtime.envoy.protos import CLUSTER, LISTENER, ROUTE  # noqa: E402

from .conftest import HOST, free_port  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy" / "xds"))
from ads_server import AdsServer  # noqa: E402


class Control:
    """The ADS server on a loop of its own thread; pushes from the test thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = AdsServer()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self.call(self.server.start())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def push(self, type_url: str, version: str, resources) -> None:
        async def go():
            self.server.push(type_url, version, resources)
        self.call(go())

    def nacks(self, type_url: str):
        return [r for r in list(self.server.requests) if r.type_url == type_url and r.nack]

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def control():
    c = Control()
    yield c
    c.stop()


def listener(name: str, port: int, rds: str):
    return json_format.ParseDict({
        "name": name,
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "rds": {"route_config_name": rds, "config_source": {"ads": {}}},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            }}]}],
    }, listener_pb2.Listener())


def cluster(name: str, port: int, **extra):
    return json_format.ParseDict({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": HOST, "port_value": port}}}}]}]},
        **extra,
    }, cluster_pb2.Cluster())


def routes(name: str, *extra_routes):
    return json_format.ParseDict({
        "name": name,
        "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            *extra_routes,
            {"match": {"prefix": "/"}, "route": {"cluster": "xds-up"}},
        ]}],
    }, route_pb2.RouteConfiguration())


def start(mosnx, control, upstream_port: int, workers: int):
    dyn = free_port()
    control.push(CLUSTER, "1", [cluster("xds-up", upstream_port)])
    control.push(ROUTE, "1", [routes("r1")])
    control.push(LISTENER, "1", [listener("dyn", dyn, "r1")])
    static = free_port()
    config = {
        "listeners": [{"name": "static", "address": f"{HOST}:{static}", "route": {"cluster": "web"}}],
        "clusters": [{"name": "web", "endpoints": [f"{HOST}:{upstream_port}"]}],
        "xds": {"address": f"{HOST}:{control.port}", "node": {"id": "mosnx-e2e", "cluster": "test"},
                "initial_fetch_timeout": "20s"},
    }
    proxy = mosnx(config=config, workers=workers)
    return proxy, dyn


@pytest.mark.parametrize("workers", [1, 2])
def test_a_listener_route_and_cluster_from_the_control_plane_serve(mosnx, control, upstream, client, workers):
    up = upstream()
    proxy, dyn = start(mosnx, control, up.port, workers)
    proxy.wait_until(lambda: _get(dyn, "/hello") == 200, what="the xDS listener serving")
    assert up.requests_for("/hello")
    # the node and the subscriptions the control plane saw
    first = control.server.requests[0]
    assert first.node is not None and first.node.id == "mosnx-e2e" and first.node.user_agent_name == "mosnx"
    assert any(r.names == ("r1",) for r in control.server.of(ROUTE))
    stats = proxy.stats()
    assert stats["control_plane.connected_state"] == 1
    assert stats["listener_manager.lds.update_success"] >= 1


def test_a_route_change_reaches_a_connection_already_open(mosnx, control, upstream, client):
    up = upstream()
    proxy, dyn = start(mosnx, control, up.port, 1)
    proxy.wait_until(lambda: _get(dyn, "/teapot") == 200, what="the xDS listener serving")
    c = client(dyn)
    assert _status(c, "/teapot") == 200
    control.push(ROUTE, "2", [routes("r1", {"match": {"path": "/teapot"},
                                            "direct_response": {"status": 418, "body": {"inline_string": "tea"}}})])
    # the same client connection: no drain, no new connection needed
    proxy.wait_until(lambda: _status(c, "/teapot") == 418, what="the new route on the open connection")
    assert _status(c, "/other") == 200


def test_a_bad_resource_is_nacked_by_name_and_the_last_good_config_serves(mosnx, control, upstream, client):
    up = upstream()
    proxy, dyn = start(mosnx, control, up.port, 1)
    proxy.wait_until(lambda: _get(dyn, "/a") == 200, what="the xDS listener serving")
    c = client(dyn)
    bad = cluster("xds-bad", up.port, lb_policy="CLUSTER_PROVIDED")
    control.push(CLUSTER, "2", [cluster("xds-up", up.port), bad])
    proxy.wait_until(lambda: control.nacks(CLUSTER), what="a NACK of the cluster update")
    nack = control.nacks(CLUSTER)[-1]
    assert "xds-bad" in nack.error.message and nack.version == "1"
    assert _status(c, "/b") == 200
    assert proxy.stats()["cluster_manager.cds.update_rejected"] >= 1


def _get(port: int, path: str) -> int:
    """A request on a new connection: 0 while nothing serves the port."""
    import http.client
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path, headers={"host": "example.com"})
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def _status(c, path: str) -> int:
    try:
        return c.request("GET", path, headers=[("host", "example.com")]).status
    except Exception:  # noqa: BLE001  (not serving yet: a refused or reset connection)
        return 0


def eds_cluster(name: str):
    return json_format.ParseDict({
        "name": name, "type": "EDS", "connect_timeout": "1s",
        "eds_cluster_config": {"eds_config": {"ads": {}}},
    }, cluster_pb2.Cluster())


def assignment(name: str, *ports: int):
    from envoy.config.endpoint.v3 import endpoint_pb2
    return json_format.ParseDict({
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": HOST, "port_value": p}}}} for p in ports]}],
    }, endpoint_pb2.ClusterLoadAssignment())


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_eds_endpoints_follow_the_control_plane(mosnx, control, upstream, mode):
    from mosnx.runtime.envoy.protos import ENDPOINT
    first, second = upstream(), upstream()
    dyn = free_port()
    control.push(CLUSTER, "1", [eds_cluster("xds-up")])
    control.push(ENDPOINT, "1", [assignment("xds-up", first.port)])
    control.push(ROUTE, "1", [routes("r1")])
    control.push(LISTENER, "1", [listener("dyn", dyn, "r1")])
    static = free_port()
    proxy = mosnx(config={
        "listeners": [{"name": "static", "address": f"{HOST}:{static}", "route": {"cluster": "web"}}],
        "clusters": [{"name": "web", "endpoints": [first.address]}],
        "xds": {"address": f"{HOST}:{control.port}", "node": {"id": "eds"}, "mode": mode},
    })
    proxy.wait_until(lambda: _get(dyn, "/one") == 200, what="the EDS cluster serving")
    assert first.requests_for("/one")
    # the endpoint moves: requests follow it, and the subscription named the cluster
    control.push(ENDPOINT, "2", [assignment("xds-up", second.port)])
    proxy.wait_until(lambda: _get(dyn, "/two") == 200 and second.requests_for("/two"),
                     what="requests on the new endpoint")
    if mode == "sotw":
        assert any("xds-up" in r.names for r in control.server.of(ENDPOINT))
    else:
        assert any("xds-up" in r.subscribe for r in control.server.of(ENDPOINT))


def test_not_ready_until_the_first_listeners_and_clusters_came(mosnx, control, upstream):
    up = upstream()
    static = free_port()
    proxy = mosnx(config={
        "listeners": [{"name": "static", "address": f"{HOST}:{static}", "route": {"cluster": "web"}}],
        "clusters": [{"name": "web", "endpoints": [up.address]}],
        "xds": {"address": f"{HOST}:{control.port}", "node": {"id": "late"}, "initial_fetch_timeout": "0s"},
    }, wait=False)
    proxy.wait_until(lambda: _admin_status(proxy, "/server_info") == 200, what="the admin API")
    assert _admin_status(proxy, "/ready") == 503
    dyn = free_port()
    control.push(CLUSTER, "1", [cluster("xds-up", up.port)])
    control.push(ROUTE, "1", [routes("r1")])
    control.push(LISTENER, "1", [listener("dyn", dyn, "r1")])
    proxy.wait_until(lambda: _admin_status(proxy, "/ready") == 200, what="ready once the resources came")
    proxy.wait_until(lambda: _get(dyn, "/x") == 200, what="the xDS listener serving")


def test_a_lost_control_plane_keeps_the_last_config_serving_and_is_found_again(mosnx, control, upstream):
    up = upstream()
    proxy, dyn = start(mosnx, control, up.port, 1)
    proxy.wait_until(lambda: _get(dyn, "/before") == 200, what="the xDS listener serving")
    streams = len({r.stream for r in control.server.requests})
    control.call(control.server.stop())
    proxy.wait_until(lambda: proxy.stats().get("control_plane.connected_state") == 0, what="the stream lost")
    for i in range(5):
        assert _get(dyn, f"/meanwhile{i}") == 200
    control.call(control.server.start())
    proxy.wait_until(lambda: len({r.stream for r in control.server.requests}) > streams, timeout=30,
                     what="a new stream to the control plane")
    proxy.wait_until(lambda: proxy.stats().get("control_plane.connected_state") == 1, what="connected again")
    assert _get(dyn, "/after") == 200


def _admin_status(proxy, path: str) -> int:
    try:
        return proxy.admin(path, timeout=2)[0]
    except OSError:
        return 0


def test_config_dump_is_envoys_typed_dump_with_the_refused_resource(mosnx, control, upstream):
    from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2
    up = upstream()
    proxy, dyn = start(mosnx, control, up.port, 1)
    proxy.wait_until(lambda: _get(dyn, "/a") == 200, what="the xDS listener serving")
    control.push(CLUSTER, "2", [cluster("xds-up", up.port), cluster("xds-bad", up.port, lb_policy="CLUSTER_PROVIDED")])
    proxy.wait_until(lambda: control.nacks(CLUSTER), what="a NACK of the cluster update")
    dump = proxy.admin_json("/config_dump")
    parsed = json_format.ParseDict({"configs": dump["configs"]}, config_dump_pb2.ConfigDump())
    kinds = [c.type_url.rsplit(".", 1)[-1] for c in parsed.configs]
    assert kinds == ["ClustersConfigDump", "ListenersConfigDump", "RoutesConfigDump", "EndpointsConfigDump"]
    clusters = config_dump_shared_pb2.ClustersConfigDump()
    parsed.configs[0].Unpack(clusters)
    active = [c for c in clusters.dynamic_active_clusters if c.HasField("cluster")]
    refused = [c for c in clusters.dynamic_active_clusters if c.HasField("error_state")]
    assert len(active) == 1 and refused and "lb_policy" in refused[0].error_state.details
    listeners = config_dump_shared_pb2.ListenersConfigDump()
    parsed.configs[1].Unpack(listeners)
    assert [d.name for d in listeners.dynamic_listeners] == ["dyn"] and listeners.version_info == "1"


def test_the_example_runs_under_a_control_plane(mosnx, control, tmp_path):
    """examples/xds: its mosnx.yaml, with the resources of its resources.yaml served by
    the in-repo ADS server (ports moved to free ones), answers from both demo upstreams."""
    import yaml
    from mosnx.runtime.envoy.protos import ENDPOINT, RESOURCE_TYPES
    root = Path(__file__).resolve().parents[2] / "examples" / "xds"
    listen, up_a, up_b, admin = free_port(), free_port(), free_port(), free_port()
    text = (root / "resources.yaml").read_text()
    text = text.replace("10300", str(listen)).replace("18381", str(up_a)).replace("18382", str(up_b))
    by_type: dict[str, list] = {}
    for r in yaml.safe_load(text)["resources"]:
        r = dict(r)
        t = r.pop("@type")
        by_type.setdefault(t, []).append(json_format.ParseDict(r, RESOURCE_TYPES[t]()))
    for t in (CLUSTER, ENDPOINT, ROUTE, LISTENER):
        control.push(t, "v1", by_type[t])
    config = yaml.safe_load((root / "mosnx.yaml").read_text())
    config["admin"] = {"address": f"{HOST}:{admin}"}
    config["demo_upstream"] = [f"{HOST}:{up_a}", f"{HOST}:{up_b}"]
    config["xds"]["address"] = f"{HOST}:{control.port}"
    config["listeners"] = [{"name": "health", "address": f"{HOST}:{free_port()}", "route": {"cluster": "a"}}]
    config["clusters"] = [{"name": "a", "endpoints": [f"{HOST}:{up_a}"]}]
    proxy = mosnx(config=config)
    proxy.wait_until(lambda: _get(listen, "/hello") == 200, what="the example's listener serving")
    assert _get(listen, "/b/x") == 200
