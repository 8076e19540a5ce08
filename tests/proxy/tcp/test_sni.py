"""proxy/tcp/sni.py: the server name read from a TLS ClientHello (whole, cut short, or
spread over records), and SNI routes matched exact before wildcard."""
from __future__ import annotations

import ssl

import pytest

from mosnx.proxy.tcp.sni import NEED_MORE, match_route, parse_sni
from mosnx.runtime.config.protocols import SniRoute


def _client_hello(name: str | None) -> bytes:
    ctx = ssl.create_default_context()
    if name is None:
        ctx.check_hostname = False
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_sni_from_a_client_hello():
    hello = _client_hello("API.Example.com")
    assert parse_sni(hello) == "api.example.com"
    assert parse_sni(hello + b"more bytes") == "api.example.com"
    for cut in (0, 3, 5, 40, len(hello) - 1):
        assert parse_sni(hello[:cut]) is NEED_MORE


def test_sni_absent_or_not_tls():
    assert parse_sni(_client_hello(None)) is None
    assert parse_sni(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") is None
    assert parse_sni(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00") is None     # not a ClientHello


def test_sni_spanning_two_records():
    hello = _client_hello("split.test")
    body = hello[5:]
    half = len(body) // 2
    rec = lambda b: b"\x16\x03\x01" + len(b).to_bytes(2, "big") + b
    assert parse_sni(rec(body[:half]) + rec(body[half:])) == "split.test"
    assert parse_sni(rec(body[:half])) is NEED_MORE


def test_sni_routes_exact_before_wildcard():
    routes = (SniRoute(("*.b.test",), "wild"), SniRoute(("x.b.test", "a.test"), "exact"))
    assert match_route(routes, "x.b.test") == "exact"
    assert match_route(routes, "y.b.test") == "wild"
    assert match_route(routes, "z.y.b.test") is None
    assert match_route(routes, None) is None
