"""TLS from the control plane, end to end: `mosnx run` with an `xds:` block takes
clusters whose transport sockets originate mutual TLS with certificates from SDS
(Istio's ISTIO_MUTUAL shape: the workload certificate `default`, the `ROOTCA`
validation secret, a SPIFFE URI SAN matcher), picks TLS or plaintext per EDS
endpoint by its `tlsMode` metadata, refuses an upstream whose SAN is not the one
asked for (503, ssl.fail_verify_san), and serves a TLS listener whose certificate
comes by SDS: the listener waits for it, and a rotated certificate is served from
the next handshake on while a connection already open keeps working. The CA and
every certificate are made for the test run, in memory."""
from __future__ import annotations

import http.client
import http.server
import ssl
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("envoy.config.listener.v3.listener_pb2")

from google.protobuf import json_format  # noqa: E402

from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, RESOURCE_TYPES, SECRET  # noqa: E402

from .conftest import HOST, free_port, wait_until  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pemkit import PemCA, serial_of  # noqa: E402
from .test_xds_e2e import Control  # noqa: E402

UP = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWN = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
RAW = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
SDS = {"ads": {}, "resource_api_version": "V3"}
REVIEWS = "spiffe://cluster.local/ns/default/sa/reviews"
PROXY = "spiffe://cluster.local/ns/default/sa/productpage"


@pytest.fixture
def control():
    c = Control()
    yield c
    c.stop()


def res(type_url: str, d: dict):
    return json_format.ParseDict(d, RESOURCE_TYPES[type_url]())


def cert_secret(name: str, cert: bytes, key: bytes):
    return res(SECRET, {"name": name, "tls_certificate": {"certificate_chain": {"inline_bytes": _b64(cert)},
                                                          "private_key": {"inline_bytes": _b64(key)}}})


def ca_secret(name: str, ca: PemCA):
    return res(SECRET, {"name": name, "validation_context": {"trusted_ca": {"inline_bytes": _b64(ca.pem)}}})


def _b64(b: bytes) -> str:
    import base64
    return base64.b64encode(b).decode()


def istio_mutual(san: str) -> dict:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UP, "sni": "outbound_.9080_._.reviews.default.svc.cluster.local",
        "common_tls_context": {
            "alpn_protocols": ["istio-peer-exchange", "istio"],
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
            "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": SDS}],
            "combined_validation_context": {
                "default_validation_context": {"match_typed_subject_alt_names": [
                    {"san_type": "URI", "matcher": {"exact": san}}]},
                "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": SDS}}}}}


def listener(name: str, port: int, routes: list[dict], transport_socket: dict | None = None):
    chain: dict = {"filters": [{"name": "hcm", "typed_config": {
        "@type": HCM, "stat_prefix": name,
        "route_config": {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}
    if transport_socket is not None:
        chain["transport_socket"] = transport_socket
    return res(LISTENER, {"name": name, "address": {"socket_address": {"address": HOST, "port_value": port}},
                          "filter_chains": [chain]})


class TlsUpstream:
    """An HTTP/1.1 server over TLS that wants a client certificate signed by the CA,
    and answers with the URI SAN of the certificate it got."""

    def __init__(self, ca: PemCA, uri: str, tmp: Path) -> None:
        cert, key = ca.issue("reviews", uris=(uri,))
        (tmp / "up.crt").write_bytes(cert)
        (tmp / "up.key").write_bytes(key)
        (tmp / "ca.pem").write_bytes(ca.pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "up.crt", tmp / "up.key")
        ctx.load_verify_locations(tmp / "ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["istio-peer-exchange", "http/1.1"])
        self.peers: list[str] = []
        peers = self.peers

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                cert = self.connection.getpeercert() or {}
                uri = next((v for t, v in cert.get("subjectAltName", ()) if t == "URI"), "")
                peers.append(uri)
                body = f"mtls peer={uri}".encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                return ctx.wrap_socket(sock, server_side=True), addr

            def handle_error(self, request, client_address) -> None:
                pass                # a refused handshake (the test's wrong SAN) is expected

        self.server = Server((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path, headers={"host": "bookinfo"})
        r = conn.getresponse()
        return r.status, r.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def _config(control, mode: str = "sotw") -> dict:
    return {"listeners": [{"name": "static", "address": f"{HOST}:{free_port()}", "route": {"cluster": "unused"}}],
            "clusters": [{"name": "unused", "endpoints": [f"{HOST}:{free_port()}"]}],
            "xds": {"address": f"{HOST}:{control.port}", "mode": mode, "node": {"id": "sidecar~127.0.0.1~p.default~x"},
                    "initial_fetch_timeout": "20s"}}


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_upstream_mtls_checks_the_spiffe_san_and_picks_tls_per_endpoint(mosnx, control, upstream, tmp_path, mode):
    ca = PemCA()
    tls_up = TlsUpstream(ca, REVIEWS, tmp_path)
    plain_up = upstream()
    try:
        client_cert, client_key = ca.issue("productpage", uris=(PROXY,))
        port = free_port()
        control.push(SECRET, "1", [cert_secret("default", client_cert, client_key), ca_secret("ROOTCA", ca)])
        mesh = res(CLUSTER, {
            "name": "mesh", "type": "EDS", "connect_timeout": "2s", "eds_cluster_config": {"eds_config": {"ads": {}}},
            "transport_socket_matches": [
                {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": istio_mutual(REVIEWS)},
                {"name": "tlsMode-disabled", "match": {}, "transport_socket": {
                    "name": "envoy.transport_sockets.raw_buffer", "typed_config": {"@type": RAW}}}]})
        wrong = res(CLUSTER, {
            "name": "wrong", "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": "wrong", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": HOST, "port_value": tls_up.port}}}}]}]},
            "transport_socket": istio_mutual("spiffe://cluster.local/ns/default/sa/ratings")})
        control.push(CLUSTER, "1", [mesh, wrong])
        control.push(ENDPOINT, "1", [res(ENDPOINT, {"cluster_name": "mesh", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": tls_up.port}}},
             "metadata": {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}},
            {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": plain_up.port}}}}]}]})])
        control.push(LISTENER, "1", [listener("outbound", port, [
            {"match": {"prefix": "/wrong"}, "route": {"cluster": "wrong"}},
            {"match": {"prefix": "/"}, "route": {"cluster": "mesh"}}])])
        proxy = mosnx(config=_config(control, mode))
        wait_until(lambda: _get(port, "/reviews")[0] == 200, what="the xDS listener serving")
        got = [_get(port, "/reviews") for _ in range(6)]
        assert all(status == 200 for status, _ in got), got
        # round robin over both endpoints: TLS with the workload certificate to one, plaintext to the other
        assert (200, f"mtls peer={PROXY}".encode()) in got
        assert plain_up.requests_for("/reviews") and tls_up.peers and set(tls_up.peers) == {PROXY}
        # an upstream whose certificate does not carry the SAN asked for is never spoken to
        status, body = _get(port, "/wrong")
        assert status == 503, body
        stats = proxy.stats()
        assert stats["cluster.wrong.ssl.fail_verify_san"] >= 1
        assert "match none of" in proxy.log() and "ssl.fail_verify_san" in proxy.log()
        assert not control.nacks(CLUSTER) and not control.nacks(SECRET)
    finally:
        tls_up.stop()


def _https(port: int, ca: PemCA) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cadata=ca.pem.decode())
    ctx.check_hostname = False
    return http.client.HTTPSConnection(HOST, port, timeout=10, context=ctx)


def _serial_and_status(conn: http.client.HTTPSConnection) -> tuple[int, int]:
    conn.request("GET", "/edge", headers={"host": "edge"})
    r = conn.getresponse()
    r.read()
    assert conn.sock is not None
    return serial_of(conn.sock.getpeercert(binary_form=True)), r.status


def _new_handshake(port: int, ca: PemCA) -> int:
    conn = _https(port, ca)
    try:
        return _serial_and_status(conn)[0]
    except OSError:
        return 0
    finally:
        conn.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tls_listener_takes_its_certificate_from_sds_and_follows_a_rotation(mosnx, control, tmp_path, workers):
    ca = PemCA()
    port = free_port()
    ts = {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": DOWN, "common_tls_context": {
        "alpn_protocols": ["http/1.1"],
        "tls_certificate_sds_secret_configs": [{"name": "edge-cert", "sds_config": SDS}]}}}
    control.push(CLUSTER, "1", [])
    control.push(LISTENER, "1", [listener("edge", port, [
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "tls ok"}}}], ts)])
    proxy = mosnx(config=_config(control), workers=workers)
    # the listener warms: asked for its secret, not NACKed, not serving
    wait_until(lambda: any("edge-cert" in r.names for r in control.server.of(SECRET)), what="the SDS request")
    assert _new_handshake(port, ca) == 0 and not control.nacks(LISTENER)
    cert, key = ca.issue("edge", dns=("edge",), serial=1001)
    control.push(SECRET, "1", [cert_secret("edge-cert", cert, key)])
    wait_until(lambda: _new_handshake(port, ca) == 1001, what="the listener serving the SDS certificate")
    held = _https(port, ca)
    assert _serial_and_status(held) == (1001, 200)
    # rotation: the next handshake gets the new certificate ...
    cert2, key2 = ca.issue("edge", dns=("edge",), serial=1002)
    control.push(SECRET, "2", [cert_secret("edge-cert", cert2, key2)])
    # (with two workers, each must have it: a few handshakes in a row all see it)
    wait_until(lambda: all(_new_handshake(port, ca) == 1002 for _ in range(4)), what="the rotated certificate")
    # ... while the connection opened before keeps working, on its first certificate
    assert _serial_and_status(held) == (1001, 200)
    held.close()
    assert proxy.stats()["sds.update_success"] >= 2
    # the typed dump shows the secret, with its private key redacted as Envoy's does
    import json
    dump = json.dumps(proxy.admin_json("/config_dump"))
    assert "SecretsConfigDump" in dump and "edge-cert" in dump
    assert _b64(key2) not in dump and "W3JlZGFjdGVkXQ==" in dump      # base64 of "[redacted]"
