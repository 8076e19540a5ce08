"""runtime/shared.py: per-proxy limits held in one segment for N worker processes.

Each "worker" here is its own attachment of the segment (its own descriptor and
mapping, as a worker process has); one test runs real spawned processes."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mosnx.runtime import shared as sh
from mosnx.runtime.filters.ratelimit import RateLimitConfig, RateLimitFilter


@pytest.fixture
def segment():
    made = []

    def make(workers=2, size=sh.DEFAULT_SIZE):
        seg = sh.Segment.create(workers, size)
        made.append(seg)
        views = [sh.Segment.attach(seg.path, i) for i in range(workers)]
        made.extend(views)
        return seg, views

    yield make
    sh.set_current(None)
    for s in reversed(made):
        s.close()
    for s in made:
        s.unlink()


# ------------------------------------------------------------------ segment
def test_a_region_is_found_by_name_from_every_worker(segment):
    sup, (a, b) = segment()
    assert a.region("cluster/web/rq_active", sh.LEASES, 16) == b.region("cluster/web/rq_active", sh.LEASES, 16)
    assert a.region("cluster/web/cx_active", sh.LEASES, 16) != a.region("cluster/web/rq_active", sh.LEASES, 16)


def test_a_region_asked_for_with_another_shape_is_an_error(segment):
    _, (a, _) = segment()
    a.region("x", sh.LEASES, 16)
    with pytest.raises(ValueError, match="another shape"):
        a.region("x", sh.BUCKETS, 64)


def test_a_full_segment_says_so(segment):
    _, (a, _) = segment(size=sh.DATA_AT + 64)
    a.region("fits", sh.LEASES, 64)
    with pytest.raises(sh.SegmentFull):
        a.region("does not", sh.LEASES, 8)


def test_attach_refuses_a_worker_without_a_slot(segment):
    sup, _ = segment(workers=2)
    with pytest.raises(ValueError, match="no slot"):
        sh.Segment.attach(sup.path, 2)


def test_the_file_leaves_no_name_behind(segment):
    sup, _ = segment()
    assert sup.path.startswith("/proc/"), "unlinked at once, opened through the supervisor's descriptor"


# ------------------------------------------------------------------ leases
def test_a_small_limit_is_exact_across_workers(segment):
    _, (a, b) = segment()
    la, lb = sh.Lease(a, "r", 2), sh.Lease(b, "r", 2)
    assert la.chunk == 1 and la.hold == 0
    assert 0 < la.room(0)            # a admits its first
    assert 0 < lb.room(0)            # b admits its first
    assert la.room(1) == 1           # the proxy holds 2: a's second is refused
    assert lb.room(1) == 1
    la.settle(0)                     # a's request ended: its share is free at once
    assert la.total() == 1
    assert lb.room(1) == 2           # so b may take it


def test_a_large_limit_is_leased_in_chunks_and_never_passed(segment):
    _, (a, b) = segment()
    limit = 1024
    la, lb = sh.Lease(a, "r", limit), sh.Lease(b, "r", limit)
    assert la.chunk == limit // (sh.CHUNK_DIV * 2)
    used = [0, 0]
    grants = 0
    # both workers count up as far as they are let: the proxy-wide total stops at the limit
    for _ in range(4 * limit):
        for i, lease in enumerate((la, lb)):
            before = lease.lease
            if used[i] < lease.room(used[i]):
                used[i] += 1
            grants += lease.lease != before
    assert sum(used) == limit
    assert la.total() == limit
    assert grants <= 2 * limit // la.chunk + 2, "one trip to shared memory per chunk, not per request"


def test_unused_lease_is_bounded_by_the_hold(segment):
    _, (a, b) = segment()
    la, lb = sh.Lease(a, "r", 1024), sh.Lease(b, "r", 1024)
    used = 0
    for _ in range(200):
        assert used < la.room(used)
        used += 1
    while used:
        used -= 1
        la.settle(used)
        assert la.lease - used <= la.hold
    # what a keeps unused is all b can be refused below the limit
    n = 0
    while n < lb.room(n):
        n += 1
    assert n >= 1024 - la.hold


def test_a_count_past_the_lease_is_shown_to_the_others(segment):
    _, (a, b) = segment()
    la, lb = sh.Lease(a, "r", 1), sh.Lease(b, "r", 1)
    la.cover(1)                      # a pool's first connection, counted without asking
    assert lb.room(0) == 0


def test_a_lease_that_grows_puts_its_user_in_the_process_in_use_set(segment):
    _, (a, b) = segment()
    owner, other = object(), object()
    la, lb = sh.Lease(a, "r", 4, owner), sh.Lease(b, "s", 4, other)
    assert a.in_use == set() and la.room(0) == 1
    assert a.in_use == {owner} and b.in_use == set()      # per process: the other worker's is its own
    lb.cover(2)
    assert b.in_use == {other}
    sh.Lease(a, "t", 4).room(0)                            # no user: nothing to visit
    assert a.in_use == {owner}


def test_a_lower_limit_after_a_reload_refuses_until_counts_come_down(segment):
    _, (a, b) = segment()
    la, lb = sh.Lease(a, "r", 4), sh.Lease(b, "r", 4)
    for n in range(3):
        assert n < la.room(n)
    la.configure(1)
    lb.configure(1)
    assert lb.room(0) == 0
    la.settle(0)
    assert lb.room(0) == 1


def test_the_supervisor_frees_a_dead_workers_share(segment):
    sup, (a, b) = segment()
    la, lb = sh.Lease(a, "cluster/web/rq_active", 1), sh.Lease(b, "cluster/web/rq_active", 1)
    assert la.room(0) == 1
    assert lb.room(0) == 0
    assert sup.zero_worker(0) >= 1   # worker 0 died holding its request
    assert lb.room(0) == 1


HAMMER = """
import sys
from mosnx.runtime import shared as sh
seg = sh.Segment.attach(sys.argv[1], int(sys.argv[2]))
limit, rounds = int(sys.argv[3]), int(sys.argv[4])
lease = sh.Lease(seg, "r", limit)
used = over = 0
for i in range(rounds):
    if i % 3 != 2 and used < lease.room(used):
        used += 1
    elif used:
        used -= 1
        lease.settle(used)
    if lease.total() > limit:
        over += 1
print(over)
"""


def test_worker_processes_never_pass_the_limit_together(segment):
    sup, _ = segment(workers=2)
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, sup.path, str(i), "5", "5000"],
                              stdout=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outs == ["0", "0"]


# ------------------------------------------------------------------ rate limits
class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _filters(views, cfg, key=None, version=1, clock=None):
    """The same filter as each worker builds it from one snapshot."""
    out = []
    for v in views:
        sh.set_current(v)
        sh.begin_build(version)
        out.append(RateLimitFilter(cfg, key, clock=clock or Clock()))
    sh.set_current(None)
    return out


class Ctx:
    """What the filter reads of a stream: only what its key getter asks."""
    def __init__(self, key=None):
        self.key = key


def _admitted(filters, n, ctx_for=lambda i: Ctx()):
    return sum(filters[i % len(filters)].on_request(ctx_for(i)) is None for i in range(n))


def test_a_token_bucket_is_the_proxys_not_each_workers(segment):
    _, views = segment()
    clock = Clock()
    fs = _filters(views, RateLimitConfig(rate=0.001, burst=5), clock=clock)
    assert fs[0].table is not None
    assert _admitted(fs, 20) == 5
    clock.t += 1000.0                 # one token back
    assert _admitted(fs, 4) == 1


def test_a_large_unkeyed_bucket_is_spent_from_local_chunks(segment):
    _, views = segment()
    burst = 1000
    fs = _filters(views, RateLimitConfig(rate=0.001, burst=burst))
    chunk = fs[0]._chunk
    assert chunk == burst // (sh.CHUNK_DIV * 2)
    n = _admitted(fs, 3 * burst)
    assert burst - 2 * chunk < n <= burst


def test_keyed_buckets_are_shared_per_key(segment):
    _, views = segment()
    cfg = RateLimitConfig(rate=0.001, burst=2, max_keys=100)
    fs = _filters(views, cfg, key=lambda ctx: ctx.key)

    def ctx_of(i):
        return Ctx("alice" if i % 4 < 2 else "bob")
    assert _admitted(fs, 40, ctx_of) == 4


def test_a_reload_starts_with_full_buckets_in_every_worker(segment):
    _, views = segment()
    cfg = RateLimitConfig(rate=0.001, burst=3)
    assert _admitted(_filters(views, cfg, version=1), 10) == 3
    assert _admitted(_filters(views, cfg, version=1), 10) == 0, "the same snapshot: the same buckets"
    assert _admitted(_filters(views, cfg, version=2), 10) == 3


def test_a_leaky_bucket_queues_across_workers(segment):
    _, views = segment()
    clock = Clock()
    fs = _filters(views, RateLimitConfig(rate=1.0, burst=3, algorithm="leaky_bucket"), clock=clock)
    replies = [fs[i % 2].on_request(Ctx()) for i in range(5)]
    assert replies[0] is None
    assert [type(r).__name__ for r in replies[1:3]] == ["Pause", "Pause"]
    assert [r.status for r in replies[3:]] == [429, 429]
    for r in replies[1:3]:
        r.awaitable.close()


def test_a_full_segment_leaves_the_filter_its_local_bucket(segment):
    _, views = segment(size=sh.DATA_AT + 64)
    fs = _filters(views, RateLimitConfig(rate=0.001, burst=3, max_keys=1000), key=lambda ctx: 1)
    assert fs[0].table is None
    assert _admitted(fs[:1], 10) == 3


def test_a_board_shows_each_workers_report_to_all_and_forgets_the_dead(segment):
    sup, (a, b) = segment()
    ba, bb = sh.Board(a, "cluster/web/starved"), sh.Board(b, "cluster/web/starved")
    ba.publish(3)
    bb.publish(1)
    assert ba.total() == bb.total() == 4
    sup.zero_worker(0)
    assert bb.total() == 1
