"""The one step runner: runs a phase's pipeline steps over a stream, and what a
step's result means in that phase is data (Phase), not a loop of its own.

A step returns None (go on), bytes (a body step's new chunk), Pause (wait for I/O)
or an Action (a LocalReply answers the stream). Per phase:

| phase            | a reply                          | a Pause               | an exception          |
|------------------|----------------------------------|-----------------------|-----------------------|
| request headers  | answers (the response not begun) | holds the phase       | 500 (internal_error)  |
| request body     | answers; cuts a begun response   | holds the body        | 500, or cuts          |
| request trailers | answers once the request is whole; cuts a begun response | holds the end | 500, or cuts |
| response headers | answers instead of the upstream  | holds the head        | 500                   |
| response body    | cuts the response short          | holds the body        | cuts                  |
| response trailers| cuts the response short          | holds the end         | cuts                  |
| error            | replaces the reply               | its I/O is dropped    | logged, skipped       |
| local reply      | ignored (the reply stands)       | its I/O is dropped    | logged, skipped       |
| log              | ignored                          | its I/O is dropped    | logged, skipped       |

Once the response head is out a reply can no longer be honoured: the response is
cut short (the client sees a reset, never a response that looks complete), as
Envoy resets a stream whose filter answers after the headers went out.
"""
from __future__ import annotations

import asyncio
from asyncio import Future
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mosnx.runtime.actions import LocalReply, Pause

from .state import ENDED, HEAD_SENT
from .fields import Hold, StreamFields

ANSWER = "answer"       # the reply ends the stream (a local reply, or a cut once the head is out)
REPLACE = "replace"     # the reply becomes the one to send (the error phase)
IGNORE = "ignore"       # the reply is already decided
RETURN = "return"       # the reply goes back to the caller, which answers once the phase's end is kept


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    body: bool          # steps take (ctx, chunk, end_of_stream) and may return a new chunk
    waits: bool         # a Pause holds the stream until its I/O settles; else the I/O is dropped
    reply: str          # ANSWER, REPLACE or IGNORE
    fatal: bool         # an exception fails the stream (else it is logged and the step skipped)
    # the stream's method that keeps what waits for a paused step (the hold, when the
    # caller gives none): named, not bound, so a run that does not pause makes nothing
    holder: str = ""


REQUEST = Phase("request", False, True, ANSWER, True, "_hold_decision")
REQUEST_BODY = Phase("request_body", True, True, ANSWER, True, "_hold_request")
REQUEST_TRAILERS = Phase("request_trailers", False, True, RETURN, True)
RESPONSE = Phase("response", False, True, ANSWER, True, "_hold_response")
RESPONSE_BODY = Phase("response_body", True, True, ANSWER, True, "_hold_response_body")
RESPONSE_TRAILERS = Phase("response_trailers", False, True, RETURN, True)
ERROR = Phase("error", False, False, REPLACE, False)
LOCAL_REPLY = Phase("response (local reply)", False, False, IGNORE, False)
LOG = Phase("log", False, False, IGNORE, False)
PHASES = (REQUEST, REQUEST_BODY, REQUEST_TRAILERS, RESPONSE, RESPONSE_BODY, RESPONSE_TRAILERS,
          ERROR, LOCAL_REPLY, LOG)

# what a paused step's failed I/O becomes
FILTER_FAILURE = LocalReply(500, b"", (), "filter_failure")


def future_of(awaitable: Any) -> Future[Any] | None:
    """The future of a Pause's awaitable; None when there is nothing to wait for."""
    try:
        return asyncio.ensure_future(awaitable)
    except TypeError:
        return None


def drop(awaitable: Any) -> None:
    """Stop the I/O of a Pause nothing will wait for."""
    stop = getattr(awaitable, "close", None) or getattr(awaitable, "cancel", None)
    if stop is not None:
        stop()


class StepsMixin(StreamFields):
    __slots__ = ()

    def _steps(self, phase: Phase, steps: Sequence[Callable[..., Any]], start: int, data: Any,
               end: bool = False, hold: Hold | None = None) -> Any:
        """Run `steps` from `start` for `phase`. Returns `data` as the steps left it
        (a body phase's chunk; for REPLACE, the reply to send) once every step went on;
        None when the stream stopped here: a step answered, or paused, and then
        `hold(future, next_step, data, end)` (the phase's holder when None) keeps what
        waits for its I/O."""
        ctx = self.ctx
        body = phase.body
        for i in range(start, len(steps)):
            try:
                r = steps[i](ctx, data, end) if body else steps[i](ctx)
            except Exception:
                self.worker.log_exception(phase.name + " step failed")
                if not phase.fatal:
                    continue
                self._failed_in(phase)
                return None
            if r is None:
                continue
            if body and isinstance(r, bytes):
                data = r
            elif isinstance(r, Pause):
                if not phase.waits:
                    drop(r.awaitable)
                    continue
                fut = future_of(r.awaitable)
                if fut is None:
                    continue        # nothing to wait for
                (hold or getattr(self, phase.holder))(fut, i + 1, data, end)
                return None
            elif phase.reply is ANSWER:
                self._answer(r)
                return None
            elif phase.reply is REPLACE:
                if isinstance(r, LocalReply):
                    data = r
            elif phase.reply is RETURN:
                return r
        return data

    def _trailer_steps(self, phase: Phase, steps: Sequence[Callable[..., Any]], start: int,
                       done: Callable[[Any], None]) -> None:
        """A trailers phase from `start`, then `done(reply)` (the LocalReply a step
        answered with, or None). A step that pauses holds the rest of the phase, and
        with it the end of the stream, until its I/O settles; one that fails the
        stream ends it here."""
        def hold(fut: Future[Any], nxt: int, _data: Any, _end: bool) -> None:
            def resumed(r: Any) -> None:
                r = self._settled(phase, r, True)
                if r is True:
                    self._trailer_steps(phase, steps, nxt, done)
                else:
                    done(r)
            self._when_settled(fut, resumed)
        r = self._steps(phase, steps, start, True, False, hold)
        if r is not None:
            done(None if r is True else r)

    def _answer(self, r: Any) -> None:
        """A step answered with the Action `r`: the stream's reply, or (the head being
        out) the response is cut short."""
        if self.resp >= HEAD_SENT:
            self._cut(getattr(r, "detail", "") or "filter_failure")
        elif isinstance(r, LocalReply):
            self.local_reply(r)
        else:
            self.fail(500, "internal_error")

    def _failed_in(self, phase: Phase) -> None:
        if self.resp >= HEAD_SENT:
            self._cut("filter_failure")
        else:
            self.fail(500, "internal_error")

    def _when_settled(self, fut: Future[Any], then: Callable[[Any], None]) -> None:
        """Once a paused step's I/O settles, `then(result)`: None, an Action, bytes (a
        body step's), or FILTER_FAILURE if it failed; nothing if the stream ended
        meanwhile."""
        def settled(f: Future[Any]) -> None:
            if self.resp < ENDED:
                try:
                    r = f.result()
                except Exception:
                    self.worker.log_exception("paused step failed")
                    r = FILTER_FAILURE
                then(r)
        fut.add_done_callback(settled)

    def _settled(self, phase: Phase, r: Any, data: Any) -> Any:
        """What a paused step's result means: the chunk to go on with (or True for a
        phase without one), or None when it answered (and the answer is given)."""
        if r is None:
            return data
        if phase.body and isinstance(r, bytes):
            return r
        if phase.reply is RETURN:
            return r
        self._answer(r)
        return None

