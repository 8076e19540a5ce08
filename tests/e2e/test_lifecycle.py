"""Worker processes and shutdown: several workers share one port and their stats are
summed; SIGTERM drains in-flight requests, refuses new connections and exits 0."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_two_workers_serve_one_port_and_stats_are_summed(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up, workers=2)
    assert len(proxy.worker_pids()) == 2
    before = proxy.stat("http.ingress.downstream_rq_total")
    n = 40
    for i in range(n):
        assert proxy.request("GET", f"/w{i}").status == 200
    s = proxy.stats()
    assert s["http.ingress.downstream_rq_total"] - before == n
    assert s["http.ingress.downstream_rq_2xx"] == n
    assert s["cluster.web.upstream_rq_total"] == n
    assert len(up.requests) == n
    assert proxy.admin_json("/server_info")["workers"] == 2
    assert proxy.stop() == 0


def test_both_workers_accept_connections(upstream, mosnx):
    # SO_REUSEPORT spreads connections by hash: with many connections each worker gets some
    up = upstream()
    proxy = mosnx(up, workers=2)
    for i in range(40):
        assert proxy.request("GET", f"/spread{i}").status == 200
    # each worker opens its own pooled upstream connection when it serves anything
    assert up.accepted == 2


def test_sigterm_drains_in_flight_request_refuses_new_and_exits_0(upstream, mosnx):
    release = threading.Event()

    def answer(conn, req):
        release.wait(15)
        conn.respond(200, b"finished")

    up = upstream(on_request=answer)
    proxy = mosnx(up, listener={"timeouts": {"drain": "10s"}})
    c = proxy.connect(timeout=20)
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    up.wait_requests(1)
    proxy.signal(signal.SIGTERM)
    proxy.wait_until(lambda: _refused(proxy.port), 10, "the listener to stop accepting")
    assert proxy.proc.poll() is None, "the process must wait for the in-flight request"
    release.set()
    r = c.read_response(timeout=10)
    assert r.status == 200 and r.body == b"finished"
    assert r.header("connection") == "close"
    assert c.closed(5)
    c.close()
    assert proxy.wait_exit(15) == 0


def test_sigterm_closes_idle_keep_alive_connections(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up)
    with proxy.connect() as c:
        assert c.request().status == 200
        proxy.signal(signal.SIGTERM)
        assert c.closed(10), "an idle connection is closed at once on drain"
    assert proxy.wait_exit(15) == 0


def test_drain_deadline_ends_stuck_requests(upstream, mosnx):
    def answer(conn, req):
        conn.closed_by_peer(30)          # never answers

    up = upstream(on_request=answer)
    proxy = mosnx(up, route={"timeout": "60s"}, listener={"timeouts": {"drain": "1s"}})
    with proxy.connect(timeout=20) as c:
        c.send(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
        up.wait_requests(1)
        t0 = time.monotonic()
        proxy.signal(signal.SIGTERM)
        assert proxy.wait_exit(15) == 0
        assert time.monotonic() - t0 < 8, "timeouts.drain bounds the shutdown"
        assert c.closed(5)


def test_sigterm_when_idle_exits_0_promptly(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up, workers=2)
    pids = proxy.worker_pids()
    t0 = time.monotonic()
    assert proxy.stop() == 0
    assert time.monotonic() - t0 < 8
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), f"worker {pid} outlived the supervisor"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sigint_also_drains(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up)
    assert proxy.request().status == 200
    proxy.signal(signal.SIGINT)
    assert proxy.wait_exit(15) == 0


def test_dead_worker_is_replaced(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up, workers=2)
    old = proxy.worker_pids()[0]
    assert old != proxy.pid
    os.kill(old, signal.SIGKILL)
    new = proxy.wait_until(lambda: len([p for p in proxy.worker_pids() if p != old]) == 2, 20,
                           "a replacement worker")
    assert new
    proxy.wait_until(lambda: not _refused(proxy.port), 20, "the replacement to listen")
    proxy.wait_until(lambda: _ok(proxy), 20, "the replacement to serve")


def _ok(proxy) -> bool:
    try:
        return proxy.request("GET", "/").status == 200
    except OSError:
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_ready_and_server_info_report_live(upstream, mosnx, workers):
    up = upstream()
    proxy = mosnx(up, workers=workers)
    info = proxy.admin_json("/server_info")
    assert info["state"] == "LIVE"
    assert info["workers"] == workers
    assert info["pid"] == proxy.pid
