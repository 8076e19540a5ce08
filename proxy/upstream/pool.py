"""Per-host HTTP/1.1 connection pool with the cluster's connection circuit breakers.

acquire() is synchronous on the hot path: it hands back an idle connection when
there is one. Otherwise it starts a connect (if the cluster is under
max_connections) or queues the stream (if under max_pending_requests), and later
calls stream.on_pool_ready(conn) or stream.on_pool_failure(detail, status).
The breakers' counts and limits are the cluster's (cluster.py): with N workers
they are proxy-wide, and a queued stream is also woken by wake() when another
worker gave room back.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque

from ..tls import client_connect_args

_now = time.monotonic

OVERFLOW = object()   # acquire() result: the cluster's breakers refused the request


def wait_for_connection(pool, stream):
    """At the connection limit: queue `stream` on `pool` under the cluster's
    max_pending_requests (None), or refuse it (OVERFLOW). Shared by both pools."""
    cluster = pool.host.cluster
    cluster.c["upstream_cx_overflow"].value += 1
    if cluster.rq_pending >= cluster.cb.max_pending_requests:
        cluster.c["upstream_rq_pending_overflow"].value += 1
        return OVERFLOW
    cluster.c["upstream_rq_pending_total"].value += 1
    cluster.rq_pending += 1
    pool.waiters.append(stream)
    return None


def cancel_wait(pool, stream) -> None:
    """The stream gave up waiting (timeout, client gone)."""
    try:
        pool.waiters.remove(stream)
    except ValueError:
        return
    pool.host.cluster.rq_pending -= 1


class Pool:
    __slots__ = ("host", "idle", "cx_active", "waiters", "retired", "connecting")

    def __init__(self, host):
        self.host = host
        self.idle: list = []             # LIFO: the warmest connection first
        self.cx_active = 0               # open connections, idle or busy
        self.connecting = 0
        self.waiters: deque = deque()
        self.retired = False

    def acquire(self, stream):
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():     # still usable
                conn.take()
                return conn
        cluster = self.host.cluster
        if cluster.cx_active < cluster.cb.max_connections:
            self._connect(stream)
            return None
        if self.cx_active == 0 and not cluster.shared:
            # as Envoy: the limit is the cluster's, but a host with no connection at all
            # gets one, or its queued requests would wait on other hosts' connections.
            # Not with N workers: there every worker's pool would get one past a
            # proxy-wide limit; the request queues and the sweep's wake() retries.
            cluster.c["upstream_cx_overflow"].value += 1
            self._connect(stream)
            return None
        return wait_for_connection(self, stream)

    def cancel(self, stream) -> None:
        cancel_wait(self, stream)

    def release(self, conn, reusable: bool) -> None:
        cluster = self.host.cluster
        limit = cluster.config.max_requests_per_connection
        if not reusable or self.retired or conn.closed or (limit and conn.requests >= limit):
            conn.close()
            return
        if self.waiters:
            stream = self.waiters.popleft()
            cluster.rq_pending -= 1
            conn.take()
            stream.on_pool_ready(conn)
            return
        self.idle.append(conn)
        conn.park(_now())

    def on_closed(self, conn) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        self.cx_active -= 1
        cluster = self.host.cluster
        cluster.cx_active -= 1
        cluster.cx_active_gauge.value -= 1
        if self.waiters and not self.retired and cluster.cx_active < cluster.cb.max_connections:
            stream = self.waiters.popleft()
            cluster.rq_pending -= 1
            self._connect(stream)

    def wake(self) -> None:
        """Connect queued streams while the cluster has room (with N workers, the
        room another worker's closed connection gave back)."""
        cluster = self.host.cluster
        while self.waiters and not self.retired and cluster.cx_active < cluster.cb.max_connections:
            stream = self.waiters.popleft()
            cluster.rq_pending -= 1
            self._connect(stream)

    def _connect(self, stream) -> None:
        cluster = self.host.cluster
        cluster.cx_active += 1
        cluster.cx_active_gauge.value += 1
        cluster.c["upstream_cx_total"].value += 1
        self.cx_active += 1
        asyncio.get_running_loop().create_task(self._open(stream))

    async def _open(self, stream) -> None:
        from .http1 import UpstreamConnection
        cluster = self.host.cluster
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(cluster.config.connect_timeout):
                _, conn = await loop.create_connection(lambda: UpstreamConnection(self),
                                                       self.host.host, self.host.port,
                                                       **client_connect_args(cluster.config, self.host.host))
        except (TimeoutError, asyncio.TimeoutError):
            self._failed(stream, "upstream_connect_timeout")
            cluster.c["upstream_cx_connect_timeout"].value += 1
            return
        except OSError:
            self._failed(stream, "upstream_connect_failure")
            return
        conn.take()
        if stream.alive:
            stream.on_pool_ready(conn)
        else:
            self.release(conn, True)

    def _failed(self, stream, detail: str) -> None:
        cluster = self.host.cluster
        cluster.c["upstream_cx_connect_fail"].value += 1
        self.cx_active -= 1
        cluster.cx_active -= 1
        cluster.cx_active_gauge.value -= 1
        if stream.alive:
            stream.on_pool_failure(detail, 503)

    def sweep(self, now: float) -> None:
        """Close connections idle longer than the cluster's idle_timeout (oldest sit first)."""
        limit = self.host.cluster.config.idle_timeout
        if not limit:
            return
        idle = self.idle
        while idle and now - idle[0].idle_since > limit:
            idle.pop(0).close()

    def retire(self) -> None:
        """The endpoint left the cluster: close idle connections now, busy ones on release."""
        self.retired = True
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()
        while self.waiters:
            s = self.waiters.popleft()
            self.host.cluster.rq_pending -= 1
            if s.alive:
                s.on_pool_failure("upstream_removed", 503)
