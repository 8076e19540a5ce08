"""The local rate limit filter: a token bucket per key, or a leaky bucket that queues.

Config is validated once (RateLimitConfig); the filter holds the bucket table, one
per snapshot, so a reload starts with full buckets. Keys come from a getter (an
attribute reference in YAML, any expression in .mdsl); the table is bounded and
evicts the least recently seen key, so a flood of distinct keys costs memory only
up to max_keys. A token bucket rejects at once; a leaky bucket (queue) delays a
request until its slot, with a Pause, and rejects only when the queue is full.

With N worker processes the buckets are the proxy's, not each worker's: their
state lives in the shared segment (runtime.shared), read and written under its
lock, so N workers admit what one would. One exception keeps the hot path
local: an unkeyed token bucket whose burst is at least CHUNK_DIV × workers
takes its tokens from the shared bucket in chunks of burst // (CHUNK_DIV ×
workers) and spends them locally; a worker's leftover tokens (under one chunk)
are the tolerance, documented in docs/governance.md. With one worker, or when
the segment is full, the buckets are local as before.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from ..actions import Action, LocalReply, Pause
from ..attributes import getter_for
from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from .. import shared as sh
from ..stats import Counter, Store
from . import _config as C

STATS = ("ok", "rate_limited", "delayed")

ALGORITHMS = ("token_bucket", "leaky_bucket")


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    rate: float                        # tokens per second
    burst: int                         # bucket size (token) or queue length (leaky)
    status: int = 429
    algorithm: str = "token_bucket"
    max_keys: int = 10_000

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("rate limit: the rate must be positive")
        if self.burst < 1:
            raise ValueError("rate limit: burst must be at least 1")
        if not 400 <= self.status <= 599:
            raise ValueError(f"rate limit: status {self.status} is outside 400..599")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"rate limit: algorithm must be one of {', '.join(ALGORITHMS)}")
        if self.max_keys < 1:
            raise ValueError("rate limit: max_keys must be at least 1")

    @classmethod
    def from_dict(cls, cfg: dict) -> tuple["RateLimitConfig", str | None]:
        """Envoy's local_ratelimit names: token_bucket {max_tokens, tokens_per_fill,
        fill_interval}, status; plus key (an attribute reference), algorithm, max_keys."""
        C.known_keys(cfg, {"token_bucket", "status", "key", "algorithm", "max_keys", "stat_prefix"}, "rate_limit")
        tb = cfg.get("token_bucket")
        if not isinstance(tb, dict):
            raise ValueError("rate_limit.token_bucket: expected {max_tokens, tokens_per_fill, fill_interval}")
        C.known_keys(tb, {"max_tokens", "tokens_per_fill", "fill_interval"}, "rate_limit.token_bucket")
        max_tokens = tb.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise ValueError("rate_limit.token_bucket.max_tokens: expected a whole number")
        per_fill = tb.get("tokens_per_fill", max_tokens)
        if isinstance(per_fill, bool) or not isinstance(per_fill, int) or per_fill < 1:
            raise ValueError("rate_limit.token_bucket.tokens_per_fill: expected a whole number >= 1")
        interval = C.duration(tb.get("fill_interval", "1s"), "rate_limit.token_bucket.fill_interval")
        if interval <= 0:
            raise ValueError("rate_limit.token_bucket.fill_interval: must be positive")
        status = C.status(cfg.get("status", 429), "rate_limit.status", 400, 599)
        key = cfg.get("key")
        if key is not None and not isinstance(key, str):
            raise ValueError("rate_limit.key: expected an attribute reference such as request.headers[\"x-api-key\"]")
        return cls(per_fill / interval, max_tokens, status, str(cfg.get("algorithm", "token_bucket")),
                   int(cfg.get("max_keys", 10_000))), key


class RateLimitFilter(HttpFilter):
    name = "rate_limit"

    def __init__(self, config: RateLimitConfig, key: Callable[[StreamContext], Any] | None = None,
                 name: str = "rate_limit", stats: Store | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.name = name
        self.key = key
        self.clock = clock
        # key -> [tokens, last refill] (token bucket) or [next free slot] (leaky bucket)
        self.buckets: OrderedDict[Any, list[float]] = OrderedDict()
        stats = stats or Store()
        self._ok: Counter = stats.counter(f"{name}.ok")
        self._limited: Counter = stats.counter(f"{name}.rate_limited")
        self._delayed: Counter = stats.counter(f"{name}.delayed")
        self._interval = 1.0 / config.rate
        self._queue = config.algorithm == "leaky_bucket"
        self.table: sh.BucketTable | None = None
        seg = sh.current()
        if seg is not None:
            self._share(seg, key is None)

    def _share(self, seg, unkeyed: bool) -> None:
        """Put the buckets in the shared segment (see the module docstring)."""
        cfg = self.config
        version, ordinal = sh.next_filter_id()
        rows = 1 if unkeyed else 2 * cfg.max_keys
        try:
            self.table = sh.BucketTable(seg, f"rate_limit/{ordinal}/{cfg.algorithm}", rows, version)
        except sh.SegmentFull:
            logging.getLogger("mosnx").warning(
                "%s: the shared limits file is full; this filter's buckets are per worker", self.name)
            return                         # local buckets: better than none
        self._seg = seg
        self._lease = 0                    # tokens taken from the shared bucket, not yet spent
        self._chunk = 1
        if unkeyed and not self._queue:
            self._chunk = max(1, cfg.burst // (sh.CHUNK_DIV * seg.workers))
        self.on_request = self._on_request_shared  # type: ignore[method-assign]  # this instance's buckets are shared

    def _bucket(self, key: Any, now: float) -> list[float]:
        b = self.buckets.get(key)
        if b is None:
            if len(self.buckets) >= self.config.max_keys:
                self.buckets.popitem(last=False)
            b = [float(self.config.burst), now] if not self._queue else [now]
            self.buckets[key] = b
        else:
            self.buckets.move_to_end(key)
        return b

    def on_request(self, ctx: StreamContext) -> Action | None:
        key = self.key(ctx) if self.key is not None else None
        now = self.clock()
        b = self._bucket(key, now)
        if self._queue:
            return self._leaky(b, now)
        cfg = self.config
        tokens = min(float(cfg.burst), b[0] + (now - b[1]) * cfg.rate)
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            self._ok.value += 1
            return None
        b[0] = tokens
        return self._reject((1.0 - tokens) * self._interval)

    def _on_request_shared(self, ctx: StreamContext) -> Action | None:
        if self._lease > 0:
            self._lease -= 1
            self._ok.value += 1
            return None
        h = sh.key_hash(self.key(ctx)) if self.key is not None else 1
        now = self.clock()
        cfg = self.config
        seg = self._seg
        d = seg.d
        seg.lock()
        try:
            if self._queue:
                w = self.table.row(h, now, _drained)  # type: ignore[union-attr]  # _share made it, then this method
                start = max(d[w + 1], now)
                wait = start - now
                limit = (cfg.burst - 1) * self._interval + 1e-9
                if wait <= limit:
                    d[w + 1] = start + self._interval
            else:
                w = self.table.row(h, now, self._refilled)  # type: ignore[union-attr]  # as above
                last = d[w + 2]
                tokens = float(cfg.burst) if last == 0.0 else min(float(cfg.burst),
                                                                   d[w + 1] + (now - last) * cfg.rate)
                take = min(self._chunk, int(tokens))
                d[w + 1] = tokens - take
                d[w + 2] = now
        finally:
            seg.unlock()
        if self._queue:
            if wait > limit:
                return self._reject(wait - (cfg.burst - 1) * self._interval)
            self._ok.value += 1
            if wait > 0:
                self._delayed.value += 1
                return Pause(asyncio.sleep(wait))
            return None
        if take >= 1:
            self._lease = take - 1
            self._ok.value += 1
            return None
        return self._reject((1.0 - tokens) * self._interval)

    def _refilled(self, tokens: float, last: float, now: float) -> float:
        """>= 0 when a shared bucket row has refilled to its burst (it holds no state)."""
        return tokens + (now - last) * self.config.rate - self.config.burst

    def _leaky(self, b: list[float], now: float) -> Action | None:
        # b[0] is when the next request may leave the bucket (GCRA's theoretical arrival time)
        start = max(b[0], now)
        wait = start - now
        if wait > (self.config.burst - 1) * self._interval + 1e-9:
            return self._reject(wait - (self.config.burst - 1) * self._interval)
        b[0] = start + self._interval
        self._ok.value += 1
        if wait > 0:
            self._delayed.value += 1
            return Pause(asyncio.sleep(wait))
        return None

    def _reject(self, wait: float) -> LocalReply:
        self._limited.value += 1
        retry_after = str(max(1, math.ceil(wait)))
        return LocalReply(self.config.status, b"rate limited\n", (("retry-after", retry_after),),
                          detail="rate_limited")


def _drained(tat: float, _unused: float, now: float) -> float:
    """>= 0 when a shared leaky bucket row's queue is empty."""
    return now - tat


def _factory(name: str, cfg: dict, ctx: BuildContext) -> RateLimitFilter:
    config, key = RateLimitConfig.from_dict(cfg or {})
    try:
        getter = getter_for(key) if key is not None else None
    except KeyError as e:
        raise ValueError(f"rate_limit.key: unknown attribute {e}") from None
    return RateLimitFilter(config, getter, name, ctx.services.stats)


register_filter("rate_limit", _factory)
