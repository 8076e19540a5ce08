"""The success-rate breaker filter: stop sending to a cluster whose requests keep failing,
as Sentinel's error-ratio circuit breaker.

Per target cluster (or per route, with `per: route`) a breaker is CLOSED (requests pass; outcomes are counted over a
sliding `window` of ten buckets), OPEN (for `break_duration` every request gets a
local 503 at once), then HALF_OPEN (up to `half_open_requests` probes pass; if they
all succeed it closes with a fresh window, one failure opens it again). It opens
when the window holds at least `min_request_amount` outcomes and the success rate
is below `success_rate_threshold` percent.

It acts after routing (on_upstream_request), when the cluster is known, and
records each admitted stream's outcome in on_log: a response of 500 or above, or
a stream the proxy failed, is a failure. No timers: time is read per request.
"""
from __future__ import annotations

import time
from typing import Callable

from ..actions import Action, LocalReply
from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from ..stats import Store
from . import _config as C
from .in_flight import take_mark

STATS = ("opened", "closed", "half_opened", "rejected")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
BUCKETS = 10


class BreakerConfig:
    __slots__ = ("threshold", "min_requests", "window", "break_duration", "half_open_requests",
                 "status", "cluster", "per")

    def __init__(self, threshold=50.0, min_requests=20, window=10.0, break_duration=5.0,
                 half_open_requests=1, status=503, cluster=None, per="cluster"):
        self.threshold = threshold
        self.min_requests = min_requests
        self.window = window
        self.break_duration = break_duration
        self.half_open_requests = half_open_requests
        self.status = status
        self.cluster = cluster
        self.per = per
        if per not in ("cluster", "route"):
            raise ValueError("success_rate_breaker.per: expected cluster or route")
        if min_requests < 1 or half_open_requests < 1:
            raise ValueError("success_rate_breaker: min_request_amount and half_open_requests must be >= 1")
        if window <= 0 or break_duration <= 0:
            raise ValueError("success_rate_breaker: window and break_duration must be longer than 0")

    @classmethod
    def from_dict(cls, cfg: dict) -> "BreakerConfig":
        C.known_keys(cfg, {"success_rate_threshold", "min_request_amount", "window", "break_duration",
                           "half_open_requests", "status", "cluster", "per"}, "success_rate_breaker")
        kw: dict = {}
        if "success_rate_threshold" in cfg:
            kw["threshold"] = C.percent(cfg["success_rate_threshold"], "success_rate_threshold")
        for key, attr in (("min_request_amount", "min_requests"), ("half_open_requests", "half_open_requests")):
            if key in cfg:
                v = cfg[key]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ValueError(f"success_rate_breaker.{key}: expected a whole number")
                kw[attr] = v
        for key in ("window", "break_duration"):
            if key in cfg:
                kw[key] = C.duration(cfg[key], f"success_rate_breaker.{key}")
        if "status" in cfg:
            kw["status"] = C.status(cfg["status"], "success_rate_breaker.status", 400, 599)
        if "cluster" in cfg:
            if not isinstance(cfg["cluster"], str):
                raise ValueError("success_rate_breaker.cluster: expected a cluster name")
            kw["cluster"] = cfg["cluster"]
        if "per" in cfg:
            kw["per"] = str(cfg["per"])
        return cls(**kw)


class Breaker:
    """One cluster's state machine and sliding window."""
    __slots__ = ("state", "until", "probes", "probe_ok", "ok", "total", "bucket_at", "width")

    def __init__(self, window: float, now: float):
        self.state = CLOSED
        self.until = 0.0
        self.probes = 0
        self.probe_ok = 0
        self.width = window / BUCKETS
        self.ok = [0] * BUCKETS
        self.total = [0] * BUCKETS
        self.bucket_at = [0.0] * BUCKETS

    def record(self, now: float, success: bool) -> None:
        i = int(now / self.width) % BUCKETS
        start = now - now % self.width
        if self.bucket_at[i] != start:
            self.bucket_at[i] = start
            self.ok[i] = self.total[i] = 0
        self.total[i] += 1
        if success:
            self.ok[i] += 1

    def counts(self, now: float) -> tuple[int, int]:
        oldest = now - self.width * BUCKETS
        ok = total = 0
        for i in range(BUCKETS):
            if self.bucket_at[i] > oldest:
                ok += self.ok[i]
                total += self.total[i]
        return ok, total

    def reset_window(self) -> None:
        self.ok = [0] * BUCKETS
        self.total = [0] * BUCKETS
        self.bucket_at = [0.0] * BUCKETS


class SuccessRateBreakerFilter(HttpFilter):
    name = "success_rate_breaker"

    def __init__(self, config: BreakerConfig, name: str = "success_rate_breaker",
                 stats: Store | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.name = name
        self.clock = clock
        self.key = f"success_rate_breaker:{name}"
        self.breakers: dict[str, Breaker] = {}
        stats = stats or Store()
        self.c = {s: stats.counter(f"{name}.{s}") for s in STATS}
        self._reply = LocalReply(config.status, b"circuit open\n", (), detail="circuit_open")

    def _breaker(self, cluster: str, now: float) -> Breaker:
        b = self.breakers.get(cluster)
        if b is None:
            b = self.breakers[cluster] = Breaker(self.config.window, now)
        return b

    def on_upstream_request(self, ctx: StreamContext) -> Action | None:
        cluster = ctx.cluster_name
        if self.config.cluster is not None and cluster != self.config.cluster:
            return None
        if self.config.per == "route":
            route = ctx.route
            cluster = f"route:{route.name}" if route is not None else cluster
        now = self.clock()
        b = self._breaker(cluster, now)
        if b.state == OPEN:
            if now < b.until:
                self.c["rejected"].value += 1
                return self._reply
            b.state = HALF_OPEN
            b.probes = b.probe_ok = 0
            self.c["half_opened"].value += 1
        if b.state == HALF_OPEN:
            if b.probes >= self.config.half_open_requests:
                self.c["rejected"].value += 1
                return self._reply
            b.probes += 1
            ctx.state()[self.key] = (cluster, True)
            return None
        ctx.state()[self.key] = (cluster, False)
        return None

    def on_log(self, ctx: StreamContext) -> None:
        mark = take_mark(ctx, self.key)
        if mark is None:
            return
        cluster, probe = mark
        r = ctx.response
        success = r is not None and r.status < 500
        now = self.clock()
        b = self._breaker(cluster, now)
        cfg = self.config
        if b.state == HALF_OPEN:
            if not probe:
                return       # admitted before the breaker opened: not a probe of the recovery
            if not success:
                self._open(b, now)
                return
            b.probe_ok += 1
            if b.probe_ok >= cfg.half_open_requests:
                b.state = CLOSED
                b.reset_window()
                self.c["closed"].value += 1
            return
        if b.state == OPEN:
            return
        b.record(now, success)
        if success:
            return
        ok, total = b.counts(now)
        if total >= cfg.min_requests and 100.0 * ok / total < cfg.threshold:
            self._open(b, now)

    def _open(self, b: Breaker, now: float) -> None:
        b.state = OPEN
        b.until = now + self.config.break_duration
        self.c["opened"].value += 1

    def state(self, cluster: str) -> str:
        """The state of a cluster's breaker, or a route's as "route:<name>" with per: route."""
        b = self.breakers.get(cluster)
        return b.state if b is not None else CLOSED


def _factory(name: str, cfg: dict, ctx: BuildContext) -> SuccessRateBreakerFilter:
    config = BreakerConfig.from_dict(cfg or {})
    if config.cluster is not None and config.cluster not in ctx.clusters:
        raise ValueError(f'success_rate_breaker.cluster: unknown cluster "{config.cluster}"')
    return SuccessRateBreakerFilter(config, name, ctx.services.stats)


register_filter("success_rate_breaker", _factory)
