"""Per-proxy limits mean the same with N worker processes as with one: circuit
breakers and rate limits through a real mosnx run with --workers 1 and 2.

Connections land on workers by SO_REUSEPORT's hash, so each test opens many
(one per request): with two workers both take traffic, and what is asserted
holds however the connections were spread."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

WAIT = 20.0
HOLD = 0.3          # how long the upstream keeps each request
CLIENTS = 12


def counting(upstream):
    """An upstream that holds each request HOLD s and records the most it saw at once."""
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def answer(conn, req):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(HOLD)
        with lock:
            state["now"] -= 1
        conn.respond(200, b"done")
    return upstream(on_request=answer), state


def at_once(proxy, n, path="/", headers=None):
    """n requests, each on its own connection, all started together."""
    results: list = [None] * n
    start = threading.Barrier(n)

    def go(i):
        try:
            start.wait(WAIT)
            results[i] = proxy.request("GET", f"{path}{i}", headers=headers, timeout=WAIT)
        except Exception as e:  # noqa: BLE001  (asserted on below)
            results[i] = e
    ts = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WAIT + 5)
    return results


@pytest.mark.parametrize("workers", [1, 2])
def test_istio_circuit_breaking_task_admits_one_at_a_time(upstream, mosnx, workers):
    # Istio's task: maxConnections 1, http1MaxPendingRequests 1, maxRequestsPerConnection 1
    up, seen = counting(upstream)
    proxy = mosnx([up], workers=workers, cluster={
        "max_requests_per_connection": 1,
        "circuit_breakers": {"max_connections": 1, "max_pending_requests": 1, "max_requests": 1}})
    results = at_once(proxy, CLIENTS)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    ok = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status == 503]
    assert len(ok) + len(refused) == CLIENTS, [r.status for r in results]
    assert seen["max"] == 1, f"the upstream saw {seen['max']} requests at once"
    assert ok and refused
    assert {r.header("x-mosnx-error") for r in refused} <= {"upstream_overflow", "upstream_rq_overflow"}
    assert all(r.header("x-envoy-overloaded") == "true" for r in refused)
    overflow = (proxy.stat("cluster.web.upstream_rq_pending_overflow"))
    assert overflow == len(refused)
    # the breakers let requests through again once the load is gone
    assert proxy.request("GET", "/after").status == 200


@pytest.mark.parametrize("workers", [1, 2])
def test_limits_of_two_bound_the_whole_proxy(upstream, mosnx, workers):
    up, seen = counting(upstream)
    proxy = mosnx([up], workers=workers, cluster={"circuit_breakers": {
        "max_connections": 2, "max_pending_requests": 2, "max_requests": 2}})
    results = at_once(proxy, CLIENTS)
    statuses = [getattr(r, "status", r) for r in results]
    facts = (statuses, seen, up.accepted)
    assert set(statuses) <= {200, 503}, facts
    assert statuses.count(200) >= 2 and seen["max"] <= 2, facts
    # every connection carried an answered request, but for those a worker opened for a
    # request that overflowed while it connected: left idle, as Envoy's pools leave
    # them, at most one per connection slot
    assert up.accepted <= statuses.count(200) + 2, facts


@pytest.mark.parametrize("workers", [1, 2])
def test_an_idle_connection_in_one_worker_does_not_starve_another(upstream, mosnx, workers):
    # max_connections 1 and keep-alive: the one upstream connection stays idle in
    # the worker that opened it; a request that lands on another worker queues, and
    # the idle connection is closed for it (not left to answer 504 at the timeout)
    up = upstream()
    proxy = mosnx([up], workers=workers, cluster={"circuit_breakers": {"max_connections": 1}},
                  route={"timeout": "8s"})
    statuses = [proxy.request("GET", f"/{i}", timeout=WAIT).status for i in range(8)]
    assert statuses == [200] * 8, statuses


@pytest.mark.parametrize("workers", [1, 2])
def test_a_token_bucket_admits_the_same_with_n_workers(upstream, mosnx, workers):
    up = upstream()
    proxy = mosnx([up], workers=workers, listener={"filters": [{"rate_limit": {
        "token_bucket": {"max_tokens": 5, "tokens_per_fill": 1, "fill_interval": "1000s"}}}]})
    statuses = [proxy.request("GET", f"/{i}").status for i in range(20)]
    assert statuses.count(200) == 5, statuses
    assert statuses.count(429) == 15
    assert proxy.stat("rate_limit.rate_limited") == 15


@pytest.mark.parametrize("workers", [1, 2])
def test_a_keyed_bucket_admits_the_same_with_n_workers(upstream, mosnx, workers):
    up = upstream()
    proxy = mosnx([up], workers=workers, route={"rate_limit": {
        "key": 'request.headers["x-api-key"]',
        "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "1000s"}}})
    got = {k: [proxy.request("GET", "/", headers=[("Host", "t"), ("x-api-key", k)]).status
               for _ in range(8)].count(200) for k in ("alice", "bob")}
    assert got == {"alice": 2, "bob": 2}


def test_a_dead_workers_share_is_freed(upstream, mosnx):
    # a worker killed while it holds the only request slot: its replacement starts
    # and the proxy admits again, instead of refusing for ever
    release = threading.Event()
    up = upstream(on_request=lambda conn, req: (release.wait(WAIT), conn.respond(200, b"late")))
    proxy = mosnx([up], workers=2, cluster={"circuit_breakers": {"max_requests": 1}})
    holder = threading.Thread(target=lambda: _quiet(proxy.request, "GET", "/hold", timeout=WAIT), daemon=True)
    holder.start()
    up.wait_requests(1)
    before = set(proxy.worker_pids())
    r = proxy.request("GET", "/refused")
    assert r.status == 503 and r.header("x-mosnx-error") == "upstream_rq_overflow"
    # the process table is read, not waited on: look again for a while on a busy machine
    holders: list[int] = []
    deadline = time.monotonic() + 5.0
    while not holders and time.monotonic() < deadline:
        holders = [pid for pid in before if _holds_upstream(pid, up.port)]
        if not holders:
            time.sleep(0.05)
    assert len(holders) == 1, holders
    os.kill(holders[0], signal.SIGKILL)
    proxy.wait_until(lambda: len(set(proxy.worker_pids()) - before) == 1, WAIT, "a replacement worker")
    up.on_request = lambda conn, req: conn.respond(200, b"ok")
    try:
        statuses = [proxy.request("GET", f"/{i}").status for i in range(6)]
    finally:
        release.set()
    assert statuses.count(200) == 6, statuses


def _quiet(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except Exception:  # noqa: BLE001  (the connection dies with its worker)
        return None


def _holds_upstream(pid: int, port: int) -> bool:
    """Whether process `pid` has a TCP connection to 127.0.0.1:port."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return False
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[2] == want and parts[9] in inodes and parts[3] == "01":
                return True
    return False



@pytest.mark.parametrize("workers", [1, 2])
def test_max_requests_alone_holds_while_connections_open(upstream, mosnx, workers):
    # no connection or pending limit: requests that waited for connections opened
    # together are checked again as each takes its connection
    up, seen = counting(upstream)
    proxy = mosnx([up], workers=workers, cluster={"circuit_breakers": {"max_requests": 2}})
    results = at_once(proxy, CLIENTS)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    statuses = sorted(r.status for r in results)
    assert set(statuses) <= {200, 503}, statuses
    assert seen["max"] <= 2, f"the upstream saw {seen['max']} requests at once"
    assert statuses.count(200) >= 2
    assert proxy.request("GET", "/after").status == 200
