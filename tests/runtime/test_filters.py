"""Built-in filters: fault injection and local rate limiting, through their
registered factories (as YAML listeners build them) and directly."""
from __future__ import annotations

import asyncio

import pytest

import mosnx.runtime.filters  # noqa: F401  (registers the kinds)
from mosnx.runtime.actions import LocalReply, Pause
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.filters.fault import FaultConfig, FaultFilter
from mosnx.runtime.filters.ratelimit import RateLimitConfig, RateLimitFilter
from mosnx.runtime.headers import Headers
from mosnx.runtime.model import Config, ListenerConfig
from mosnx.runtime.registry import BuildContext, Services, filter_factory


def req(headers: dict | None = None) -> StreamContext:
    return StreamContext(RequestHead("GET", "/", Headers.from_pairs(list((headers or {}).items()))))


def build(kind: str, cfg: dict, stats=None):
    lc = ListenerConfig("l", "127.0.0.1", 1)
    bctx = BuildContext(Config("<t>", None, (lc,), ()), lc, set(), {}, services=Services(**({"stats": stats} if stats else {})))
    return filter_factory(kind)(kind, cfg, bctx), bctx.services.stats


def settle(a):
    async def wait():
        return await a.awaitable
    return asyncio.run(wait()) if isinstance(a, Pause) else a


# ---- fault ----
def test_fault_abort_from_envoy_config_counts_stats():
    f, stats = build("fault", {"abort": {"http_status": 503, "percentage": {"numerator": 100, "denominator": "HUNDRED"}}})
    a = f.on_request(req())
    assert a == LocalReply(503, b"fault filter abort", detail="fault_abort")
    assert stats.counters["fault.aborts_injected"].value == 1


def test_fault_delay_is_a_pause_then_continue():
    f, stats = build("fault", {"delay": {"fixed_delay": "1ms", "percentage": 100}})
    a = f.on_request(req())
    assert isinstance(a, Pause) and settle(a) is None
    assert stats.counters["fault.delays_injected"].value == 1


def test_fault_percentages_zero_never_fire():
    f = FaultFilter(FaultConfig(delay=1.0, delay_percent=0.0, abort_status=500, abort_percent=0.0))
    assert all(f.on_request(req()) is None for _ in range(50))


def test_fault_headers_only_when_enabled():
    off = FaultFilter(FaultConfig(abort_status=500, abort_percent=0.0))
    assert off.on_request(req({"x-envoy-fault-abort-request": "429"})) is None
    on, _ = build("fault", {"abort": {"header_abort": {}}, "delay": {"header_delay": {}}})
    assert on.on_request(req()) is None
    assert on.on_request(req({"x-envoy-fault-abort-request": "429"})).status == 429
    a = on.on_request(req({"x-envoy-fault-delay-request": "1", "x-envoy-fault-abort-request": "503"}))
    assert isinstance(a, Pause) and settle(a).status == 503


@pytest.mark.parametrize("cfg", [
    {}, {"abort": {"http_status": 99}}, {"delay": {"fixed_delay": "soon"}},
    {"abort": {"http_status": 500, "percentage": 150}}, {"abrot": {}},
])
def test_fault_bad_config_is_a_value_error(cfg):
    with pytest.raises(ValueError):
        build("fault", cfg)


# ---- rate limit ----
class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_token_bucket_refills_over_time():
    clock = Clock()
    f = RateLimitFilter(RateLimitConfig(rate=1.0, burst=2), clock=clock)
    assert [f.on_request(req()) is None for _ in range(3)] == [True, True, False]
    reply = f.on_request(req())
    assert reply.status == 429 and reply.detail == "rate_limited" and dict(reply.headers)["retry-after"] == "1"
    clock.t += 1.0
    assert f.on_request(req()) is None
    assert f.on_request(req()) is not None


def test_keys_have_their_own_buckets_and_the_table_is_bounded():
    clock = Clock()
    f = RateLimitFilter(RateLimitConfig(rate=1.0, burst=1, max_keys=2),
                        key=lambda c: c.request.headers.get("k", ""), clock=clock)
    assert f.on_request(req({"k": "a"})) is None
    assert f.on_request(req({"k": "b"})) is None
    assert f.on_request(req({"k": "a"})) is not None       # a is spent, and now most recent
    assert f.on_request(req({"k": "c"})) is None           # evicts b, the least recently seen
    assert list(f.buckets) == ["a", "c"]
    assert f.on_request(req({"k": "b"})) is None           # b starts afresh


def test_leaky_bucket_queues_then_rejects():
    clock = Clock()
    f = RateLimitFilter(RateLimitConfig(rate=10.0, burst=3, algorithm="leaky_bucket"), clock=clock)
    assert f.on_request(req()) is None
    waits = [f.on_request(req()) for _ in range(2)]
    assert all(isinstance(w, Pause) for w in waits)
    for w in waits:
        w.awaitable.close()
    assert f.on_request(req()).status == 429


def test_rate_limit_from_envoy_config_with_key_and_stats():
    f, stats = build("rate_limit", {"token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "60s"},
                                    "status": {"code": 503}, "key": 'request.headers["x-api-key"]'})
    assert f.on_request(req({"x-api-key": "a"})) is None
    assert f.on_request(req({"x-api-key": "a"})).status == 503
    assert f.on_request(req({"x-api-key": "b"})) is None
    assert stats.counters["rate_limit.ok"].value == 2 and stats.counters["rate_limit.rate_limited"].value == 1


@pytest.mark.parametrize("cfg", [
    {}, {"token_bucket": {"max_tokens": 0}}, {"token_bucket": {"max_tokens": 5}, "status": 200},
    {"token_bucket": {"max_tokens": 5}, "key": "request.nope"},
    {"token_bucket": {"max_tokens": 5}, "algorithm": "fifo"},
])
def test_rate_limit_bad_config_is_a_value_error(cfg):
    with pytest.raises(ValueError):
        build("rate_limit", cfg)
