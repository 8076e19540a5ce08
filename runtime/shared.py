"""Limits a user sets per proxy, held once for all worker processes.

With N workers (separate processes) a circuit breaker or a rate limit must mean
what it means with one. The supervisor creates one memory-mapped file (in
/dev/shm) before it spawns workers and hands its path to them in the
environment (ENV); each worker maps it and takes its place by worker index.
On Linux the file is unlinked at once and workers open it as
/proc/<supervisor>/fd/<n>, so it disappears with the supervisor.
With one worker nothing is mapped and every limit stays a plain local count.

Invariants:
- The file holds a header, a directory and regions. A region is found by the
  digest of its name (a cluster's resource, a rate limit's bucket table), so
  every worker, and a worker spawned later, finds the same region; regions are
  allocated once and never move, so they survive reloads.
- Every change of shared state that reads more than one worker's word happens
  under flock on the file. flock is released by the kernel when a process dies,
  so a worker killed inside the critical section never wedges the others.
- Counted resources (LEASES regions) hold one int64 slot per worker: the part
  of the limit that worker holds. Only that worker writes its slot, except the
  supervisor, which zeroes a dead worker's slots (zero_worker) before it starts
  a replacement: a dead worker's counts do not leak.
- A worker only goes to shared memory when its lease runs out or its unused
  lease grows past the hold (see Lease): a request far below the limit costs a
  local integer comparison.
- Token and leaky buckets (BUCKETS regions) are tables of (key hash, a, b)
  rows read and written under the lock. A bucket that has refilled holds no
  state, so its row is free for another key.
"""
from __future__ import annotations

import fcntl
import logging
import hashlib
import mmap
import os
import struct
import tempfile
from typing import Callable

ENV = "MOSNX_SHARED_LIMITS"
MAGIC = b"MOSNXSL1"
HEADER = struct.Struct("<8sqqq")          # magic, workers, size, next free byte
DIRENT = struct.Struct("<16sqqq")         # name digest, kind, offset, length
DIR_ENTRIES = 16384                       # regions: four per cluster, one per rate limit filter
DIR_AT = 64
DATA_AT = DIR_AT + DIR_ENTRIES * DIRENT.size
DEFAULT_SIZE = 64 << 20                   # sparse: pages exist only once touched

LEASES, BUCKETS = 1, 2

# A lease is taken in chunks of limit // (CHUNK_DIV × workers): a worker's
# unused lease is below 2 chunks, so a worker is refused at most
# (workers − 1) × (2 × chunk − 1) below the limit, about 1/16 of it; a limit
# under CHUNK_DIV × workers has chunk 1 and is exact.
CHUNK_DIV = 32


class SegmentFull(Exception):
    """No room for another region: the caller falls back to a local limit."""


class Segment:
    """The mapped file: directory, regions, the lock. One per process."""

    def __init__(self, path: str, worker: int, fd: int, mm: mmap.mmap):
        self.path = path
        self.worker = worker                  # this process's slot; -1 in the supervisor
        self.fd = fd
        self.mm = mm
        magic, self.workers, self.size, _ = HEADER.unpack_from(mm, 0)
        if magic != MAGIC:
            raise ValueError(f"{path}: not a mosnx shared-limits file")
        self.q = memoryview(mm).cast("q")     # int64 words
        self.d = memoryview(mm).cast("d")     # float64 words, same bytes
        self._regions: dict[tuple, int] = {}
        # the owners (Lease.user) of the leases this process was ever granted: all
        # that a periodic settle needs to visit (with thousands of clusters, most never
        # take a lease in a given worker); the owner's user of the set takes them out
        self.in_use: set = set()

    @classmethod
    def create(cls, workers: int, size: int = DEFAULT_SIZE, directory: str | None = None) -> "Segment":
        directory = directory or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir())
        fd, path = tempfile.mkstemp(prefix="mosnx-limits-", dir=directory)
        os.ftruncate(fd, size)
        mm = mmap.mmap(fd, size)
        HEADER.pack_into(mm, 0, MAGIC, workers, size, DATA_AT)
        proc = f"/proc/{os.getpid()}/fd/{fd}"
        if os.path.exists(proc):
            # workers open it through our descriptor: no name is left behind in
            # /dev/shm, even when the supervisor is killed
            os.unlink(path)
            path = proc
        return cls(path, -1, fd, mm)

    @classmethod
    def attach(cls, path: str, worker: int) -> "Segment":
        fd = os.open(path, os.O_RDWR)
        size = os.fstat(fd).st_size
        seg = cls(path, worker, fd, mmap.mmap(fd, size))
        if not 0 <= worker < seg.workers:
            raise ValueError(f"worker {worker} has no slot in {path} ({seg.workers} workers)")
        return seg

    def lock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def region(self, name: str, kind: int, length: int) -> int:
        """Byte offset of the region called `name`, made zeroed on first use."""
        length = (length + 7) & ~7
        off = self._regions.get((name, kind, length))
        if off is not None:
            return off
        digest = hashlib.blake2b(name.encode(), digest_size=16).digest()
        self.lock()
        try:
            i = int.from_bytes(digest[:4], "little") % DIR_ENTRIES
            for _ in range(DIR_ENTRIES):
                at = DIR_AT + i * DIRENT.size
                d, k, off, n = DIRENT.unpack_from(self.mm, at)
                if k == 0:
                    _, _, _, free = HEADER.unpack_from(self.mm, 0)
                    if free + length > self.size:
                        raise SegmentFull(name)
                    HEADER.pack_into(self.mm, 0, MAGIC, self.workers, self.size, free + length)
                    DIRENT.pack_into(self.mm, at, digest, kind, free, length)
                    off = free
                    break
                if d == digest:
                    if k != kind or n != length:
                        raise ValueError(f"shared region {name!r} exists with another shape")
                    break
                i = (i + 1) % DIR_ENTRIES
            else:
                raise SegmentFull(name)
        finally:
            self.unlock()
        self._regions[(name, kind, length)] = off
        return off

    def zero_worker(self, worker: int) -> int:
        """A worker is gone: drop what it held in every counted resource. Returns how many."""
        n = 0
        self.lock()
        try:
            for i in range(DIR_ENTRIES):
                _, k, off, _ = DIRENT.unpack_from(self.mm, DIR_AT + i * DIRENT.size)
                if k == LEASES:
                    self.q[off // 8 + worker] = 0
                    n += 1
        finally:
            self.unlock()
        return n

    def close(self) -> None:
        self.q.release()
        self.d.release()
        self.mm.close()
        os.close(self.fd)

    def unlink(self) -> None:
        if self.path.startswith("/proc/"):
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass


# ------------------------------------------------------------------ counted resources
class Lease:
    """This worker's share of one per-proxy limit on a count (connections, requests...).

    The proxy-wide invariant: the sum of every worker's lease never grows past
    `limit` by grant(); a worker counts locally while its count stays under its
    lease. room(used) is the limit as this worker may compare `used` with it.
    """

    __slots__ = ("seg", "base", "slot", "workers", "limit", "chunk", "hold", "lease", "user")

    def __init__(self, seg: Segment, name: str, limit: int, user: object = None):
        self.seg = seg
        self.user = user                # joins seg.in_use when this lease grows
        self.workers = seg.workers
        self.base = seg.region(name, LEASES, 8 * seg.workers) // 8
        self.slot = self.base + seg.worker
        self.lease = 0
        seg.q[self.slot] = 0            # a new process holds nothing yet
        self.configure(limit)

    def configure(self, limit: int) -> None:
        self.limit = limit
        self.chunk = max(1, limit // (CHUNK_DIV * self.workers))
        # unused lease kept before giving some back: 0 when exact, else below 2 chunks
        self.hold = 0 if self.chunk == 1 else 2 * self.chunk - 1

    def room(self, used: int) -> int:
        """What `used` is compared with: this worker's lease, grown if it is used up."""
        return self.lease if used < self.lease else self.grant(used)

    def grant(self, used: int) -> int:
        want = used + 1 - self.lease
        seg = self.seg
        q = seg.q
        seg.lock()
        try:
            total = sum(q[self.base:self.base + self.workers])
            take = min(max(self.chunk, want), self.limit - total)
            if take > 0:
                self.lease += take
                q[self.slot] = self.lease
        finally:
            seg.unlock()
        if self.user is not None:
            seg.in_use.add(self.user)
        return self.lease

    def cover(self, used: int) -> None:
        """Counted past the lease without asking (a pool's first connection to a
        host): record it, so the other workers see the whole count."""
        self.lease = used
        self.seg.q[self.slot] = used
        if self.user is not None:
            self.seg.in_use.add(self.user)

    def settle(self, used: int) -> None:
        """After the count went down: give back unused lease beyond the hold.
        Only this worker's slot is written, so no lock is needed."""
        if self.lease - used > self.hold:
            self.lease = used + (self.chunk if self.hold else 0)
            self.seg.q[self.slot] = self.lease

    def total(self) -> int:
        """Every worker's lease: the proxy-wide count, as /clusters can show it."""
        return sum(self.seg.q[self.base:self.base + self.workers])


class Board:
    """One number per worker that the others read: what each worker reports of
    itself (how many of its requests wait for a connection it may not open).
    Written by its worker only; zeroed with the worker's leases when it dies."""

    __slots__ = ("seg", "base", "slot", "workers", "value")

    def __init__(self, seg: Segment, name: str):
        self.seg = seg
        self.workers = seg.workers
        self.base = seg.region(name, LEASES, 8 * seg.workers) // 8
        self.slot = self.base + seg.worker
        self.value = 0
        seg.q[self.slot] = 0

    def publish(self, n: int) -> None:
        if n != self.value:
            self.value = n
            self.seg.q[self.slot] = n

    def total(self) -> int:
        return sum(self.seg.q[self.base:self.base + self.workers])


# ------------------------------------------------------------------ buckets
ROW = 3            # words per bucket row: key hash (int64), a, b (float64)
PROBES = 8


def key_hash(key: object) -> int:
    """A key's hash, the same in every process (str's hash() is salted per process)."""
    if key is None:
        return 1
    raw = key if isinstance(key, bytes) else str(key).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little", signed=True) or 1


class BucketTable:
    """Rows of bucket state shared by every worker, looked up by key hash.

    `score(a, b, now)` says how stale a row is: >= 0 when it holds no state any
    more (its bucket has refilled, or its queue has drained), and such a row is
    free for another key. When all PROBES rows of a key's neighbourhood hold
    state, the stalest is taken over, which gives its key a fresh bucket: the
    same as the eviction of the least recently seen key in a worker's own table.
    The region's first word is the snapshot version that last claimed it: a
    reload starts with fresh buckets, as it does with one worker.
    """

    __slots__ = ("seg", "base", "rows", "mask")

    def __init__(self, seg: Segment, name: str, rows: int, version: int):
        n = 1
        while n < rows:
            n <<= 1
        self.seg = seg
        self.rows = n
        self.mask = n - 1
        off = seg.region(f"{name}/{n}", BUCKETS, 8 * (1 + ROW * n))
        self.base = off // 8 + 1
        seg.lock()
        try:
            if seg.q[off // 8] < version:
                seg.mm[off:off + 8 * (1 + ROW * n)] = bytes(8 * (1 + ROW * n))
                seg.q[off // 8] = version
        finally:
            seg.unlock()

    def row(self, h: int, now: float, score: Callable[[float, float, float], float]) -> int:
        """Word index of the row for key hash `h` (call with the lock held). A
        row new to its key has a = b = 0."""
        q = self.seg.q
        d = self.seg.d
        i = h & self.mask
        best = -1
        best_score = float("-inf")
        for _ in range(min(PROBES, self.rows)):
            w = self.base + i * ROW
            k = q[w]
            if k == h:
                return w
            s = float("inf") if k == 0 else score(d[w + 1], d[w + 2], now)
            if s > best_score:
                best, best_score = w, s
            i = (i + 1) & self.mask
        q[best] = h
        d[best + 1] = 0.0
        d[best + 2] = 0.0
        return best


# ------------------------------------------------------------------ this process
_current: Segment | None = None


def current() -> Segment | None:
    """The segment this worker shares, or None (one worker, tests, config checks)."""
    return _current


def attach_from_env(worker: int) -> Segment | None:
    """In a worker process: map the segment the supervisor named in ENV. A
    segment that cannot be mapped leaves this worker's limits its own, and says so."""
    global _current
    path = os.environ.get(ENV)
    if path and _current is None:
        try:
            _current = Segment.attach(path, worker)
        except (OSError, ValueError) as e:
            logging.getLogger("mosnx.worker").error(
                "shared limits unavailable (%s): this worker enforces circuit breakers and rate limits alone", e)
    return _current


def set_current(seg: Segment | None) -> None:
    global _current
    _current = seg


# Rate limit filters of one snapshot are numbered in the order they are built,
# which is the same in every worker; a reload builds them again from 0.
_build = {"version": 0, "next": 0}


def begin_build(version: int) -> None:
    _build["version"] = version
    _build["next"] = 0


def filter_ids_taken() -> int:
    """How many filters took an id since begin_build() (build_snapshot() does not
    reuse a listener whose filters hold shared state)."""
    return _build["next"]


def next_filter_id() -> tuple[int, int]:
    """(snapshot version, ordinal) of the filter being built."""
    n = _build["next"]
    _build["next"] = n + 1
    return _build["version"], n
