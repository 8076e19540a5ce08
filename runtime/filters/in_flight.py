"""The requests a filter admitted and that have not ended yet.

Invariants: a stream counts at most once per filter instance, from admit() in one
of its request hooks until done() in its log hook, which runs for every stream
(local replies and errors included); what marks it is one entry in
ctx.filter_state under the filter's own key, so a stream the filter never admitted
(refused, or past the filter when it was added by a reload) is never subtracted.
A mark is any value but None: the filter keeps there what it wants back at the end
(a start time, the breaker a stream reported to).
"""
from __future__ import annotations

from typing import Any

from ..context import StreamContext


def take_mark(ctx: StreamContext, key: str) -> Any:
    """The mark a filter left on the stream under `key` (removed), or None."""
    st = ctx.filter_state
    return st.pop(key, None) if st else None


class InFlight:
    """A filter's count of the streams it admitted and that are still going."""

    __slots__ = ("key", "count")

    def __init__(self, key: str):
        self.key = key
        self.count = 0

    def admit(self, ctx: StreamContext, mark: Any) -> None:
        self.count += 1
        ctx.state()[self.key] = mark

    def done(self, ctx: StreamContext) -> Any:
        """At the stream's end: its mark, and it leaves the count; None for a stream
        this filter did not admit."""
        mark = take_mark(ctx, self.key)
        if mark is not None:
            self.count -= 1
        return mark
