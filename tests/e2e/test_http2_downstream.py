"""HTTP/2 clients on an `http` listener: prior knowledge and Upgrade: h2c next to
HTTP/1.1 on the same port, translation to an HTTP/1.1 upstream, per-stream flow
control and resets, SETTINGS limits, GOAWAY on drain."""
from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from h2kit import H2Client  # noqa: E402

MiB = 1024 * 1024


def _echo(conn, req):
    body = f"{req.method} {req.target} host={req.header('host')} len={len(req.body)}".encode()
    conn.respond(200, body, [("content-type", "text/plain")])


def test_prior_knowledge_request_reaches_an_http1_upstream(upstream, mosnx):
    up = upstream(on_request=_echo)
    proxy = mosnx(up)
    with H2Client(proxy.port) as c:
        r = c.request("GET", "/a?x=1", headers=[("x-custom", "yes")], authority="example.test")
    assert r.status == 200
    assert r.body == b"GET /a?x=1 host=example.test len=0"
    got = up.requests[0]
    assert got.version == "HTTP/1.1"
    assert got.header("x-custom") == "yes"
    assert got.header("x-forwarded-for") == "127.0.0.1"
    assert got.header("x-request-id")
    assert not any(k.startswith(":") for k, _ in got.headers)


def test_http1_and_http2_share_the_listener(upstream, mosnx):
    up = upstream(on_request=_echo)
    proxy = mosnx(up)
    r1 = proxy.request("GET", "/one")
    with H2Client(proxy.port) as c:
        r2 = c.request("GET", "/two")
    assert r1.status == 200 and r1.body.startswith(b"GET /one")
    assert r2.status == 200 and r2.body.startswith(b"GET /two")
    assert proxy.stat("http.ingress.downstream_cx_http2_total") == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_prior_knowledge_and_upgrade(upstream, mosnx):
    up = upstream(on_request=_echo)
    proxy = mosnx(up)
    for flag, path in (("--http2-prior-knowledge", "/pk"), ("--http2", "/upgrade")):
        out = subprocess.run(["curl", "-sS", flag, "-o", "-", "-w", "\n%{http_version} %{http_code}",
                              f"{proxy.url}{path}"], capture_output=True, timeout=30, text=True)
        body, _, tail = out.stdout.rpartition("\n")
        assert tail == "2 200", (flag, out.stdout, out.stderr)
        assert body.startswith(f"GET {path} ")
    assert proxy.stat("http.ingress.downstream_cx_http2_total") == 2


def test_request_body_and_trailers_cross_to_http1(upstream, mosnx):
    seen = {}

    def answer(conn, req):
        seen["req"] = req
        conn.respond(200, b"got " + str(len(req.body)).encode())
    up = upstream(on_request=answer)
    proxy = mosnx(up)
    body = os.urandom(300_000)
    with H2Client(proxy.port) as c:
        sid = c.start("POST", "/up", headers=[("content-type", "application/octet-stream")], end=False)
        c.send_body(sid, body)
        c.end(sid, trailers=[("x-checksum", "abc")])
        r = c.response(sid)
    assert r.status == 200 and r.body == b"got 300000"
    req = seen["req"]
    assert req.framing == "chunked" and req.body == body
    assert ("x-checksum", "abc") in req.trailers


def test_content_length_body_is_forwarded_with_its_length(upstream, mosnx):
    up = upstream(on_request=_echo)
    proxy = mosnx(up)
    with H2Client(proxy.port) as c:
        r = c.request("PUT", "/cl", headers=[("content-length", "5")], body=b"hello")
    assert r.status == 200 and r.body.endswith(b"len=5")
    assert up.requests[0].framing == "length"


def test_response_trailers_from_http1_become_http2_trailers(upstream, mosnx):
    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n"
                  b"5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n")
    up = upstream(on_request=answer)
    proxy = mosnx(up)
    with H2Client(proxy.port) as c:
        r = c.request("GET", "/t")
    assert r.status == 200 and r.body == b"hello"
    assert r.trailer("x-sum") == "42"
    assert r.header("transfer-encoding") is None


def test_many_streams_on_one_connection(upstream, mosnx):
    up = upstream(on_request=_echo)
    proxy = mosnx(up)
    with H2Client(proxy.port) as c:
        sids = [c.start("GET", f"/s{i}") for i in range(40)]
        rs = [c.response(s, timeout=30) for s in sids]
    assert [r.status for r in rs] == [200] * 40
    assert [r.body.split(b" ")[1] for r in rs] == [f"/s{i}".encode() for i in range(40)]


def test_head_response_keeps_content_length_without_body(upstream, mosnx):
    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    up = upstream(on_request=answer)
    proxy = mosnx(up)
    with H2Client(proxy.port) as c:
        r = c.request("HEAD", "/h")
    assert r.status == 200 and r.body == b"" and r.header("content-length") == "1234"


def test_slow_reader_stalls_only_its_own_stream(upstream, mosnx):
    big = os.urandom(4 * MiB)

    def answer(conn, req):
        if req.target == "/big":
            conn.respond(200, big)
        else:
            conn.respond(200, b"small")
    up = upstream(on_request=answer)
    proxy = mosnx(up)
    with H2Client(proxy.port) as c:
        slow = c.start("GET", "/big")
        c.stalled.add(slow)
        c.wait(lambda: len(c.responses[slow].body) >= 65535, what="the first window of /big")
        time.sleep(0.3)
        held = len(c.responses[slow].body)
        # the stream's window is shut: no more of /big arrives, yet other streams flow
        assert held < 2 * 65535
        for i in range(3):
            r = c.request("GET", f"/small{i}")
            assert r.status == 200 and r.body == b"small"
        assert not c.responses[slow].done
        c.unstall(slow)
        c.stalled.clear()
        r = c.response(slow, timeout=60)
    assert r.status == 200 and r.body == big


def test_client_reset_ends_only_that_stream(upstream, mosnx):
    gate = threading.Event()

    def answer(conn, req):
        if req.target == "/hang":
            gate.wait(20)
            return
        conn.respond(200, b"fine")
    up = upstream(on_request=answer)
    proxy = mosnx(up)
    try:
        with H2Client(proxy.port) as c:
            hang = c.start("GET", "/hang")
            up.wait_requests(1)
            c.reset(hang)
            hung = up.conns[0]
            assert hung.closed_by_peer(10)      # the upstream request is abandoned
            r = c.request("GET", "/after")
            assert r.status == 200 and r.body == b"fine"
        proxy.wait_stat("http.ingress.downstream_rq_rx_reset", 1)
    finally:
        gate.set()


def test_settings_advertise_the_configured_stream_limit(upstream, mosnx):
    up = upstream(on_request=_echo)
    proxy = mosnx(up, listener={"http2": {"max_concurrent_streams": 7}})
    with H2Client(proxy.port) as c:
        c.wait(lambda: c.remote_settings_seen, what="server SETTINGS")
        assert c.conn.remote_settings.max_concurrent_streams == 7
        r = c.request("GET", "/x")
        assert r.status == 200


def test_too_many_streams_are_refused(upstream, mosnx):
    gate = threading.Event()

    def answer(conn, req):
        gate.wait(20)
        conn.respond(200, b"late")
    up = upstream(on_request=answer)
    proxy = mosnx(up, listener={"http2": {"max_concurrent_streams": 2}})
    try:
        with H2Client(proxy.port) as c:
            c.wait(lambda: c.remote_settings_seen, what="server SETTINGS")
            c.start("GET", "/1")
            c.start("GET", "/2")
            # our h2 client enforces the peer's limit itself; a client that does not is the case here
            c.conn.remote_settings._settings[3] = collections.deque([100])
            third = c.start("GET", "/3")
            r = c.response(third)
            assert r.reset == 7          # REFUSED_STREAM: safe for the client to retry
            assert c.goaway is None
            gate.set()
            assert c.response(1).status == 200 and c.response(3).status == 200
    finally:
        gate.set()


def test_oversized_header_list_is_refused(upstream, mosnx):
    up = upstream(on_request=_echo)
    proxy = mosnx(up, listener={"limits": {"request_headers": "4KiB"}})
    with H2Client(proxy.port) as c:
        c.wait(lambda: c.remote_settings_seen, what="server SETTINGS")
        assert c.conn.remote_settings.max_header_list_size == 4096
        sid = c.start("GET", "/big", headers=[(f"x-h{i}", "v" * 200) for i in range(40)])
        try:
            c.wait(lambda: c.responses[sid].done or c.goaway is not None, what="refusal")
        except ConnectionError:
            pass
        r = c.responses[sid]
        assert c.goaway is not None or r.reset is not None or r.status == 431
    assert up.requests == []


def test_local_reply_on_http2(upstream, mosnx, free_port):
    proxy = mosnx(free_port())          # nothing listens there: 503 made by the proxy
    with H2Client(proxy.port) as c:
        r = c.request("GET", "/nowhere")
    assert r.status == 503
    assert r.header("x-mosnx-error") == "upstream_connect_failure"
    assert r.body == b"upstream unavailable\n"


def test_drain_sends_goaway_and_finishes_streams_in_flight(upstream, mosnx):
    gate = threading.Event()

    def answer(conn, req):
        gate.wait(20)
        conn.respond(200, b"finished")
    up = upstream(on_request=answer)
    proxy = mosnx(up)
    try:
        with H2Client(proxy.port) as c:
            sid = c.start("GET", "/slow")
            up.wait_requests(1)
            proxy.signal(signal.SIGTERM)
            c.wait(lambda: c.goaway is not None, what="GOAWAY")
            assert c.goaway.error_code == 0 and c.goaway.last_stream_id >= sid
            gate.set()
            r = c.response(sid, timeout=20)
            assert r.status == 200 and r.body == b"finished"
        assert proxy.wait_exit(30) == 0
    finally:
        gate.set()
