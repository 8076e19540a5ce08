"""TLS to the control plane, end to end: `mosnx run` with `xds.tls` reaches an ADS
server (the in-repo grpcio one) over TLS whose certificate a CA made for the test
signed, and serves the listener it sends; with the wrong CA the handshake is refused,
the stream is tried again with back-off, and the proxy keeps running on its file's
config; a server that wants a client certificate gets mosnx's (mutual TLS)."""
from __future__ import annotations

import http.client
import re
import sys
from pathlib import Path

import grpc
import grpc.aio
import pytest

pytest.importorskip("cryptography")
pytest.importorskip("envoy.config.listener.v3.listener_pb2")

from envoy.service.discovery.v3 import ads_pb2_grpc  # noqa: E402

from mosnx.runtime.envoy.protos import CLUSTER, LISTENER  # noqa: E402

from .conftest import HOST, free_port, wait_until  # noqa: E402
from .test_xds_e2e import Control  # noqa: E402
from .test_xds_tls import listener  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy" / "xds"))
from ads_server import AdsServer  # noqa: E402
from pemkit import PemCA  # noqa: E402

SNI = "xds.control.test"


class TlsAdsServer(AdsServer):
    """AdsServer on a TLS port; `client_ca`: mutual TLS, a client certificate it signed required."""

    def __init__(self, cert: bytes, key: bytes, client_ca: bytes | None = None) -> None:
        super().__init__()
        self.creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                                 require_client_auth=client_ca is not None)

    async def start(self) -> int:
        self._server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self._server)
        self.port = self._server.add_secure_port(f"127.0.0.1:{self.port}", self.creds)
        await self._server.start()
        return self.port


class TlsControl(Control):
    def __init__(self, server: AdsServer) -> None:      # Control's, with the server given
        import asyncio
        import threading
        self.loop = asyncio.new_event_loop()
        self.server = server
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self.call(self.server.start())


@pytest.fixture
def pki(tmp_path):
    ca, other = PemCA("xds CA"), PemCA("another CA")
    cert, key = ca.issue("istiod", dns=(SNI,), ip=None)
    client = ca.issue("sidecar", uris=("spiffe://cluster.local/ns/default/sa/sidecar",))
    files = {"ca": ca.pem, "other": other.pem, "client.crt": client[0], "client.key": client[1]}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return ca, cert, key, tmp_path


def _config(port: int, tls: dict) -> dict:
    return {"listeners": [{"name": "static", "address": f"{HOST}:{free_port()}", "route": {"cluster": "unused"}}],
            "clusters": [{"name": "unused", "endpoints": [f"{HOST}:{free_port()}"]}],
            "xds": {"address": f"{HOST}:{port}", "node": {"id": "mosnx-tls"}, "initial_fetch_timeout": "20s",
                    "tls": tls}}


def _serves(port: int) -> bool:
    c = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        return r.status == 200 and r.read() == b"from the control plane"
    except OSError:
        return False
    finally:
        c.close()


def _push(control: Control) -> int:
    port = free_port()
    control.push(CLUSTER, "1", [])
    control.push(LISTENER, "1", [listener("dyn", port, [
        {"match": {"prefix": "/"}, "direct_response": {"status": 200,
                                                        "body": {"inline_string": "from the control plane"}}}])])
    return port


@pytest.mark.parametrize("mutual", [False, True])
def test_the_ads_stream_goes_over_tls(mosnx, pki, mutual):
    ca, cert, key, d = pki
    control = TlsControl(TlsAdsServer(cert, key, ca.pem if mutual else None))
    try:
        port = _push(control)
        tls = {"ca": str(d / "ca"), "sni": SNI}
        if mutual:
            tls |= {"cert": str(d / "client.crt"), "key": str(d / "client.key")}
        proxy = mosnx(config=_config(control.port, tls))
        wait_until(lambda: _serves(port), what="the listener sent over TLS serving")
        assert control.server.requests[0].node.id == "mosnx-tls"
        assert proxy.stats()["control_plane.connected_state"] == 1
    finally:
        control.stop()


def test_a_control_plane_whose_certificate_the_ca_does_not_sign_is_refused_and_tried_again(mosnx, pki):
    ca, cert, key, d = pki
    control = TlsControl(TlsAdsServer(cert, key))
    try:
        port = _push(control)
        proxy = mosnx(config=_config(control.port, {"ca": str(d / "other"), "sni": SNI}))
        # the stream ends and is opened again after a back-off, more than once
        wait_until(lambda: len(re.findall(r"stream to \S+ ended; next in", proxy.log(100000))) >= 2, timeout=30,
                   what="the stream tried again with back-off")
        assert not control.server.requests and not _serves(port)
        assert proxy.proc.poll() is None and proxy.stats()["control_plane.connected_state"] == 0
        c = http.client.HTTPConnection(HOST, proxy.port, timeout=10)     # the file's own listener still serves
        c.request("GET", "/")
        assert c.getresponse().status in (502, 503)
        c.close()
    finally:
        control.stop()


def test_a_server_wanting_a_client_certificate_refuses_a_proxy_without_one(mosnx, pki):
    ca, cert, key, d = pki
    control = TlsControl(TlsAdsServer(cert, key, ca.pem))
    try:
        port = _push(control)
        proxy = mosnx(config=_config(control.port, {"ca": str(d / "ca"), "sni": SNI}))
        wait_until(lambda: len(re.findall(r"stream to \S+ ended; next in", proxy.log(100000))) >= 2, timeout=30,
                   what="the stream tried again with back-off")
        assert not control.server.requests and not _serves(port)
    finally:
        control.stop()


def test_a_client_certificate_without_its_key_is_a_config_error(tmp_path, pki):
    import subprocess
    ca, cert, key, d = pki
    cfg = tmp_path / "mosnx.yaml"
    cfg.write_text(f"xds: {{address: 127.0.0.1:18000, tls: {{ca: {d / 'ca'}, cert: {d / 'client.crt'}}}}}\n")
    r = subprocess.run([sys.executable, "-m", "mosnx", "check", str(cfg)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode != 0 and "needs both cert and key" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
