"""HttpStream: one request/response through a snapshot.

The stream's methods are the transitions of its lifecycle (decide, forward, retry,
answer, time out, reset, log) over one set of fields; each module of this package
holds one part of that lifecycle as a mixin without fields of its own, and this
class puts them together over the one slotted layout, so a stream costs one object
and its methods are found as fast as on a single class.

Which module owns which fields:
- decide: action, cluster, chain, express (the short path's eligibility);
- attempt: host, up, att, attempts, tried, reused, refused, upstream_start;
- request_body: req, request_body, req_chunked, body_buf, body_bytes, replayable,
  req_trailers, req_held, paused_down, mirror_body;
- response: resp, resp_left, resp_body_steps, held, held_body, up_keep_alive;
- retry: retrying, wants_retry_5xx; timeouts: timer, timeout_at, try_timer,
  route_timeout, idle_mark, idle_since; tunnel: tunnel_up;
- fastpath.express: decoded (the decoder's memo entry of the request head).
"""
from __future__ import annotations

import time

from typing import TYPE_CHECKING, Any

from mosnx.runtime.context import StreamContext
from mosnx.runtime.tracing.trace import SampledWire

from ..fastpath.express import ExpressMixin
from .attempt import AttemptMixin
from .contracts import Downstream
from .decide import DecideMixin
from .local_reply import LocalReplyMixin
from .request_body import RequestBodyMixin
from .response import ResponseMixin
from .retry import RetryMixin
from .state import A_IDLE, COMPLETE, DONE, ENDED, HEAD_SENT, PENDING, WAITING
from .steps import LOG, StepsMixin
from .timeouts import TimeoutsMixin
from .tunnel import TunnelMixin

if TYPE_CHECKING:
    from mosnx.runtime.model import Listener

    from ..listener_stats import ListenerStats

_monotonic = time.monotonic


class HttpStream(DecideMixin, StepsMixin, AttemptMixin, RequestBodyMixin, ResponseMixin,
                 RetryMixin, TimeoutsMixin, TunnelMixin, LocalReplyMixin, ExpressMixin):
    __slots__ = ()      # the fields are StreamFields's (fields.py)

    def __init__(self, down: Downstream, worker: Any, listener: Listener, lstats: ListenerStats,
                 ctx: StreamContext, body: int | None, keep_alive: bool, upgrade: bool,
                 expect_continue: bool, express: bool = False) -> None:
        self.ctx = ctx
        ctx.request_bodyless = body == 0
        self.down = down
        self.worker = worker
        self.listener = listener
        self.lstats = lstats
        self.chain = listener.pipeline
        # set by the decision and the attempt before anything reads them
        self.action = None  # type: ignore[assignment]
        self.cluster = None  # type: ignore[assignment]
        self.host = None  # type: ignore[assignment]
        self.up = None
        self.req = PENDING
        self.resp = WAITING
        self.att = A_IDLE
        self.request_body = body            # None: chunked; else Content-Length
        self.body_buf: list[bytes] | None = None   # chunks not yet sent upstream (or kept for retry)
        self.body_bytes = 0
        self.replayable = True
        self.req_trailers = None
        self.req_chunked = body is None
        self.timer = None
        self.timeout_at = 0.0       # a long route timeout, kept by the worker's sweep
        self.try_timer = None
        self.attempts = 0
        self.tried = None
        self.resp_body_steps = ()
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.tunnel_up = None
        self.up_keep_alive = False
        self.upstream_start = 0.0
        self.retrying = False
        self.client_keep_alive = keep_alive
        self.paused_down = False
        self.wants_retry_5xx = False
        self.reused = False
        self.express = express      # may take the short path (fastpath.eligibility)
        self.idle_mark = -1
        self.idle_since = 0.0
        self.route_timeout = 0.0
        self.resp_left = 0       # response body bytes still due by Content-Length (0: not known)
        self.held = None         # upstream events kept while a response step is paused
        self.held_body = None
        self.mirror_body = None             # worker.MirrorBody collecting a copy for shadow clusters
        self.req_held = None     # request body events kept while a request body step is paused
        self.decoded = None      # the decoder's memo entry of the request head, when it came from one
        self.refused = False     # an attempt the upstream never processed was made again
        # an express stream's fresh trace context, encoded, for its upstream connection
        # to write, while it has no trace object (Tracer.begin_express; a stream off
        # the express path makes it one at once, in start()); a sampled one
        # (SampledWire) is recorded when the stream is logged
        self.trace_wire: bytes | None = None

    # -- what the servers, pools and mirrors read (contracts.Stream) --
    @property
    def alive(self) -> bool:
        return self.resp < ENDED

    @property
    def admitted(self) -> bool:
        return self.req is not PENDING

    @property
    def request_done(self) -> bool:
        return self.req is COMPLETE

    @property
    def response_started(self) -> bool:
        return self.resp >= HEAD_SENT

    @property
    def response_done(self) -> bool:
        return self.resp >= DONE

    # -- endings --
    def _finish(self) -> None:
        if self.timer is not None or self.timeout_at:
            self._disarm_timeout()
        if self.resp is ENDED:
            return
        self.resp = ENDED
        self._log()
        if self.req is COMPLETE or not self.client_keep_alive:
            self.down.stream_finished(self)

    def _log(self) -> None:
        if self.retrying:
            self._release_retry()
        ctx = self.ctx
        ls = self.lstats
        ls.rq_active.value -= 1
        if ctx.response is not None:
            cls = ctx.response.status // 100
            c = ls.class_counters[cls] if cls < 10 else None
            if c is not None:
                c.value += 1
        ls.rq_time.add((_monotonic() - ctx.start) * 1000.0)
        steps = self.chain.log
        if steps:
            self._steps(LOG, steps, 0, True)
        al = self.worker.access_logs.get(self.listener.config.name)
        if al is not None:
            if self.trace_wire is not None:
                self._trace_object(True)        # the log may name its ids
            al.write(ctx)
        tr = ctx.trace
        if tr is not None:
            if tr.sampled:
                tr.finish(ctx)          # the server span ends; its record goes to export
        elif self.trace_wire.__class__ is SampledWire:
            # an express stream's sampled trace, only its context until now
            self.listener.tracer.finish_express(ctx, self.trace_wire)

    def reset(self) -> None:
        """The client went away mid-stream: release everything, log once."""
        if self.req is PENDING:
            return
        live = self.resp < ENDED
        if live:
            self.lstats.rx_reset.value += 1
            self.ctx.error_detail = self.ctx.error_detail or "downstream_remote_disconnect"
            self.resp = ENDED
        if self.timer is not None or self.timeout_at:
            self._disarm_timeout()
        if self.host is not None:
            self.host.pool.cancel(self)
        if self.up is not None:
            self._release_upstream(False)
        if self.tunnel_up is not None:
            up, self.tunnel_up = self.tunnel_up, None
            up.close()
        if live:
            self._log()
