"""The system guard filter: shed load when the machine or the worker is saturated,
as Sentinel's system adaptive protection.

Four independent limits, each off unless set: `max_load` (the 1-minute load
average; above it, a request is admitted only while the requests in flight stay
within what the worker has proven it can serve — the best successes per second
seen times the shortest response time, Sentinel's BBR check), `max_cpu` (this
worker process's CPU use, 0..1), `max_concurrency` (requests in flight) and
`max_rt` (the average response time over the last two seconds). A rejected request
gets 503 `system_overload` at once.

Load and CPU are sampled at most once a second, lazily, on a request; outcomes
are kept in one-second buckets over the last `window` seconds. No timers.
"""
from __future__ import annotations

import os
import time
from typing import Callable

from ..actions import Action, LocalReply
from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from ..stats import Store
from . import _config as C
from .in_flight import InFlight

STATS = ("rejected_load", "rejected_cpu", "rejected_concurrency", "rejected_rt")
WINDOW = 10                       # seconds of history for successes per second and response times


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


class _Cpu:
    """This process's CPU use since the previous sample, 0..1 of one core."""

    def __init__(self):
        self.wall = time.monotonic()
        self.cpu = time.process_time()

    def __call__(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        dw, dc = wall - self.wall, cpu - self.cpu
        self.wall, self.cpu = wall, cpu
        return dc / dw if dw > 0 else 0.0


class GuardConfig:
    __slots__ = ("max_load", "max_cpu", "max_concurrency", "max_rt", "status")

    def __init__(self, max_load=None, max_cpu=None, max_concurrency=None, max_rt=None, status=503):
        self.max_load = max_load
        self.max_cpu = max_cpu
        self.max_concurrency = max_concurrency
        self.max_rt = max_rt
        self.status = status
        if max_cpu is not None and not 0 < max_cpu <= 1:
            raise ValueError("system_guard.max_cpu: expected a fraction of one core, 0..1")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("system_guard.max_concurrency: must be at least 1")
        if all(v is None for v in (max_load, max_cpu, max_concurrency, max_rt)):
            raise ValueError("system_guard needs at least one of max_load, max_cpu, max_concurrency, max_rt")

    @classmethod
    def from_dict(cls, cfg: dict) -> "GuardConfig":
        C.known_keys(cfg, {"max_load", "max_cpu", "max_concurrency", "max_rt", "status"}, "system_guard")
        kw: dict = {}
        for key in ("max_load", "max_cpu"):
            if key in cfg:
                v = cfg[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                    raise ValueError(f"system_guard.{key}: expected a positive number")
                kw[key] = float(v)
        if "max_concurrency" in cfg:
            v = cfg["max_concurrency"]
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError("system_guard.max_concurrency: expected a whole number")
            kw["max_concurrency"] = v
        if "max_rt" in cfg:
            kw["max_rt"] = C.duration(cfg["max_rt"], "system_guard.max_rt")
        if "status" in cfg:
            kw["status"] = C.status(cfg["status"], "system_guard.status", 400, 599)
        return cls(**kw)


class SystemGuardFilter(HttpFilter):
    name = "system_guard"

    def __init__(self, config: GuardConfig, name: str = "system_guard", stats: Store | None = None,
                 clock: Callable[[], float] = time.monotonic, load: Callable[[], float] = _load,
                 cpu: Callable[[], float] | None = None):
        self.config = config
        self.name = name
        self.clock = clock
        self.read_load = load
        self.read_cpu = cpu or _Cpu()
        self.key = f"system_guard:{name}"
        stats = stats or Store()
        self.c = {s: stats.counter(f"{name}.{s}") for s in STATS}
        self.in_flight = InFlight(self.key)
        self.sampled_at = -1.0
        self.load = 0.0
        self.cpu = 0.0
        # per second: [second, successes, response time sum, responses, min response time]
        self.buckets = [[-1, 0, 0.0, 0, 0.0] for _ in range(WINDOW)]
        self._reply = LocalReply(config.status, b"system overloaded\n", (), detail="system_overload")

    # -- what the worker has shown it can do --
    def _bucket(self, now: float) -> list:
        sec = int(now)
        b = self.buckets[sec % WINDOW]
        if b[0] != sec:
            b[0], b[1], b[2], b[3], b[4] = sec, 0, 0.0, 0, 0.0
        return b

    def _recent(self, now: float):
        sec = int(now)
        return [b for b in self.buckets if sec - WINDOW < b[0] <= sec]

    def capacity(self, now: float) -> float:
        """Sentinel's maxSuccessQps × minRt: requests in flight the worker has sustained."""
        recent = [b for b in self._recent(now) if b[0] < int(now)] or self._recent(now)
        max_qps = max((b[1] for b in recent), default=0)
        rts = [b[4] for b in recent if b[3]]
        return max_qps * min(rts) if rts else 0.0

    def avg_rt(self, now: float) -> float:
        """Over this second and the last, as Sentinel's: a slow spell is forgotten quickly."""
        sec = int(now)
        recent = [b for b in self.buckets if sec - 2 < b[0] <= sec]
        n = sum(b[3] for b in recent)
        return sum(b[2] for b in recent) / n if n else 0.0

    # -- hooks --
    def on_request(self, ctx: StreamContext) -> Action | None:
        cfg = self.config
        now = self.clock()
        if now - self.sampled_at >= 1.0:
            self.sampled_at = now
            if cfg.max_load is not None:
                self.load = self.read_load()
            if cfg.max_cpu is not None:
                self.cpu = self.read_cpu()
        reject = None
        if cfg.max_concurrency is not None and self.in_flight.count >= cfg.max_concurrency:
            reject = "rejected_concurrency"
        elif cfg.max_rt is not None and self.avg_rt(now) > cfg.max_rt:
            reject = "rejected_rt"
        elif (cfg.max_load is not None and self.load > cfg.max_load and self.in_flight.count > 1
              and self.in_flight.count > self.capacity(now)):
            reject = "rejected_load"
        elif cfg.max_cpu is not None and self.cpu > cfg.max_cpu:
            reject = "rejected_cpu"
        if reject is not None:
            self.c[reject].value += 1
            return self._reply
        self.in_flight.admit(ctx, now)
        return None

    def on_log(self, ctx: StreamContext) -> None:
        t0 = self.in_flight.done(ctx)
        if t0 is None:
            return
        now = self.clock()
        rt = now - t0
        b = self._bucket(now)
        b[2] += rt
        b[3] += 1
        b[4] = rt if b[3] == 1 else min(b[4], rt)
        r = ctx.response
        if r is not None and r.status < 500:
            b[1] += 1


def _factory(name: str, cfg: dict, ctx: BuildContext) -> SystemGuardFilter:
    return SystemGuardFilter(GuardConfig.from_dict(cfg or {}), name, ctx.services.stats)


register_filter("system_guard", _factory)
