"""proxy/tls.py with Envoy's TLS settings: SAN matchers checked inside the handshake
(a SPIFFE URI accepted, a wrong one refused as SanMismatch, counted as
ssl.fail_verify_san), certificates and keys held in memory loaded without a file,
any ALPN name, and a rotated secret making a new context while the old one stands."""
from __future__ import annotations

import asyncio
import os
import ssl
import sys
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from pemkit import PemCA, serial_of  # noqa: E402

from mosnx.proxy import tls as tlsmod  # noqa: E402
from mosnx.proxy.tls import SanMismatch, client_context, connect_failed, server_context  # noqa: E402
from mosnx.runtime.config.protocols import ClientTls, Pem, SanMatcher, ServerTls  # noqa: E402
from mosnx.runtime.model import ClusterConfig, Endpoint  # noqa: E402
from mosnx.runtime.stats import Store  # noqa: E402

SPIFFE = "spiffe://cluster.local/ns/default/sa/reviews"


@pytest.mark.parametrize("matcher, sans, ok", [
    (SanMatcher("URI", "exact", SPIFFE), [("URI", SPIFFE)], True),
    (SanMatcher("URI", "exact", SPIFFE), [("DNS", SPIFFE)], False),          # the type counts
    (SanMatcher("", "exact", SPIFFE), [("DNS", "x"), ("URI", SPIFFE)], True),  # "": any type
    (SanMatcher("URI", "prefix", "spiffe://cluster.local/ns/default/"), [("URI", SPIFFE)], True),
    (SanMatcher("URI", "suffix", "/sa/ratings"), [("URI", SPIFFE)], False),
    (SanMatcher("DNS", "contains", ".default."), [("DNS", "reviews.default.svc")], True),
    (SanMatcher("URI", "safe_regex", r"spiffe://cluster\.local/ns/[^/]+/sa/reviews"), [("URI", SPIFFE)], True),
    (SanMatcher("URI", "safe_regex", r"spiffe://cluster\.local/ns/x"), [("URI", SPIFFE)], False),  # whole value
    (SanMatcher("DNS", "exact", "API.example.com", ignore_case=True), [("DNS", "api.EXAMPLE.com")], True),
    (SanMatcher("DNS", "exact", "a.example.com"), [("DNS", "*.example.com")], True),   # a wildcard certificate
    (SanMatcher("DNS", "exact", "a.b.example.com"), [("DNS", "*.example.com")], False),
    (SanMatcher("IP", "exact", "127.0.0.1"), [("IP Address", "127.0.0.1")], True),
    (SanMatcher("EMAIL", "suffix", "@example.com"), [("email", "ops@example.com")], True),
])
def test_san_matchers(matcher, sans, ok):
    check = tlsmod.san_check((matcher,))
    assert (check({"subjectAltName": tuple(sans)}) is None) == ok


def test_a_bad_matcher_fails_where_it_is_made():
    with pytest.raises(ValueError, match="bad regex"):
        SanMatcher("URI", "safe_regex", "(")
    with pytest.raises(ValueError, match="SAN type"):
        SanMatcher("X400", "exact", "x")


@pytest.fixture(scope="module")
def ca() -> PemCA:
    return PemCA()


async def _serve(ctx: ssl.SSLContext):
    async def handle(r, w):
        w.write(b"hello")
        await w.drain()
        w.close()
    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    return srv, srv.sockets[0].getsockname()[1]


def _server_tls(ca: PemCA, uri: str, serial: int | None = None) -> ServerTls:
    cert, key = ca.issue("upstream", uris=(uri,), serial=serial)
    return ServerTls(cert=Pem(cert, "srv"), key=Pem(key, "srv"), alpn=("istio-peer-exchange", "istio"))


def _client_tls(ca: PemCA, *matchers: SanMatcher) -> ClientTls:
    cert, key = ca.issue("client", uris=("spiffe://cluster.local/ns/default/sa/proxy",))
    return ClientTls(ca=Pem(ca.pem, "ROOTCA"), sni="outbound_.9080_._.reviews", cert=Pem(cert, "default"),
                     key=Pem(key, "default"), alpn=("istio-peer-exchange", "istio"), verify_hostname=False,
                     san=matchers)


async def _connect(port: int, ctx: ssl.SSLContext) -> tuple[bytes, str | None]:
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="outbound_.9080_._.reviews")
    alpn = w.get_extra_info("ssl_object").selected_alpn_protocol()
    data = await r.read()
    w.close()
    return data, alpn


def test_the_spiffe_san_is_accepted_and_a_wrong_one_refused_in_the_handshake(ca):
    async def go():
        srv, port = await _serve(server_context(_server_tls(ca, SPIFFE)))
        async with srv:
            good = _client_tls(ca, SanMatcher("URI", "exact", SPIFFE))
            data, alpn = await _connect(port, client_context(good))
            assert data == b"hello" and alpn == "istio-peer-exchange"
            bad = _client_tls(ca, SanMatcher("URI", "exact", "spiffe://cluster.local/ns/default/sa/ratings"))
            with pytest.raises(SanMismatch) as e:
                await _connect(port, client_context(bad))
            assert SPIFFE in str(e.value) and "ratings" in str(e.value)
            return e.value
    err = asyncio.run(go())
    stats = Store()

    class Cluster:
        name = "reviews"
    Cluster.stats = stats  # type: ignore[attr-defined]
    connect_failed(Cluster, "127.0.0.1:9080", err)
    assert stats.counter("cluster.reviews.ssl.fail_verify_san").value == 1


def test_a_listener_checks_client_certificate_sans(ca):
    server_cert, server_key = ca.issue("srv", dns=("srv",))
    tls = ServerTls(cert=Pem(server_cert), key=Pem(server_key), alpn=("h2",), client_ca=Pem(ca.pem),
                    require_client_cert=True, client_san=(SanMatcher("URI", "prefix", "spiffe://cluster.local/"),))

    def client(uri: str) -> ssl.SSLContext:
        cert, key = ca.issue("c", uris=(uri,))
        return client_context(ClientTls(ca=Pem(ca.pem), cert=Pem(cert), key=Pem(key), verify_hostname=False))

    async def go():
        srv, port = await _serve(server_context(tls))
        async with srv:
            assert (await _connect(port, client("spiffe://cluster.local/ns/a/sa/b")))[0] == b"hello"
            with pytest.raises((ssl.SSLError, ConnectionError)):
                data, _ = await _connect(port, client("spiffe://other.domain/ns/a/sa/b"))
                assert not data         # TLS 1.3: the client hears of it at its first read
                raise ConnectionError("closed")
    asyncio.run(go())


def test_material_in_memory_never_lands_in_a_file(ca, tmp_path, monkeypatch):
    made: list[str] = []
    real = tlsmod.tempfile.mkstemp
    monkeypatch.setattr(tlsmod.tempfile, "mkstemp", lambda *a, **k: made.append("file") or real(*a, **k))
    with tlsmod._path_of(Pem(b"-----BEGIN X-----\n-----END X-----\n")) as p:
        assert p.startswith("/proc/self/fd/") and open(p, "rb").read().startswith(b"-----BEGIN X")
    assert not made and not os.path.exists(p)


def test_a_rotated_secret_is_a_new_context_at_the_next_handshake(ca):
    async def go():
        first = _server_tls(ca, SPIFFE, serial=1001)
        second = _server_tls(ca, SPIFFE, serial=1002)
        assert server_context(first) is server_context(first)        # one context per settings
        ctx_a, ctx_b = server_context(first), server_context(second)
        assert ctx_a is not ctx_b
        c = client_context(_client_tls(ca, SanMatcher("URI", "exact", SPIFFE)))
        serials = []
        for ctx in (ctx_a, ctx_b):
            srv, port = await _serve(ctx)
            async with srv:
                r, w = await asyncio.open_connection("127.0.0.1", port, ssl=c, server_hostname="x")
                serials.append(serial_of(w.get_extra_info("ssl_object").getpeercert(binary_form=True)))
                w.close()
        return serials
    assert asyncio.run(go()) == [1001, 1002]


def test_an_endpoint_takes_the_socket_its_metadata_chose(ca):
    tls = _client_tls(ca)
    cfg = ClusterConfig(name="r", endpoints=(Endpoint("127.0.0.1", 1, 1, 0), Endpoint("127.0.0.1", 2)),
                        options={"tls_matches": (((("tlsMode", '"istio"'),), tls), ((), None))})
    assert tlsmod.client_connect_args(cfg, "127.0.0.1", cfg.endpoints[0])["server_hostname"] == tls.sni
    assert tlsmod.client_connect_args(cfg, "127.0.0.1", cfg.endpoints[1]) == {}
