"""Mirroring through a real mosnx: copies (with bodies that fit limits.retry_buffer) reach
the shadow cluster with a -shadow Host, and never hold up or fail the real request."""
from __future__ import annotations

import threading
import time

WAIT = 15.0


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def wait_until(pred, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def setup(upstream, mosnx, shadow_answer=None, percent=None, listener=None):
    live = upstream(on_request=lambda conn, req: conn.respond(200, b"live:" + req.body))
    shadow = upstream(on_request=shadow_answer) if shadow_answer else upstream()
    mirror = {"cluster": "shadow"}
    if percent is not None:
        mirror["percent"] = percent
    proxy = mosnx([live], clusters={"shadow": [shadow]}, route={"mirror": mirror}, listener=listener)
    return live, shadow, proxy


def test_a_get_is_copied_with_a_shadow_host(upstream, mosnx):
    live, shadow, proxy = setup(upstream, mosnx)
    r = proxy.request("GET", "/reviews?x=1", headers=[("Host", "reviews:9080"), ("x-user", "jason")])
    assert r.status == 200 and r.body == b"live:"
    copy = shadow.wait_requests(1)[0]
    assert copy.target == "/reviews?x=1"
    assert copy.header("host") == "reviews-shadow:9080"
    assert copy.header("x-user") == "jason"
    assert live.requests[0].header("host") == "reviews:9080"


def test_request_bodies_are_copied(upstream, mosnx):
    live, shadow, proxy = setup(upstream, mosnx)
    body = b"0123456789" * 200
    assert proxy.request("POST", "/a", body=body).body == b"live:" + body
    with proxy.connect() as c:
        c.send(b"PUT /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"abc", b"defg"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"live:abcdefg"
    copies = shadow.wait_requests(2)
    got = {m.target: m.body for m in copies}
    assert got == {"/a": body, "/b": b"abcdefg"}


def test_a_body_over_the_retry_buffer_is_not_copied(upstream, mosnx):
    live, shadow, proxy = setup(upstream, mosnx, listener={"limits": {"retry_buffer": "1KiB"}})
    big = b"x" * 5000
    assert proxy.request("POST", "/big", body=big).body == b"live:" + big
    with proxy.connect() as c:      # chunked: the size is only known as it streams
        c.send(b"POST /big2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked(b"y" * 800, b"y" * 800))
        assert c.read_response().status == 200
    assert proxy.request("POST", "/small", body=b"s").status == 200
    shadow.wait_requests(1)
    assert [m.target for m in shadow.requests] == ["/small"]
    assert proxy.stat("server.mirror_skipped_body") == 2


def test_a_slow_or_dead_shadow_never_holds_the_real_request(upstream, mosnx, free_port):
    gate = threading.Event()

    def stuck(conn, req):
        gate.wait(WAIT)
        conn.respond(500, b"")
    live, shadow, proxy = setup(upstream, mosnx, shadow_answer=stuck)
    try:
        for i in range(3):
            r = proxy.request("POST", f"/{i}", body=b"payload")
            assert r.status == 200 and r.body == b"live:payload"
        shadow.wait_requests(3)     # every copy is still waiting while the real answers came back
    finally:
        gate.set()
    dead = mosnx([live], clusters={"shadow": [f"127.0.0.1:{free_port()}"]}, route={"mirror": {"cluster": "shadow"}})
    for _ in range(3):
        assert dead.request("GET", "/").status == 200
    wait_until(lambda: dead.stat("server.mirror_requests") >= 3)


def test_percent_samples_the_copies(upstream, mosnx):
    live, shadow, proxy = setup(upstream, mosnx, percent=0)
    with proxy.connect() as c:
        for i in range(10):
            assert c.request("GET", f"/{i}").status == 200
    assert proxy.stat("server.mirror_requests") == 0
    live, shadow, proxy = setup(upstream, mosnx, percent=50)
    with proxy.connect() as c:
        for i in range(200):
            assert c.request("GET", f"/{i}").status == 200
    n = proxy.stat("server.mirror_requests")
    assert 60 <= n <= 140, n
