"""The adaptive concurrency filter, as Envoy's adaptive_concurrency (gradient controller).

It bounds the requests in flight through the listener by a limit that follows
measured latency: every concurrency_update_interval the limit becomes
limit × gradient + √limit, where gradient = min_rtt × (1 + buffer) / sample_rtt
(clamped to 0.5..2): latency above the idle baseline shrinks the limit, latency at
the baseline lets it grow. min_rtt is measured at the start and every
min_rtt_calc_params.interval, with the limit pinned to min_concurrency so the
measurement sees an unloaded upstream. Requests over the limit get 503 at once.

No timers and no tasks: the controller advances when a request arrives or ends,
so a snapshot swap leaves nothing running. Per stream it keeps one entry in
ctx.filter_state (the start time), so only the streams it admitted are counted.
"""
from __future__ import annotations

import math
import random
import time
from typing import Callable

from ..actions import Action, LocalReply
from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from ..stats import ACCUMULATE, PER_PROXY, Store
from . import _config as C
from .in_flight import InFlight

STATS = ("gradient_controller.rq_blocked", "gradient_controller.min_rtt_calculation_active")
GAUGES = ("gradient_controller.concurrency_limit", "gradient_controller.min_rtt_msecs",
          "gradient_controller.sample_rtt_msecs", "gradient_controller.burst_queue_size")


class AdaptiveConfig:
    __slots__ = ("percentile", "max_limit", "update_interval", "min_rtt_interval", "min_rtt_requests",
                 "jitter", "min_concurrency", "buffer", "status")

    def __init__(self, percentile=50.0, max_limit=1000, update_interval=0.1, min_rtt_interval=60.0,
                 min_rtt_requests=50, jitter=10.0, min_concurrency=3, buffer=25.0, status=503):
        self.percentile = percentile
        self.max_limit = max_limit
        self.update_interval = update_interval
        self.min_rtt_interval = min_rtt_interval
        self.min_rtt_requests = min_rtt_requests
        self.jitter = jitter
        self.min_concurrency = min_concurrency
        self.buffer = buffer
        self.status = status
        if not 0 < percentile <= 100:
            raise ValueError("adaptive_concurrency: sample_aggregate_percentile must be within 0..100")
        if max_limit < 1 or min_concurrency < 1 or min_rtt_requests < 1:
            raise ValueError("adaptive_concurrency: limits and counts must be at least 1")
        if update_interval <= 0 or min_rtt_interval <= 0:
            raise ValueError("adaptive_concurrency: intervals must be longer than 0")

    @classmethod
    def from_dict(cls, cfg: dict) -> "AdaptiveConfig":
        """Envoy's names: gradient_controller_config {sample_aggregate_percentile,
        concurrency_limit_params {max_concurrency_limit, concurrency_update_interval},
        min_rtt_calc_params {interval, request_count, jitter, min_concurrency, buffer}}."""
        C.known_keys(cfg, {"gradient_controller_config", "concurrency_limit_exceeded_status"},
                     "adaptive_concurrency")
        g = C.section(cfg, "gradient_controller_config",
                      {"sample_aggregate_percentile", "concurrency_limit_params", "min_rtt_calc_params"},
                      "adaptive_concurrency.gradient_controller_config") or {}
        kw: dict = {}
        if "sample_aggregate_percentile" in g:
            kw["percentile"] = C.percent(g["sample_aggregate_percentile"], "sample_aggregate_percentile")
        lp = C.section(g, "concurrency_limit_params", {"max_concurrency_limit", "concurrency_update_interval"},
                       "concurrency_limit_params") or {}
        if "max_concurrency_limit" in lp:
            kw["max_limit"] = _int(lp["max_concurrency_limit"], "max_concurrency_limit")
        if "concurrency_update_interval" in lp:
            kw["update_interval"] = C.duration(lp["concurrency_update_interval"], "concurrency_update_interval")
        mp = C.section(g, "min_rtt_calc_params", {"interval", "request_count", "jitter", "min_concurrency", "buffer"},
                       "min_rtt_calc_params") or {}
        if "interval" in mp:
            kw["min_rtt_interval"] = C.duration(mp["interval"], "min_rtt_calc_params.interval")
        if "request_count" in mp:
            kw["min_rtt_requests"] = _int(mp["request_count"], "min_rtt_calc_params.request_count")
        if "jitter" in mp:
            kw["jitter"] = C.percent(mp["jitter"], "min_rtt_calc_params.jitter")
        if "min_concurrency" in mp:
            kw["min_concurrency"] = _int(mp["min_concurrency"], "min_rtt_calc_params.min_concurrency")
        if "buffer" in mp:
            kw["buffer"] = C.percent(mp["buffer"], "min_rtt_calc_params.buffer")
        if "concurrency_limit_exceeded_status" in cfg:
            kw["status"] = C.status(cfg["concurrency_limit_exceeded_status"], "concurrency_limit_exceeded_status",
                                    400, 599)
        return cls(**kw)


def _int(v, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{key}: expected a whole number")
    return v


def percentile(samples: list[float], p: float) -> float:
    s = sorted(samples)
    i = min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))
    return s[i]


class AdaptiveConcurrencyFilter(HttpFilter):
    name = "adaptive_concurrency"

    def __init__(self, config: AdaptiveConfig, name: str = "adaptive_concurrency",
                 stats: Store | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.name = name
        self.clock = clock
        self.key = f"adaptive_concurrency:{name}"
        stats = stats or Store()
        p = f"{name}."
        self._blocked = stats.counter(p + "gradient_controller.rq_blocked")
        self._calc = stats.counter(p + "gradient_controller.min_rtt_calculation_active")
        # each worker admits up to its own limit, so the proxy's is their sum; the
        # latencies are measurements of one upstream, reported once (not summed)
        self._g_limit = stats.gauge(p + "gradient_controller.concurrency_limit", ACCUMULATE)
        self._g_min = stats.gauge(p + "gradient_controller.min_rtt_msecs", PER_PROXY)
        self._g_sample = stats.gauge(p + "gradient_controller.sample_rtt_msecs", PER_PROXY)
        self.in_flight = InFlight(self.key)
        self.limit = config.min_concurrency
        self.min_rtt: float | None = None
        self.samples: list[float] = []
        self.measuring = True              # a minRTT window: the limit is pinned to min_concurrency
        self.saved_limit = config.min_concurrency
        self.next_update = 0.0
        self.next_min_rtt = 0.0
        self._reply = LocalReply(config.status, b"reached concurrency limit\n", (),
                                 detail="reached_concurrency_limit")
        self._g_limit.value = self.limit

    def on_request(self, ctx: StreamContext) -> Action | None:
        now = self.clock()
        if now >= self.next_update:
            self._update(now)
        if self.in_flight.count >= self.limit:
            self._blocked.value += 1
            return self._reply
        self.in_flight.admit(ctx, now)
        return None

    def on_log(self, ctx: StreamContext) -> None:
        t0 = self.in_flight.done(ctx)
        if t0 is None:
            return
        r = ctx.response
        if r is None or r.status >= 500 and ctx.error_detail:
            return          # the proxy's own failures say nothing about the upstream's latency
        self.samples.append(self.clock() - t0)
        if self.measuring and len(self.samples) >= self.config.min_rtt_requests:
            self._end_min_rtt(self.clock())

    # -- the controller --
    def _update(self, now: float) -> None:
        cfg = self.config
        self.next_update = now + cfg.update_interval
        if self.measuring:
            return
        if now >= self.next_min_rtt:
            self._start_min_rtt()
            return
        if not self.samples:
            return
        sample = percentile(self.samples, cfg.percentile)
        self.samples.clear()
        self._g_sample.value = round(sample * 1000)
        gradient = min(2.0, max(0.5, self.min_rtt * (1.0 + cfg.buffer / 100.0) / max(sample, 1e-6)))
        limit = self.limit * gradient
        limit += math.sqrt(limit)
        self.limit = max(1, min(cfg.max_limit, int(limit)))
        self._g_limit.value = self.limit

    def _start_min_rtt(self) -> None:
        self.measuring = True
        self._calc.value += 1
        self.saved_limit = self.limit
        self.limit = self.config.min_concurrency
        self._g_limit.value = self.limit
        self.samples.clear()

    def _end_min_rtt(self, now: float) -> None:
        cfg = self.config
        self.min_rtt = percentile(self.samples, cfg.percentile)
        self._g_min.value = round(self.min_rtt * 1000)
        self.samples.clear()
        self.measuring = False
        self.limit = max(self.saved_limit, cfg.min_concurrency)
        self._g_limit.value = self.limit
        jitter = random.random() * cfg.jitter / 100.0 * cfg.min_rtt_interval
        self.next_min_rtt = now + cfg.min_rtt_interval + jitter
        self.next_update = now + cfg.update_interval


def _factory(name: str, cfg: dict, ctx: BuildContext) -> AdaptiveConcurrencyFilter:
    return AdaptiveConcurrencyFilter(AdaptiveConfig.from_dict(cfg or {}), name, ctx.services.stats)


register_filter("adaptive_concurrency", _factory)
