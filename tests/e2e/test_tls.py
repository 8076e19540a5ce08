"""TLS: listener termination (ALPN picks HTTP/1.1 or HTTP/2, SNI picks the
certificate, client certificates for mTLS, certificates reloaded), and cluster
origination (CA bundle, SNI, client certificate) for HTTP/1.1 and HTTP/2 clusters.
The CA and certificates are made for each test run."""
from __future__ import annotations

import os
import socket
import ssl
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from h2kit import CA, H2Client, cert_common_name, fixture_upstreams  # noqa: E402

from conftest import encode_request, read_message, Wire  # noqa: E402

pytest.importorskip("cryptography")

LOG_FORMAT = "%connection.sni%|%connection.mtls%|%connection.subject_peer_certificate%|%request.protocol%|%request.scheme%"


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path)


def _tls_listener(ca: CA, tmp_path, **extra) -> dict:
    cert, key = ca.issue("proxy.test", dns=("proxy.test", "localhost"))
    tls = {"cert": cert, "key": key}
    tls.update(extra)
    return {"tls": tls, "access_log": {"path": str(tmp_path / "access.log"), "format": LOG_FORMAT}}


def _log_lines(tmp_path, n: int, timeout: float = 10.0) -> list[str]:
    p = tmp_path / "access.log"
    deadline = time.monotonic() + timeout
    while True:
        lines = p.read_text().splitlines() if p.exists() else []
        if len(lines) >= n:
            return lines
        if time.monotonic() > deadline:
            raise TimeoutError(f"access log has {len(lines)} lines, wanted {n}")
        time.sleep(0.05)


def _https_get(port: int, ctx: ssl.SSLContext, name: str = "proxy.test", path: str = "/",
               timeout: float = 10.0):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname=name)
    try:
        alpn, cn = s.selected_alpn_protocol(), cert_common_name(s)
        s.sendall(encode_request("GET", path, [("Host", name)]))
        msg = read_message(Wire(s), request=False, timeout=timeout)
        return msg, alpn, cn
    finally:
        s.close()


def _echo(conn, req):
    conn.respond(200, f"{req.target} proto={req.header('x-forwarded-proto')}".encode())


def test_termination_alpn_chooses_http1_or_http2(ca, tmp_path, upstream, mosnx):
    up = upstream(on_request=_echo)
    proxy = mosnx(up, listener=_tls_listener(ca, tmp_path))
    msg, alpn, _ = _https_get(proxy.port, ca.client_context(alpn=("http/1.1",)), path="/one")
    assert alpn == "http/1.1" and msg.status == 200 and msg.body == b"/one proto=https"
    with H2Client(proxy.port, tls=ca.client_context(alpn=("h2",)), server_name="proxy.test") as c:
        assert c.sock.selected_alpn_protocol() == "h2"
        r = c.request("GET", "/two", authority="proxy.test")
    assert r.status == 200 and r.body == b"/two proto=https"
    # no ALPN at all: the first bytes decide, as in cleartext
    plain = ssl.create_default_context(cafile=str(ca.path))
    msg, alpn, _ = _https_get(proxy.port, plain, path="/three")
    assert alpn is None and msg.status == 200
    lines = _log_lines(tmp_path, 3)
    assert lines[0] == "proxy.test|False|-|HTTP/1.1|https"
    assert lines[1] == "proxy.test|False|-|HTTP/2|https"
    assert proxy.stat("listener.ingress.ssl.handshake") >= 3


def test_sni_selects_the_certificate(ca, tmp_path, upstream, mosnx):
    up = upstream(on_request=_echo)
    a = ca.issue("a.test")
    b = ca.issue("*.b.test", dns=("*.b.test",))
    proxy = mosnx(up, listener=_tls_listener(ca, tmp_path, sni=[
        {"server_names": ["a.test"], "cert": a[0], "key": a[1]},
        {"server_names": "*.b.test", "cert": b[0], "key": b[1]}]))
    ctx = ca.client_context(alpn=("http/1.1",))
    assert _https_get(proxy.port, ctx, "a.test")[2] == "a.test"
    assert _https_get(proxy.port, ctx, "x.b.test")[2] == "*.b.test"
    assert _https_get(proxy.port, ctx, "proxy.test")[2] == "proxy.test"      # the default
    lines = _log_lines(tmp_path, 3)
    assert [ln.split("|")[0] for ln in lines] == ["a.test", "x.b.test", "proxy.test"]


def test_mtls_required(ca, tmp_path, upstream, mosnx):
    up = upstream(on_request=_echo)
    proxy = mosnx(up, listener=_tls_listener(ca, tmp_path, client_ca=str(ca.path), require_client_cert=True))
    try:
        msg, _, _ = _https_get(proxy.port, ca.client_context(alpn=("http/1.1",)))
    except (ssl.SSLError, ConnectionError, OSError):
        msg = None
    # TLS 1.3 reports the refusal on the first read, not in the handshake
    assert msg is None
    client = ca.issue("client-7", client=True, org="Tenants")
    msg, _, _ = _https_get(proxy.port, ca.client_context(alpn=("http/1.1",), cert=client))
    assert msg.status == 200
    with H2Client(proxy.port, tls=ca.client_context(alpn=("h2",), cert=client), server_name="proxy.test") as c:
        assert c.request("GET", "/h2").status == 200
    lines = _log_lines(tmp_path, 2)
    assert lines[0] == "proxy.test|True|CN=client-7,O=Tenants|HTTP/1.1|https"
    assert lines[1].startswith("proxy.test|True|CN=client-7,O=Tenants|HTTP/2")
    assert proxy.stat("listener.ingress.ssl.mtls") == 2


def test_mtls_optional_lets_anonymous_clients_in(ca, tmp_path, upstream, mosnx):
    up = upstream(on_request=_echo)
    proxy = mosnx(up, listener=_tls_listener(ca, tmp_path, client_ca=str(ca.path)))
    msg, _, _ = _https_get(proxy.port, ca.client_context(alpn=("http/1.1",)))
    assert msg.status == 200
    assert _log_lines(tmp_path, 1)[0].startswith("proxy.test|False|-|")


def test_certificate_is_reloaded_with_the_config(ca, tmp_path, upstream, mosnx):
    up = upstream(on_request=_echo)
    listener = _tls_listener(ca, tmp_path)
    proxy = mosnx(up, listener=listener)
    ctx = ca.client_context(alpn=("http/1.1",))
    assert _https_get(proxy.port, ctx)[2] == "proxy.test"
    other = ca.issue("renewed.test", dns=("proxy.test",))
    os.replace(other[0], listener["tls"]["cert"])
    os.replace(other[1], listener["tls"]["key"])
    status, body = proxy.reload()
    assert status == 200, body
    assert _https_get(proxy.port, ctx)[2] == "renewed.test"


def test_missing_certificate_is_a_config_error(ca, tmp_path, upstream, mosnx):
    up = upstream()
    proxy = mosnx(up)
    cfg = proxy.config_with(up, listener={"tls": {"cert": str(tmp_path / "nope.pem"), "key": str(tmp_path / "nope.key")}})
    proxy.write_config(cfg)
    status, body = proxy.reload()
    assert status == 400
    assert "nope.pem" in str(body)


# ------------------------------------------------------------------ origination
class TlsHttp1Upstream:
    """A TLS HTTP/1.1 server in a thread; records the SNI and client certificate of each connection."""

    def __init__(self, ctx: ssl.SSLContext):
        self.sni: list = []
        self.peers: list = []
        self.errors: list = []
        ctx.sni_callback = lambda sock, name, c: self.sni.append(name) and None
        self.ctx = ctx
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.errors.append(e)
            raw.close()
            return
        self.peers.append(cert_common_name(s) if s.getpeercert() else "")
        w = Wire(s)
        try:
            while True:
                req = read_message(w, request=True, timeout=10)
                if req is None:
                    return
                body = f"tls {req.target}".encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except (OSError, TimeoutError, Exception):
            return
        finally:
            s.close()

    def stop(self):
        self.stopping = True
        self.lsock.close()


@pytest.fixture
def tls_upstreams():
    made = []
    yield made
    for u in made:
        u.stop()


def test_origination_http1_with_ca_sni_and_client_cert(ca, tls_upstreams, mosnx):
    server_cert = ca.issue("backend.internal")
    up = TlsHttp1Upstream(ca.server_context(server_cert, alpn=("http/1.1",), client_ca=True))
    tls_upstreams.append(up)
    client = ca.issue("mosnx-client", client=True)
    proxy = mosnx(f"127.0.0.1:{up.port}", cluster={"tls": {"ca": str(ca.path), "sni": "backend.internal",
                                                           "cert": client[0], "key": client[1]}})
    r = proxy.request("GET", "/secure")
    assert r.status == 200 and r.body == b"tls /secure"
    assert up.sni == ["backend.internal"] and up.peers == ["mosnx-client"]


def test_origination_refuses_an_untrusted_endpoint(ca, tmp_path, tls_upstreams, mosnx):
    other = CA(tmp_path / "other" if (tmp_path / "other").mkdir() is None else tmp_path, "other CA")
    up = TlsHttp1Upstream(other.server_context(other.issue("backend.internal"), alpn=("http/1.1",)))
    tls_upstreams.append(up)
    proxy = mosnx(f"127.0.0.1:{up.port}", cluster={"tls": {"ca": str(ca.path), "sni": "backend.internal"}})
    r = proxy.request("GET", "/")
    assert r.status == 503 and r.header("x-mosnx-error") == "upstream_connect_failure"


def test_origination_http2_over_tls(ca, mosnx):
    made, make = fixture_upstreams()
    try:
        sni = []
        sctx = ca.server_context(ca.issue("grpc.internal"), alpn=("h2",))
        sctx.sni_callback = lambda sock, name, c: sni.append(name) and None
        up = make(tls=sctx)
        proxy = mosnx(up.address, cluster={"protocol": "http2",
                                           "tls": {"ca": str(ca.path), "sni": "grpc.internal"}})
        r = proxy.request("GET", "/over-tls")
        assert r.status == 200 and r.body == b"h2 GET /over-tls 0"
        assert up.requests[0].scheme == "https"
        assert sni == ["grpc.internal"]
    finally:
        for u in made:
            u.stop()
