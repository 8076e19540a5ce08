"""The adaptive concurrency filter: the limit follows latency, as Envoy's gradient controller."""
from __future__ import annotations

import pytest

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.filters.adaptive import AdaptiveConcurrencyFilter, AdaptiveConfig
from mosnx.runtime.headers import Headers
from mosnx.runtime.stats import Store


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def make(**kw):
    clock = Clock()
    stats = Store()
    cfg = AdaptiveConfig(**{"min_rtt_requests": 5, "min_concurrency": 2, "update_interval": 0.1,
                            "min_rtt_interval": 1000.0, "jitter": 0.0, **kw})
    return AdaptiveConcurrencyFilter(cfg, "ac", stats, clock), clock, stats


def start(f):
    ctx = StreamContext(RequestHead("GET", "/", Headers([])))
    return ctx, f.on_request(ctx)


def finish(f, clock, ctx, latency: float, status: int = 200):
    clock.now += latency
    ctx.response = ResponseHead(status, Headers([]))
    f.on_log(ctx)


def serve(f, clock, n: int, latency: float, parallel: int) -> int:
    """`n` rounds of `parallel` concurrent requests taking `latency`; how many were blocked."""
    blocked = 0
    for _ in range(n):
        batch = [start(f) for _ in range(parallel)]
        admitted = [ctx for ctx, r in batch if r is None]
        blocked += len(batch) - len(admitted)
        clock.now += latency
        for ctx in admitted:
            ctx.response = ResponseHead(200, Headers([]))
            f.on_log(ctx)
        clock.now += 0.1
    return blocked


def test_starts_pinned_to_min_concurrency_and_blocks_above_it():
    f, clock, stats = make()
    a, ra = start(f)
    b, rb = start(f)
    c, rc = start(f)
    assert ra is None and rb is None
    assert isinstance(rc, LocalReply) and rc.status == 503 and rc.detail == "reached_concurrency_limit"
    assert stats.counters["ac.gradient_controller.rq_blocked"].value == 1
    finish(f, clock, a, 0.01)
    assert start(f)[1] is None, "a finished request frees its slot"


def test_limit_grows_at_the_baseline_latency_and_shrinks_when_latency_rises():
    f, clock, stats = make(max_limit=200)
    serve(f, clock, 5, 0.010, 1)                      # min RTT: 10ms
    assert f.min_rtt == pytest.approx(0.010)
    assert stats.gauges["ac.gradient_controller.min_rtt_msecs"].value == 10
    serve(f, clock, 30, 0.010, 20)
    grown = f.limit
    assert grown >= 20, "latency at the baseline: the limit opens up to the offered load"
    blocked = serve(f, clock, 30, 0.100, 40)          # 10× slower: the upstream is overloaded
    assert f.limit < grown / 2
    assert blocked > 0
    assert stats.gauges["ac.gradient_controller.concurrency_limit"].value == f.limit


def test_limit_stays_within_max_concurrency_limit():
    f, clock, _ = make(max_limit=8)
    serve(f, clock, 5, 0.01, 1)
    serve(f, clock, 50, 0.01, 30)
    assert f.limit == 8


def test_min_rtt_is_measured_again_with_the_limit_pinned():
    f, clock, stats = make(min_rtt_interval=5.0)
    serve(f, clock, 5, 0.01, 1)
    serve(f, clock, 20, 0.01, 10)
    assert f.limit > 2
    clock.now += 6.0
    start(f)
    assert f.measuring and f.limit == 2
    assert stats.counters["ac.gradient_controller.min_rtt_calculation_active"].value == 1


def test_config_from_envoy_names():
    cfg = AdaptiveConfig.from_dict({"gradient_controller_config": {
        "sample_aggregate_percentile": 90,
        "concurrency_limit_params": {"max_concurrency_limit": 50, "concurrency_update_interval": "200ms"},
        "min_rtt_calc_params": {"interval": "30s", "request_count": 20, "min_concurrency": 4, "buffer": 10}}})
    assert (cfg.percentile, cfg.max_limit, cfg.update_interval) == (90.0, 50, 0.2)
    assert (cfg.min_rtt_interval, cfg.min_rtt_requests, cfg.min_concurrency, cfg.buffer) == (30.0, 20, 4, 10.0)
    with pytest.raises(ValueError, match="unknown option"):
        AdaptiveConfig.from_dict({"gradient_controller_config": {"nope": 1}})
