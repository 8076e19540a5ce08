"""Flow control: a slow side must not make the proxy buffer what the fast side sends.

The proxy worker's resident memory is sampled from /proc while a large body moves
through it at a rate the slow side dictates; it must stay within 64 MiB of where
it started. The transfer is much larger than that bound, so a proxy that buffers
fails clearly.
"""
from __future__ import annotations

import socket
import time

MiB = 1024 * 1024
RSS_BOUND = 64 * MiB


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class RssWatch:
    """The largest RSS growth of the proxy's workers seen by `sample()`."""

    def __init__(self, proxy):
        self.pids = proxy.worker_pids()
        assert self.pids, "no worker processes found under the mosnx process"
        self.base = {p: _rss(p) for p in self.pids}
        self.peak = 0

    def sample(self) -> None:
        for p in self.pids:
            self.peak = max(self.peak, _rss(p) - self.base[p])


def test_slow_client_does_not_make_proxy_buffer_a_200mb_response(upstream, mosnx):
    total = 200 * MiB
    block = bytes(range(256)) * 4096        # 1 MiB

    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total // MiB):
            conn.send(block)                 # as fast as the proxy takes it

    up = upstream(on_request=answer, record=False)
    proxy = mosnx(up)
    watch = RssWatch(proxy)
    got = 0
    deadline = time.monotonic() + 60
    with proxy.connect(timeout=30, record=False) as c:
        c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        head = c.wire.read_until(b"\r\n\r\n", 10, "response head")
        assert head.startswith(b"HTTP/1.1 200"), head
        got = len(c.wire.buf)
        c.wire.buf.clear()
        last_sample = 0.0
        while got < total:
            assert time.monotonic() < deadline, f"only {got} of {total} bytes arrived"
            c.sock.settimeout(10)
            data = c.sock.recv(min(256 * 1024, total - got))
            assert data, f"connection closed after {got} of {total} bytes"
            got += len(data)
            time.sleep(0.01)                 # at most ~25 MB/s: far slower than loopback
            now = time.monotonic()
            if now - last_sample > 0.2:
                watch.sample()
                last_sample = now
    watch.sample()
    assert got == total
    print(f"peak worker RSS growth {watch.peak / MiB:.1f} MiB")
    assert watch.peak < RSS_BOUND, f"worker RSS grew by {watch.peak / MiB:.1f} MiB"


def test_slow_upstream_does_not_make_proxy_buffer_a_large_request_body(upstream, mosnx):
    total = 96 * MiB

    def slow_reader(conn):
        # read the head, then drain the body at a limited rate
        head = conn.wire.read_until(b"\r\n\r\n", 10, "request head")
        assert b"content-length: %d" % total in head.lower(), head
        left = total - len(conn.wire.buf)
        conn.wire.buf.clear()
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        while left > 0:
            conn.sock.settimeout(10)
            data = conn.sock.recv(min(256 * 1024, left))
            if not data:
                return
            left -= len(data)
            time.sleep(0.01)
        conn.respond(200, b"received")

    up = upstream(handler=slow_reader, record=False)
    proxy = mosnx(up)
    watch = RssWatch(proxy)
    block = b"u" * MiB
    with proxy.connect(timeout=30) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
        deadline = time.monotonic() + 60
        for _ in range(total // MiB):
            c.send(block)                    # blocks while the proxy holds the client back
            watch.sample()
            assert time.monotonic() < deadline
        r = c.read_response("POST", timeout=30)
    watch.sample()
    assert r.status == 200 and r.body == b"received"
    print(f"peak worker RSS growth {watch.peak / MiB:.1f} MiB")
    assert watch.peak < RSS_BOUND, f"worker RSS grew by {watch.peak / MiB:.1f} MiB"
