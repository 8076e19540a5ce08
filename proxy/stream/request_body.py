"""The request body: through the body steps, to the upstream or kept for a retry;
trailers; the end of the request.

While a body step's I/O is pending (req_held is a list), the chunk it holds and
every request event after it wait in order, and the client is not read further.
"""
from __future__ import annotations

from asyncio import Future
from typing import Any

from mosnx.runtime.headers import Headers

from .state import COMPLETE, DONE, HEAD_SENT
from .steps import REQUEST_BODY, REQUEST_TRAILERS
from .fields import StreamFields


class RequestBodyMixin(StreamFields):
    __slots__ = ()

    def on_request_body(self, data: bytes) -> None:
        self.ctx.bytes_received += len(data)
        self._request_chunk(data)

    def _request_chunk(self, data: bytes) -> None:
        if self.resp >= DONE:
            return      # the response is over: the rest of the body is read and dropped
        if self.req_held is not None:
            self.req_held.append((data, None, False))
            return
        steps = self.chain.request_body
        if steps:
            data = self._steps(REQUEST_BODY, steps, 0, data, False)
            if not data:
                return      # a filter holds (buffers or awaits) the chunk, or ended the stream
        self._send_body(data)

    def _send_body(self, data: bytes) -> None:
        """A request body chunk as filters left it: to the upstream, or kept until connected
        (and for replay when a retry policy may need it)."""
        if self.mirror_body is not None:
            self.mirror_body.add(data)
        buf = self.body_buf
        if buf is not None and self.replayable:
            if self.body_bytes + len(data) <= self.listener.config.limits.retry_buffer:
                buf.append(data)
                self.body_bytes += len(data)
                if self.up is not None:
                    self.up.send_body(data)
                    return
                self._check_buffer_pressure()
                return
            self.replayable = False
        up = self.up
        if up is not None:
            up.send_body(data)
            return
        if buf is None:
            self.body_buf = buf = []
        buf.append(data)
        self.body_bytes += len(data)
        self._check_buffer_pressure()

    def _check_buffer_pressure(self) -> None:
        if self.body_bytes > self.listener.config.limits.write_high_water and not self.paused_down:
            self.paused_down = True
            self.down.pause_body(self)

    def on_request_end(self, trailers: Headers | None) -> None:
        if self.req_held is not None:
            self.req_held.append((b"", trailers, True))
            return
        steps = self.chain.request_body
        # a request whose head ended it has no body to end: as in Envoy, body steps
        # are not called for it
        if steps and self.resp < DONE and not self.ctx.request_bodyless:
            tail = self._steps(REQUEST_BODY, steps, 0, b"", True)
            if self.req_held is not None:
                self.req_held.append((None, trailers, True))     # the end waits for the step
                return
            if tail:
                self._send_body(tail)
        self._request_ended(trailers)

    def _request_ended(self, trailers: Headers | None) -> None:
        if trailers is not None:
            self.ctx.request.trailers = trailers
            steps = self.chain.request_trailers
            if steps:
                return self._trailer_steps(REQUEST_TRAILERS, steps, 0, self._request_trailers_done)
        self._request_complete(trailers)

    def _request_trailers_done(self, reply: Any) -> None:
        # the request is whole (its trailers came) before a trailers step's reply is
        # given, so the reply leaves the connection open
        self.req = COMPLETE
        if reply is not None:
            self._answer(reply)
        self._request_complete(self.ctx.request.trailers)

    def _request_complete(self, trailers: Headers | None) -> None:
        self.req = COMPLETE
        self.req_trailers = trailers
        if (self.route_timeout and self.timer is None and not self.timeout_at and self.resp < HEAD_SENT):
            self._arm_timeout(self.route_timeout)
        up = self.up
        if up is not None:
            up.send_end(trailers)
        if self.mirror_body is not None:
            mb, self.mirror_body = self.mirror_body, None
            mb.send()
        if self.resp >= DONE:
            self.down.stream_finished(self)

    def _hold_request(self, fut: Future[Any], resume_at: int, data: Any, end: bool) -> None:
        # the chunk, and what the client sends meanwhile, wait for the step's I/O;
        # the client is not read further until then
        self.req_held = []
        if not self.paused_down:
            self.paused_down = True
            self.down.pause_body(self)
        self._when_settled(fut, lambda r: self._request_resumed(r, resume_at, data, end))

    def _request_resumed(self, r: Any, resume_at: int, data: bytes, end: bool) -> None:
        held, self.req_held = self.req_held, None
        data = self._settled(REQUEST_BODY, r, data)
        if data is not None and self.resp < DONE:
            data = self._steps(REQUEST_BODY, self.chain.request_body, resume_at, data, end)
            if self.req_held is not None:
                self.req_held.extend(held)      # paused again by a later step
                return
            if data:
                self._send_body(data)
        if end:
            # the end of the request was what waited: its trailers are the first held event
            self._request_ended(held.pop(0)[1] if held else None)
        for chunk, trailers, is_end in held or ():
            # what arrived meanwhile, in order (should a step pause again, the rest
            # queues behind it)
            if is_end:
                self.on_request_end(trailers)
            else:
                self._request_chunk(chunk)
        if self.req_held is None and self.paused_down and (
                self.up is not None and not self.up.paused
                or self.up is None and self.body_bytes <= self.listener.config.limits.write_high_water):
            self.paused_down = False
            self.down.resume_body(self)
