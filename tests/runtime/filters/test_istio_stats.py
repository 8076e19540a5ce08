"""Istio's standard metrics: the labels from this node, the peer and the stream; the
series as stats whose names carry the labels; a bounded number of series."""
from __future__ import annotations

from mosnx.runtime.context import ResponseHead
from mosnx.runtime.filters import istio_stats
from mosnx.runtime.filters.istio_stats import LABELS, service_of, service_parts, workload_of
from mosnx.runtime.filters.peer_metadata import DOWNSTREAM_PEER, UPSTREAM_PEER
from mosnx.runtime.headers import Headers
from mosnx.proxy.admin_format import prometheus

from .conftest import build, req

PRODUCTPAGE = {"WORKLOAD_NAME": "productpage-v1", "NAMESPACE": "default", "CLUSTER_ID": "Kubernetes",
               "LABELS": {"app": "productpage", "version": "v1", "service.istio.io/canonical-name": "productpage",
                          "service.istio.io/canonical-revision": "v1"}}
REVIEWS = {"WORKLOAD_NAME": "reviews-v2", "NAMESPACE": "default", "CLUSTER_ID": "Kubernetes",
           "LABELS": {"app": "reviews", "version": "v2"}}


def test_workload_labels_and_their_unknown_defaults():
    assert workload_of(PRODUCTPAGE) == ("productpage-v1", "default", "productpage", "v1", "productpage", "v1",
                                        "Kubernetes")
    # canonical service falls back to the app label, revision to the version, then latest
    assert workload_of(REVIEWS)[4:6] == ("reviews", "v2")
    assert workload_of({"WORKLOAD_NAME": "w"})[1:] == ("unknown", "unknown", "unknown", "unknown", "latest",
                                                       "unknown")
    assert workload_of(None) == ("unknown",) * 7


def test_destination_service_from_the_cluster_or_the_host_header():
    assert service_of("outbound|9080|v1|reviews.default.svc.cluster.local", "x", True) == \
        "reviews.default.svc.cluster.local"
    assert service_of("inbound|9080||", "reviews:9080", True) == "reviews"
    assert service_of("inbound|9080||", "reviews:9080", False) == "unknown"
    assert service_parts("reviews.default.svc.cluster.local", "x") == ("reviews", "default")
    assert service_parts("example.com", "ns") == ("example.com", "ns")


def _series(kind: str, stats) -> dict:
    return {k: c.value for k, c in stats.counters.items() if k.endswith(kind)}


def test_the_source_reporter_labels_a_stream_from_this_node_to_its_upstream_peer():
    f, stats = build("istio_stats", {"node": {"metadata": PRODUCTPAGE}, "reporter": "source"})
    ctx = req({"host": "reviews:9080"})
    ctx.cluster_name = "outbound|9080|v2|reviews.default.svc.cluster.local"
    ctx.response = ResponseHead(200, Headers())
    ctx.state()[UPSTREAM_PEER] = REVIEWS
    ctx.bytes_sent = 300
    f.on_log(ctx)
    f.on_log(ctx)
    labels = dict(zip(LABELS, f.labels(ctx)))
    assert labels["reporter"] == "source" and labels["source_workload"] == "productpage-v1"
    assert labels["destination_workload"] == "reviews-v2" and labels["destination_app"] == "reviews"
    assert labels["destination_service"] == "reviews.default.svc.cluster.local"
    assert labels["destination_service_name"] == "reviews" and labels["destination_service_namespace"] == "default"
    assert (labels["request_protocol"], labels["response_code"], labels["grpc_response_status"],
            labels["response_flags"], labels["connection_security_policy"]) == ("http", "200", "", "-", "unknown")
    assert list(_series("istio_requests_total", stats).values()) == [2]


def test_the_destination_reporter_takes_the_downstream_peer_and_grpc_status():
    f, stats = build("istio_stats", {"node": {"metadata": REVIEWS}, "reporter": "destination"})
    ctx = req({"host": "reviews:9080", "content-type": "application/grpc"})
    ctx.cluster_name = "inbound|9080||"
    ctx.response = ResponseHead(200, Headers.from_pairs([("grpc-status", "5")]))
    ctx.state()[DOWNSTREAM_PEER] = PRODUCTPAGE
    labels = dict(zip(LABELS, f.labels(ctx)))
    assert (labels["reporter"], labels["source_workload"], labels["destination_workload"]) == \
        ("destination", "productpage-v1", "reviews-v2")
    assert (labels["request_protocol"], labels["grpc_response_status"], labels["connection_security_policy"]) == \
        ("grpc", "5", "none")
    assert labels["destination_service"] == "reviews"
    peerless = req()
    assert dict(zip(LABELS, f.labels(peerless)))["source_workload"] == "unknown"
    assert dict(zip(LABELS, f.labels(peerless)))["response_code"] == "0"


def test_the_prometheus_text_of_a_known_series():
    f, stats = build("istio_stats", {"node": {"metadata": PRODUCTPAGE}, "reporter": "source"})
    ctx = req({"host": "reviews:9080"})
    ctx.cluster_name = "outbound|9080|v2|reviews.default.svc.cluster.local"
    ctx.response = ResponseHead(503, Headers())
    ctx.error_detail = "upstream_connect_failure"
    ctx.state()[UPSTREAM_PEER] = REVIEWS
    f.on_log(ctx)
    text = prometheus(stats.dump())
    want = ('# TYPE istio_requests_total counter\n'
            'istio_requests_total{reporter="source",source_workload="productpage-v1",'
            'source_workload_namespace="default",source_principal="unknown",source_app="productpage",'
            'source_version="v1",source_canonical_service="productpage",source_canonical_revision="v1",'
            'source_cluster="Kubernetes",destination_workload="reviews-v2",destination_workload_namespace="default",'
            'destination_principal="unknown",destination_app="reviews",destination_version="v2",'
            'destination_service="reviews.default.svc.cluster.local",destination_service_name="reviews",'
            'destination_service_namespace="default",destination_canonical_service="reviews",'
            'destination_canonical_revision="v2",destination_cluster="Kubernetes",request_protocol="http",'
            'response_code="503",grpc_response_status="",response_flags="UF",'
            'connection_security_policy="unknown"} 1\n')
    assert want in text
    assert "# TYPE istio_request_duration_milliseconds histogram\n" in text
    assert 'istio_response_bytes_count{reporter="source",' in text


def test_response_flags_are_envoys():
    f, _ = build("istio_stats", {"node": {"metadata": PRODUCTPAGE}})
    flags = {}
    for detail in ("", "no_healthy_upstream", "route_not_found", "upstream_response_timeout", "fault_abort",
                   "some_new_reason"):
        ctx = req()
        ctx.error_detail = detail
        flags[detail] = dict(zip(LABELS, f.labels(ctx)))["response_flags"]
    assert flags == {"": "-", "no_healthy_upstream": "UH", "route_not_found": "NR",
                     "upstream_response_timeout": "UT", "fault_abort": "FI", "some_new_reason": "some_new_reason"}


def test_series_are_bounded_and_the_overflow_counted(monkeypatch):
    monkeypatch.setattr(istio_stats, "MAX_SERIES", 3)
    f, stats = build("istio_stats", {"node": {"metadata": PRODUCTPAGE}})
    for i in range(5):
        ctx = req({"host": f"h{i}"})
        ctx.response = ResponseHead(200, Headers())
        f.on_log(ctx)
    assert len(_series("istio_requests_total", stats)) == 3
    assert stats.counters["istio_stats.series_overflow"].value == 2


def test_a_label_value_cannot_forge_another_label():
    f, stats = build("istio_stats", {"node": {"metadata": PRODUCTPAGE}})
    ctx = req({"host": "evil;.;reporter=.=destination"})
    f.on_log(ctx)
    text = prometheus(stats.dump())
    assert text.count('reporter="source"') >= 1 and 'reporter="destination"' not in text


def test_tcp_connections_are_counted_opened_and_closed_with_their_bytes():
    from mosnx.runtime.filters.istio_stats import TCP_LABELS, IstioTcpStats
    from mosnx.runtime.stats import Store
    store = Store()
    rec = IstioTcpStats(PRODUCTPAGE, "source", store)
    ok = req()
    ok.cluster_name = "outbound|443||kubernetes.default.svc.cluster.local"
    key = rec.opened(ok)
    ok.bytes_sent, ok.bytes_received = 100, 7
    rec.closed(ok, key)
    failed = req()
    failed.cluster_name = ok.cluster_name
    failed.error_detail = "upstream_connect_failure"
    rec.closed(failed, None)            # never connected: opened and closed at once
    text = prometheus(store.dump())
    series = {line.split("{")[0] + "|" + ("UF" if 'response_flags="UF"' in line else "-"): line.rsplit(" ", 1)[1]
              for line in text.splitlines() if line.startswith("istio_tcp")}
    assert series == {"istio_tcp_connections_opened_total|-": "1", "istio_tcp_connections_closed_total|-": "1",
                      "istio_tcp_sent_bytes_total|-": "100", "istio_tcp_received_bytes_total|-": "7",
                      "istio_tcp_connections_opened_total|UF": "1", "istio_tcp_connections_closed_total|UF": "1",
                      "istio_tcp_sent_bytes_total|UF": "0", "istio_tcp_received_bytes_total|UF": "0"}
    labels = dict(zip(TCP_LABELS, key))
    assert (labels["destination_service"], labels["request_protocol"], labels["source_workload"]) == \
        ("kubernetes.default.svc.cluster.local", "tcp", "productpage-v1")


def test_a_listener_option_gives_one_tcp_recorder_per_store_and_config():
    from mosnx.runtime.filters.istio_stats import tcp_stats
    from mosnx.runtime.model import Config
    from mosnx.runtime.stats import Store
    store = Store()
    cfg = Config("<t>", None, (), (), raw={"node": {"metadata": PRODUCTPAGE}})
    opts = {"traffic_direction": "INBOUND", "istio_stats": {}}
    rec = tcp_stats(store, cfg, opts)
    assert rec is tcp_stats(store, cfg, opts) and rec.reporter == "destination"
    assert rec.own[0] == "productpage-v1"
    assert tcp_stats(store, cfg, {"traffic_direction": "INBOUND"}) is None
    assert tcp_stats(store, cfg, {"istio_stats": {}}) is not rec
