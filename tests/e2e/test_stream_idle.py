"""The stream idle timeout (`timeouts.stream_idle`, a route's `idle_timeout`): a stream
with no bytes either way for that long ends, over HTTP/1.1 and HTTP/2 alike; a stream
that keeps moving is never cut, however long it runs."""
from __future__ import annotations

import time

from .h2kit import H2Client


def _silent(conn):
    conn.read_request()
    conn.closed_by_peer(20)


def _stalls_mid_body(conn):
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
    conn.closed_by_peer(20)


def _trickles(conn):
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
    for b in b"trickled":       # 8 bytes over ~1.2 s: never idle for the 400 ms limit
        time.sleep(0.15)
        conn.send(bytes([b]))
    conn.closed_by_peer(20)


def _proxy(mosnx, up):
    # the route timeout is off, so only the idle timeout can end a stream
    return mosnx(up, route={"timeout": "0s"}, listener={"timeouts": {"stream_idle": "400ms"}})


def test_silent_upstream_is_504_after_the_stream_idle_timeout(upstream, mosnx):
    proxy = _proxy(mosnx, upstream(handler=_silent))
    t0 = time.monotonic()
    r = proxy.request("GET", "/")
    assert r.status == 504 and r.header("x-mosnx-error") == "stream_idle_timeout"
    assert 0.35 <= time.monotonic() - t0 < 5
    assert proxy.wait_stat("http.ingress.downstream_rq_idle_timeout", 1) == 1


def test_stalled_response_is_cut_not_ended(upstream, mosnx):
    proxy = _proxy(mosnx, upstream(handler=_stalls_mid_body))
    with proxy.connect() as c:
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"part"
        assert not r.complete, "a stalled body ends with the connection, never looks complete"
        assert c.closed(5)


def test_a_stream_that_keeps_moving_is_not_cut(upstream, mosnx):
    proxy = _proxy(mosnx, upstream(handler=_trickles))
    r = proxy.request("GET", "/")
    assert r.status == 200 and r.body == b"trickled"


def test_http2_stream_idle_timeout(upstream, mosnx):
    proxy = _proxy(mosnx, upstream(handler=_silent))
    with H2Client(proxy.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/")
        assert r.status == 504 and r.header("x-mosnx-error") == "stream_idle_timeout"
        assert 0.35 <= time.monotonic() - t0 < 5
        # the connection outlives its stream
        assert c.request("GET", "/again").status == 504
