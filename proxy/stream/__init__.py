"""The stream executor: runs one request/response through a snapshot.

Order (DESIGN.md): listener `request` steps → vhost → vhost `request` steps → route
match → route `request` steps → action (local reply, redirect, or forward) →
`upstream_request` → upstream (cluster → balancer → pool → send; retries re-run
only this part) → `response` → `response_body` → `log`. Errors go through `error`.

Modules, each one part of a stream's lifecycle over HttpStream's one set of fields:
decide (request id, vhost, route, action), steps (running a phase's steps),
attempt (host, pooled connection, sending the request), request_body, response,
retry, timeouts, tunnel, local_reply; executor puts them together.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .executor import HttpStream

__all__ = ["HttpStream"]


def __getattr__(name: str) -> type:
    # HttpStream is put together from the fast path's mixin too (fastpath.express), which
    # itself builds on this package's fields: loaded when first asked for, either may
    # be imported first
    if name == "HttpStream":
        from .executor import HttpStream
        return HttpStream
    raise AttributeError(name)
