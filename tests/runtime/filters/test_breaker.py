"""The success-rate breaker: opens on a low success rate, rejects while open, probes
when half-open, closes on success."""
from __future__ import annotations

import pytest

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.filters.breaker import BreakerConfig, SuccessRateBreakerFilter
from mosnx.runtime.headers import Headers
from mosnx.runtime.stats import Store


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def make(**kw):
    clock = Clock()
    stats = Store()
    f = SuccessRateBreakerFilter(BreakerConfig(**kw), "srb", stats, clock)
    return f, clock, stats


def call(f, status: int, cluster: str = "web"):
    """One stream through the filter: the step's result, then its log with `status`."""
    ctx = StreamContext(RequestHead("GET", "/", Headers([])))
    ctx.cluster_name = cluster
    r = f.on_upstream_request(ctx)
    ctx.response = ResponseHead(r.status if r is not None else status, Headers([]))
    f.on_log(ctx)
    return r


def test_opens_below_the_threshold_once_the_window_has_enough_requests():
    f, clock, stats = make(threshold=50.0, min_requests=10, window=10.0, break_duration=5.0)
    for _ in range(4):
        assert call(f, 200) is None
    for _ in range(5):
        assert call(f, 503) is None
    assert f.state("web") == "closed", "nine requests are not enough"
    call(f, 503)                      # 4 of 10 succeeded: below 50%
    assert f.state("web") == "open"
    r = call(f, 200)
    assert isinstance(r, LocalReply) and r.status == 503 and r.detail == "circuit_open"
    assert stats.counters["srb.opened"].value == 1 and stats.counters["srb.rejected"].value == 1
    assert call(f, 200, cluster="other") is None, "one breaker per cluster"


def test_half_open_probe_closes_or_reopens():
    f, clock, stats = make(threshold=50.0, min_requests=4, break_duration=5.0, half_open_requests=1)
    for _ in range(4):
        call(f, 500)
    assert f.state("web") == "open"
    clock.now += 5.0
    assert call(f, 500) is None, "the first request after break_duration is a probe"
    assert f.state("web") == "open", "a failed probe opens it again"
    assert isinstance(call(f, 200), LocalReply)
    clock.now += 5.0
    assert call(f, 200) is None
    assert f.state("web") == "closed"
    assert stats.counters["srb.closed"].value == 1
    assert all(call(f, 200) is None for _ in range(10))


def test_half_open_admits_only_the_probes():
    f, clock, _ = make(min_requests=2, half_open_requests=2)
    call(f, 500)
    call(f, 500)
    clock.now += 10.0
    ctxs = []
    for _ in range(3):
        ctx = StreamContext(RequestHead("GET", "/", Headers([])))
        ctx.cluster_name = "web"
        ctxs.append((ctx, f.on_upstream_request(ctx)))
    assert [r is None for _, r in ctxs] == [True, True, False]


def test_old_failures_leave_the_window():
    f, clock, _ = make(threshold=50.0, min_requests=4, window=10.0)
    for _ in range(3):
        call(f, 500)
    clock.now += 11.0
    for _ in range(3):
        call(f, 200)
    call(f, 500)
    assert f.state("web") == "closed", "only 1 of the last 4 failed"


@pytest.mark.parametrize("cfg, msg", [
    ({"success_rate_threshold": 150}, "percentage"),
    ({"min_request_amount": 0}, "min_request_amount"),
    ({"window": "soon"}, "window"),
    ({"bogus": 1}, "unknown option"),
])
def test_bad_config(cfg, msg):
    with pytest.raises(ValueError, match=msg):
        BreakerConfig.from_dict(cfg)


def test_per_route_breakers():
    from mosnx.runtime.routes import Route, RouteAction
    f, _, _ = make(min_requests=2, per="route")
    bad, good = Route("bad", RouteAction(cluster="web")), Route("good", RouteAction(cluster="web"))

    def on(route, status):
        ctx = StreamContext(RequestHead("GET", "/", Headers([])))
        ctx.cluster_name, ctx.route = "web", route
        r = f.on_upstream_request(ctx)
        ctx.response = ResponseHead(r.status if r is not None else status, Headers([]))
        f.on_log(ctx)
        return r
    on(bad, 500)
    on(bad, 500)
    assert f.state("route:bad") == "open"
    assert on(good, 200) is None, "one cluster, two routes: only the failing route's breaker opens"
    assert isinstance(on(bad, 200), LocalReply)
