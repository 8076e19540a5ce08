"""What workers report about the proxy is reported once; what they count of their own
traffic adds up: /stats (admin_backend.AdminBackend.stats over runtime.stats.merge) and
/clusters (admin_backend.merge_clusters). Also the counts behind those numbers: a
copy counted on its shadow cluster (upstream.mirror.ShadowStats) and a reply the
connection writes itself counted as a local reply (listener_stats.ListenerStats.refused)."""
from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

from mosnx.proxy.listener_stats import ListenerStats
from mosnx.proxy.admin_backend import merge_clusters
from mosnx.proxy.upstream import mirror
from mosnx.proxy.upstream.call import CallError, http_call
from mosnx.proxy.upstream.cluster import ClusterManager
from mosnx.proxy.upstream.outlier import OutlierDetector
from mosnx.runtime.config.cluster import OutlierDetection
from mosnx.runtime.model import ClusterConfig, Endpoint
from mosnx.runtime.stats import Store, merge

WEB = ClusterConfig("web", (Endpoint("127.0.0.1", 9000), Endpoint("127.0.0.1", 9001)))


def two_workers(configs=(WEB,)) -> list[ClusterManager]:
    """Two workers' cluster managers built from the same config, as spawned workers make them."""
    managers = []
    for _ in range(2):
        m = ClusterManager(Store())
        m.update({c.name: c for c in configs})
        managers.append(m)
    return managers


def merged(managers) -> dict:
    return merge([m.stats.dump() for m in managers])


def test_membership_is_reported_once_across_workers():
    a, b = two_workers()
    g = merged([a, b])["gauges"]
    assert g["cluster.web.membership_total"] == 2
    assert g["cluster.web.membership_healthy"] == 2


def test_connections_in_flight_add_up_across_workers():
    a, b = two_workers()
    a.clusters["web"].cx_active_gauge.value += 1
    b.clusters["web"].cx_active_gauge.value += 2
    b.clusters["web"].res.rq_active = 3            # upstream_rq_active reads the breaker's count
    g = merged([a, b])["gauges"]
    assert g["cluster.web.upstream_cx_active"] == 3
    assert g["cluster.web.upstream_rq_active"] == 3


def test_ejected_hosts_are_reported_once():
    od = OutlierDetection(consecutive_5xx=1, interval=10.0, max_ejection_percent=50)
    cfg = replace(WEB, options={"outlier_detection": od})
    a, b = two_workers((cfg,))
    for m in (a, b):
        c = m.clusters["web"]
        c.outlier = OutlierDetector(c, od)
        c.outlier.on_result(c.hosts[0], 500)       # both workers eject the same host
    g = merged([a, b])["gauges"]
    assert g["cluster.web.outlier_detection.ejections_active"] == 1
    assert g["cluster.web.membership_healthy"] == 1
    assert g["cluster.web.membership_total"] == 2


def test_clusters_endpoints_are_listed_once_and_only_traffic_adds_up():
    a, b = (m.clusters["web"] for m in two_workers())
    a.hosts[0].rq_total, b.hosts[0].rq_total = 3, 4
    a.hosts[1].rq_error, b.hosts[1].rq_error = 1, 1
    a.hosts[1].hc_failed = True                    # one worker's check failed this host
    ra, rb = {"web": a.describe()}, {"web": b.describe()}
    # what a worker may report about a host besides its traffic: reported once
    for rep in (ra, rb):
        rep["web"]["endpoints"][0].update(priority=1, canary=True, success_rate=90.0)
        rep["web"]["rq_pending"] = 2
    out = merge_clusters([ra, rb])["web"]
    eps = out["endpoints"]
    assert [e["address"] for e in eps] == ["127.0.0.1:9000", "127.0.0.1:9001"]
    assert eps[0]["rq_total"] == 7 and eps[1]["rq_error"] == 2
    assert (eps[0]["weight"], eps[0]["priority"], eps[0]["canary"], eps[0]["success_rate"]) == (1, 1, True, 90.0)
    assert eps[1]["health"] == "unhealthy" and eps[0]["health"] == "healthy"
    assert out["rq_pending"] == 4
    assert out["circuit_breakers"] == a.describe()["circuit_breakers"]


def test_a_reply_the_connection_writes_itself_is_a_request_and_a_local_reply():
    store = Store()
    ls = ListenerStats(store, "ingress")
    ls.refused(431, "request_headers_too_large")
    ls.refused(400, "duplicate_content_length")
    ls.refused(307, "path_redirect")
    ls.local_reply("route_not_found")                # a stream's own local reply
    c = {k: v.value for k, v in store.counters.items() if v.value}
    assert c == {
        "http.ingress.downstream_rq_total": 3,
        "http.ingress.downstream_rq_completed": 3,          # Envoy's: the classes, added when read
        "http.ingress.downstream_rq_4xx": 2,
        "http.ingress.downstream_rq_3xx": 1,
        "http.ingress.local_reply.request_headers_too_large": 1,
        "http.ingress.local_reply.duplicate_content_length": 1,
        "http.ingress.local_reply.path_redirect": 1,
        "http.ingress.local_reply.route_not_found": 1,
    }


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_shadow_copy_is_counted_on_its_cluster():
    async def main():
        async def answer(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\nno")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        shadow = ClusterConfig("shadow", (Endpoint("127.0.0.1", port),))
        gone = ClusterConfig("gone", (Endpoint("127.0.0.1", _closed_port()),))
        m = ClusterManager(Store())
        m.update({"shadow": shadow, "gone": gone})
        hdrs = [(":method", "GET"), (":path", "/x"), (":authority", "a-shadow")]
        status, _, body = await http_call(m, "shadow", hdrs, b"", 5.0, mirror.ShadowStats())
        assert (status, body) == (503, b"no")
        try:
            await http_call(m, "gone", hdrs, b"", 5.0, mirror.ShadowStats())
        except (OSError, CallError):
            pass
        else:
            raise AssertionError("a refused endpoint answered")
        server.close()
        await server.wait_closed()
        return m

    m = asyncio.run(asyncio.wait_for(main(), 30))
    d = m.stats.dump()
    c, g = d["counters"], d["gauges"]
    for name in ("shadow", "gone"):
        assert c[f"cluster.{name}.upstream_rq_total"] == 1
        assert c[f"cluster.{name}.upstream_cx_total"] == 1
        assert g[f"cluster.{name}.upstream_cx_active"] == 0
    assert c["cluster.shadow.upstream_rq_5xx"] == 1
    assert d["histograms"]["cluster.shadow.upstream_rq_time"]["count"] == 1
    assert c["cluster.shadow.upstream_cx_connect_fail"] == 0
    assert c["cluster.gone.upstream_cx_connect_fail"] == 1
    assert c["cluster.gone.upstream_rq_5xx"] == 0
    assert m.clusters["shadow"].hosts[0].rq_total == 1
