"""Per-worker stats: counters, gauges and histograms under Envoy's names.

Each worker owns one Store; hot paths hold direct references to Counter objects
and bump `.value`. The admin process merges the workers' dumps, so every number in
/stats describes the whole proxy: counters and histograms add up across workers;
a gauge merges by the mode it was declared with (as Envoy's Gauge::ImportMode),
never by its name:

- ACCUMULATE: the worker's share of something the proxy holds as a whole
  (connections and requests in flight): summed, as Envoy sums them across
  threads and across a hot restart.
- PER_PROXY: a fact about the proxy every worker sees for itself (cluster
  membership, healthy and ejected hosts, a measured latency): reported once.
  Workers agree on it but for the moment an update or a check reaches one before
  another; then the largest value stands (never a sum, which would count one host
  once per worker).

A dump carries the mode of every gauge not declared ACCUMULATE, so merging needs no
knowledge of which gauge is which.

A group of counters most of which stay at zero (a cluster's two dozen: overflows,
timeouts, retries...) can be named without being made (`family`): each is made in
the store when first bumped, and a dump lists the others at 0, so /stats shows every
name Envoy shows while 20,000 clusters do not hold half a million idle counters.
"""
from __future__ import annotations

import bisect
from typing import Any, Callable

# Envoy's default histogram bucket bounds, in ms.
BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
           60000, 300000, 600000, 1800000, 3600000)
# the same as floats, made once: every cluster has a histogram of these bounds
_BUCKETS_FLOAT = tuple(float(b) for b in BUCKETS)


class Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


class ReadCounter(Counter):
    """A counter read, when stats are taken, from a count kept elsewhere (the memo
    registry's), so the count is not kept twice."""
    __slots__ = ("read",)

    def __init__(self, read: Callable[[], int]) -> None:
        self.read = read

    @property
    def value(self) -> int:  # type: ignore[override]  # read where stats are taken, never written
        return self.read()


RESPONSE_CLASSES = ("2xx", "3xx", "4xx", "5xx")


def class_sum(codes: dict[int, Counter], k: int) -> Callable[[], int]:
    """The count of class k (2 for 2xx) read from counts by exact status (Responses):
    5xx with the statuses outside 100..599 (under 0)."""
    lo, hi = k * 100, k * 100 + 100
    if k == 5:
        return lambda: sum([c.value for s, c in codes.items() if lo <= s < hi or s == 0])
    return lambda: sum([c.value for s, c in codes.items() if lo <= s < hi])


class Responses:
    """Counters of responses by exact status, as Envoy counts upstream_rq_200
    (Store.responses): in `codes`, `prefix + <status>`, each made at its status's first
    response (made), and under 0 one for the statuses outside 100..599, which no stat
    names. `codes` is a plain dict: its get() is the one look-up a response costs."""
    __slots__ = ("store", "prefix", "codes")

    def __init__(self, store: "Store", prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.codes: dict[int, Counter] = {0: Counter()}

    def made(self, status: int) -> Counter:
        """The counter of `status`, made now (codes.get() found none)."""
        if not 100 <= status < 600:
            return self.codes[0]
        c = self.codes[status] = self.store.counter(self.prefix + str(status))
        return c


ACCUMULATE = "accumulate"
PER_PROXY = "per_proxy"
GAUGE_MODES = (ACCUMULATE, PER_PROXY)


class Gauge:
    __slots__ = ("value", "mode")

    def __init__(self, mode: str = ACCUMULATE) -> None:
        self.value = 0
        self.mode = mode

    def inc(self, n: int = 1) -> None:
        self.value += n

    def dec(self, n: int = 1) -> None:
        self.value -= n

    def set(self, v: int) -> None:
        self.value = v


class ReadGauge(Gauge):
    """A gauge read, when stats are taken, from a count the hot path keeps anyway, so
    the count is not kept twice."""
    __slots__ = ("read",)

    def __init__(self, read: Callable[[], int], mode: str = ACCUMULATE) -> None:
        self.read = read
        self.mode = mode

    @property
    def value(self) -> int:  # type: ignore[override]  # read where stats are taken, never written
        return self.read()


_bisect_left = bisect.bisect_left
_bisect_right = bisect.bisect_right


class Histogram:
    """Bucketed samples. `add` is the hot path's record: it only keeps the sample, and
    the samples kept are bucketed when the histogram is read or folded (a worker
    folds every 20 ms while samples come, which bounds how many wait and how long
    a fold takes). `record` buckets at once."""

    __slots__ = ("_counts", "_sum", "bounds", "_search", "_held", "add")

    def __init__(self, bounds: tuple[float, ...] = BUCKETS) -> None:
        self.bounds = bounds                    # as given: dumps show them so
        # the same bounds as floats: bisecting floats against floats is about twice
        # as fast as against a mix of ints and floats
        self._search = _BUCKETS_FLOAT if bounds is BUCKETS else tuple(float(b) for b in bounds)
        self._counts = [0] * (len(bounds) + 1)  # last slot: above the top bound
        self._sum = 0.0
        self._held: list[float] = []
        self.add = self._held.append            # a C call: no Python frame per sample

    def fold(self) -> int:
        """Bucket the samples `add` kept; how many there were."""
        held = self._held
        if not held:
            return 0
        vals = sorted(held)
        del held[:]                             # in place: `add` is bound to this list
        # sorted, each bucket is a run: (bounds[i-1], bounds[i]], found by bisection
        counts = self._counts
        n = len(vals)
        prev = 0
        for i, b in enumerate(self._search):
            j = _bisect_right(vals, b, prev)
            counts[i] += j - prev
            prev = j
            if j == n:
                break
        else:
            counts[-1] += n - prev
        self._sum += sum(vals)
        return n

    @property
    def counts(self) -> list[int]:
        self.fold()
        return self._counts

    @property
    def sum(self) -> float:
        self.fold()
        return self._sum

    @property
    def count(self) -> int:
        # summed when read, not kept per record: records are many, reads rare
        return sum(self.counts)

    def record(self, v: float) -> None:
        self._counts[_bisect_left(self._search, v)] += 1
        self._sum += v


class CounterFamily:
    """Counters `prefix + name` by short name, each made in its store on first use."""

    __slots__ = ("store", "prefix")

    def __init__(self, store: "Store", prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def __getitem__(self, name: str) -> Counter:
        return self.store.counter(self.prefix + name)


class Store:
    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.gauges: dict[str, Gauge] = {}
        self.histograms: dict[str, Histogram] = {}
        # counters named by family() and not made yet: prefix -> names (dumped at 0)
        self.named: dict[str, tuple[str, ...]] = {}
        # counters by HTTP status (responses()), by prefix
        self.by_status: dict[str, Responses] = {}
        # each histogram beside the list its `add` appends to: a fold (every 20 ms while
        # samples come) skips the idle ones without a call each, and there is one per
        # cluster and route
        self._pending: list[tuple[list[float], Histogram]] = []

    def counter(self, name: str) -> Counter:
        c = self.counters.get(name)
        if c is None:
            c = self.counters[name] = Counter()
        return c

    def gauge(self, name: str, mode: str = ACCUMULATE) -> Gauge:
        """The gauge `name`, merged across workers by `mode` (ACCUMULATE or PER_PROXY).
        A name keeps the mode it was first declared with; declaring it again with
        another is a ValueError, since the merge could honour only one of them."""
        g = self.gauges.get(name)
        if g is None:
            if mode not in GAUGE_MODES:
                raise ValueError(f"gauge {name!r}: unknown mode {mode!r} (one of {', '.join(GAUGE_MODES)})")
            g = self.gauges[name] = Gauge(mode)
        elif g.mode != mode:
            raise ValueError(f"gauge {name!r} is declared {g.mode}, not {mode}")
        return g

    def gauge_reading(self, name: str, read: Callable[[], int], mode: str = ACCUMULATE) -> Gauge:
        """The gauge `name`, from now on read through `read()`."""
        self.gauge(name, mode)              # the same checks of the mode as a plain gauge
        g = self.gauges[name] = ReadGauge(read, mode)
        return g

    def counter_reading(self, name: str, read: Callable[[], int]) -> Counter:
        """The counter `name`, from now on read through `read()`."""
        c = self.counters[name] = ReadCounter(read)
        return c

    def family(self, prefix: str, names: tuple[str, ...]) -> CounterFamily:
        """The counters `prefix + name` for each of `names`, made when first used and
        dumped at 0 until then. `names` is kept, not copied: pass one shared tuple."""
        self.named[prefix] = names
        return CounterFamily(self, prefix)

    def responses(self, prefix: str) -> Responses:
        """Responses counted by exact status (Responses: `prefix + <status>`), and
        `prefix + <class>` (2xx ... 5xx) read as their sums: one count a response, the
        classes added when read. Kept here by prefix, so that whoever counts them next
        (a cluster's next version, a route's series made again) counts into, and sums,
        the same counters."""
        r = self.by_status.get(prefix)
        if r is None:
            r = self.by_status[prefix] = Responses(self, prefix)
        for cls in RESPONSE_CLASSES:
            self.counter_reading(prefix + cls, class_sum(r.codes, int(cls[0])))
        return r

    def histogram(self, name: str) -> Histogram:
        h = self.histograms.get(name)
        if h is None:
            h = self.histograms[name] = Histogram()
        return h

    def fold(self) -> int:
        """Bucket every histogram's kept samples (see Histogram.add); how many there were."""
        pending = self._pending
        if len(pending) != len(self.histograms):
            pending = self._pending = [(h._held, h) for h in self.histograms.values()]
        return sum([h.fold() for held, h in pending if held])

    def inc(self, name: str, n: int = 1) -> None:
        self.counter(name).value += n

    def dump(self) -> dict[str, Any]:
        """Plain data, picklable and JSON-able, for merging across workers.
        `gauge_modes` names the mode of each gauge that is not ACCUMULATE."""
        counters = {k: c.value for k, c in self.counters.items()}
        for prefix, names in self.named.items():
            for n in names:
                counters.setdefault(prefix + n, 0)
        return {
            "counters": counters,
            "gauges": {k: g.value for k, g in self.gauges.items()},
            "gauge_modes": {k: g.mode for k, g in self.gauges.items() if g.mode != ACCUMULATE},
            "histograms": {k: {"bounds": list(h.bounds), "counts": list(h.counts),
                               "sum": h.sum, "count": h.count}
                           for k, h in self.histograms.items()},
        }


def merge(dumps: list[dict[str, Any]]) -> dict[str, Any]:
    """One dump for the whole proxy from the workers' dumps (see the module's rules)."""
    out: dict[str, Any] = {"counters": {}, "gauges": {}, "gauge_modes": {}, "histograms": {}}
    # every dump's modes first: a gauge is merged by one rule whichever worker answers first
    for d in dumps:
        out["gauge_modes"].update(d.get("gauge_modes", ()))
    for d in dumps:
        merge_into(out, d)
    return out


def merge_into(into: dict[str, Any], dump: dict[str, Any]) -> dict[str, Any]:
    """`into` with `dump` merged in, by the rules of `merge`; changes and returns `into`."""
    counters = into.setdefault("counters", {})
    for k, v in dump.get("counters", {}).items():
        counters[k] = counters.get(k, 0) + v
    modes = into.setdefault("gauge_modes", {})
    modes.update(dump.get("gauge_modes", ()))
    gauges = into.setdefault("gauges", {})
    for k, v in dump.get("gauges", {}).items():
        cur = gauges.get(k)
        if cur is None:
            gauges[k] = v
        elif modes.get(k, ACCUMULATE) == PER_PROXY:
            gauges[k] = max(cur, v)
        else:
            gauges[k] = cur + v
    histograms = into.setdefault("histograms", {})
    for k, h in dump.get("histograms", {}).items():
        cur = histograms.get(k)
        if cur is None:
            histograms[k] = {"bounds": list(h["bounds"]), "counts": list(h["counts"]),
                             "sum": h["sum"], "count": h["count"]}
        else:
            cur["counts"] = [a + b for a, b in zip(cur["counts"], h["counts"])]
            cur["sum"] += h["sum"]
            cur["count"] += h["count"]
    return into


def quantile(h: dict[str, Any], q: float) -> float | None:
    """Estimate quantile q (0..1) of a dumped histogram by linear interpolation in its bucket."""
    total = h["count"]
    if not total:
        return None
    target = q * total
    seen = 0
    lower = 0.0
    bounds = h["bounds"]
    for i, c in enumerate(h["counts"]):
        upper = bounds[i] if i < len(bounds) else bounds[-1]
        if c and seen + c >= target:
            return lower + (upper - lower) * ((target - seen) / c)
        seen += c
        lower = upper
    return float(bounds[-1])
