"""The fault filter: inject delays and aborts into a share of requests, as Envoy's.

Config is parsed and validated once (FaultConfig); the filter instance is shared
by every stream of a snapshot and keeps no per-stream state, so on_request is
the whole per-request cost. A delay is a Pause on asyncio.sleep; when a request
gets both, the abort is the result of the delay, as Envoy applies them in turn.
Header-controlled faults (x-envoy-fault-*) apply only when the config enables them.
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from ..actions import Action, LocalReply, Pause
from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from ..stats import Counter, Store
from . import _config as C

STATS = ("delays_injected", "aborts_injected")

H_ABORT = b"x-envoy-fault-abort-request"
H_ABORT_PCT = b"x-envoy-fault-abort-request-percentage"
H_DELAY = b"x-envoy-fault-delay-request"            # milliseconds
H_DELAY_PCT = b"x-envoy-fault-delay-request-percentage"


@dataclass(frozen=True, slots=True)
class FaultConfig:
    delay: float | None = None          # seconds
    delay_percent: float = 100.0
    abort_status: int | None = None
    abort_percent: float = 100.0
    header_delay: bool = False
    header_abort: bool = False

    def __post_init__(self) -> None:
        if self.delay is not None and self.delay < 0:
            raise ValueError("fault delay cannot be negative")
        if self.abort_status is not None and not 200 <= self.abort_status <= 599:
            raise ValueError(f"fault abort status {self.abort_status} is outside 200..599")
        for p in (self.delay_percent, self.abort_percent):
            if not 0.0 <= p <= 100.0:
                raise ValueError("fault percentages must be within 0..100")
        if self.delay is None and self.abort_status is None and not (self.header_delay or self.header_abort):
            raise ValueError("fault needs a delay, an abort, or header control")

    @classmethod
    def from_dict(cls, cfg: dict) -> "FaultConfig":
        """Envoy's names: delay {fixed_delay, percentage, header_delay}, abort {http_status, percentage, header_abort}."""
        C.known_keys(cfg, {"delay", "abort"}, "fault")
        kw: dict = {}
        d = C.section(cfg, "delay", {"fixed_delay", "percentage", "header_delay"}, "fault.delay")
        if d is not None:
            if "fixed_delay" in d:
                kw["delay"] = C.duration(d["fixed_delay"], "fault.delay.fixed_delay")
            if "percentage" in d:
                kw["delay_percent"] = C.percent(d["percentage"], "fault.delay.percentage")
            kw["header_delay"] = "header_delay" in d
        # the abort section reads like the delay one only in shape: its own keys and fields
        a = C.section(cfg, "abort", {"http_status", "percentage", "header_abort"}, "fault.abort")
        if a is not None:
            if "http_status" in a:
                kw["abort_status"] = C.status(a["http_status"], "fault.abort.http_status")
            if "percentage" in a:
                kw["abort_percent"] = C.percent(a["percentage"], "fault.abort.percentage")
            kw["header_abort"] = "header_abort" in a
        return cls(**kw)


async def _sleep_then(seconds: float, then: Action | None) -> Action | None:
    await asyncio.sleep(seconds)
    return then


def _hit(percent: float) -> bool:
    return percent >= 100.0 or (percent > 0.0 and random.random() * 100.0 < percent)


class FaultFilter(HttpFilter):
    name = "fault"

    def __init__(self, config: FaultConfig, name: str = "fault", stats: Store | None = None):
        self.config = config
        self.name = name
        stats = stats or Store()
        self._delays: Counter = stats.counter(f"{name}.delays_injected")
        self._aborts: Counter = stats.counter(f"{name}.aborts_injected")
        self._reply = (LocalReply(config.abort_status, b"fault filter abort", detail="fault_abort")
                       if config.abort_status is not None else None)
        self._headers = config.header_delay or config.header_abort

    def on_request(self, ctx: StreamContext) -> Action | None:
        cfg = self.config
        delay, delay_pct = cfg.delay, cfg.delay_percent
        reply, abort_pct = self._reply, cfg.abort_percent
        if self._headers:
            h = ctx.request.headers
            if cfg.header_abort:
                code = _int(h.getb(H_ABORT))
                if code is not None and 200 <= code <= 599:
                    reply = LocalReply(code, b"fault filter abort", detail="fault_abort")
                    abort_pct = _pct(h.getb(H_ABORT_PCT), abort_pct)
            if cfg.header_delay:
                ms = _int(h.getb(H_DELAY))
                if ms is not None and ms >= 0:
                    delay = ms / 1000.0
                    delay_pct = _pct(h.getb(H_DELAY_PCT), delay_pct)
        abort = reply if reply is not None and _hit(abort_pct) else None
        if abort is not None:
            self._aborts.value += 1
        if delay is not None and delay > 0 and _hit(delay_pct):
            self._delays.value += 1
            return Pause(_sleep_then(delay, abort))
        return abort


def _int(v: bytes | None) -> int | None:
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        return None


def _pct(v: bytes | None, default: float) -> float:
    if v is None:
        return default
    try:
        return min(max(float(v), 0.0), 100.0)
    except ValueError:
        return default


def _factory(name: str, cfg: dict, ctx: BuildContext) -> FaultFilter:
    return FaultFilter(FaultConfig.from_dict(cfg or {}), name, ctx.services.stats)


register_filter("fault", _factory)
