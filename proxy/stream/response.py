"""The response: its head through the response steps, its body through the body
steps, its end; what the downstream is sent.

While a response step's I/O is pending (held is a list), the head or chunk it
holds and every upstream event after it wait in order, and the upstream is not
read further.
"""
from __future__ import annotations

from asyncio import Future
from typing import Any

import time

from mosnx.runtime.context import ResponseHead
from mosnx.runtime.headers import Headers

from ..forwarding import kept_end_to_end
from .retry import retriable_status
from .state import BODY_ENDED, COMPLETE, DONE, HEAD_SENT
from .steps import RESPONSE, RESPONSE_BODY, RESPONSE_TRAILERS
from .contracts import Upstream
from .fields import StreamFields

_monotonic = time.monotonic


class ResponseMixin(StreamFields):
    __slots__ = ()

    def on_upstream_head(self, status: int, headers: Headers, keep_alive: bool, body: int | None) -> None:
        self.up_keep_alive = keep_alive
        if self.ctx.trace is not None and self.ctx.trace.sampled:     # an unsampled attempt records nothing
            self.ctx.trace.attempt_status(status)
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        retry = self.action.retry
        if self.wants_retry_5xx and retriable_status(status, retry) and self._can_retry():
            self.host.observe(status, (_monotonic() - self.upstream_start) * 1000.0)
            self._release_upstream(False)
            self.cluster.count_status(status)
            return self._retry()
        if self.retrying and not (self.wants_retry_5xx and retriable_status(status, retry)):
            self.cluster.c["upstream_rq_retry_success"].value += 1
            self.lstats.rq_retry_ok.value += 1
        self._head_arrived(status, headers)
        if status == 101 and self.upgrade:
            return self._start_tunnel(headers)
        self.body_buf = None
        steps = self.chain.response
        if steps and self._steps(RESPONSE, steps, 0, True, False) is None:
            self.held_body = body
            return
        self._send_upstream_head(body)

    def on_upstream_whole(self, conn: Upstream, status: int, headers: Headers, keep_alive: bool,
                          body_len: int, body: bytes, decoded: object = None) -> bool:
        """A whole response in one read: True when the stream took it in one step,
        False when the connection must hand it over as three events (a retry, a
        per-try timer, an upgrade or a held step may act between them). Its steps see
        the head, the body (one chunk carrying end_stream) and the end as they would
        as three events."""
        if self.express:
            return self._express_whole(conn, status, headers, keep_alive, body_len, body, decoded)
        if (self.wants_retry_5xx or self.retrying or self.try_timer is not None or self.upgrade
                or self.held is not None or self.resp >= HEAD_SENT):
            return False
        if self.ctx.trace is not None and self.ctx.trace.sampled:     # an unsampled attempt records nothing
            self.ctx.trace.attempt_status(status)
        self.up_keep_alive = keep_alive
        self._head_arrived(status, headers)
        self.body_buf = None
        steps = self.chain.response
        if steps and self._steps(RESPONSE, steps, 0, True, False) is None:
            # a step answered (the upstream is let go, so the rest is dropped) or
            # paused (the rest waits with the head)
            self.held_body = body_len
            if body_len:
                self.on_upstream_data(body)
            conn.stream = None
            self.on_upstream_end(None)
            return True
        self._send_upstream_head(body_len)
        if self.up is not conn:
            return True     # the stream let go of the connection meanwhile: the rest is dropped
        if body_len:
            steps = self.resp_body_steps
            if steps:
                self.resp = BODY_ENDED
                body = self._steps(RESPONSE_BODY, steps, 0, body, True)
                if self.held is not None:
                    conn.stream = None
                    self.on_upstream_end(None)      # the end waits behind the chunk
                    return True
            if body:
                self._deliver(body)
        # what the connection's end of response and on_upstream_end do for it
        conn.stream = None
        self._release_upstream(keep_alive and self.req is COMPLETE)
        self._response_complete(None)
        return True

    def _head_arrived(self, status: int, headers: Headers) -> float:
        """The attempt that stands has its answer: the route timeout stops (the body
        streams), the cluster and host count it, and it becomes the response. Returns
        the attempt's time to the head, in ms (stream.detail records it again)."""
        self.timeout_at = 0.0
        if self.timer is not None:
            self._disarm_timeout()
        cluster = self.cluster
        c = cluster.rq_codes.get(status)        # cluster.count_status, inline
        if c is None:
            c = cluster.code_counter(status)
        c.value += 1
        elapsed = (_monotonic() - self.upstream_start) * 1000.0
        cluster.rq_time.add(elapsed)
        self.host.observe(status, elapsed)
        self.ctx.response = ResponseHead(status, headers)
        return elapsed

    def _hold_response(self, fut: Future[Any], resume_at: int, _data: Any, _end: bool) -> None:
        # the head waits for the step's I/O; body bytes already read wait with it, and
        # the upstream is not read further until then
        self.held = []
        if self.up is not None:
            self.up.pause_reading()
        self._when_settled(fut, lambda r: self._response_resumed(r, resume_at))

    def _response_resumed(self, r: Any, resume_at: int) -> None:
        if self._settled(RESPONSE, r, True) is None:
            self.held = None
            return
        if self._steps(RESPONSE, self.chain.response, resume_at, True, False) is None:
            return
        held, self.held = self.held, None
        self._send_upstream_head(self.held_body)
        self._replay_response(held)

    def _send_upstream_head(self, body: int | None) -> None:
        """The upstream's response head, as the response steps left it, to the client."""
        response: ResponseHead = self.ctx.response  # type: ignore[assignment]  # _head_arrived set it
        headers = response.headers
        self.resp_body_steps = steps = self.chain.response_body
        if body:
            self.resp = HEAD_SENT
            self.resp_left = body
            if steps and not headers.has(b"content-length"):
                # a body filter that may resize the body drops Content-Length (as Envoy
                # asks of filters); the response is then re-framed as chunked
                body = None
        elif body == 0:
            # a response without a body (HEAD, 204, 304, Content-Length: 0): as in
            # Envoy, body steps are not called for it
            self.resp = BODY_ENDED
        else:
            self.resp = HEAD_SENT
            self.resp_left = 0       # a length the head does not tell
        items = list(kept_end_to_end(headers.items))
        if self.attempts > 1 and self.action is not None and self.action.retry is not None:
            items.append((b"x-envoy-attempt-count", str(self.attempts).encode()))
        headers.items = items
        self.down.send_head(self, response.status, headers, body, False)

    def on_upstream_data(self, data: bytes) -> None:
        if self.held is not None:
            self.held.append(("data", data))
            return
        resp = self.resp
        if resp < HEAD_SENT or resp >= DONE:
            return
        steps = self.resp_body_steps
        if steps:
            # the chunk that completes a Content-Length body carries end_stream, as in
            # Envoy, so body filters are not called once more with nothing
            end = False
            left = self.resp_left
            if left > 0:
                left -= len(data)
                end = left <= 0
                self.resp_left = left
                if end:
                    self.resp = BODY_ENDED
            data = self._steps(RESPONSE_BODY, steps, 0, data, end)
            if not data:
                return
        self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        self.ctx.bytes_sent += len(data)
        self.down.send_data(self, data)
        if not self.down.writable():
            up = self.up
            if up is not None:
                up.pause_reading()

    def _hold_response_body(self, fut: Future[Any], resume_at: int, data: Any, end: bool) -> None:
        # as for a paused head: the chunk and what the upstream sends meanwhile wait
        self.held = []
        if self.up is not None:
            self.up.pause_reading()
        self._when_settled(fut, lambda r: self._response_body_resumed(r, resume_at, data, end))

    def _response_body_resumed(self, r: Any, resume_at: int, data: bytes, end: bool) -> None:
        held, self.held = self.held, None
        data = self._settled(RESPONSE_BODY, r, data)
        if data is None:
            return      # the head is out: the answer cut the response short
        data = self._steps(RESPONSE_BODY, self.resp_body_steps, resume_at, data, end)
        if self.held is not None:
            self.held.extend(held)      # paused again by a later step
            return
        if data:
            self._deliver(data)
        if end:
            self.resp = BODY_ENDED      # the end's body steps have run
        self._replay_response(held)

    def _replay_response(self, held: list[tuple[str, Any]] | None) -> None:
        """Upstream events kept while a response step was paused, in order (should a
        step pause again, the rest queues behind it); then reading goes on."""
        for kind, arg in held or ():
            if kind == "data":
                self.on_upstream_data(arg)
            else:
                self.on_upstream_end(arg)
        self.down.flush()
        if self.held is None and self.up is not None:
            self.up.resume_reading()

    def on_downstream_drain(self) -> None:
        up = self.up
        if up is not None and self.held is None:
            up.resume_reading()

    def on_upstream_end(self, trailers: Headers | None) -> None:
        if self.tunnel_up is not None:
            return
        self._release_upstream(self.up_keep_alive and self.req is COMPLETE)
        if self.held is not None:
            self.held.append(("end", trailers))
            return
        resp = self.resp
        if resp < HEAD_SENT or resp >= DONE:
            return
        steps = self.resp_body_steps
        if steps and resp is not BODY_ENDED:
            tail = self._steps(RESPONSE_BODY, steps, 0, b"", True)
            if self.held is not None:
                self.held.append(("end", trailers))     # the end waits for the step
                return
            if tail is None:
                return      # cut short
            if tail:
                self._deliver(tail)
        if trailers is not None and self.chain.response_trailers:
            self.ctx.response.trailers = trailers  # type: ignore[union-attr]  # the head came first
            return self._trailer_steps(RESPONSE_TRAILERS, self.chain.response_trailers, 0,
                                       self._response_trailers_done)
        self._response_complete(trailers)

    def _response_trailers_done(self, reply: Any) -> None:
        if reply is not None:
            # the head is out: a trailers step's reply can no longer be given
            return self._cut(getattr(reply, "detail", "") or "filter_failure")
        self._response_complete(self.ctx.response.trailers)  # type: ignore[union-attr]  # the head came first

    def _response_complete(self, trailers: Headers | None) -> None:
        self.resp = DONE
        self.down.send_end(self, trailers)
        self._finish()

    def _cut(self, detail: str) -> None:
        """End a begun response short: the client sees it reset, never complete."""
        self.ctx.error_detail = self.ctx.error_detail or detail
        self.resp = DONE
        self._release_upstream(False)
        self.down.flush()
        self.down.abort(self)
        self._finish()

