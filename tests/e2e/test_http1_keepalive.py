"""Keep-alive on both sides and pipelining, over real sockets."""
from __future__ import annotations

import threading


def test_keep_alive_client_and_upstream_connection_reused(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up)
    with proxy.connect() as c:
        for i in range(5):
            r = c.request("GET", f"/ka/{i}")
            assert r.status == 200 and r.body == b"ok", r
            assert r.header("connection") != "close"
    assert [m.target for m in up.requests] == [f"/ka/{i}" for i in range(5)]
    assert up.accepted == 1, "every request should reuse the one pooled upstream connection"
    assert proxy.stat("cluster.web.upstream_cx_total") == 1


def test_pooled_upstream_connection_shared_by_successive_clients(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up)
    for i in range(4):
        assert proxy.request("GET", f"/c{i}").status == 200
    assert up.accepted == 1


def test_client_connection_close_is_honoured(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up)
    with proxy.connect() as c:
        r = c.request("GET", "/", headers=[("Host", "t"), ("Connection", "close")])
        assert r.status == 200
        assert r.header("connection") == "close"
        assert c.closed(5), "the proxy must close after answering Connection: close"


def test_http10_client_without_keep_alive_gets_close(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up)
    with proxy.connect() as c:
        c.send(b"GET /old HTTP/1.0\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"ok"
        assert c.closed(5)
    # the proxy speaks 1.1 to the upstream whatever the client spoke
    assert up.requests[0].start == "GET /old HTTP/1.1"


def test_http10_keep_alive_client_kept(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up)
    with proxy.connect() as c:
        for _ in range(2):
            c.send(b"GET / HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.body == b"ok"
            assert r.header("connection") == "keep-alive"


def test_pipelined_requests_answered_in_order(upstream, mosnx):
    release = threading.Event()

    def answer(conn, req):
        if req.target == "/p0":
            # the first answer is late: later requests must still wait their turn
            release.wait(10)
        conn.respond(200, req.target.encode() + b"|" + req.body)

    up = upstream(on_request=answer)
    proxy = mosnx(up)
    with proxy.connect() as c:
        batch = b"".join([
            b"GET /p0 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"POST /p1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /p2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HEAD /p3 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /p4 HTTP/1.1\r\nHost: t\r\n\r\n",
        ])
        c.send(batch)
        up.wait_requests(1)
        release.set()
        bodies = [c.read_response().body for _ in range(3)]
        head = c.read_response("HEAD")
        last = c.read_response()
    assert bodies == [b"/p0|", b"/p1|hello", b"/p2|abc"]
    assert head.status == 200 and head.body == b""
    assert last.body == b"/p4|"
    assert [m.target for m in up.requests] == ["/p0", "/p1", "/p2", "/p3", "/p4"]


def test_many_pipelined_requests_in_one_write(upstream, mosnx):
    up = upstream(on_request=lambda conn, req: conn.respond(200, req.target.encode()))
    proxy = mosnx(up)
    n = 50
    with proxy.connect() as c:
        c.send(b"".join(b"GET /n%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(n)))
        got = [c.read_response().body for _ in range(n)]
    assert got == [b"/n%d" % i for i in range(n)]


def test_idle_client_connection_closed_after_idle_timeout(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up, listener={"timeouts": {"idle": "300ms"}})
    with proxy.connect() as c:
        assert c.request().status == 200
        assert c.closed(5), "an idle keep-alive connection outlives timeouts.idle"


def test_upstream_connection_close_is_not_reused(upstream, mosnx):
    def answer(conn, req):
        conn.respond(200, req.body or b"ok", headers=[("Connection", "close")])
        conn.close()

    up = upstream(on_request=answer)
    proxy = mosnx(up)
    with proxy.connect() as c:
        for i in range(3):
            # a POST is not replayed, so it fails if it lands on the closed connection
            r = c.request("POST", f"/p{i}", body=b"body%d" % i)
            assert r.status == 200 and r.body == b"body%d" % i
            assert r.header("connection") != "close", "the client's connection is not the upstream's"
    assert up.accepted == 3


def test_max_requests_per_connection(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up, cluster={"max_requests_per_connection": 2})
    with proxy.connect() as c:
        for _ in range(5):
            assert c.request().status == 200
    assert up.accepted == 3
    assert [len(conn.requests) for conn in up.conns] == [2, 2, 1]


def test_pooled_upstream_connection_closed_after_idle_timeout(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up, cluster={"idle_timeout": "300ms"})
    assert proxy.request().status == 200
    # the connection's serving thread is its one reader: it sees the proxy's close,
    # returns, and marks the connection done (reading here too would race it for the EOF)
    up.wait_for(lambda: up.conns[0].done, 5, "mosnx to close an idle pooled connection after idle_timeout")
    assert proxy.request().status == 200
    assert up.accepted == 2

