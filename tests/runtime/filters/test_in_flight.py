"""The in-flight count the adaptive concurrency and system guard filters share (and
the stream mark the success-rate breaker reads back): a stream counts once, from its
admission to its end, and a stream a filter never admitted is never subtracted."""
from __future__ import annotations

from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.filters.adaptive import AdaptiveConcurrencyFilter, AdaptiveConfig
from mosnx.runtime.filters.in_flight import InFlight, take_mark
from mosnx.runtime.filters.system_guard import GuardConfig, SystemGuardFilter
from mosnx.runtime.headers import Headers


def ctx() -> StreamContext:
    return StreamContext(RequestHead("GET", "/", Headers([])))


def test_admit_and_done_count_a_stream_once():
    f = InFlight("f")
    a, b = ctx(), ctx()
    f.admit(a, 1.5)
    f.admit(b, 2.5)
    assert f.count == 2
    assert f.done(a) == 1.5 and f.count == 1
    assert f.done(a) is None and f.count == 1, "a second end of the same stream is not counted"
    assert f.done(b) == 2.5 and f.count == 0


def test_a_stream_never_admitted_is_never_subtracted():
    f = InFlight("f")
    c = ctx()
    assert c.filter_state is None
    assert f.done(c) is None and f.count == 0
    c.state()["other"] = 1.0
    assert f.done(c) is None and f.count == 0
    assert c.filter_state == {"other": 1.0}, "another filter's mark stays"


def test_two_filters_on_one_stream_keep_their_own_counts():
    one, two = InFlight("one"), InFlight("two")
    c = ctx()
    one.admit(c, 0.0)          # a mark of 0.0 is a mark: only None means none
    two.admit(c, 3.0)
    assert one.done(c) == 0.0 and (one.count, two.count) == (0, 1)
    assert two.done(c) == 3.0 and two.count == 0


def test_take_mark_removes_it():
    c = ctx()
    assert take_mark(c, "k") is None
    c.state()["k"] = ("web", True)
    assert take_mark(c, "k") == ("web", True)
    assert take_mark(c, "k") is None


def test_both_filters_count_with_it():
    t = [0.0]
    clock = lambda: t[0]      # noqa: E731
    ac = AdaptiveConcurrencyFilter(AdaptiveConfig(min_concurrency=1), "ac", clock=clock)
    guard = SystemGuardFilter(GuardConfig(max_concurrency=1), "sg", clock=clock)
    for f in (ac, guard):
        first, second = ctx(), ctx()
        assert f.on_request(first) is None
        assert f.in_flight.count == 1
        assert f.on_request(second) is not None, "over the limit of 1"
        f.on_log(second)                  # refused: ends without leaving the count
        assert f.in_flight.count == 1
        f.on_log(first)
        assert f.in_flight.count == 0
        assert f.on_request(ctx()) is None
