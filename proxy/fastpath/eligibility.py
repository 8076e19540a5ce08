"""Who may take the express path (fastpath.express), decided once per thing decided:

- per listener, when a connection takes it (and again when its config changes):
  the fast path is on and the listener has no request step (a traced listener may:
  the trace begins when the request is admitted and its context is written when
  the attempt starts, on either path);
- per request, when its stream is made: it has no body, no upgrade and no
  `Expect: 100-continue`;
- per route, when the snapshot is built: runtime.routes gives a route its `plain`
  action (no step in any phase of its chain, no retry, mirror or rewrite) or None;
- per call, when the express stream starts: not gRPC (a deadline and trailers-only
  errors are the general path's).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mosnx.runtime.model import Listener

from . import memo


def listener_express(listener: Listener) -> bool:
    """Whether requests on `listener` may take the express path at all."""
    return memo.enabled() and not listener.pipeline.request


def request_express(listener_ok: bool, body: int | None, upgrade: bool, expect_continue: bool) -> bool:
    """Whether a request on a listener that allows it may take the express path."""
    return listener_ok and body == 0 and not upgrade and not expect_continue
