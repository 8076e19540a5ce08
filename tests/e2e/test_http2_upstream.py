"""`protocol: http2` clusters: HTTP/1.1 and HTTP/2 clients to an h2c upstream,
multiplexed connections with a stream cap, trailers and `te: trailers` across the
translation, upstream resets and GOAWAY."""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from h2kit import H2Client, fixture_upstreams  # noqa: E402

from conftest import chunked  # noqa: E402

MiB = 1024 * 1024


@pytest.fixture
def h2_upstream():
    made, make = fixture_upstreams()
    yield make
    for u in made:
        u.stop()


def _h2_cluster(extra=None):
    c = {"protocol": "http2"}
    c.update(extra or {})
    return c


def test_http1_client_to_http2_upstream(h2_upstream, mosnx):
    up = h2_upstream()
    proxy = mosnx(up.address, cluster=_h2_cluster())
    r = proxy.request("POST", "/submit?q=1", headers=[("Host", "api.test"), ("X-A", "1")], body=b"hello")
    assert r.status == 200 and r.body == b"h2 POST /submit?q=1 5"
    req = up.requests[0]
    assert req.authority == "api.test" and req.scheme == "http" and req.body == b"hello"
    assert req.header("x-a") == "1" and req.header("host") is None
    assert req.header("connection") is None and req.header("transfer-encoding") is None


def test_trailers_and_te_cross_http1_to_http2_and_back(h2_upstream, mosnx):
    def handler(ex):
        req = ex.wait_end()
        ex.respond(200, [("content-type", "application/x")], b"body:" + req.body,
                   trailers=[("x-status", "0"), ("x-msg", "done")])
    up = h2_upstream(handler)
    proxy = mosnx(up.address, cluster=_h2_cluster())
    with proxy.connect() as c:
        c.send(b"POST /t HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked(b"abc", b"def", trailers=[("x-req-trailer", "yes")]))
        r = c.read_response()
    assert r.status == 200 and r.framing == "chunked" and r.body == b"body:abcdef"
    assert ("x-status", "0") in r.trailers and ("x-msg", "done") in r.trailers
    req = up.requests[0]
    assert req.header("te") == "trailers"
    assert req.trailers == [("x-req-trailer", "yes")]


def test_streams_share_one_upstream_connection(h2_upstream, mosnx):
    up = h2_upstream()
    proxy = mosnx(up.address, cluster=_h2_cluster())
    with H2Client(proxy.port) as c:
        sids = [c.start("GET", f"/m{i}") for i in range(30)]
        rs = [c.response(s, timeout=30) for s in sids]
    assert all(r.status == 200 for r in rs)
    assert [r.body for r in rs] == [f"h2 GET /m{i} 0".encode() for i in range(30)]
    assert len(up.conns) == 1


@pytest.mark.parametrize("cap_from", ["config", "settings"])
def test_stream_cap_opens_more_connections(h2_upstream, mosnx, cap_from):
    gate = threading.Event()

    def handler(ex):
        ex.wait_end()
        gate.wait(20)
        ex.respond(200, body=b"ok")
    if cap_from == "config":
        up = h2_upstream(handler)
        proxy = mosnx(up.address, cluster=_h2_cluster({"max_concurrent_streams": 2}))
    else:
        up = h2_upstream(handler, max_streams=2)
        proxy = mosnx(up.address, cluster=_h2_cluster())
        # the endpoint's SETTINGS arrive with its first connection
        with H2Client(proxy.port) as c:
            gate.set()
            assert c.request("GET", "/warm").status == 200
        gate.clear()
    try:
        with H2Client(proxy.port) as c:
            sids = [c.start("GET", f"/c{i}") for i in range(6)]
            up.wait_for(lambda: len([r for r in up.requests if r.path.startswith("/c")]) == 6, 20,
                        "six upstream streams")
            assert len(up.conns) == 3
            gate.set()
            assert all(c.response(s, timeout=30).status == 200 for s in sids)
    finally:
        gate.set()


def test_upstream_reset_before_response_is_a_503(h2_upstream, mosnx):
    def handler(ex):
        ex.wait_end()
        ex.reset(2)
    up = h2_upstream(handler)
    proxy = mosnx(up.address, cluster=_h2_cluster())
    r = proxy.request("GET", "/reset")
    assert r.status == 503
    assert r.header("x-mosnx-error") == "upstream_reset_before_response_started"
    # the connection survives a stream reset
    with H2Client(proxy.port) as c:
        assert c.request("GET", "/again").status == 503
    assert len(up.conns) == 1


def test_upstream_reset_mid_body_resets_the_client_stream(h2_upstream, mosnx):
    def handler(ex):
        ex.wait_end()
        ex.respond(200, body=b"partial", end=False)
        time.sleep(0.2)
        ex.reset(2)
    up = h2_upstream(handler)
    proxy = mosnx(up.address, cluster=_h2_cluster())
    with H2Client(proxy.port) as c:
        r = c.request("GET", "/cut")
    assert r.status == 200 and r.reset is not None and not r.ended


def test_large_bodies_both_ways_respect_flow_control(h2_upstream, mosnx):
    big = os.urandom(3 * MiB)

    def handler(ex):
        req = ex.wait_end(30)
        ex.respond(200, body=req.body[::-1])
    up = h2_upstream(handler)
    proxy = mosnx(up.address, cluster=_h2_cluster())
    with H2Client(proxy.port) as c:
        r = c.request("POST", "/big", body=big, timeout=60)
    assert r.status == 200 and r.body == big[::-1]
    r = proxy.request("POST", "/big1", body=big, timeout=60)
    assert r.status == 200 and r.body == big[::-1]


def test_upstream_goaway_lets_streams_finish_and_moves_new_ones(h2_upstream, mosnx):
    gate = threading.Event()

    def handler(ex):
        req = ex.wait_end()
        if req.path == "/first":
            sc = ex.sc
            sc.call(lambda: sc.conn.close_connection(last_stream_id=req.stream_id) if False else None)
            from hyperframe.frame import GoAwayFrame
            f = GoAwayFrame(0)
            f.last_stream_id = req.stream_id
            sc.call(lambda: sc.sock.sendall(f.serialize()))
            gate.wait(20)
        ex.respond(200, body=req.path.encode())
    up = h2_upstream(handler)
    proxy = mosnx(up.address, cluster=_h2_cluster())
    try:
        with H2Client(proxy.port) as c:
            first = c.start("GET", "/first")
            up.wait_for(lambda: len(up.requests) == 1, what="first request")
            time.sleep(0.3)
            second = c.request("GET", "/second")
            assert second.status == 200 and second.body == b"/second"
            assert len(up.conns) == 2
            gate.set()
            r = c.response(first)
            assert r.status == 200 and r.body == b"/first"
    finally:
        gate.set()


def test_refused_endpoint_is_a_503(mosnx, free_port):
    proxy = mosnx(free_port(), cluster=_h2_cluster())
    r = proxy.request("GET", "/")
    assert r.status == 503 and r.header("x-mosnx-error") == "upstream_connect_failure"


def test_a_retried_request_replays_its_head_and_body_to_the_next_http2_stream(h2_upstream, mosnx):
    """The request goes to an HTTP/2 upstream as fields and chunks; a retry sends the
    same head and the kept body again, on a new stream."""
    seen = []

    def handler(ex):
        req = ex.wait_end()
        seen.append((req.header("x-a"), req.header("content-length"), req.body))
        if len(seen) == 1:
            ex.respond(503, body=b"busy")
        else:
            ex.respond(200, body=b"got:" + req.body)
    up = h2_upstream(handler)
    proxy = mosnx(up.address, cluster=_h2_cluster(), route={"retry": {"num_retries": 2, "retry_on": "5xx"}})
    with proxy.connect() as c:
        c.send(b"POST /r HTTP/1.1\r\nHost: r\r\nX-A: 1\r\nContent-Length: 6\r\n\r\nabc")
        time.sleep(0.1)         # the body arrives in two reads, after the head has gone upstream
        c.send(b"def")
        r = c.read_response()
    assert r.status == 200 and r.body == b"got:abcdef"
    assert seen == [("1", "6", b"abcdef")] * 2


@pytest.mark.parametrize("refusals, status", [(1, 200), (2, 503)])
def test_a_stream_the_upstream_never_processed_is_made_once_more(h2_upstream, mosnx, refusals, status):
    """REFUSED_STREAM (as a GOAWAY's unprocessed streams) promises the request was not
    acted on: it is sent once more without a retry policy, but not forever."""
    def handler(ex):
        req = ex.wait_end()
        if len(up.requests) <= refusals:
            ex.reset(code=7)        # REFUSED_STREAM
        else:
            ex.respond(200, body=b"took " + req.path.encode())
    up = h2_upstream(handler)
    proxy = mosnx(up.address, cluster=_h2_cluster())
    r = proxy.request("DELETE", "/item")
    assert r.status == status
    if status == 200:
        assert r.body == b"took /item" and len(up.requests) == 2
    else:
        assert r.header("x-mosnx-error") == "upstream_refused_stream" and len(up.requests) == 2
    retries = [v for k, v in proxy.stats().items() if k.endswith(".upstream_rq_retry")]
    assert retries == [0]
