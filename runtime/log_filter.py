"""Which streams an access log writes: Envoy's access-log filters as predicates.

A LogFilter is built once (from an Envoy AccessLogFilter: runtime.envoy.access_log)
and asked once per stream, at log time, when everything about the stream is known.
`text` describes it, for equality (a reload that keeps it keeps the writer) and dumps.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from .log_operators import flags_of

if TYPE_CHECKING:
    from .context import StreamContext

Test = Callable[["StreamContext"], bool]
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "EQ": lambda a, b: a == b, "GE": lambda a, b: a >= b, "LE": lambda a, b: a <= b,
    "NE": lambda a, b: a != b,
}


@dataclass(frozen=True, slots=True)
class LogFilter:
    text: str
    test: Test = field(compare=False, repr=False)


def status_code(op: str, value: int) -> LogFilter:
    cmp = COMPARE[op]

    def test(ctx: StreamContext) -> bool:
        r = ctx.response
        return cmp(r.status if r is not None else 0, value)
    return LogFilter(f"status {op} {value}", test)


def duration(op: str, value_ms: int) -> LogFilter:
    cmp = COMPARE[op]
    return LogFilter(f"duration {op} {value_ms}ms", lambda ctx: cmp(ctx.duration_ms, value_ms))


def response_flags(flags: Sequence[str]) -> LogFilter:
    """Streams with any of `flags` (Envoy's letters); with none given, any flag at all."""
    wanted = frozenset(flags)

    def test(ctx: StreamContext) -> bool:
        got = flags_of(ctx)
        if not got:
            return False
        return not wanted or any(f in wanted for f in got.split(","))
    return LogFilter(f"response flags {','.join(sorted(wanted)) or 'any'}", test)


def not_health_check() -> LogFilter:
    """mosnx answers no health checks in the HTTP path (Envoy's health_check filter
    marks the ones it does): every stream passes."""
    return LogFilter("not health check", lambda ctx: True)


def sampled(percent: float, rnd: Callable[[], float] = random.random) -> LogFilter:
    """Envoy's runtime_filter with its default: `percent` of streams, at random."""
    share = percent / 100.0
    return LogFilter(f"sampled {percent:g}%", lambda ctx: rnd() < share)


def all_of(filters: Sequence[LogFilter]) -> LogFilter:
    tests = tuple(f.test for f in filters)
    return LogFilter("(" + " and ".join(f.text for f in filters) + ")", lambda ctx: all(t(ctx) for t in tests))


def any_of(filters: Sequence[LogFilter]) -> LogFilter:
    tests = tuple(f.test for f in filters)
    return LogFilter("(" + " or ".join(f.text for f in filters) + ")", lambda ctx: any(t(ctx) for t in tests))
