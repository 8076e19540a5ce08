"""Message bodies through the proxy: Content-Length and chunked in both directions,
streamed rather than buffered; Expect: 100-continue; bodiless responses; re-framing.

The tests share one proxy and one upstream; each answers its own path (Upstream.on).
"""
from __future__ import annotations

import os
import threading

import pytest

MiB = 1024 * 1024


def _pattern(n: int) -> bytes:
    block = os.urandom(4096)
    return (block * (n // 4096 + 1))[:n]


@pytest.fixture(scope="module")
def shared(module_upstream, module_mosnx):
    up = module_upstream()
    # header-controlled aborts give a local reply only when a request asks for one
    proxy = module_mosnx(up, listener={"filters": [{"fault": {"abort": {"header_abort": {}}}}]})
    return proxy, up


def test_content_length_request_body_arrives_intact(shared):
    proxy, up = shared
    body = _pattern(8 * MiB + 3)
    path = up.on("/upload", lambda conn, req: conn.respond(200, str(len(req.body)).encode()))
    r = proxy.request("POST", path, body=body, timeout=30)
    assert r.status == 200 and r.body == str(len(body)).encode()
    [got] = up.requests_for(path)
    assert got.framing == "length" and got.header("content-length") == str(len(body))
    assert got.body == body


def test_request_body_is_streamed_before_the_client_finishes(shared):
    proxy, up = shared
    total = 4 * MiB
    path = up.on("/stream", lambda conn, req: conn.respond(200, b"done"))
    before = sum(conn.wire.total for conn in up.conns)
    with proxy.connect() as c:
        c.send(b"PUT /stream HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
        c.send(b"a" * MiB)
        # a buffering proxy would hold this first part until the whole body is in
        up.wait_for(lambda: sum(conn.wire.total for conn in up.conns) - before >= MiB // 2, 10,
                    "the first part of the body at the upstream")
        c.send(b"b" * (total - MiB))
        r = c.read_response(timeout=30)
    assert r.status == 200 and r.body == b"done"
    assert up.requests_for(path)[0].body == b"a" * MiB + b"b" * (total - MiB)


def test_chunked_request_with_trailers_forwarded_chunked(shared):
    proxy, up = shared
    path = up.on("/chunks", lambda conn, req: conn.respond(200, req.body[::-1]))
    chunks = [b"hello ", b"chunked ", _pattern(300_000), b"world"]
    payload = b"".join(b"%x\r\n%s\r\n" % (len(x), x) for x in chunks)
    payload += b"0\r\nX-Checksum: abc123\r\nX-Other: 1\r\n\r\n"
    with proxy.connect() as c:
        c.send(b"POST /chunks HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n")
        c.send(payload)
        r = c.read_response()
    body = b"".join(chunks)
    assert r.status == 200 and r.body == body[::-1]
    [got] = up.requests_for(path)
    assert got.framing == "chunked" and got.body == body
    assert ("x-checksum", "abc123") in got.trailers and ("x-other", "1") in got.trailers


def test_large_content_length_response_intact(shared):
    proxy, up = shared
    body = _pattern(20 * MiB + 7)
    up.on("/big", lambda conn, req: conn.respond(200, body))
    with proxy.connect(timeout=30) as c:
        r = c.request("GET", "/big")
        assert r.status == 200 and r.framing == "length" and r.complete
        assert r.header("content-length") == str(len(body))
        assert r.body == body
        assert c.request("GET", "/").status == 200


def test_chunked_response_streamed_with_trailers(shared):
    proxy, up = shared
    first_seen = threading.Event()

    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Digest\r\n\r\n"
                  b"5\r\nfirst\r\n")
        # the rest only once the client has seen the first chunk: no buffering allowed
        assert first_seen.wait(10), "the first chunk never reached the client"
        conn.send(b"6\r\nsecond\r\n0\r\nX-Digest: d1\r\n\r\n")

    up.on("/trickle", answer)
    seen = bytearray()

    def sink(data):
        seen.extend(data)
        if b"first" in seen:
            first_seen.set()

    with proxy.connect() as c:
        c.send(b"GET /trickle HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response(sink=sink)
    assert r.status == 200 and r.framing == "chunked" and r.complete
    assert bytes(seen) == b"firstsecond"
    assert ("x-digest", "d1") in r.trailers


def test_large_chunked_response_intact(shared):
    proxy, up = shared
    body = _pattern(6 * MiB)

    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(body), 100_003):
            part = body[i:i + 100_003]
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")

    up.on("/big-chunked", answer)
    r = proxy.request("GET", "/big-chunked", timeout=30)
    assert r.status == 200 and r.complete and r.body == body


# ---------------------------------------------------------------- Expect: 100-continue
def test_expect_100_continue_answered_then_body_forwarded(shared):
    proxy, up = shared
    path = up.on("/expect", lambda conn, req: conn.respond(201, b"got " + req.body))
    with proxy.connect() as c:
        c.send(b"POST /expect HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_response("POST", interim=True, timeout=5)
        assert interim.status == 100, "the client must be told to send its body"
        c.send(b"hello world")
        r = c.read_response("POST")
    assert r.status == 201 and r.body == b"got hello world"
    [got] = up.requests_for(path)
    assert got.body == b"hello world"
    assert not got.has("expect"), "the proxy answered the expectation; the upstream must not see it"


def test_local_reply_to_expect_continue_sends_no_100(shared):
    proxy, up = shared
    with proxy.connect() as c:
        c.send(b"POST /refused HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
               b"x-envoy-fault-abort-request: 403\r\n\r\n")
        r = c.read_response("POST", interim=True, timeout=5)
        assert r.status == 403, "a request refused before forwarding gets its answer, never a 100"
        assert r.has("x-mosnx-error")
        # the body was never asked for: the proxy must not wait for it or read it as a request
        if r.header("connection") == "close":
            assert c.closed(5)
        else:
            assert c.request("GET", "/").status == 200
    assert up.requests_for("/refused") == []


def test_upstream_100_continue_not_passed_on(shared):
    proxy, up = shared

    def answer(conn, req):
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.respond(200, b"final")

    up.on("/own-100", answer)
    with proxy.connect() as c:
        r = c.request("POST", "/own-100", body=b"x")
        assert r.status == 200 and r.body == b"final"
        assert r.interim == [], "the upstream's own 1xx must not reach the client"
        assert c.request("GET", "/").status == 200


def test_upstream_early_hints_dropped(shared):
    proxy, up = shared

    def answer(conn, req):
        conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        conn.respond(200, b"final")

    up.on("/hints", answer)
    with proxy.connect() as c:
        r = c.request("GET", "/hints")
        assert r.status == 200 and r.body == b"final"
        assert r.interim == []
        assert c.request("GET", "/").body == b"ok"


# ---------------------------------------------------------------- bodiless responses
def test_head_response_keeps_length_and_has_no_body(shared):
    proxy, up = shared

    def answer(conn, req):
        if req.method == "HEAD":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n")
        else:
            conn.respond(200, b"after-head")

    up.on("/head", answer)
    with proxy.connect() as c:
        c.send(b"HEAD /head HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response("HEAD", timeout=3)
        assert r.status == 200 and r.header("content-length") == "1234"
        # a body byte after the HEAD answer would be read as the next response
        nxt = c.request("GET", "/head", timeout=3)
        assert nxt.status == 200 and nxt.body == b"after-head"


def test_head_response_with_chunked_upstream_headers(shared):
    proxy, up = shared

    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")

    up.on("/head-chunked", answer)
    with proxy.connect() as c:
        c.send(b"HEAD /head-chunked HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response("HEAD", timeout=3).status == 200
        assert c.request("GET", "/", timeout=3).body == b"ok"


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_has_no_body_and_connection_stays_usable(shared, status):
    proxy, up = shared
    path = f"/empty-{status}"

    def answer(conn, req):
        extra = b"ETag: \"v1\"\r\nContent-Length: 42\r\n" if status == 304 else b""
        conn.send(b"HTTP/1.1 %d X\r\n%s\r\n" % (status, extra))

    up.on(path, answer)
    with proxy.connect() as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        r = c.read_response()
        assert r.status == status
        assert r.header("transfer-encoding") is None
        nxt = c.request("GET", "/")
        assert nxt.status == 200 and nxt.body == b"ok"
        assert c.wire.buf == b""


# ---------------------------------------------------------------- re-framing
def _close_delimited(body: bytes):
    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        for i in range(0, len(body), 65536):
            conn.send(body[i:i + 65536])
        conn.close()
    return answer


def test_close_delimited_response_rechunked_for_keep_alive_client(shared):
    proxy, up = shared
    body = _pattern(300_000)
    up.on("/close-delimited", _close_delimited(body))
    with proxy.connect() as c:
        r = c.request("GET", "/close-delimited")
        assert r.status == 200
        assert r.framing == "chunked", "a keep-alive 1.1 client needs a framed body"
        assert r.complete and r.body == body
        assert r.header("connection") != "close"
        again = c.request("GET", "/close-delimited")
        assert again.status == 200 and again.body == body


def test_close_delimited_response_to_http10_client(shared):
    proxy, up = shared
    body = b"x" * 1000
    up.on("/close-delimited-10", _close_delimited(body))
    with proxy.connect() as c:
        c.send(b"GET /close-delimited-10 HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and r.body == body and r.complete
    assert r.framing in ("close", "length")


def test_http10_upstream_response_reframed(shared):
    proxy, up = shared

    def answer(conn, req):
        conn.send(b"HTTP/1.0 200 OK\r\n\r\nold-style body")
        conn.close()

    up.on("/http10-upstream", answer)
    with proxy.connect() as c:
        r = c.request("GET", "/http10-upstream")
        assert r.status == 200 and r.body == b"old-style body" and r.complete
        assert c.request("GET", "/").status == 200
