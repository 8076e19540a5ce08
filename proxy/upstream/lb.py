"""Load balancers: pick a host among a cluster's healthy hosts.

A balancer is built once per cluster (and rebuilt when membership changes); pick()
runs per request and allocates nothing on the round-robin path. `exclude` lets a
retry go to another host where one exists; when the excluded host is the only
healthy one, it is picked again rather than failing the retry.

Health is read per pick (Host.healthy), never baked into a table: a host that
leaves rotation and comes back costs no rebuild, and the hashing balancers move
only the keys of the hosts that left (they fall through to the next candidate).

Hashing balancers hash with blake2b, never Python's hash(): every worker process
(and every restart) must send a key to the same host.
"""
from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
import time
from typing import Any, Callable, Sequence

from mosnx.runtime.attributes import getter_for


class LoadBalancer:
    name = "base"

    def __init__(self, hosts: Sequence, options: dict | None = None):
        self.hosts = list(hosts)

    def pick(self, ctx, exclude=None):
        raise NotImplementedError

    def _available(self, exclude):
        hs = [h for h in self.hosts if h.healthy and h is not exclude]
        if not hs and exclude is not None and exclude.healthy:
            hs = [exclude]
        return hs


class RoundRobin(LoadBalancer):
    """Round robin over a ring of picks, each host in it as often as its weight.
    Equal weights: the hosts in order. Unequal: each host's w places spread evenly
    over the ring, and hosts of one weight staggered, so light hosts do not come in a
    run (wherever a worker's ring starts, as after every membership change) and a
    heavy one takes its share throughout, as Envoy's weighted round robin does. A
    ring longer than RING_MAX (weights summing past it) would cost memory and build
    time per host change: those clusters pick by a live EDF schedule instead
    (WeightedRoundRobin, whose pick becomes this balancer's)."""
    name = "round_robin"
    RING_MAX = 4096

    def __init__(self, hosts, options=None):
        super().__init__(hosts, options)
        hs = self.hosts
        self.edf: WeightedRoundRobin | None = None
        ring: list = []
        if hs and any(h.weight != hs[0].weight for h in hs):
            total = sum(h.weight for h in hs)
            if total > self.RING_MAX:
                self.edf = WeightedRoundRobin(hs, options)
            else:
                # the j-th of m hosts of weight w takes the places (k + (j + 1/2) / m) / w:
                # hosts of one weight take turns, and every host's places are evenly spaced
                by_weight: dict[int, list[int]] = {}
                for i, h in enumerate(hs):
                    by_weight.setdefault(h.weight, []).append(i)
                places = sorted(((k + (j + 0.5) / len(group)) / w, i)
                                for w, group in by_weight.items() for j, i in enumerate(group) for k in range(w))
                ring = [hs[i] for _, i in places]
        else:
            ring = list(hs)
        self.ring = ring
        self.i = random.randrange(len(ring)) if ring else 0   # workers should not all start on host 0
        if self.edf is not None:
            self.pick = self.edf.pick       # type: ignore[method-assign]

    def pick(self, ctx, exclude=None):
        ring = self.ring
        n = len(ring)
        i = self.i + 1
        if i < n:
            # the usual pick: the next host is in rotation
            h = ring[i]
            if h.healthy and h is not exclude:
                self.i = i
                return h
        i -= 1
        for _ in ring:      # one lap at most
            i += 1
            if i >= n:
                i = 0
            h = ring[i]
            if h.healthy and h is not exclude:
                self.i = i
                return h
        self.i = i
        if exclude is not None and exclude.healthy:
            return exclude
        return None


def _edf_pick(lb, exclude, step_of):
    """Earliest-deadline-first pick over `lb.heap` ([deadline, seq, host] entries):
    the chosen host's deadline moves on by step_of(host). A host out of rotation
    is passed over but keeps its place, so it does not come back owed a burst."""
    heap = lb.heap
    skipped = []
    chosen = None
    for _ in range(len(heap)):
        e = heapq.heappop(heap)
        h = e[2]
        e[0] += step_of(h)
        lb.seq += 1
        e[1] = lb.seq
        if h.healthy and h is not exclude:
            chosen = h
            heapq.heappush(heap, e)
            break
        skipped.append(e)
    for e in skipped:
        heapq.heappush(heap, e)
    if chosen is None and exclude is not None and exclude.healthy:
        return exclude
    return chosen


class WeightedRoundRobin(LoadBalancer):
    """Earliest deadline first, as Envoy's EDF scheduler: each host's next deadline
    is 1/weight after its last pick, so a heavy host's picks are spread evenly
    between the light ones' (smooth) instead of coming in a burst.

    Deadlines are kept as integers over the weights' least common multiple, so
    ties break by insertion order and the schedule never drifts."""
    name = "weighted_round_robin"

    def __init__(self, hosts, options=None):
        super().__init__(hosts, options)
        lcm = 1
        for h in self.hosts:
            lcm = lcm * h.weight // math.gcd(lcm, h.weight)
        self.steps = {id(h): lcm // h.weight for h in self.hosts}
        self.seq = 0
        # entries: [deadline, seq, host]; the start is staggered by a random offset
        # within one step so workers do not send their first requests to one host
        self.heap = []
        for h in self.hosts:
            step = self.steps[id(h)]
            self.seq += 1
            self.heap.append([random.randrange(step) if step > 1 else 0, self.seq, h])
        heapq.heapify(self.heap)

    def pick(self, ctx, exclude=None):
        steps = self.steps
        return _edf_pick(self, exclude, lambda h: steps[id(h)])


class Random(LoadBalancer):
    name = "random"

    def pick(self, ctx, exclude=None):
        hs = self._available(exclude)
        if not hs:
            return None
        return random.choices(hs, weights=[h.weight for h in hs])[0] if len(hs) > 1 else hs[0]


class LeastRequest(LoadBalancer):
    """Fewest active requests, as Envoy's least_request.

    Equal weights: the least busy of `choice_count` random hosts (power of two
    choices). Unequal weights: an earliest-deadline-first schedule whose weights
    follow the load, weight / (active + 1) ^ active_request_bias, recomputed each
    time a host is picked, so idle hosts share by weight and a busy one is picked
    less until it catches up (Envoy's least_request_lb_config names)."""
    name = "least_request"

    def __init__(self, hosts, options=None):
        super().__init__(hosts, options)
        cfg = (options or {}).get("least_request_lb_config") or {}
        self.choices = int(cfg.get("choice_count", 2))
        self.bias = float(cfg.get("active_request_bias", 1.0))
        self.weighted = len({h.weight for h in self.hosts}) > 1
        self.seq = 0
        self.heap = []
        if self.weighted:
            for h in self.hosts:
                self.seq += 1
                self.heap.append([random.random() / h.weight, self.seq, h])
            heapq.heapify(self.heap)

    def pick(self, ctx, exclude=None):
        if self.weighted:
            return self._pick_edf(exclude)
        hs = self._available(exclude)
        if not hs:
            return None
        if len(hs) == 1:
            return hs[0]
        best = None
        for h in random.sample(hs, min(self.choices, len(hs))):
            if best is None or h.rq_active < best.rq_active:
                best = h
        return best

    def _pick_edf(self, exclude):
        bias = self.bias
        return _edf_pick(self, exclude,
                         lambda h: ((h.rq_active + 1) ** bias if bias else 1.0) / h.weight)


class PeakEwma(LoadBalancer):
    """Power of two choices on latency × load, as Finagle's and Linkerd's peak EWMA.

    Each host keeps an exponentially weighted moving average of its response time
    that jumps to a new peak at once and decays with time (`decay_time`), so a host
    that slows down loses traffic immediately and earns it back gradually. Its cost
    is that average times (active requests + 1). A host with no sample yet costs
    `default_rtt`, so new hosts are tried without being flooded."""
    name = "peak_ewma"

    def __init__(self, hosts, options=None):
        super().__init__(hosts, options)
        cfg = (options or {}).get("peak_ewma_lb_config") or {}
        self.tau = float(cfg.get("decay_time", 10.0))
        self.default_rtt = float(cfg.get("default_rtt", 0.01)) * 1000.0   # ms, as samples

    def cost(self, h, now: float) -> float:
        ewma = h.ewma
        if ewma is None:
            ewma = self.default_rtt
        else:
            ewma *= math.exp(-(now - h.ewma_at) / self.tau)
        return ewma * (h.rq_active + 1)

    def pick(self, ctx, exclude=None):
        hs = self._available(exclude)
        if not hs:
            return None
        if len(hs) == 1:
            return hs[0]
        a, b = random.sample(hs, 2)
        now = time.monotonic()
        return a if self.cost(a, now) <= self.cost(b, now) else b


def observe_latency(h, elapsed_ms: float, tau: float) -> None:
    """Fold one response time into a host's peak EWMA (see PeakEwma)."""
    now = time.monotonic()
    cur = h.ewma
    if cur is None or elapsed_ms > cur:
        h.ewma = elapsed_ms
    else:
        w = math.exp(-(now - h.ewma_at) / tau)
        h.ewma = cur * w + elapsed_ms * (1.0 - w)
    h.ewma_at = now


# ------------------------------------------------------------------ consistent hashing
def hash64(data: str) -> int:
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big")


_getters: dict[str, Callable[[Any], Any]] = {}


def _key_getter(ref: str) -> Callable[[Any], Any]:
    g = _getters.get(ref)
    if g is None:
        g = _getters[ref] = getter_for(ref)
    return g


class _Hashing(LoadBalancer):
    """Keyed by the route's hash_key, else the cluster's; a request without a key
    (no such header, cookie, ...) goes to a random healthy host, as Envoy does."""

    def __init__(self, hosts, options=None):
        super().__init__(hosts, options)
        ref = (options or {}).get("hash_key")
        self.cluster_key = _key_getter(ref) if ref else None

    def key(self, ctx) -> str | None:
        if ctx is None:
            return None
        route = ctx.route
        ref = getattr(route.action, "hash_key", None) if route is not None else None
        g = _key_getter(ref) if ref else self.cluster_key
        if g is None:
            return None
        v = g(ctx)
        return str(v) if v not in ("", None) else None

    def pick(self, ctx, exclude=None):
        k = self.key(ctx)
        if k is None:
            hs = self._available(exclude)
            return random.choice(hs) if hs else None
        return self.pick_hash(hash64(k), exclude)

    def pick_hash(self, h: int, exclude=None):
        raise NotImplementedError


class RingHash(_Hashing):
    """Ketama-style ring: a key goes to the first point at or after its hash.

    Each unit of weight owns POINTS_PER_WEIGHT points, derived from the host's
    address alone, so a host's points never depend on the other hosts: adding a host
    takes only the arcs its new points cover, removing one gives back only its own.
    Envoy's ring_hash_lb_config.minimum_ring_size / maximum_ring_size, when set,
    scale that count to bound the ring (trading that independence for the size)."""
    name = "ring_hash"
    POINTS_PER_WEIGHT = 256

    def __init__(self, hosts, options=None):
        super().__init__(hosts, options)
        cfg = (options or {}).get("ring_hash_lb_config") or {}
        total = sum(h.weight for h in self.hosts) or 1
        per = self.POINTS_PER_WEIGHT
        if cfg.get("minimum_ring_size"):
            per = max(per, math.ceil(int(cfg["minimum_ring_size"]) / total))
        if cfg.get("maximum_ring_size"):
            per = max(1, min(per, int(cfg["maximum_ring_size"]) // total))
        points = []
        for h in self.hosts:
            for i in range(per * h.weight):
                points.append((hash64(f"{h.address}_{i}"), h.address, h))
        points.sort(key=lambda p: (p[0], p[1]))
        self.hashes = [p[0] for p in points]
        self.ring = [p[2] for p in points]

    def pick_hash(self, hv: int, exclude=None):
        ring = self.ring
        n = len(ring)
        if not n or not any(h.healthy for h in self.hosts):
            return None
        i = bisect.bisect_left(self.hashes, hv)
        for j in range(n):
            h = ring[(i + j) % n]
            if h.healthy and h is not exclude:
                return h
        return exclude if exclude is not None and exclude.healthy else None


class Maglev(_Hashing):
    """Google's Maglev lookup table (Envoy's maglev_lb_config.table_size, a prime,
    default 65537): each host fills slots along its own permutation, in proportion
    to its weight, so every host owns an even share and a membership change moves
    little more than the changed host's share. A key whose host is out of rotation
    is re-hashed with a salt, so only that host's keys move."""
    name = "maglev"

    def __init__(self, hosts, options=None):
        super().__init__(hosts, options)
        cfg = (options or {}).get("maglev_lb_config") or {}
        m = int(cfg.get("table_size", 65537))
        if m < 2 or any(m % p == 0 for p in range(2, int(m ** 0.5) + 1)):
            raise ValueError(f"maglev table_size {m} is not a prime")
        self.size = m
        self.table = self._build(m)

    def _build(self, m: int) -> list:
        hosts = sorted(self.hosts, key=lambda h: h.address)   # independent of config order
        if not hosts:
            return []
        top = max(h.weight for h in hosts)
        offsets = []
        skips = []
        for h in hosts:
            offsets.append(hash64(h.address) % m)
            skips.append(hash64(h.address + "#skip") % (m - 1) + 1)
        nxt = [0] * len(hosts)
        credit = [0.0] * len(hosts)
        table: list = [None] * m
        filled = 0
        while True:
            for i, h in enumerate(hosts):
                credit[i] += h.weight / top
                if credit[i] < 1.0:
                    continue
                credit[i] -= 1.0
                off, skip, j = offsets[i], skips[i], nxt[i]
                c = (off + j * skip) % m
                while table[c] is not None:
                    j += 1
                    c = (off + j * skip) % m
                nxt[i] = j + 1
                table[c] = h
                filled += 1
                if filled == m:
                    return table

    def pick_hash(self, hv: int, exclude=None):
        table = self.table
        if not table:
            return None
        h = table[hv % self.size]
        if h.healthy and h is not exclude:
            return h
        for salt in range(1, 8):
            h = table[hash64(f"{hv}:{salt}") % self.size]
            if h.healthy and h is not exclude:
                return h
        hs = self._available(exclude)
        return hs[hv % len(hs)] if hs else None


BALANCERS = {cls.name: cls for cls in (RoundRobin, WeightedRoundRobin, Random, LeastRequest,
                                       RingHash, Maglev, PeakEwma)}


def make(name: str, hosts, options=None) -> LoadBalancer:
    return BALANCERS[name](hosts, options)
