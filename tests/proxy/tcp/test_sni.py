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


def _hello_alpn(name: str, alpn: list[str]) -> bytes:
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_hello_gives_the_name_and_the_alpn_offer_in_order():
    from mosnx.proxy.tcp.sni import parse_hello
    hello = _hello_alpn("Mesh.Local", ["istio-peer-exchange", "istio", "h2"])
    assert parse_hello(hello) == ("mesh.local", ("istio-peer-exchange", "istio", "h2"))
    assert parse_hello(_client_hello("a.test")) == ("a.test", ())
    assert parse_hello(hello[:30]) is NEED_MORE
    assert parse_hello(b"GET / HTTP/1.1\r\n") is None


def test_hello_parser_answers_any_bytes_with_a_verdict():
    """Mutated ClientHellos: a verdict (NEED_MORE, None, or name and ALPN), never an exception."""
    from hypothesis import given, settings, strategies as st

    from mosnx.proxy.tcp.sni import parse_hello
    hello = _hello_alpn("a.test", ["h2", "http/1.1"])

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, len(hello) - 1), st.integers(0, 255)), max_size=8),
           st.integers(0, len(hello)))
    def check(edits, cut):
        b = bytearray(hello)
        for at, v in edits:
            b[at] = v
        got = parse_hello(bytes(b[:cut]))
        assert got is NEED_MORE or got is None or (
            isinstance(got, tuple) and (got[0] is None or isinstance(got[0], str))
            and all(isinstance(p, str) for p in got[1]))
    check()
