"""runtime/filters/ratelimit.py: local rate limiting (token and leaky bucket, per key),
through its registered factory (as YAML listeners build it) and directly."""
from __future__ import annotations

import pytest

from mosnx.runtime.actions import Pause
from mosnx.runtime.filters.ratelimit import RateLimitConfig, RateLimitFilter

from .conftest import build, req


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
