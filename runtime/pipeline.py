"""Pipelines: the per-stream steps of each phase, as tuples of plain callables.

Phases run in the order of DESIGN.md. A header step is `step(ctx) -> None | Action`;
a body step is `step(ctx, data, end_stream) -> None | bytes | Action` (None leaves
the chunk as it is). Any step may return Pause: its stream waits for the awaitable
(a body step's chunk, and all that follows it, is held), then goes on at the next
step. Filters are written against HttpFilter, a hook per phase;
Pipeline.of() keeps only the hooks a filter overrides, so a no-op costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable

from .actions import Action
from .context import StreamContext

Step = Callable[[StreamContext], "Action | None"]
BodyStep = Callable[[StreamContext, bytes, bool], "bytes | Action | None"]

PHASES = ("request", "upstream_request", "request_body", "request_trailers",
          "response", "response_body", "response_trailers", "log", "error")
# Phases whose steps see the response go in reverse filter order, as Envoy's encoder chain.
REVERSED = frozenset({"response", "response_body", "response_trailers"})


class HttpFilter:
    """One filter, one hook per phase; every hook is a no-op by default.

    name: used in stats (`<name>.<stat>`) and errors.
    Header hooks return None to continue or an Action (LocalReply, Pause).
    Body hooks return None (unchanged), replacement bytes, or an Action.
    """
    name = "filter"

    def on_request(self, ctx: StreamContext) -> Action | None:
        """Before routing; may end the stream with a local reply."""

    def on_upstream_request(self, ctx: StreamContext) -> Action | None:
        """After the route and cluster are chosen, before the request is sent."""

    def on_request_body(self, ctx: StreamContext, data: bytes, end_stream: bool) -> bytes | Action | None:
        """Each request body chunk as it streams (end_stream on the last). Not called
        for a request without a body, as Envoy's decodeData is not."""

    def on_request_trailers(self, ctx: StreamContext) -> Action | None:
        """Request trailers (HTTP/2, chunked HTTP/1.1)."""

    def on_response(self, ctx: StreamContext) -> Action | None:
        """Response headers from the upstream (or a local reply); no blocking I/O."""

    def on_response_body(self, ctx: StreamContext, data: bytes, end_stream: bool) -> bytes | Action | None:
        """Each response body chunk as it streams (end_stream on the last). Not called
        for a response without a body (HEAD, 204, 304, Content-Length: 0)."""

    def on_response_trailers(self, ctx: StreamContext) -> Action | None:
        """Response trailers."""

    def on_log(self, ctx: StreamContext) -> None:
        """After the stream ends, for every stream, local replies and errors included."""

    def on_error(self, ctx: StreamContext) -> Action | None:
        """The proxy failed the stream; may replace the local reply."""


_HOOKS = {
    "request": "on_request", "upstream_request": "on_upstream_request",
    "request_body": "on_request_body", "request_trailers": "on_request_trailers",
    "response": "on_response", "response_body": "on_response_body",
    "response_trailers": "on_response_trailers", "log": "on_log", "error": "on_error",
}


@dataclass(frozen=True, slots=True)
class Pipeline:
    request: tuple[Step, ...] = ()
    upstream_request: tuple[Step, ...] = ()
    request_body: tuple[BodyStep, ...] = ()
    request_trailers: tuple[Step, ...] = ()
    response: tuple[Step, ...] = ()
    response_body: tuple[BodyStep, ...] = ()
    response_trailers: tuple[Step, ...] = ()
    log: tuple[Step, ...] = ()
    error: tuple[Step, ...] = ()

    @classmethod
    def of(cls, filters: Iterable[HttpFilter]) -> "Pipeline":
        """The pipeline of `filters` in order (response phases reversed)."""
        filters = list(filters)
        phases: dict[str, list[Any]] = {p: [] for p in PHASES}
        for f in filters:
            for phase, hook in _HOOKS.items():
                if getattr(type(f), hook) is not getattr(HttpFilter, hook):
                    phases[phase].append(getattr(f, hook))
        for p in REVERSED:
            phases[p].reverse()
        return cls(**{p: tuple(v) for p, v in phases.items()})

    def then(self, inner: "Pipeline") -> "Pipeline":
        """Nest `inner` inside self: request-side steps of self run first,
        response-side steps of inner run first (an encoder chain unwinds)."""
        if inner is EMPTY or not inner:
            return self         # frozen: sharing it changes nothing
        if not self:
            return inner
        kw = {}
        for name in PHASES:
            a, b = getattr(self, name), getattr(inner, name)
            kw[name] = b + a if name in REVERSED else a + b
        return Pipeline(**kw)

    def __bool__(self) -> bool:
        # (a snapshot build asks this of every vhost and route: PHASES, not fields())
        if self is EMPTY:
            return False
        for name in PHASES:
            if getattr(self, name):
                return True
        return False


# then() and __bool__ walk PHASES: they must be the fields, in order
assert PHASES == tuple(f.name for f in fields(Pipeline)), "PHASES and Pipeline's fields differ"

EMPTY = Pipeline()
