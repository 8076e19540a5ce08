"""Strict request parsing at the edge: request-smuggling vectors, sent as raw bytes,
get a 400 and never reach the upstream; oversized heads get 431; a client that
never finishes its head is cut off with 408.

All tests share one proxy and one recording upstream. Each bad request carries a
unique token; after the answer, a canary request is sent and awaited at the
upstream, so anything of the bad request the proxy had forwarded would be there.
"""
from __future__ import annotations

import itertools
import threading
import time

import pytest

_tokens = itertools.count()


@pytest.fixture(scope="module")
def edge(module_upstream, module_mosnx):
    up = module_upstream()
    proxy = module_mosnx(up, listener={"timeouts": {"request_headers": "500ms"},
                                       "limits": {"request_headers": "4KiB"}})
    assert proxy.request("GET", "/warm").status == 200    # a pooled upstream connection is ready
    return proxy, up


def _canary(proxy, up, token: str) -> None:
    path = f"/canary/{next(_tokens)}"
    assert proxy.request("GET", path).status == 200
    up.wait_for(lambda: any(m.target == path for m in up.requests), what="the canary request")


def rejected(edge, raw: bytes, token: str, status: int = 400) -> None:
    """`raw` gets `status` with x-mosnx-error, the connection closes, and no byte
    carrying `token` reaches the upstream."""
    proxy, up = edge
    with proxy.connect() as c:
        c.send(raw)
        r = c.read_response(timeout=5)
        assert r.status == status, r
        assert r.has("x-mosnx-error"), r
        assert r.header("connection") == "close"
        assert c.closed(5), "the connection must not be reused after a framing error"
    _canary(proxy, up, token)
    assert token.encode() not in up.received, "part of a rejected request reached the upstream"


def _req(token: str, lines: bytes, body: bytes = b"", method: bytes = b"POST", version: bytes = b"HTTP/1.1") -> bytes:
    return b"%s /smuggle-%s %s\r\n%s\r\n%s" % (method, token.encode(), version, lines, body)


VECTORS = {
    "cl_then_te": (b"Host: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG"),
    "te_then_cl": (b"Host: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n", b"0\r\n\r\nG"),
    "differing_duplicate_cl": (b"Host: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
    "cl_list": (b"Host: t\r\nContent-Length: 5, 6\r\n", b"hello!"),
    "cl_not_a_number": (b"Host: t\r\nContent-Length: 5a\r\n", b"hello"),
    "cl_negative": (b"Host: t\r\nContent-Length: -5\r\n", b"hello"),
    "cl_plus_sign": (b"Host: t\r\nContent-Length: +5\r\n", b"hello"),
    "unknown_te": (b"Host: t\r\nTransfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
    "te_identity": (b"Host: t\r\nTransfer-Encoding: identity\r\n", b"hello"),
    "te_repeated_headers": (b"Host: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                            b"0\r\n\r\n"),
    "te_chunked_chunked": (b"Host: t\r\nTransfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
    "te_gzip_chunked": (b"Host: t\r\nTransfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
    "te_chunked_not_last": (b"Host: t\r\nTransfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"),
    "te_obs_fold": (b"Host: t\r\nTransfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
    "obs_fold": (b"Host: t\r\nX-Folded: first\r\n second\r\nContent-Length: 0\r\n", b""),
    "obs_fold_tab": (b"Host: t\r\nX-Folded: first\r\n\tsecond\r\nContent-Length: 0\r\n", b""),
    "space_before_colon_te": (b"Host: t\r\nTransfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
    "space_before_colon_cl": (b"Host: t\r\nContent-Length : 5\r\n", b"hello"),
    "tab_before_colon": (b"Host: t\r\nX-Thing\t: 1\r\nContent-Length: 0\r\n", b""),
    "ctl_soh_in_value": (b"Host: t\r\nX-Ctl: a\x01b\r\nContent-Length: 0\r\n", b""),
    "nul_in_value": (b"Host: t\r\nX-Ctl: a\x00b\r\nContent-Length: 0\r\n", b""),
    "del_in_value": (b"Host: t\r\nX-Ctl: a\x7fb\r\nContent-Length: 0\r\n", b""),
    "bare_cr_in_value": (b"Host: t\r\nX-Ctl: a\rb\r\nContent-Length: 0\r\n", b""),
    "ctl_in_name": (b"Host: t\r\nX-C\x01tl: a\r\nContent-Length: 0\r\n", b""),
    "space_in_name": (b"Host: t\r\nX Ctl: a\r\nContent-Length: 0\r\n", b""),
    "chunk_size_not_hex": (b"Host: t\r\nTransfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"),
    "chunk_size_negative": (b"Host: t\r\nTransfer-Encoding: chunked\r\n", b"-1\r\nh\r\n0\r\n\r\n"),
    "chunk_size_0x_prefix": (b"Host: t\r\nTransfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk_size_plus": (b"Host: t\r\nTransfer-Encoding: chunked\r\n", b"+5\r\nhello\r\n0\r\n\r\n"),
    "chunk_size_overflow": (b"Host: t\r\nTransfer-Encoding: chunked\r\n",
                            b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
    "chunk_size_inner_space": (b"Host: t\r\nTransfer-Encoding: chunked\r\n", b"5 5\r\nhello\r\n0\r\n\r\n"),
    "chunk_data_overrun": (b"Host: t\r\nTransfer-Encoding: chunked\r\n", b"3\r\nabcdef\r\n0\r\n\r\n"),
    "missing_host": (b"Content-Length: 0\r\n", b""),
    "duplicate_host": (b"Host: a.test\r\nHost: b.test\r\nContent-Length: 0\r\n", b""),
}


@pytest.mark.parametrize("name", list(VECTORS))
def test_smuggling_vector_rejected(edge, name):
    token = f"{name}-{next(_tokens)}"
    lines, body = VECTORS[name]
    rejected(edge, _req(token, lines, body), token)


@pytest.mark.parametrize("name, detail", [
    ("missing_host", "missing_host"),
    ("duplicate_host", "duplicate_host"),
    ("te_repeated_headers", "transfer_encoding"),
    ("te_gzip_chunked", "transfer_encoding"),
    ("differing_duplicate_cl", "content_length"),
])
def test_rejection_detail_names_the_problem(edge, name, detail):
    # x-mosnx-error is what a user greps logs for: a generic codec error does not help
    proxy, _ = edge
    lines, body = VECTORS[name]
    with proxy.connect() as c:
        c.send(_req(f"detail-{next(_tokens)}", lines, body))
        r = c.read_response(timeout=5)
    assert r.status == 400 and detail in r.header("x-mosnx-error"), r


def test_transfer_encoding_in_http10_rejected(edge):
    token = f"te10-{next(_tokens)}"
    raw = _req(token, b"Host: t\r\nTransfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n",
               version=b"HTTP/1.0")
    rejected(edge, raw, token)


def test_invalid_request_line_rejected(edge):
    token = f"line-{next(_tokens)}"
    rejected(edge, b"GET /smuggle-%s extra HTTP/1.1\r\nHost: t\r\n\r\n" % token.encode(), token)


def test_smuggled_second_request_after_rejected_one_never_forwarded(edge):
    # the classic CL.TE shape: whatever hides behind a rejected head must not be served either
    token = f"hidden-{next(_tokens)}"
    inner = b"GET /hidden-%s HTTP/1.1\r\nHost: t\r\n\r\n" % token.encode()
    raw = (b"POST /outer-%s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"0\r\n\r\n%s" % (token.encode(), 5 + len(inner), inner))
    rejected(edge, raw, token)


def test_valid_request_before_a_bad_one_is_answered_first(edge):
    proxy, up = edge
    token = f"after-good-{next(_tokens)}"
    with proxy.connect() as c:
        c.send(b"GET /good-first HTTP/1.1\r\nHost: t\r\n\r\n"
               + _req(token, b"Host: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n", b"ab"))
        first = c.read_response()
        assert first.status == 200 and first.body == b"ok"
        second = c.read_response(timeout=5)
        assert second.status == 400
        assert c.closed(5)
    _canary(proxy, up, token)
    assert token.encode() not in up.received


def test_bad_chunk_after_head_was_forwarded_closes_upstream_connection(upstream, mosnx):
    # the head went upstream before the body turned bad: the upstream connection holds
    # a half request and must be closed, never reused for someone else's request
    up = upstream()
    proxy = mosnx(up)
    with proxy.connect() as c:
        c.send(b"POST /half HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        up.wait_for(lambda: any(b"hello" in bytes(conn.wire.data) for conn in up.conns),
                    what="the first chunk at the upstream")
        c.send(b"zz\r\n")
        r = c.read_response(timeout=5)
        assert r.status == 400
        assert c.closed(5)
    half = up.conns[0]
    assert half.closed_by_peer(5), "the upstream connection carrying a half request must be closed"
    assert [m.complete for m in up.requests_for("/half")] in ([], [False]), \
        "the upstream must never see the half request end as if complete"
    assert proxy.request("GET", "/next").status == 200
    assert up.requests[-1].target == "/next" and up.accepted == 2


# ---------------------------------------------------------------- limits and timeouts
def test_request_head_over_limit_gets_431(edge):
    token = f"big-{next(_tokens)}"
    raw = _req(token, b"Host: t\r\nX-Big: " + b"a" * 8192 + b"\r\nContent-Length: 0\r\n", method=b"GET")
    rejected(edge, raw, token, status=431)


def test_many_small_headers_over_limit_get_431(edge):
    token = f"many-{next(_tokens)}"
    lines = b"Host: t\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(200))
    rejected(edge, _req(token, lines, method=b"GET"), token, status=431)


def test_request_head_just_under_limit_accepted(edge):
    proxy, up = edge
    r = proxy.request("GET", "/under", headers=[("Host", "t"), ("X-Pad", "p" * 3000)])
    assert r.status == 200


def test_header_timeout_cuts_off_unfinished_head(edge):
    proxy, up = edge
    token = f"slow-{next(_tokens)}"
    with proxy.connect() as c:
        t0 = time.monotonic()
        c.send(b"GET /smuggle-%s HTTP/1.1\r\nHost: t\r\nX-Never: ends" % token.encode())
        r = c.read_response(timeout=8)
        elapsed = time.monotonic() - t0
        assert r.status == 408
        assert r.header("x-mosnx-error")
        assert 0.4 <= elapsed < 5, elapsed
        assert c.closed(5)
    _canary(proxy, up, token)
    assert token.encode() not in up.received


def test_header_timeout_not_extended_by_trickling_bytes(edge):
    proxy, _ = edge
    with proxy.connect() as c:
        c.send(b"GET /trickle HTTP/1.1\r\nHost: t\r\n")
        stop = threading.Event()

        def trickle():
            # one header byte every 100 ms: a slowloris that never ends its head
            for _ in range(80):
                if stop.wait(0.1):
                    return
                try:
                    c.sock.send(b"X")
                except OSError:
                    return

        t = threading.Thread(target=trickle, daemon=True)
        t0 = time.monotonic()
        t.start()
        try:
            r = c.read_response(timeout=8)
        finally:
            stop.set()
            t.join(2)
        assert r.status == 408
        assert time.monotonic() - t0 < 5


def test_header_timeout_counted(edge):
    proxy, _ = edge
    before = proxy.stat("http.ingress.downstream_rq_header_timeout")
    with proxy.connect() as c:
        c.send(b"GET / HTTP/1.1\r\n")
        assert c.read_response(timeout=8).status == 408
    assert proxy.stat("http.ingress.downstream_rq_header_timeout") == before + 1


def test_protocol_errors_counted(edge):
    proxy, _ = edge
    before = proxy.stats()
    with proxy.connect() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        assert c.read_response().status == 400
    after = proxy.stats()
    assert after["http.ingress.downstream_cx_protocol_error"] == before.get("http.ingress.downstream_cx_protocol_error", 0) + 1
    assert after["http.ingress.downstream_rq_4xx"] == before["http.ingress.downstream_rq_4xx"] + 1
