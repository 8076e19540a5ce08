"""How upstream failures reach the client: status, x-mosnx-error detail, counted stats,
and never a truncated response dressed up as a complete one.

Misbehaviours that need no special config share one proxy and upstream: each test
scripts its own path (Upstream.on) and reads stats as differences."""
from __future__ import annotations

import socket
import threading
import time

import pytest


@pytest.fixture(scope="module")
def shared(module_upstream, module_mosnx):
    up = module_upstream()
    return module_mosnx(up), up


class Delta:
    def __init__(self, proxy):
        self.proxy = proxy
        self.before = proxy.stats()

    def __getitem__(self, name: str) -> float:
        return self.proxy.stats().get(name, 0) - self.before.get(name, 0)


def _local_reply(r, status: int, detail: str) -> None:
    assert r.status == status, r
    assert r.header("x-mosnx-error") == detail, r


def test_refused_connection_is_503_and_counted(free_port, mosnx):
    proxy = mosnx(free_port())
    r = proxy.request("GET", "/")
    _local_reply(r, 503, "upstream_connect_failure")
    s = proxy.stats()
    assert s["cluster.web.upstream_cx_connect_fail"] == 1
    assert s["http.ingress.downstream_rq_5xx"] == 1
    assert s["http.ingress.local_reply.upstream_connect_failure"] == 1


def test_client_connection_survives_a_local_reply(free_port, mosnx):
    proxy = mosnx(free_port())
    with proxy.connect() as c:
        for _ in range(3):
            _local_reply(c.request("GET", "/"), 503, "upstream_connect_failure")


def test_upstream_reset_before_response_is_503(shared):
    proxy, up = shared
    up.on("/reset-early", lambda conn, req: conn.reset())
    d = Delta(proxy)
    r = proxy.request("POST", "/reset-early", body=b"payload")
    _local_reply(r, 503, "upstream_reset_before_response_started")
    assert d["cluster.web.upstream_rq_rx_reset"] >= 1
    assert d["http.ingress.local_reply.upstream_reset_before_response_started"] == 1
    assert d["http.ingress.downstream_rq_5xx"] == 1


def test_upstream_close_before_response_is_503(shared):
    proxy, up = shared
    up.on("/close-early", lambda conn, req: conn.close())
    d = Delta(proxy)
    r = proxy.request("POST", "/close-early", body=b"payload")
    assert r.status == 503 and r.header("x-mosnx-error") is not None, r
    assert d["cluster.web.upstream_cx_destroy_remote"] >= 1


def test_upstream_garbage_response_is_502(shared):
    proxy, up = shared

    def answer(conn, req):
        conn.send(b"THIS IS NOT HTTP\r\n\r\n")
        conn.closed_by_peer(5)
        conn.close()

    up.on("/garbage", answer)
    d = Delta(proxy)
    r = proxy.request("POST", "/garbage", body=b"x")
    _local_reply(r, 502, "upstream_protocol_error")
    assert d["cluster.web.upstream_cx_protocol_error"] == 1


def test_stale_pooled_connection_closed_by_upstream_is_retried_transparently(shared):
    # the upstream closes every connection after one answer without saying so; a GET
    # that lands on such a pooled connection must not fail the client
    proxy, up = shared

    def answer(conn, req):
        conn.respond(200, req.target.encode())
        conn.close()

    up.on("/one-shot", answer)
    with proxy.connect() as c:
        for _ in range(4):
            r = c.request("GET", "/one-shot")
            assert r.status == 200 and r.body == b"/one-shot"


def test_no_endpoint_is_503(mosnx):
    proxy = mosnx([])
    r = proxy.request("GET", "/")
    _local_reply(r, 503, "no_healthy_upstream")


@pytest.mark.parametrize("timeout, at_least", [
    ("300ms", 0.25),    # a timer
    ("2s", 1.95),       # 2 s and more: the worker's 250 ms sweep
])
def test_route_timeout_is_504_and_upstream_connection_closed(upstream, mosnx, timeout, at_least):
    abandoned = threading.Event()

    def handler(conn):
        conn.read_request()
        if conn.closed_by_peer(20):
            abandoned.set()

    up = upstream(handler=handler)
    proxy = mosnx(up, route={"timeout": timeout})
    t0 = time.monotonic()
    r = proxy.request("GET", "/slow")
    elapsed = time.monotonic() - t0
    _local_reply(r, 504, "upstream_response_timeout")
    assert at_least <= elapsed < at_least + 4, elapsed
    assert abandoned.wait(5), "the timed-out upstream request must be abandoned"
    s = proxy.stats()
    assert s["cluster.web.upstream_rq_timeout"] == 1
    assert s["http.ingress.downstream_rq_timeout"] == 1
    assert s["http.ingress.local_reply.upstream_response_timeout"] == 1


def test_answered_requests_leave_no_swept_timeout_behind(upstream, mosnx):
    ok = upstream(on_request=lambda conn, req: conn.respond(200, b"fast"))
    proxy = mosnx(ok, route={"timeout": "2s"})
    for _ in range(3):
        assert proxy.request("GET", "/").status == 200
    time.sleep(2.5)
    assert proxy.stats().get("cluster.web.upstream_rq_timeout", 0) == 0


def test_route_timeout_starts_when_request_body_is_complete(upstream, mosnx):
    # Envoy's route timeout spans from the end of the downstream request to the end of
    # the response: a slow upload to a healthy upstream is not an upstream timeout
    up = upstream(on_request=lambda conn, req: conn.respond(200, b"%d" % len(req.body)))
    proxy = mosnx(up, route={"timeout": "500ms"})
    with proxy.connect() as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
        for _ in range(10):
            time.sleep(0.1)
            c.send(b"x")
        r = c.read_response("POST")
    assert r.status == 200 and r.body == b"10"


def test_slow_body_does_not_trip_route_timeout_once_response_started(upstream, mosnx):
    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        time.sleep(0.8)
        conn.send(b"def")

    up = upstream(on_request=answer)
    proxy = mosnx(up, route={"timeout": "300ms"})
    r = proxy.request("GET", "/")
    assert r.status == 200 and r.complete and r.body == b"abcdef"


@pytest.mark.parametrize("how", ["close", "reset"])
def test_upstream_dying_mid_content_length_body_truncates_client(shared, how):
    proxy, up = shared

    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
        time.sleep(0.2)
        getattr(conn, how)()

    path = up.on(f"/die-cl-{how}", answer)
    d = Delta(proxy)
    with proxy.connect() as c:
        r = c.request("GET", path)
        assert r.status == 200
        assert not r.complete, "a short body must end with the connection, never look complete"
        assert len(r.body) < 100000
        assert c.closed(5)
    assert d["cluster.web.upstream_rq_rx_reset"] >= 1


@pytest.mark.parametrize("how", ["close", "reset"])
def test_upstream_dying_mid_chunked_body_gives_no_last_chunk(shared, how):
    proxy, up = shared

    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.2)
        getattr(conn, how)()

    path = up.on(f"/die-chunked-{how}", answer)
    with proxy.connect() as c:
        r = c.request("GET", path)
        assert r.status == 200 and r.framing == "chunked"
        assert not r.complete, "the client must not receive a terminating chunk"
        assert c.closed(5)


def test_upstream_dying_mid_close_delimited_body_is_not_completed_for_a_chunked_client(shared):
    # an upstream reset (not a FIN) inside a close-delimited body is an error, not the end
    proxy, up = shared

    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\n\r\n" + b"z" * 5000)
        time.sleep(0.2)
        conn.reset()

    up.on("/die-close-delimited", answer)
    with proxy.connect() as c:
        r = c.request("GET", "/die-close-delimited")
        assert r.status == 200
        assert not r.complete
        assert c.closed(5)


def _held_upstream(upstream, release: threading.Event):
    def answer(conn, req):
        if req.target == "/hold":
            release.wait(10)
        conn.respond(200, req.target.encode())
    return upstream(on_request=answer)


def test_connection_cap_overflow_is_503(upstream, mosnx):
    release = threading.Event()
    up = _held_upstream(upstream, release)
    proxy = mosnx(up, cluster={"circuit_breakers": {"max_connections": 1, "max_pending_requests": 0}})
    with proxy.connect() as first:
        first.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        up.wait_requests(1)
        r = proxy.request("GET", "/second")
        assert r.status == 503 and r.header("x-mosnx-error") in ("upstream_overflow", "upstream_rq_overflow"), r
        release.set()
        assert first.read_response().body == b"/hold"
    assert up.accepted == 1
    s = proxy.stats()
    assert s["cluster.web.upstream_rq_pending_overflow"] == 1
    assert s["cluster.web.upstream_cx_overflow"] >= 1
    assert proxy.request("GET", "/after").status == 200


def test_connection_cap_queues_pending_requests(upstream, mosnx):
    release = threading.Event()
    up = _held_upstream(upstream, release)
    proxy = mosnx(up, cluster={"circuit_breakers": {"max_connections": 1, "max_pending_requests": 5}})
    with proxy.connect() as first, proxy.connect() as second:
        first.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        up.wait_requests(1)
        second.send(b"GET /queued HTTP/1.1\r\nHost: t\r\n\r\n")
        proxy.wait_stat("cluster.web.upstream_rq_pending_total", 1)
        release.set()
        assert first.read_response().body == b"/hold"
        assert second.read_response().body == b"/queued"
    assert up.accepted == 1


def test_max_requests_overflow_is_503(upstream, mosnx):
    release = threading.Event()
    up = _held_upstream(upstream, release)
    proxy = mosnx(up, cluster={"circuit_breakers": {"max_requests": 1}})
    with proxy.connect() as first:
        first.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        up.wait_requests(1)
        r = proxy.request("GET", "/second")
        assert r.status == 503 and r.has("x-mosnx-error")
        release.set()
        assert first.read_response().status == 200


def test_connect_timeout_is_503(upstream, mosnx):
    # a listener whose accept queue is full never completes a handshake: the SYN is dropped
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        proxy = mosnx(port, cluster={"connect_timeout": "300ms"})
        t0 = time.monotonic()
        r = proxy.request("GET", "/")
        elapsed = time.monotonic() - t0
        assert r.status == 503, r
        assert r.header("x-mosnx-error") == "upstream_connect_timeout"
        assert elapsed < 5
        assert proxy.stat("cluster.web.upstream_cx_connect_timeout") == 1
    finally:
        for s in fillers:
            s.close()
        lsock.close()


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_going_away_releases_the_upstream_request(upstream, mosnx, how):
    # as Envoy and nginx do: a client that hangs up mid-request cancels the upstream request
    released = threading.Event()

    def answer(conn, req):
        if conn.closed_by_peer(20):
            released.set()

    up = upstream(on_request=answer)
    proxy = mosnx(up)
    c = proxy.connect()
    c.send(b"GET /abandoned HTTP/1.1\r\nHost: t\r\n\r\n")
    up.wait_requests(1)
    if how == "reset":
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    assert released.wait(5), "an abandoned upstream request must not keep its connection"
    assert proxy.wait_stat("http.ingress.downstream_rq_rx_reset", 1) == 1
    s = proxy.stats()
    assert s["http.ingress.downstream_rq_active"] == 0
    assert s["cluster.web.upstream_rq_active"] == 0


def test_early_upstream_response_to_an_unfinished_upload(upstream, mosnx):
    # the upstream answers before reading the body; the client gets that answer, and
    # then either the connection closes or, once the body is through, it carries on
    def handler(conn):
        if conn.index > 0:
            return up.serve(conn)
        conn.wire.read_until(b"\r\n\r\n", 10, "request head")
        conn.respond(413, b"too big", headers=[("Connection", "close")])
        conn.close()

    up = upstream(handler=handler)
    proxy = mosnx(up)
    size = 1_000_000
    with proxy.connect() as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size + b"x" * 1000)
        r = c.read_response("POST", timeout=10)
        assert r.status == 413 and r.body == b"too big"
        if r.header("connection") == "close":
            assert c.closed(5)
        else:
            c.send(b"x" * (size - 1000))
            assert c.request("GET", "/after").status == 200
