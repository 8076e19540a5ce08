"""The connection accounting both upstream pools share (proxy/upstream/pool_base.py):
the cluster's breaker counts, gauge and counters move the same way whichever pool
(HTTP/1.1 or HTTP/2) opens, closes or queues, and always come back to zero."""
from __future__ import annotations

import pytest

from mosnx.proxy.upstream.cluster import ClusterManager
from mosnx.proxy.upstream.http2 import H2Pool
from mosnx.proxy.upstream.pool import Pool
from mosnx.proxy.upstream.pool_base import NO_IDLE, NO_WAITERS, OVERFLOW, PoolBase, count_cx_closed, count_cx_open
from mosnx.runtime.model import CircuitBreakers, ClusterConfig, Endpoint
from mosnx.runtime.stats import Store

POOLS = [Pool, H2Pool]


class Waiting:
    """A stream waiting for a connection: what a pool calls back."""

    def __init__(self, alive: bool = True):
        self.alive = alive
        self.failed = None

    def on_pool_failure(self, detail: str, status: int) -> None:
        self.failed = (detail, status)


def cluster(**limits):
    m = ClusterManager(Store())
    m.update({"web": ClusterConfig(name="web", endpoints=(Endpoint("127.0.0.1", 9),),
                                   circuit_breakers=CircuitBreakers(**limits))})
    return m.get("web")


def counts(c) -> dict:
    return {"cx_active": c.cx_active, "gauge": c.cx_active_gauge.value,
            "cx_total": c.c["upstream_cx_total"].value, "connect_fail": c.c["upstream_cx_connect_fail"].value,
            "rq_pending": c.rq_pending, "pending_total": c.c["upstream_rq_pending_total"].value,
            "cx_overflow": c.c["upstream_cx_overflow"].value,
            "pending_overflow": c.c["upstream_rq_pending_overflow"].value}


def test_cluster_counts_open_and_close():
    c = cluster()
    count_cx_open(c)
    count_cx_open(c)
    assert (c.cx_active, c.cx_active_gauge.value, c.c["upstream_cx_total"].value) == (2, 2, 2)
    count_cx_closed(c)
    assert (c.cx_active, c.cx_active_gauge.value, c.c["upstream_cx_total"].value) == (1, 1, 2)


@pytest.mark.parametrize("kind", POOLS)
def test_a_connection_that_opens_and_closes_leaves_no_count(kind):
    c = cluster()
    pool = kind(c.hosts[0])
    assert isinstance(pool, PoolBase)
    pool._cx_opening()
    assert pool.cx_active == 1 and counts(c)["cx_active"] == 1 and counts(c)["gauge"] == 1
    conn = object()
    pool.idle.append(conn)
    pool._cx_closed(conn)
    assert pool.idle == [] and pool.cx_active == 0
    assert counts(c)["cx_active"] == 0 and counts(c)["gauge"] == 0 and counts(c)["cx_total"] == 1


@pytest.mark.parametrize("kind", POOLS)
def test_a_failed_connect_is_counted_once(kind):
    c = cluster()
    pool = kind(c.hosts[0])
    pool._cx_opening()
    pool._cx_failed()
    assert pool.cx_active == 0
    assert counts(c)["connect_fail"] == 1 and counts(c)["cx_total"] == 1
    assert counts(c)["cx_active"] == 0 and counts(c)["gauge"] == 0


@pytest.mark.parametrize("kind", POOLS)
def test_waiting_is_bounded_by_max_pending_requests(kind):
    c = cluster(max_pending_requests=1)
    pool = kind(c.hosts[0])
    first, second = Waiting(), Waiting()
    assert pool._wait(first) is None
    assert pool._wait(second) is OVERFLOW
    assert list(pool.waiters) == [first]
    got = counts(c)
    assert (got["rq_pending"], got["pending_total"], got["cx_overflow"], got["pending_overflow"]) == (1, 1, 2, 1)


@pytest.mark.parametrize("kind", POOLS)
def test_a_stream_that_gives_up_leaves_the_queue_once(kind):
    c = cluster()
    pool = kind(c.hosts[0])
    s = Waiting()
    pool._queue(s)
    pool.cancel(s)
    pool.cancel(s)          # again: already gone, counted once
    assert not pool.waiters and c.rq_pending == 0


@pytest.mark.parametrize("kind", POOLS)
def test_next_waiter_is_first_in_first_out(kind):
    c = cluster()
    pool = kind(c.hosts[0])
    a, b = Waiting(), Waiting()
    pool._queue(a)
    pool._queue(b)
    assert pool._next_waiter() is a and c.rq_pending == 1
    assert pool._next_waiter() is b and c.rq_pending == 0


@pytest.mark.parametrize("kind", POOLS)
def test_retire_fails_every_waiter_and_the_count_returns_to_zero(kind):
    c = cluster()
    pool = kind(c.hosts[0])
    alive, gone = Waiting(), Waiting(alive=False)
    pool._queue(alive)
    pool._queue(gone)
    pool.retire()
    assert pool.retired and not pool.waiters and c.rq_pending == 0
    assert alive.failed == ("upstream_removed", 503) and gone.failed is None


@pytest.mark.parametrize("kind", POOLS)
def test_fail_waiters_fails_only_the_first_n(kind):
    c = cluster()
    pool = kind(c.hosts[0])
    ws = [Waiting() for _ in range(3)]
    for w in ws:
        pool._queue(w)
    pool._fail_waiters(2, "upstream_connect_failure")
    assert [w.failed for w in ws] == [("upstream_connect_failure", 503)] * 2 + [None]
    assert list(pool.waiters) == ws[2:] and c.rq_pending == 1


def test_cluster_has_room_follows_max_connections():
    c = cluster(max_connections=1)
    pool = Pool(c.hosts[0])
    assert pool.cluster_has_room()
    pool._cx_opening()
    assert not pool.cluster_has_room()
    pool._cx_gone()
    assert pool.cluster_has_room()



@pytest.mark.parametrize("kind", POOLS)
def test_a_pool_makes_its_queue_when_a_stream_first_waits(kind):
    # an empty deque is some 600 bytes: a host that never queues keeps none
    c = cluster(max_pending_requests=2)
    pool, other = kind(c.hosts[0]), kind(c.hosts[0])
    assert pool.waiters is NO_WAITERS and other.waiters is NO_WAITERS
    pool.cancel(Waiting())                  # nothing queued: nothing to cancel, nothing counted
    assert c.rq_pending == 0
    s = Waiting()
    assert pool._wait(s) is None
    assert list(pool.waiters) == [s] and other.waiters is NO_WAITERS and not NO_WAITERS
    pool.cancel(s)
    assert not pool.waiters and c.rq_pending == 0
    pool.retire()                           # fails what waits: nothing
    assert s.failed is None


@pytest.mark.parametrize("kind", POOLS)
def test_a_pool_makes_its_idle_list_when_its_first_connection_opens(kind):
    c = cluster()
    pool = kind(c.hosts[0])
    assert pool.idle is NO_IDLE and not pool.idle
    pool.retire()                           # nothing opened: nothing to close
    pool = kind(c.hosts[0])
    pool._cx_opening()
    assert pool.idle == [] and pool.idle is not NO_IDLE and NO_IDLE == ()
