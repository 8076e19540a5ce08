"""EDS in place, end to end, with 2 workers: when the control plane changes a
cluster's endpoints (and nothing else), traffic moves to the new endpoint without a
reload: the supervisor's reload count and the snapshot version stay, the change is
counted as eds.update_in_place, a client's kept-alive connection to the proxy keeps
working, the pooled connection to the endpoint that stayed is reused (that upstream
accepts no new connection), and /clusters and the typed config dump show the new
endpoints in every worker. A bad assignment after that is NACKed by name while the
last good endpoints serve. SotW and delta, on the in-repo ADS server."""
from __future__ import annotations

import pytest

pytest.importorskip("envoy.config.listener.v3.listener_pb2")

from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, ROUTE  # noqa: E402

from .conftest import HOST, free_port  # noqa: E402
from .test_xds_e2e import _get, assignment, control, eds_cluster, listener, routes  # noqa: E402,F401

RELOADS = "server.supervisor_reload_success"


def _serve(c, path: str) -> int:
    return c.request("GET", path, headers=[("host", "example.com")]).status


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_an_endpoint_change_moves_traffic_without_a_reload(mosnx, control, upstream, client, mode):
    stay, leaving, coming = upstream(), upstream(), upstream()
    dyn = free_port()
    control.push(CLUSTER, "1", [eds_cluster("xds-up")])
    control.push(ENDPOINT, "1", [assignment("xds-up", stay.port, leaving.port)])
    control.push(ROUTE, "1", [routes("r1")])
    control.push(LISTENER, "1", [listener("dyn", dyn, "r1")])
    proxy = mosnx(config={
        "listeners": [{"name": "static", "address": f"{HOST}:{free_port()}", "route": {"cluster": "web"}}],
        "clusters": [{"name": "web", "endpoints": [stay.address]}],
        "xds": {"address": f"{HOST}:{control.port}", "node": {"id": "eds-in-place"}, "mode": mode},
    }, workers=2)
    proxy.wait_until(lambda: _get(dyn, "/ready") == 200, what="the EDS cluster serving")
    c = client(dyn)
    # round robin over both endpoints, on one kept-alive connection (so one worker)
    for i in range(4):
        assert _serve(c, f"/warm{i}") == 200
    assert sum(len(u.requests_for(f"/warm{i}")) for u in (stay, leaving) for i in range(4)) == 4
    proxy.wait_until(lambda: proxy.stats().get("control_plane.connected_state") == 1, what="the stream up")
    before = proxy.stats()
    version = proxy.admin_json("/config_dump")["version"]
    accepted = stay.accepted

    control.push(ENDPOINT, "2", [assignment("xds-up", stay.port, coming.port)])
    n = 0

    def moved() -> bool:
        nonlocal n
        n += 1
        assert _serve(c, f"/poll{n}") == 200        # the same client connection throughout
        return bool(coming.requests_for(f"/poll{n}"))
    proxy.wait_until(moved, what="a request on the new endpoint")
    gone = len(leaving.requests)
    for i in range(6):
        assert _serve(c, f"/after{i}") == 200
    hits = {u: sum(len(u.requests_for(f"/after{i}")) for i in range(6)) for u in (stay, leaving, coming)}
    assert hits[leaving] == 0 and hits[stay] >= 2 and hits[coming] >= 2
    assert len(leaving.requests) == gone
    # the pooled connection to the endpoint that stayed carried its requests
    assert stay.accepted == accepted
    after = proxy.stats()
    assert after[RELOADS] == before[RELOADS], "an endpoint change must not reload"
    assert after["eds.update_in_place"] >= before.get("eds.update_in_place", 0) + 1
    dump = proxy.admin_json("/config_dump")
    assert dump["version"] == version
    eds = next(x for x in dump["configs"] if x["@type"].endswith("EndpointsConfigDump"))
    ports = [e["endpoint"]["address"]["socketAddress"]["portValue"]
             for d in eds["dynamicEndpointConfigs"] for loc in d["endpointConfig"]["endpoints"]
             for e in loc["lbEndpoints"]]
    assert sorted(ports) == sorted([stay.port, coming.port])
    # every worker changed it: /clusters merges what the workers hold
    status, _, body = proxy.admin("/clusters")
    assert status == 200 and f"xds-up::{coming.address}::".encode() in body
    assert f"xds-up::{leaving.address}::".encode() not in body

    # a bad assignment: NACKed by its name, the last good endpoints keep serving
    control.push(ENDPOINT, "3", [assignment("xds-up", 0)])
    proxy.wait_until(lambda: control.nacks(ENDPOINT), what="a NACK of the bad assignment")
    nack = control.nacks(ENDPOINT)[-1]
    assert "xds-up" in nack.error.message and "port 0" in nack.error.message
    for i in range(4):
        assert _serve(c, f"/still{i}") == 200
    assert sum(len(u.requests_for(f"/still{i}")) for u in (stay, coming) for i in range(4)) == 4
    assert proxy.stats()[RELOADS] == before[RELOADS]
