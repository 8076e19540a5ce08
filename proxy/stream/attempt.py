"""One upstream attempt: pick a host, take a pooled connection, hand it the request,
and let the connection go again.

The upstream handle (contracts.Upstream) takes the request as fields and chunks
and frames it for its protocol; nothing here knows HTTP/1.1 from HTTP/2. While an
attempt is ACTIVE it is counted on its host and on the cluster's circuit breaker,
and it is uncounted exactly once, however it ends.
"""
from __future__ import annotations

import time

from mosnx.runtime.tracing.trace import SampledWire

from ..upstream.pool import OVERFLOW
from .state import A_ACTIVE, A_IDLE, A_WAITING, ENDED, HEAD_SENT, COMPLETE
from .contracts import Upstream
from .fields import StreamFields

_monotonic = time.monotonic
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class AttemptMixin(StreamFields):
    __slots__ = ()

    def _forward(self) -> None:
        cluster = self.cluster
        ctx = self.ctx
        if cluster.res.rq_active >= cluster.cb.max_requests:
            cluster.c["upstream_rq_pending_overflow"].value += 1
            return self.fail(503, "upstream_rq_overflow")
        host = cluster.pick(ctx, self.tried)
        if host is None:
            return self.fail(503, "no_healthy_upstream")
        self.host = host
        self.attempts += 1
        ctx.attempt_count = self.attempts
        ctx.upstream_address = host.address
        if ctx.trace is not None:
            # its client span, and the trace context on the upstream request
            ctx.trace.attempt_start(ctx, ctx.cluster_name, host.address, self.attempts)
        self.att = A_WAITING
        conn = host.pool.acquire(self)
        if conn is OVERFLOW:
            self.att = A_IDLE
            return self.fail(503, "upstream_overflow")
        if conn is not None:
            self.on_pool_ready(conn)

    def on_pool_ready(self, conn: Upstream) -> None:
        if self.express:
            return self._express_ready(conn)
        if not self._attach(conn):
            return
        retry = self.action.retry
        if retry is not None and retry.per_try_timeout:
            self.try_timer = self.worker.loop.call_later(retry.per_try_timeout, self._on_try_timeout)
        req = self.ctx.request
        if self.request_body and not self.req_chunked and not req.headers.has(b"content-length"):
            # a filter removed Content-Length to resize the body: its length is unknown
            # (HTTP/1.1 frames it chunked)
            self.req_chunked = True
        done = self.req is COMPLETE
        conn.send_request(req, self.ctx.source_address, None if self.req_chunked else self.request_body,
                          self.upgrade, self.body_buf, done, self.req_trailers if done else None)
        if retry is None or not self.replayable:
            self.body_buf = None      # nothing to replay: later chunks go straight through
            self.body_bytes = 0
        if self.paused_down and not conn.paused:
            self.paused_down = False
            self.down.resume_body(self)

    def _attach(self, conn: Upstream) -> bool:
        """Take the pool's connection for this attempt (False: the stream is gone)."""
        if self.resp >= ENDED:
            self.att = A_IDLE
            conn.pool.release(conn, True)
            return False
        cluster = self.cluster
        res = cluster.res
        if res.rq_active >= cluster.cb.max_requests:
            # checked again as the request takes its connection, as Envoy's pools do:
            # requests that waited for connections opened together must not all pass.
            # The connection was never the stream's: it goes back unused, once.
            self.att = A_IDLE
            conn.pool.release(conn, True)
            cluster.c["upstream_rq_pending_overflow"].value += 1
            self.fail(503, "upstream_rq_overflow")
            return False
        self.up = conn
        conn.stream = self
        self.reused = conn.reused
        self.ctx.upstream_tls = conn.tls
        host = self.host
        host.rq_active += 1
        host.rq_total += 1
        # the circuit-breaker counts straight on the shared Resources: each of Cluster's
        # properties over them costs a Python call
        res.rq_active += 1
        cluster.rq_total_counter.value += 1
        self.upstream_start = _monotonic()
        self.att = A_ACTIVE
        return True

    def on_pool_failure(self, detail: str, status: int) -> None:
        self.att = A_IDLE
        if self.ctx.trace is not None:
            self.ctx.trace.attempt_end(detail)
        if self.host is not None and detail != "upstream_removed":
            self.host.observe_failure("connect_failure")
        retry = self.action.retry
        if retry is not None and "connect-failure" in retry.retry_on and self._can_retry():
            return self._retry()
        self.fail(status, detail)

    def on_upstream_reset(self, detail: str, status: int) -> None:
        self.up = None
        if self.trace_wire.__class__ is SampledWire:
            # the attempt ends on its own, and a refused stream is made again as a
            # second client span: the sampled trace the stream kept as its context
            # becomes its trace object
            self._trace_object(True)
        if self.ctx.trace is not None:
            self.ctx.trace.attempt_end(detail)
        if (detail == "upstream_refused_stream" and not self.refused and self.resp < HEAD_SENT
                and self._can_replay()):
            # An HTTP/2 endpoint guarantees it never processed this stream (past its
            # GOAWAY's last stream, or REFUSED_STREAM; RFC 9113 §8.7), as nginx does
            # every 1,000 requests: made once more, whatever the method, it is no failure
            # of the host's and no attempt of the retry policy's.
            self.refused = True
            self._after_upstream_gone()
            self.attempts -= 1
            return self._forward_later(0)
        self.host.observe_failure("reset")
        self._after_upstream_gone()
        if self.resp >= HEAD_SENT:
            # never end a response as if complete when the upstream died inside it
            self.cluster.c["upstream_rq_rx_reset"].value += 1
            return self._cut(detail)
        retry = self.action.retry
        if retry is not None and "reset" in retry.retry_on and self._can_retry():
            return self._retry()
        if (self.reused and self.attempts == 1 and self.ctx.request.method in _IDEMPOTENT
                and self._can_replay()):
            # a pooled keep-alive connection raced with the upstream closing it
            self.reused = False
            self.attempts = 0
            return self._forward_later(0)
        self.cluster.c["upstream_rq_rx_reset"].value += 1
        self.fail(status, detail)

    def on_upstream_pressure(self, high: bool) -> None:
        """The upstream's write buffer crossed a watermark: hold or release the client."""
        if high:
            if not self.paused_down:
                self.paused_down = True
                self.down.pause_body(self)
        elif self.paused_down:
            self.paused_down = False
            self.down.resume_body(self)

    def _release_upstream(self, reusable: bool) -> None:
        up = self.up
        if up is None:
            return
        self.up = None
        if up.stream is self:
            up.stream = None
        self._after_upstream_gone()
        up.pool.release(up, reusable and not up.paused)

    def _drop_upstream(self) -> None:
        """Give up on the attempt's connection (a timeout): it is closed, not reused."""
        up = self.up
        self.up = None
        if up is not None:
            up.stream = None
            self._after_upstream_gone()
            up.close()

    def _after_upstream_gone(self) -> None:
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        if self.att is A_ACTIVE:
            self.host.rq_active -= 1
            self.cluster.res.rq_active -= 1
        self.att = A_IDLE
