"""Istio telemetry between two sidecars: a client-side mosnx (outbound) in front of a
server-side mosnx (inbound) in front of a real upstream, all on 127.0.0.1. Each has its
workload's node metadata, the metadata exchange and Istio's stats. The outbound one
reports istio_requests_total with reporter="source", the inbound one with
reporter="destination", each naming both workloads; the application never sees the
exchange's headers, and neither does the client."""
from __future__ import annotations

import re

from .conftest import HOST, free_port

PRODUCTPAGE = {"id": "sidecar~10.0.0.1~productpage-v1-6b746f74dc-9stp6.default~default.svc.cluster.local",
               "metadata": {"NAME": "productpage-v1-6b746f74dc-9stp6", "NAMESPACE": "default",
                            "WORKLOAD_NAME": "productpage-v1", "CLUSTER_ID": "Kubernetes",
                            "MESH_ID": "cluster.local", "ISTIO_VERSION": "1.24.0",
                            "LABELS": {"app": "productpage", "version": "v1"}}}
REVIEWS = {"id": "sidecar~10.0.0.2~reviews-v2-7bf8c9648f-xk2bz.default~default.svc.cluster.local",
           "metadata": {"NAME": "reviews-v2-7bf8c9648f-xk2bz", "NAMESPACE": "default",
                        "WORKLOAD_NAME": "reviews-v2", "CLUSTER_ID": "Kubernetes", "MESH_ID": "cluster.local",
                        "LABELS": {"app": "reviews", "version": "v2"}}}
OUT_CLUSTER = "outbound|9080|v2|reviews.default.svc.cluster.local"
IN_CLUSTER = "inbound|9080||"


def _sidecar(mosnx, node: dict, direction: str, cluster: str, target: str):
    filters = [{"peer_metadata": {"node": node, "direction": direction}},
               {"istio_stats": {"node": node, "reporter": "source" if direction == "OUTBOUND" else "destination"}}]
    return mosnx(config={
        "listeners": [{"name": f"{direction.lower()}_9080", "address": f"{HOST}:{free_port()}",
                       "route": {"cluster": cluster, "timeout": "10s"}, "filters": filters}],
        "clusters": [{"name": cluster, "endpoints": [target], "connect_timeout": "1s"}]})


def _series(text: str, metric: str) -> list[dict[str, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line[len(metric):line.rindex("}") + 1]))
            labels["value"] = line.rsplit(" ", 1)[1]
            out.append(labels)
    return out


def test_two_sidecars_report_istio_requests_total_with_both_workloads(mosnx, upstream, client):
    app = upstream()
    server = _sidecar(mosnx, REVIEWS, "INBOUND", IN_CLUSTER, app.address)
    edge = _sidecar(mosnx, PRODUCTPAGE, "OUTBOUND", OUT_CLUSTER, f"{HOST}:{server.port}")
    c = client(edge.port)
    for _ in range(3):
        resp = c.request("GET", "/reviews/0", headers=[("host", "reviews:9080")])
        assert resp.status == 200
        # what the client gets back carries no exchange headers (outbound strips them)
        assert not any(k.startswith("x-envoy-peer-metadata") for k, _ in resp.headers)
    # the application saw the request, and none of the exchange's headers
    assert len(app.requests) == 3
    for r in app.requests:
        assert not any(k.startswith("x-envoy-peer-metadata") for k, _ in r.headers), r.headers

    _, _, body = edge.admin("/stats/prometheus")
    src = _series(body.decode(), "istio_requests_total")
    assert len(src) == 1, src
    s = src[0]
    assert (s["reporter"], s["source_workload"], s["destination_workload"]) == \
        ("source", "productpage-v1", "reviews-v2")
    assert (s["source_app"], s["source_version"], s["destination_app"], s["destination_version"]) == \
        ("productpage", "v1", "reviews", "v2")
    assert (s["destination_service"], s["destination_service_name"], s["destination_service_namespace"]) == \
        ("reviews.default.svc.cluster.local", "reviews", "default")
    assert (s["request_protocol"], s["response_code"], s["response_flags"], s["value"]) == ("http", "200", "-", "3")
    assert s["connection_security_policy"] == "unknown"
    assert "# TYPE istio_request_duration_milliseconds histogram" in body.decode()

    _, _, body = server.admin("/stats/prometheus")
    dst = _series(body.decode(), "istio_requests_total")
    assert len(dst) == 1, dst
    d = dst[0]
    assert (d["reporter"], d["source_workload"], d["source_workload_namespace"], d["destination_workload"]) == \
        ("destination", "productpage-v1", "default", "reviews-v2")
    assert (d["destination_service"], d["request_protocol"], d["response_code"], d["value"]) == \
        ("reviews", "http", "200", "3")
    assert d["connection_security_policy"] == "none"      # plain TCP between the sidecars here
    sizes = _series(body.decode(), "istio_response_bytes_count")
    assert sizes and sizes[0]["value"] == "3"


def test_a_malformed_peer_header_and_a_plain_client_are_unknown_sources(mosnx, upstream, client):
    app = upstream()
    server = _sidecar(mosnx, REVIEWS, "INBOUND", IN_CLUSTER, app.address)
    c = client(server.port)
    resp = c.request("GET", "/", headers=[("host", "reviews"), ("x-envoy-peer-metadata", "@@not base64@@"),
                                          ("x-envoy-peer-metadata-id", "someone")])
    assert resp.status == 200               # a malformed header never fails the request
    # it said it was a peer, so it is answered with this node's metadata, as Istio's exchange does
    assert dict(resp.headers).get("x-envoy-peer-metadata-id") == REVIEWS["id"]
    plain = c.request("GET", "/", headers=[("host", "reviews")])
    assert plain.status == 200
    assert not any(k.startswith("x-envoy-peer-metadata") for k, _ in plain.headers)   # nothing for a plain client
    for r in app.requests:
        assert not any(k.startswith("x-envoy-peer-metadata") for k, _ in r.headers)
    _, _, body = server.admin("/stats/prometheus")
    d = _series(body.decode(), "istio_requests_total")
    assert [(x["reporter"], x["source_workload"], x["destination_workload"], x["value"]) for x in d] == \
        [("destination", "unknown", "reviews-v2", "2")]
    assert server.stat("peer_metadata.header_decode_failed") == 1


# ---- the same pair from Envoy bootstraps shaped as istiod and pilot-agent write them ----

T = "type.googleapis.com/"
MX_WASM = {"name": "istio.metadata_exchange", "typed_config": {
    "@type": T + "envoy.extensions.filters.http.wasm.v3.Wasm",
    "config": {"vm_config": {"runtime": "envoy.wasm.runtime.null",
                             "code": {"local": {"inline_string": "envoy.wasm.metadata_exchange"}}},
               "configuration": {"@type": T + "envoy.tcp.metadataexchange.config.MetadataExchange"}}}}
ALPN = {"name": "istio.alpn", "typed_config": {
    "@type": T + "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
    "alpn_override": [{"upstream_protocol": "HTTP11", "alpn_override": ["istio-http/1.1", "istio", "http/1.1"]}]}}
STATS = {"name": "istio.stats", "typed_config": {"@type": T + "stats.PluginConfig"}}
GRPC_STATS = {"name": "envoy.filters.http.grpc_stats", "typed_config": {
    "@type": T + "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig", "emit_filter_state": True,
    "stats_for_all_methods": False}}
AUTHN = {"name": "istio_authn", "typed_config": {"@type": T + "udpa.type.v1.TypedStruct",
                                                 "type_url": T + "io.istio.network.authn.Config"}}
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": T + "envoy.extensions.filters.http.router.v3.Router"}}


def _bootstrap(node: dict, direction: str, port: int, admin: int, cluster: str, target: int) -> dict:
    http_filters = ([MX_WASM, GRPC_STATS, ALPN, STATS, ROUTER] if direction == "OUTBOUND"
                    else [MX_WASM, GRPC_STATS, STATS, ROUTER])
    network = [AUTHN] if direction == "INBOUND" else []
    hcm = {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": f"{direction.lower()}_9080", "http_filters": http_filters,
        "route_config": {"name": "9080", "virtual_hosts": [{"name": "reviews", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}]}]}}}
    return {
        "node": node,
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": f"{direction.lower()}_9080", "traffic_direction": direction,
                           "address": {"socket_address": {"address": HOST, "port_value": port}},
                           "filter_chains": [{"filters": network + [hcm]}]}],
            "clusters": [{"name": cluster, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
                "cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": HOST, "port_value": target}}}}]}]}}]}}


def test_the_pair_from_istio_shaped_envoy_bootstraps(tmp_path, upstream):
    import json

    from .test_envoy_bootstrap import _get, serving
    app = upstream()
    s_port, s_admin, c_port, c_admin = free_port(), free_port(), free_port(), free_port()
    server_cfg = tmp_path / "reviews.json"
    server_cfg.write_text(json.dumps(_bootstrap(REVIEWS, "INBOUND", s_port, s_admin, IN_CLUSTER, app.port)))
    client_cfg = tmp_path / "productpage.json"
    client_cfg.write_text(json.dumps(_bootstrap(PRODUCTPAGE, "OUTBOUND", c_port, c_admin, OUT_CLUSTER, s_port)))
    with serving(server_cfg, s_admin), serving(client_cfg, c_admin):
        for _ in range(2):
            status, headers, _ = _get(c_port, "/reviews/0", "reviews:9080")
            assert status == 200 and not any(k.startswith("x-envoy-peer-metadata") for k in headers)
        assert len(app.requests) == 2
        assert not any(k.startswith("x-envoy-peer-metadata") for r in app.requests for k, _ in r.headers)
        src = _series(_get(c_admin, "/stats/prometheus", HOST)[2].decode(), "istio_requests_total")
        dst = _series(_get(s_admin, "/stats/prometheus", HOST)[2].decode(), "istio_requests_total")
    assert [(s["reporter"], s["source_workload"], s["destination_workload"], s["response_code"], s["value"])
            for s in src] == [("source", "productpage-v1", "reviews-v2", "200", "2")]
    assert [(d["reporter"], d["source_workload"], d["destination_workload"], d["request_protocol"], d["value"])
            for d in dst] == [("destination", "productpage-v1", "reviews-v2", "http", "2")]


def _echo_server():
    import socket
    import threading
    lsock = socket.socket()
    lsock.bind((HOST, 0))
    lsock.listen(8)

    def serve(s):
        with s:
            while True:
                d = s.recv(65536)
                if not d:
                    return
                s.sendall(d)

    def accept():
        while True:
            try:
                s, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(s,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return lsock


def test_istio_tcp_metrics_on_an_outbound_tcp_listener(tmp_path):
    """An outbound TCP listener as istiod writes it (istio.stats, then tcp_proxy)."""
    import json
    import socket
    import time

    from .test_envoy_bootstrap import _get, serving
    echo = _echo_server()
    port, admin = free_port(), free_port()
    cluster = "outbound|5432||db.default.svc.cluster.local"
    boot = {
        "node": PRODUCTPAGE,
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "db_5432", "traffic_direction": "OUTBOUND",
                           "address": {"socket_address": {"address": HOST, "port_value": port}},
                           "filter_chains": [{"filters": [STATS, {
                               "name": "envoy.filters.network.tcp_proxy", "typed_config": {
                                   "@type": T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                   "stat_prefix": cluster, "cluster": cluster}}]}]}],
            "clusters": [{"name": cluster, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
                "cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": HOST, "port_value": echo.getsockname()[1]}}}}]}]}}]}}
    path = tmp_path / "db.json"
    path.write_text(json.dumps(boot))
    try:
        with serving(path, admin):
            for payload in (b"hello", b"world!"):
                with socket.create_connection((HOST, port), timeout=10) as s:
                    s.sendall(payload)
                    got = b""
                    while len(got) < len(payload):
                        d = s.recv(100)
                        assert d, got
                        got += d
                    assert got == payload
            deadline = time.monotonic() + 20
            while True:
                text = _get(admin, "/stats/prometheus", HOST)[2].decode()
                closed = _series(text, "istio_tcp_connections_closed_total")
                if (closed and closed[0]["value"] == "2") or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    finally:
        echo.close()
    [c] = closed
    assert (c["reporter"], c["source_workload"], c["source_app"], c["destination_workload"]) == \
        ("source", "productpage-v1", "productpage", "unknown")
    assert (c["destination_service"], c["destination_service_name"], c["request_protocol"], c["response_flags"]) == \
        ("db.default.svc.cluster.local", "db", "tcp", "-")
    assert "response_code" not in c and c["value"] == "2"
    assert _series(text, "istio_tcp_connections_opened_total")[0]["value"] == "2"
    assert _series(text, "istio_tcp_received_bytes_total")[0]["value"] == "11"
    assert _series(text, "istio_tcp_sent_bytes_total")[0]["value"] == "11"


def test_a_grpc_stream_reports_its_messages_and_status(mosnx):
    """grpc_stats counts the messages of a real grpcio call; istio_stats reports them."""
    from concurrent import futures

    grpc = __import__("pytest").importorskip("grpc")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("reviews.Reviews", {
        "Collect": grpc.stream_unary_rpc_method_handler(lambda it, ctx: b"|".join(it))}),))
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    try:
        proxy = mosnx(config={
            "listeners": [{"name": "outbound_9080", "address": f"{HOST}:{free_port()}",
                           "route": {"cluster": OUT_CLUSTER, "timeout": "20s"},
                           "filters": [{"grpc_stats": {"emit_filter_state": True, "stats_for_all_methods": True}},
                                       {"istio_stats": {"node": PRODUCTPAGE, "reporter": "source"}}]}],
            "clusters": [{"name": OUT_CLUSTER, "endpoints": [f"{HOST}:{port}"], "connect_timeout": "1s",
                          "protocol": "http2"}]})
        with grpc.insecure_channel(f"{HOST}:{proxy.port}") as ch:
            got = ch.stream_unary("/reviews.Reviews/Collect")(iter([b"a", b"b", b"c", b"d", b"e"]), timeout=20)
        assert got == b"a|b|c|d|e"
        text = proxy.admin("/stats/prometheus")[2].decode()
    finally:
        server.stop(grace=None)
    [r] = _series(text, "istio_requests_total")
    assert (r["request_protocol"], r["grpc_response_status"], r["response_code"], r["value"]) == \
        ("grpc", "0", "200", "1")
    assert _series(text, "istio_request_messages_total")[0]["value"] == "5"
    assert _series(text, "istio_response_messages_total")[0]["value"] == "1"
    assert proxy.stat(f"cluster.{OUT_CLUSTER}.grpc.reviews.Reviews.Collect.request_message_count") == 5
    assert proxy.stat(f"cluster.{OUT_CLUSTER}.grpc.reviews.Reviews.Collect.success") == 1
