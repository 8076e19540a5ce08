"""Replies the proxy makes itself: a step's or route's LocalReply, and failures
(which the `error` phase may replace). Either is sent only while the response
has not begun; the `response` steps see it, but may not hold it for I/O.
"""
from __future__ import annotations

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.context import ResponseHead
from mosnx.runtime.headers import Headers

from ..codec.http2 import grpc_local_reply, is_grpc
from .state import COMPLETE, DONE, HEAD_SENT
from .steps import ERROR, LOCAL_REPLY
from .fields import StreamFields

# Local replies for circuit-breaker overflow; Envoy marks them with x-envoy-overloaded.
_OVERLOADED = frozenset({"upstream_overflow", "upstream_rq_overflow"})

_ERROR_BODIES = {
    404: b"route not found\n",
    500: b"internal error\n",
    502: b"upstream protocol error\n",
    503: b"upstream unavailable\n",
    504: b"upstream request timeout\n",
}


class LocalReplyMixin(StreamFields):
    __slots__ = ()

    def local_reply(self, r: LocalReply) -> None:
        """A reply decided by a step or the route (not a proxy failure)."""
        self._send_local(r)

    def fail(self, status: int, detail: str) -> None:
        """The proxy itself fails the stream: the `error` phase may replace the reply."""
        if self.resp >= HEAD_SENT:
            return
        self.ctx.error_detail = detail
        reply = LocalReply(status, _ERROR_BODIES.get(status, b""), (), detail)
        steps = self.chain.error
        if steps:
            reply = self._steps(ERROR, steps, 0, reply)
        self._send_local(reply)

    def _send_local(self, r: LocalReply) -> None:
        if self.resp >= HEAD_SENT:
            return
        ctx = self.ctx
        if r.status >= 300 and is_grpc(ctx.request.headers):
            r = grpc_local_reply(r)
        if self.timer is not None or self.timeout_at:
            self._disarm_timeout()
        if self.up is not None:
            self._release_upstream(False)
        if self.host is not None:
            self.host.pool.cancel(self)
        if r.detail:
            ctx.error_detail = ctx.error_detail or r.detail
            self.lstats.local_reply(r.detail)
        headers = Headers([(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in r.headers])
        if r.body and not headers.has(b"content-type"):
            headers.items.append((b"content-type", b"text/plain"))
        if r.detail:
            headers.items.append((b"x-mosnx-error", r.detail.encode("latin-1")))
            if r.detail in _OVERLOADED:
                headers.items.append((b"x-envoy-overloaded", b"true"))
        headers.items.append((b"x-request-id", ctx.request_id.encode("latin-1")))
        ctx.response = ResponseHead(r.status, headers)
        steps = self.chain.response
        if steps:
            self._steps(LOCAL_REPLY, steps, 0, True)
        body = r.body if ctx.request.method != "HEAD" else b""
        self.resp = DONE
        if self.req is not COMPLETE:
            # the client may still be sending a body we will never read: close after
            self.client_keep_alive = False
        self.down.send_head(self, r.status, headers, len(r.body), not body)
        if body:
            self.ctx.bytes_sent += len(body)
            self.down.send_data(self, body)
        self.down.send_end(self, None)
        self._finish()
