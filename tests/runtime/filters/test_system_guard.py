"""The system guard: load shedding by load average (BBR check), CPU, concurrency and response time."""
from __future__ import annotations

import pytest

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.filters.system_guard import GuardConfig, SystemGuardFilter
from mosnx.runtime.headers import Headers
from mosnx.runtime.stats import Store


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def make(load=0.0, cpu=0.0, **kw):
    clock = Clock()
    stats = Store()
    readings = {"load": load, "cpu": cpu}
    f = SystemGuardFilter(GuardConfig(**kw), "sg", stats, clock,
                          load=lambda: readings["load"], cpu=lambda: readings["cpu"])
    return f, clock, stats, readings


def begin(f):
    ctx = StreamContext(RequestHead("GET", "/", Headers([])))
    return ctx, f.on_request(ctx)


def end(f, ctx, status=200):
    ctx.response = ResponseHead(status, Headers([]))
    f.on_log(ctx)


def test_max_concurrency():
    f, _, stats, _ = make(max_concurrency=2)
    a, _ = begin(f)
    begin(f)
    _, r = begin(f)
    assert isinstance(r, LocalReply) and r.status == 503 and r.detail == "system_overload"
    end(f, a)
    assert begin(f)[1] is None
    assert stats.counters["sg.rejected_concurrency"].value == 1


def test_high_load_admits_only_what_the_worker_has_shown_it_can_serve():
    f, clock, stats, readings = make(max_load=4.0)
    # one second of traffic: 20 successes taking 100ms each -> capacity 20 × 0.1 = 2 in flight
    for _ in range(20):
        ctx, r = begin(f)
        assert r is None
        clock.now += 0.1
        end(f, ctx)
        clock.now -= 0.1 - 0.05
    clock.now = 1002.0
    readings["load"] = 9.0
    held = [begin(f) for _ in range(3)]
    assert [r is None for _, r in held] == [True, True, False]
    assert stats.counters["sg.rejected_load"].value == 1
    readings["load"] = 1.0
    clock.now += 1.0
    assert begin(f)[1] is None, "below max_load nothing is shed"


def test_cpu_is_sampled_once_a_second():
    f, clock, stats, readings = make(max_cpu=0.8)
    readings["cpu"] = 0.95
    assert isinstance(begin(f)[1], LocalReply)
    readings["cpu"] = 0.1
    assert isinstance(begin(f)[1], LocalReply), "the sample holds until a second has passed"
    clock.now += 1.0
    assert begin(f)[1] is None


def test_max_rt_sheds_while_answers_are_slow_and_recovers():
    f, clock, stats, _ = make(max_rt=0.5)
    ctx, _ = begin(f)
    clock.now += 2.0
    end(f, ctx)
    assert isinstance(begin(f)[1], LocalReply)
    clock.now += 3.0
    assert begin(f)[1] is None


@pytest.mark.parametrize("cfg, msg", [({}, "at least one"), ({"max_cpu": 2}, "fraction"),
                                      ({"max_rt": "fast"}, "duration"), ({"x": 1}, "unknown option")])
def test_bad_config(cfg, msg):
    with pytest.raises(ValueError, match=msg):
        GuardConfig.from_dict(cfg)
