"""The connection accounting every upstream connection pool shares.

Invariants: a connection counts in the cluster's cx_active (its max_connections
breaker), its upstream_cx_active gauge and its upstream_cx_total from the moment
its connect starts until it closes or the connect fails, exactly once each way;
a queued stream counts in the cluster's rq_pending (its max_pending_requests
breaker) from the moment it is queued until it leaves the queue, whichever way it
leaves. A pool's own cx_active is the same count for its host alone. Only the
helpers here move these counts, so the HTTP/1.1 pool (pool.Pool), the HTTP/2 pool
(http2.H2Pool) and the TCP proxy cannot drift apart. None of this runs per request
on a pool's fast path (an idle connection handed out, a stream on a connection
with room): only when a connection opens or closes, or a stream must wait.
"""
from __future__ import annotations

from typing import Any, cast

from collections import deque

OVERFLOW = object()   # acquire() result: the cluster's breakers refused the request
# a pool's queue until a stream first waits: an empty deque is some 600 bytes, and most
# hosts never queue (200,000 endpoints under xDS: 120 MiB a worker). Only _queue adds
# to the queue; every other use reads it, or takes from it once it is not empty.
NO_WAITERS = cast(deque, ())
# a pool's idle list until its first connection opens (an empty list is 56 bytes): a
# connection is idle only once opened, so every use that adds to the list or takes a
# connection from it comes after _cx_opening made it
NO_IDLE = cast(list, ())


def count_cx_open(cluster: Any) -> None:
    """A connection to one of the cluster's endpoints starts connecting."""
    cluster.cx_active += 1
    cluster.cx_active_gauge.value += 1
    cluster.c["upstream_cx_total"].value += 1


def count_cx_closed(cluster: Any) -> None:
    """A connection counted by count_cx_open closed, or never connected."""
    cluster.cx_active -= 1
    cluster.cx_active_gauge.value -= 1


class PoolBase:
    """Per-host pool state and the accounting both pools do the same way; a pool adds
    how it hands out connections (acquire/release) and opens them (_connect)."""

    __slots__ = ("host", "idle", "cx_active", "connecting", "waiters", "retired")

    def __init__(self, host):
        self.host = host
        self.idle: list = NO_IDLE        # LIFO: the warmest connection first; made by _cx_opening
        self.cx_active = 0               # open or opening connections, idle or busy
        self.connecting = 0
        self.waiters: deque = NO_WAITERS   # made by _queue, the first time a stream waits
        self.retired = False

    # -- connections --
    def _cx_opening(self) -> None:
        if self.idle is NO_IDLE:
            self.idle = []
        count_cx_open(self.host.cluster)
        self.cx_active += 1

    def _cx_gone(self) -> None:
        self.cx_active -= 1
        count_cx_closed(self.host.cluster)

    def _cx_failed(self) -> None:
        self.host.cluster.c["upstream_cx_connect_fail"].value += 1
        self._cx_gone()

    def _cx_closed(self, conn: Any) -> None:
        """An open connection closed: it leaves the idle list and the counts."""
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        self._cx_gone()

    def cluster_has_room(self) -> bool:
        cluster = self.host.cluster
        return cluster.cx_active < cluster.cb.max_connections

    # -- streams waiting for a connection --
    def _queue(self, stream: Any) -> None:
        cluster = self.host.cluster
        cluster.c["upstream_rq_pending_total"].value += 1
        cluster.rq_pending += 1
        if self.waiters is NO_WAITERS:
            self.waiters = deque()
        self.waiters.append(stream)

    def _wait(self, stream):
        """At the connection limit: queue `stream` under the cluster's
        max_pending_requests (None), or refuse it (OVERFLOW)."""
        cluster = self.host.cluster
        cluster.c["upstream_cx_overflow"].value += 1
        if cluster.rq_pending >= cluster.cb.max_pending_requests:
            cluster.c["upstream_rq_pending_overflow"].value += 1
            return OVERFLOW
        self._queue(stream)
        return None

    def _next_waiter(self):
        self.host.cluster.rq_pending -= 1
        return self.waiters.popleft()

    def cancel(self, stream: Any) -> None:
        """The stream gave up waiting (timeout, client gone)."""
        if not self.waiters:
            return
        try:
            self.waiters.remove(stream)
        except ValueError:
            return
        self.host.cluster.rq_pending -= 1

    def _fail_waiters(self, n: int, detail: str) -> None:
        """The first `n` queued streams fail with `detail` (503)."""
        for _ in range(n):
            s = self._next_waiter()
            if s.alive:
                s.on_pool_failure(detail, 503)

    def retire(self) -> None:
        """The endpoint left the cluster: its connections close (idle ones now, busy
        ones when done) and no queued stream will get one."""
        self.retired = True
        self._retire_connections()
        self._fail_waiters(len(self.waiters), "upstream_removed")

    def _retire_connections(self) -> None:
        raise NotImplementedError
