"""Access-log filters: status, duration, response flags, sampling, and their combinations."""
from __future__ import annotations

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.log_filter import (all_of, any_of, duration, not_health_check, response_flags, sampled,
                                      status_code)


def stream(status: int | None = 200, detail: str = "") -> StreamContext:
    c = StreamContext(RequestHead("GET", "/", Headers()))
    if status is not None:
        c.response = ResponseHead(status, Headers())
    c.error_detail = detail
    return c


def test_status_code_comparisons():
    assert status_code("GE", 500).test(stream(503)) and not status_code("GE", 500).test(stream(404))
    assert status_code("EQ", 0).test(stream(None)) and status_code("LE", 299).test(stream(204))
    assert status_code("NE", 200).test(stream(201))


def test_duration():
    c = stream()
    c.start -= 2.0
    assert duration("GE", 1000).test(c) and not duration("LE", 1000).test(c)


def test_response_flags_any_or_named():
    nr = stream(404, "route_not_found")
    assert response_flags([]).test(nr) and response_flags(["NR", "UF"]).test(nr)
    assert not response_flags(["UF"]).test(nr) and not response_flags([]).test(stream(404))


def test_sampling_and_combinations():
    draws = iter([0.1, 0.9])
    half = sampled(50.0, lambda: next(draws))
    assert half.test(stream()) and not half.test(stream())
    assert not_health_check().test(stream())
    both = all_of([status_code("GE", 400), response_flags(["NR"])])
    either = any_of([status_code("GE", 500), response_flags(["NR"])])
    assert both.test(stream(404, "route_not_found")) and not both.test(stream(404))
    assert either.test(stream(503)) and not either.test(stream(404))
    assert either.text == "(status GE 500 or response flags NR)"
