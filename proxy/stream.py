"""The stream executor: runs one request/response through a snapshot.

Order (DESIGN.md): listener `request` steps → vhost → vhost `request` steps → route
match → route `request` steps → action (local reply, redirect, or forward) →
`upstream_request` → upstream (cluster → balancer → pool → send; retries re-run
only this part) → `response` → `response_body` → `log`. Errors go through `error`.

The decision part is plain calls: only a step that returns Pause stops it (its
I/O resumes it), so a request that needs no I/O before forwarding creates no
coroutine, task or generator. Upstream progress arrives as callbacks from the
connection. The downstream side is a small interface (see Downstream) so HTTP/1.1
and HTTP/2 share this code. A request no step can touch takes a shorter path
over the same state (proxy.express).

Why one module: what is left here is HttpStream, the lifecycle of one stream, and
its methods are that lifecycle's transitions (decide, forward, retry, answer,
time out, reset, log) over one set of fields; each reads state the others set,
in an order only this class knows. What stands apart from it lives elsewhere: the
upstream request head (proxy.request_head), request ids (proxy.request_id), the
listener's counters (proxy.listener_stats), the short path (proxy.express).
"""
from __future__ import annotations

import asyncio
import random
import time

from mosnx.runtime.actions import LocalReply, Pause
from mosnx.runtime.context import ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.routes import DirectResponse, RedirectAction, RouteAction

from .codec.http1 import encode_chunk, encode_last_chunk
from .codec.http2 import grpc_local_reply, is_grpc, is_grpc_type, parse_grpc_timeout
from .codec.memo import remember
from .request_head import bodiless_request_head, request_head, upstream_fields
from .request_id import new_request_id
from .upstream.pool import OVERFLOW

_monotonic = time.monotonic

# content-length stays: the downstream codec re-frames, and a HEAD answer keeps it as sent
RESP_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te",
                             b"transfer-encoding", b"upgrade"})

# route timeouts at least this long are enforced by the worker's sweep, not a timer
SWEPT_TIMEOUT = 2.0


class Downstream:
    """What a stream needs from the client side; http1.server and http2 implement it."""

    def send_head(self, stream, status: int, headers: Headers, body_len: int | None, end: bool) -> None: ...
    def send_data(self, stream, data: bytes) -> None: ...
    def send_end(self, stream, trailers: Headers | None) -> None: ...
    def send_whole(self, stream, status: int, headers: Headers, body_len: int, body: bytes,
                   memo: list | None = None) -> None:
        """send_head, send_data and send_end at once, for a body of known length. With
        `memo` (a list whose slot 2 the downstream may fill), the same response head
        comes again: the downstream may keep what it made of it there."""
    def flush(self) -> None:
        """Write out what send_head/send_data gathered (called after each upstream read)."""
    def send_continue(self, stream) -> None: ...
    def abort(self, stream) -> None: ...
    def pause_body(self, stream) -> None: ...
    def resume_body(self, stream) -> None: ...
    def writable(self) -> bool: ...
    def start_tunnel(self, stream) -> None: ...


class Worker:
    """What streams need from the worker: the live snapshot, clusters, stats, logs."""
    snapshot = None
    clusters = None
    stats = None
    access_log = None


class HttpStream:
    __slots__ = (
        "ctx", "down", "worker", "listener", "lstats", "chain", "action", "cluster", "host",
        "up", "alive", "response_started", "response_done", "request_done", "request_body",
        "body_buf", "body_bytes", "replayable", "req_trailers", "req_chunked", "timer",
        "try_timer", "attempts", "tried", "resp_body_steps", "expect_continue",
        "upgrade", "tunnel_up", "up_keep_alive", "upstream_start", "retrying",
        "client_keep_alive", "paused_down", "wants_retry_5xx", "log_done", "rq_counted", "reused",
        "idle_mark", "idle_since", "route_timeout", "resp_left", "held", "held_body", "mirror_body",
        "timeout_at", "req_held", "origin", "refused",
    )

    def __init__(self, down, worker, listener, lstats, ctx: StreamContext, body: int | None,
                 keep_alive: bool, upgrade: bool, expect_continue: bool):
        self.ctx = ctx
        ctx.request_bodyless = body == 0
        self.down = down
        self.worker = worker
        self.listener = listener
        self.lstats = lstats
        self.chain = listener.pipeline
        self.action = None
        self.cluster = None
        self.host = None
        self.up = None
        self.alive = True
        self.response_started = False
        self.response_done = False
        self.request_body = body            # None: chunked; else Content-Length
        self.request_done = body == 0
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
        self.log_done = False
        self.rq_counted = False
        self.reused = False
        self.idle_mark = -1
        self.idle_since = 0.0
        self.route_timeout = 0.0
        self.resp_left = -1      # response body bytes still due by Content-Length; -2: ended or none
        self.held = None         # upstream events kept while a response step is paused
        self.held_body = None
        self.mirror_body = None             # worker.MirrorBody collecting a copy for shadow clusters
        self.req_held = None     # request body events kept while a request body step is paused
        self.origin = None       # the codec's memory of the request head, when it came from one
        self.refused = False     # an attempt the upstream never processed was made again

    # ------------------------------------------------------------------ decide
    def start(self) -> None:
        self._admit()
        try:
            self._decide()
        except Exception:
            self._decision_failed()

    def _admit(self) -> bool:
        """Count the request and give it its id; True when it is a gRPC call."""
        ls = self.lstats
        ls.rq_total.value += 1
        ls.rq_active.value += 1
        self.rq_counted = True
        ctx = self.ctx
        # one pass for both facts, the first of each as getb would find it
        rid = ctype = None
        for k, v in ctx.request.headers.items:
            if k == b"x-request-id":
                if rid is None:
                    rid = v
            elif k == b"content-type":
                if ctype is None:
                    ctype = v
        if rid is None:
            rid_s = new_request_id()
            ctx.request.headers.items.append((b"x-request-id", rid_s.encode()))
        else:
            rid_s = rid.decode("latin-1")
        ctx.request_id = rid_s
        if ctype is not None and is_grpc_type(ctype):
            t = parse_grpc_timeout(ctx.request.headers.getb(b"grpc-timeout"))
            if t is not None:
                ctx.timeout_override = t      # the caller's deadline bounds the whole call
            return True
        return False

    # The decision runs as four chains of request steps, each followed by what it
    # leads to. It is plain calls: a step that pauses stops it, and its I/O resumes
    # it at the chain's next step, so a request no step pauses costs no coroutine,
    # task or generator.
    def _decide(self) -> None:
        steps = self.listener.pipeline.request
        if not steps or self._run(steps, 0, self._pick_vhost):
            self._pick_vhost()

    def _run(self, steps, start: int, then) -> bool:
        """Request steps from `start`: True when all let the request go on; False when
        one answered it (the reply is sent) or paused it (its I/O runs the rest of
        the chain, then `then`)."""
        ctx = self.ctx
        for i in range(start, len(steps)):
            r = steps[i](ctx)
            if r is None:
                continue
            if isinstance(r, Pause):
                try:
                    self._when_settled(r.awaitable, lambda res, nxt=i + 1: self._resumed(res, steps, nxt, then))
                except TypeError:
                    continue        # nothing to wait for
                return False
            self._act(r)
            return False
        return True

    def _resumed(self, r, steps, start: int, then) -> None:
        try:
            if r is not None:
                self._act(r)
            elif self._run(steps, start, then):
                then()
        except Exception:
            self._decision_failed()

    def _decision_failed(self) -> None:
        self.worker.log_exception("stream decision failed")
        self.fail(500, "internal_error")

    def _when_settled(self, awaitable, then) -> None:
        """Once a paused step's I/O settles, `then(result)`: None, an Action, bytes (a
        body step's), or a 500 reply if it failed; nothing if the stream ended meanwhile."""
        def settled(fut) -> None:
            if self.alive:
                then(self._paused_result(fut))
        asyncio.ensure_future(awaitable).add_done_callback(settled)

    def _paused_result(self, fut):
        """What a paused step's I/O ended with: None, an Action, or a 500 if it failed."""
        try:
            return fut.result()
        except Exception:
            self.worker.log_exception("paused step failed")
            return LocalReply(500, b"", (), "filter_failure")

    def _pick_vhost(self) -> None:
        if not self.alive:
            return
        ctx = self.ctx
        vh = self.listener.routes.vhost_of(ctx.request)
        if vh is None:
            return self.fail(404, "route_not_found")
        ctx.vhost = vh
        self.chain = vh.chain
        steps = vh.pipeline.request
        if not steps or self._run(steps, 0, self._pick_route):
            self._pick_route()

    def _pick_route(self) -> None:
        ctx = self.ctx
        route = ctx.vhost.match(ctx)
        if route is None:
            return self.fail(404, "route_not_found")
        ctx.route = route
        self.chain = route.chain
        action = route.action
        if isinstance(action, RouteAction):
            # the cluster (a weighted split's pick too) is known with the route, as in
            # Envoy, so replies made by the route's own steps still log and expose it
            cname = action.cluster
            ctx.cluster_name = cname if cname is not None else _pick_weighted(action.weighted_clusters)
        steps = route.pipeline.request
        if not steps or self._run(steps, 0, self._take_action):
            self._take_action()

    def _take_action(self) -> None:
        ctx = self.ctx
        action = ctx.route.action
        if not isinstance(action, RouteAction):
            if isinstance(action, DirectResponse):
                return self.local_reply(LocalReply(action.status, action.body, action.headers, ""))
            if isinstance(action, RedirectAction):
                return self.local_reply(LocalReply(action.status, b"", (("location", action.location(ctx)),), ""))
            return self.fail(500, "internal_error")
        self.action = action
        cluster = self.worker.clusters.get(ctx.cluster_name)
        if cluster is None:
            return self.fail(503, "cluster_not_found")
        self.cluster = cluster
        if action.rewrites:
            self._rewrite(action)
        steps = self.chain.upstream_request
        if not steps or self._run(steps, 0, self._go_upstream):
            self._go_upstream()

    def _go_upstream(self) -> None:
        if not self.alive:
            return
        ctx = self.ctx
        action = self.action
        if action.retry is not None and action.retry.num_retries:
            self.body_buf = self.body_buf if self.body_buf is not None else []
            self.wants_retry_5xx = bool(action.retry.retry_on & {"5xx", "gateway-error", "retriable-status-codes", "retriable-4xx"})
        t = ctx.timeout_override if ctx.timeout_override is not None else action.timeout
        if action.timeout and t and action.timeout < t and is_grpc(ctx.request.headers):
            t = action.timeout      # a gRPC caller's deadline shortens the route timeout, never extends it
        if t:
            # as Envoy's, the route timeout runs from the end of the downstream request
            self.route_timeout = t
            if self.request_done:
                self._arm_timeout(t)
        if action.mirrors:
            self.worker.mirror(self, action.mirrors)
        if self.expect_continue:
            self.expect_continue = False
            self.down.send_continue(self)
        self._forward()

    def _act(self, r) -> None:
        if isinstance(r, LocalReply):
            self.local_reply(r)
        else:
            self.fail(500, "internal_error")

    def _rewrite(self, action: RouteAction) -> None:
        ctx = self.ctx
        if action.prefix_rewrite is not None:
            old, new = action.prefix_rewrite
            path = ctx.request.path
            if path.startswith(old):
                p = new + path[len(old):]
                if not p.startswith("/"):
                    p = "/" + p
                ctx.set_path(p)
        if action.regex_rewrite is not None:
            pat, sub = action.regex_rewrite
            url_path = ctx.url_path
            rest = ctx.request.path[len(url_path):]
            ctx.set_path(pat.sub(sub, url_path) + rest)
        if action.host_rewrite is not None:
            ctx.request.headers.set(b"host", action.host_rewrite.encode("latin-1"))

    # ---------------------------------------------------------------- upstream
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
        conn = host.pool.acquire(self)
        if conn is OVERFLOW:
            return self.fail(503, "upstream_overflow")
        if conn is not None:
            self.on_pool_ready(conn)

    def on_pool_ready(self, conn) -> None:
        retry = self.action.retry
        if retry is None and self.request_body == 0 and not self.upgrade:
            # nothing to frame, replay or time per try: the head is the request
            if self._attach(conn):
                self._send_bodiless(conn)
            return
        if not self._attach(conn):
            return
        if retry is not None and retry.per_try_timeout:
            self.try_timer = self.worker.loop.call_later(retry.per_try_timeout, self._on_try_timeout)
        buf = self.body_buf
        if conn.structured:
            self._send_request_to(conn, buf)
        else:
            head = self._upstream_head()
            data = head + b"".join([self._frame(c) for c in buf]) if buf else head
            if self.request_done and self.req_chunked:
                data += encode_last_chunk(self.req_trailers)
            conn.send(data)
        if self.action.retry is None or not self.replayable:
            self.body_buf = None      # nothing to replay: later chunks go straight through
            self.body_bytes = 0
        if self.paused_down and not conn.paused:
            self.paused_down = False
            self.down.resume_body(self)

    def _attach(self, conn) -> bool:
        """Take the pool's connection for this attempt (False: the stream is gone)."""
        if not self.alive:
            conn.pool.release(conn, True)
            return False
        self.up = conn
        conn.stream = self
        self.reused = conn.requests > 1
        if self.ctx.request.method == "HEAD":
            conn.expect_head()
        cluster = self.cluster
        res = cluster.res
        if res.rq_active >= cluster.cb.max_requests:
            # checked again as the request takes its connection, as Envoy's pools do:
            # requests that waited for connections opened together must not all pass
            conn.pool.release(conn, True)
            cluster.c["upstream_rq_pending_overflow"].value += 1
            self.fail(503, "upstream_rq_overflow")
            return False
        host = self.host
        host.rq_active += 1
        host.rq_total += 1
        # the circuit-breaker counts straight on the shared Resources: each of Cluster's
        # properties over them costs a Python call
        res.rq_active += 1
        cluster.rq_total_counter.value += 1
        self.upstream_start = _monotonic()
        return True

    def _frame(self, chunk: bytes) -> bytes:
        return encode_chunk(chunk) if self.req_chunked else chunk

    def _upstream_head(self) -> bytes:
        ctx = self.ctx
        req = ctx.request
        self._check_length()
        if self.upgrade or self.req_chunked or self.request_body:
            return request_head(req, ctx.source_address, self.upgrade, self.req_chunked)
        return bodiless_request_head(req, ctx.source_address)

    def _check_length(self) -> None:
        if not self.req_chunked and self.request_body and not self.ctx.request.headers.has(b"content-length"):
            # a filter removed Content-Length to resize the body: its length is unknown
            # (HTTP/1.1 frames it chunked)
            self.req_chunked = True

    def _send_bodiless(self, conn, origin=None) -> None:
        """The head of a request without a body, retry policy or upgrade, which is all of
        it. `origin`: as for bodiless_request_head."""
        ctx = self.ctx
        if conn.structured:
            conn.send_request(ctx.request, upstream_fields(ctx.request, ctx.source_address), 0)
        else:
            conn.send(bodiless_request_head(ctx.request, ctx.source_address, origin))

    def _send_request_to(self, conn, buf) -> None:
        """The request so far to an upstream that takes it as fields and chunks (HTTP/2)
        rather than HTTP/1.1 bytes: the head, the body read so far, and its end if
        it came."""
        ctx = self.ctx
        self._check_length()
        conn.send_request(ctx.request, upstream_fields(ctx.request, ctx.source_address),
                          None if self.req_chunked else self.request_body)
        for c in buf or ():
            conn.send_body(c)
        if self.request_done:
            conn.send_end(self.req_trailers)

    # request body from downstream
    def on_request_body(self, data: bytes) -> None:
        self.ctx.bytes_received += len(data)
        self._request_chunk(data)

    def _request_chunk(self, data: bytes) -> None:
        if self.response_done:
            return      # the response is over: the rest of the body is read and dropped
        if self.req_held is not None:
            self.req_held.append((data, None, False))
            return
        steps = self.chain.request_body
        if steps:
            data = self._body_steps(steps, data, False, self._hold_request)
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
                    self._body_to(self.up, data)
                    return
                self._check_buffer_pressure()
                return
            self.replayable = False
        up = self.up
        if up is not None:
            self._body_to(up, data)
            return
        if buf is None:
            self.body_buf = buf = []
        buf.append(data)
        self.body_bytes += len(data)
        self._check_buffer_pressure()

    def _body_to(self, up, data: bytes) -> None:
        if up.structured:
            up.send_body(data)
        else:
            up.send(self._frame(data))

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
        if steps and not self.response_done and not self.ctx.request_bodyless:
            tail = self._body_steps(steps, b"", True, self._hold_request)
            if self.req_held is not None:
                self.req_held.append((None, trailers, True))     # the end waits for the step
                return
            if tail:
                self._send_body(tail)
        self._request_ended(trailers)

    def _request_ended(self, trailers: Headers | None) -> None:
        if trailers is not None:
            self.ctx.request.trailers = trailers
            if self.chain.request_trailers:
                self._trailer_steps(self.chain.request_trailers, 0, self._request_trailers_done)
                return
        self._request_complete(trailers)

    def _request_trailers_done(self, reply: LocalReply | None) -> None:
        self.request_done = True
        if reply is not None:
            self.local_reply(reply)
        self._request_complete(self.ctx.request.trailers)

    def _request_complete(self, trailers: Headers | None) -> None:
        self.request_done = True
        self.req_trailers = trailers
        if (self.route_timeout and self.timer is None and not self.timeout_at and self.alive
                and not self.response_started):
            self._arm_timeout(self.route_timeout)
        up = self.up
        if up is not None:
            if up.structured:
                up.send_end(trailers)
            elif self.req_chunked:
                up.send(encode_last_chunk(trailers))
        if self.mirror_body is not None:
            mb, self.mirror_body = self.mirror_body, None
            mb.send()
        if self.response_done:
            self.down.stream_finished(self)

    def _body_steps(self, steps, data: bytes, end: bool, hold, start: int = 0):
        """Run body steps from `start` over one chunk (request or response): the chunk
        as they left it, or None when one of them ended the stream with a local reply
        or paused it (then `hold(awaitable, next_step, chunk, end)` keeps it)."""
        ctx = self.ctx
        for i in range(start, len(steps)):
            r = steps[i](ctx, data, end)
            if r is None:
                continue
            if isinstance(r, bytes):
                data = r
            elif isinstance(r, Pause):
                hold(r.awaitable, i + 1, data, end)
                return None
            elif isinstance(r, LocalReply) and not self.response_started:
                self.local_reply(r)
                return None
            # once the response head is out, a reply can no longer be honoured
        return data

    def _hold_request(self, awaitable, resume_at: int, data: bytes, end: bool) -> None:
        # the chunk, and what the client sends meanwhile, wait for the step's I/O;
        # the client is not read further until then
        self.req_held = []
        if not self.paused_down:
            self.paused_down = True
            self.down.pause_body(self)
        self._when_settled(awaitable, lambda r: self._request_resumed(r, resume_at, data, end))

    def _request_resumed(self, r, resume_at: int, data: bytes, end: bool) -> None:
        held, self.req_held = self.req_held, None
        if isinstance(r, bytes):
            data = r        # a body step's I/O may settle on a new chunk
        elif isinstance(r, LocalReply):
            if not self.response_started:
                self.local_reply(r)
            data = None
        if data is not None and not self.response_done:
            data = self._body_steps(self.chain.request_body, data, end, self._hold_request, resume_at)
            if self.req_held is not None:
                self.req_held.extend(held)      # paused again by a later step
                return
            if data:
                self._send_body(data)
        if end:
            # the end of the request was what waited: its trailers are the first held event
            self._request_ended(held.pop(0)[1] if held else None)
        for chunk, trailers, is_end in held:
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

    def on_upstream_pressure(self, high: bool) -> None:
        """The upstream's write buffer crossed a watermark: hold or release the client."""
        if high:
            if not self.paused_down:
                self.paused_down = True
                self.down.pause_body(self)
        elif self.paused_down:
            self.paused_down = False
            self.down.resume_body(self)

    # response from upstream
    def on_upstream_head(self, status: int, headers: Headers, keep_alive: bool, body: int | None) -> None:
        self.up_keep_alive = keep_alive
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        retry = self.action.retry
        if self.wants_retry_5xx and self._retriable_status(status, retry) and self._can_retry():
            self.host.observe(status, (time.monotonic() - self.upstream_start) * 1000.0)
            self._release_upstream(False)
            c = self.cluster.rq_class_counters[min(status // 100, 5)]
            if c is not None:
                c.value += 1
            return self._retry()
        if self.retrying and not (self.wants_retry_5xx and self._retriable_status(status, retry)):
            self.cluster.c["upstream_rq_retry_success"].value += 1
        self._head_arrived(status, headers)
        if status == 101 and self.upgrade:
            return self._start_tunnel(headers)
        self.body_buf = None
        if self.chain.response and not self._response_steps(0, body):
            return
        self._send_upstream_head(body)

    def on_upstream_whole(self, conn, status: int, headers: Headers, keep_alive: bool,
                          body_len: int, body: bytes, origin=None) -> None:
        """A whole response in one read. Its steps see the head, the body (one chunk
        carrying end_stream) and the end as they would as three events; while none
        pauses or answers, and no retry, per-try timer or upgrade may act on it,
        they are run here rather than relayed one by one through the connection."""
        if (self.wants_retry_5xx or self.retrying or self.try_timer is not None or self.upgrade
                or self.held is not None or self.response_started):
            return self._three_events(conn, status, headers, keep_alive, body_len, body)
        self.up_keep_alive = keep_alive
        self._head_arrived(status, headers)
        self.body_buf = None
        if self.chain.response and not self._response_steps(0, body_len):
            # a step answered (the upstream is let go, so the rest is dropped) or
            # paused (the rest waits with the head)
            if body_len:
                conn.on_response_body(body)
            conn.on_response_end(None)
            return
        self._send_upstream_head(body_len)
        if self.up is not conn:
            return      # the stream let go of the connection meanwhile: the rest is dropped
        if body_len:
            steps = self.resp_body_steps
            if steps:
                self.resp_left = -2
                body = self._body_steps(steps, body, True, self._hold_response_body)
                if self.held is not None:
                    conn.on_response_end(None)      # the end waits behind the chunk
                    return
            if body:
                self._deliver(body)
        # what the connection's end of response and on_upstream_end do for it
        conn.stream = None
        self._release_upstream(keep_alive and self.request_done)
        self._response_complete(None)

    @staticmethod
    def _three_events(conn, status: int, headers: Headers, keep_alive: bool, body_len: int,
                      body: bytes) -> None:
        conn.on_response(status, "", "1.1", headers, keep_alive, body_len)
        if body_len:
            conn.on_response_body(body)
        conn.on_response_end(None)

    def _head_arrived(self, status: int, headers: Headers) -> None:
        """The attempt that stands has its answer: the route timeout stops (the body
        streams), the cluster and host count it, and it becomes the response."""
        self.timeout_at = 0.0
        if self.timer is not None:
            self._disarm_timeout()
        cluster = self.cluster
        c = cluster.rq_class_counters[min(status // 100, 5)]
        if c is not None:
            c.value += 1
        elapsed = (_monotonic() - self.upstream_start) * 1000.0
        cluster.rq_time.add(elapsed)
        self.host.observe(status, elapsed)
        self.ctx.response = ResponseHead(status, headers)

    def _response_steps(self, start: int, body: int | None) -> bool:
        """Response-header steps from index `start`; False when the head must not go out
        now: a step ended the stream, or paused it (its I/O resumes it)."""
        ctx = self.ctx
        steps = self.chain.response
        for i in range(start, len(steps)):
            r = steps[i](ctx)
            if r is None:
                continue
            if isinstance(r, LocalReply):
                self._release_upstream(False)
                self._send_local(r)
                return False
            if isinstance(r, Pause):
                self._hold_response(r.awaitable, i + 1, body)
                return False
        return True

    def _hold_response(self, awaitable, resume_at: int, body: int | None) -> None:
        # the head waits for the step's I/O; body bytes already read wait with it, and
        # the upstream is not read further until then
        self.held = []
        self.held_body = body
        if self.up is not None:
            self.up.pause_reading()
        self._when_settled(awaitable, lambda r: self._response_resumed(r, resume_at))

    def _response_resumed(self, r, resume_at: int) -> None:
        if isinstance(r, LocalReply):
            self.held = None
            self._release_upstream(False)
            return self._send_local(r)
        body = self.held_body
        if not self._response_steps(resume_at, body):
            return
        held, self.held = self.held, None
        self._send_upstream_head(body)
        self._replay_response(held)

    def _send_upstream_head(self, body: int | None, whole: bytes | None = None, origin=None) -> None:
        """The upstream's response head, as the response steps left it, to the client
        (with `whole`: the body of `body` bytes too, and the end). `origin`: the codec's
        memory of the head, given only when no step can have changed it since; what
        the head becomes is then kept by that memory's identity."""
        self.response_started = True
        response = self.ctx.response
        headers = response.headers
        self.resp_body_steps = self.chain.response_body
        # -2 for a response without a body (HEAD, 204, 304, Content-Length: 0): as in
        # Envoy, body steps are not called for it
        self.resp_left = body if body else (-2 if body == 0 else -1)
        if self.resp_body_steps and body and not headers.has(b"content-length"):
            # a body filter that may resize the body drops Content-Length (as Envoy asks
            # of filters); the response is then re-framed as chunked
            body = None
        got = headers.items
        memo = None
        if origin is not None:
            memo = _BY_RESPONSE_ORIGIN.get(id(origin))
            if memo is None or memo[0] is not origin:
                memo = remember(_BY_RESPONSE_ORIGIN, _MEMO_ENTRIES, id(origin), [origin, _end_to_end(got), None])
            kept = memo[1]
        else:
            try:
                key = tuple(got)
                kept = _KEPT.get(key)
            except TypeError:       # a step left something unhashable: no memo
                key = kept = None
            if kept is None:
                kept = _end_to_end(got)
                if key is not None and len(key) <= _MEMO_FIELDS:
                    remember(_KEPT, _MEMO_ENTRIES, key, kept)
        items = list(kept)
        if self.attempts > 1 and self.action is not None and self.action.retry is not None:
            items.append((b"x-envoy-attempt-count", str(self.attempts).encode()))
            memo = None         # a head of this attempt's own
        headers.items = items
        if whole is None:
            self.down.send_head(self, response.status, headers, body, False)
        else:
            self.down.send_whole(self, response.status, headers, body, whole, memo)

    def _retriable_status(self, status: int, retry) -> bool:
        on = retry.retry_on
        if status >= 500 and "5xx" in on:
            return True
        if status in (502, 503, 504) and "gateway-error" in on:
            return True
        if status in retry.retriable_status_codes and "retriable-status-codes" in on:
            return True
        return status == 409 and "retriable-4xx" in on

    def on_upstream_data(self, data: bytes) -> None:
        if self.held is not None:
            self.held.append(("data", data))
            return
        if not self.response_started or self.response_done:
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
                self.resp_left = -2 if end else left
            data = self._body_steps(steps, data, end, self._hold_response_body)
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

    def _hold_response_body(self, awaitable, resume_at: int, data: bytes, end: bool) -> None:
        # as for a paused head: the chunk and what the upstream sends meanwhile wait
        self.held = []
        if self.up is not None:
            self.up.pause_reading()
        self._when_settled(awaitable, lambda r: self._response_body_resumed(r, resume_at, data, end))

    def _response_body_resumed(self, r, resume_at: int, data: bytes, end: bool) -> None:
        held, self.held = self.held, None
        if isinstance(r, bytes):
            data = r
        elif r is not None:
            # the head is out, so a reply can no longer be given: the response is cut
            # short, never ended as if complete
            self.ctx.error_detail = self.ctx.error_detail or getattr(r, "detail", "") or "filter_failure"
            self.response_done = True
            self._release_upstream(False)
            self.down.flush()
            self.down.abort(self)
            self._finish()
            return
        data = self._body_steps(self.resp_body_steps, data, end, self._hold_response_body, resume_at)
        if self.held is not None:
            self.held.extend(held)      # paused again by a later step
            return
        if data:
            self._deliver(data)
        if end:
            self.resp_left = -2         # the end's body steps have run
        self._replay_response(held)

    def _replay_response(self, held) -> None:
        """Upstream events kept while a response step was paused, in order (should a
        step pause again, the rest queues behind it); then reading goes on."""
        for kind, arg in held:
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
        self._release_upstream(self.up_keep_alive and self.request_done)
        if self.held is not None:
            self.held.append(("end", trailers))
            return
        if not self.response_started or self.response_done:
            return
        steps = self.resp_body_steps
        if steps and self.resp_left != -2:
            tail = self._body_steps(steps, b"", True, self._hold_response_body)
            if self.held is not None:
                self.held.append(("end", trailers))     # the end waits for the step
                return
            if tail:
                self._deliver(tail)
        if trailers is not None and self.chain.response_trailers:
            self.ctx.response.trailers = trailers
            self._trailer_steps(self.chain.response_trailers, 0, self._response_trailers_done)
            return
        self._response_complete(trailers)

    def _response_trailers_done(self, reply: LocalReply | None) -> None:
        # the head is out: a reply from a trailers step can no longer be honoured
        self._response_complete(self.ctx.response.trailers)

    def _response_complete(self, trailers: Headers | None) -> None:
        self.response_done = True
        self.down.send_end(self, trailers)
        self._finish()

    def _trailer_steps(self, steps, start: int, then) -> None:
        """Run trailer steps from `start`, then `then(reply)` (reply: the LocalReply a
        step answered with, or None). A step that pauses holds the rest, and the end
        of the stream, until its I/O settles."""
        ctx = self.ctx
        for i in range(start, len(steps)):
            r = steps[i](ctx)
            if r is None:
                continue
            if isinstance(r, Pause):
                self._when_settled(r.awaitable,
                                   lambda res, nxt=i + 1: self._trailers_resumed(res, steps, nxt, then))
                return
            if isinstance(r, LocalReply):
                then(r)
                return
        then(None)

    def _trailers_resumed(self, r, steps, start: int, then) -> None:
        if isinstance(r, LocalReply):
            then(r)
            return
        self._trailer_steps(steps, start, then)

    def on_upstream_reset(self, detail: str, status: int) -> None:
        self.up = None
        if (detail == "upstream_refused_stream" and not self.refused and not self.response_started
                and self._can_replay()):
            # An HTTP/2 endpoint guarantees it never processed this stream (past its
            # GOAWAY's last stream, or REFUSED_STREAM; RFC 9113 §8.7), as nginx does
            # every 1,000 requests: made once more, whatever the method, it is no failure
            # of the host's and no attempt of the retry policy's.
            self.refused = True
            self._after_upstream_gone(False)
            self.attempts -= 1
            return self._forward_later(0)
        self.host.observe_failure("reset")
        self._after_upstream_gone(False)
        if self.response_started:
            # never end a response as if complete when the upstream died inside it
            self.ctx.error_detail = detail
            self.cluster.c["upstream_rq_rx_reset"].value += 1
            self.response_done = True
            self.down.flush()
            self.down.abort(self)
            self._finish()
            return
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

    def on_pool_failure(self, detail: str, status: int) -> None:
        if self.host is not None and detail != "upstream_removed":
            self.host.observe_failure("connect_failure")
        retry = self.action.retry
        if retry is not None and "connect-failure" in retry.retry_on and self._can_retry():
            return self._retry()
        self.fail(status, detail)

    def _can_replay(self) -> bool:
        return self.replayable and (self.request_body == 0 or (self.body_buf is not None and self.request_done))

    def _can_retry(self) -> bool:
        self._release_retry()       # as Envoy: a retry holds its slot until the next decision
        retry = self.action.retry
        if self.attempts > retry.num_retries or not self._can_replay() or self.response_started:
            return False
        cluster = self.cluster
        if cluster.retries_active >= cluster.cb.max_retries:
            cluster.c["upstream_rq_retry_overflow"].value += 1
            return False
        return True

    def _retry(self) -> None:
        cluster = self.cluster
        cluster.c["upstream_rq_retry"].value += 1
        cluster.retries_active += 1
        self.retrying = True
        self.tried = self.host
        retry = self.action.retry
        backoff = min(retry.backoff_max, retry.backoff_base * (2 ** (self.attempts - 1)))
        self._forward_later(random.uniform(0, backoff))

    def _release_retry(self) -> None:
        if self.retrying:
            self.retrying = False
            self.cluster.retries_active -= 1

    def _forward_later(self, delay: float) -> None:
        def go():
            if self.alive and not self.response_started:
                self._forward()
        self.worker.loop.call_later(delay, go)

    def _release_upstream(self, reusable: bool) -> None:
        up = self.up
        if up is None:
            return
        self.up = None
        if up.stream is self:
            up.stream = None
        self._after_upstream_gone(reusable and not up.paused)
        up.pool.release(up, reusable)

    def _after_upstream_gone(self, _reusable: bool) -> None:
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        h = self.host
        if h is not None and self.upstream_start:
            h.rq_active -= 1
            cluster = self.cluster
            cluster.res.rq_active -= 1
            self.upstream_start = 0.0

    # ---------------------------------------------------------------- timeouts
    def _arm_timeout(self, t: float) -> None:
        if t >= SWEPT_TIMEOUT:
            # a timer costs more than the rest of the stream's bookkeeping; a long
            # timeout is checked by the worker's sweep instead (check_timeouts), at
            # most 250 ms late
            self.timeout_at = self.worker.loop.time() + t
        else:
            self.timer = self.worker.loop.call_later(t, self._on_timeout)

    def _disarm_timeout(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timeout_at = 0.0

    def _on_timeout(self) -> None:
        self._disarm_timeout()      # the timer that fired, or the sweep's entry
        if not self.alive or self.response_started:
            return
        if self.cluster is not None:
            self.cluster.c["upstream_rq_timeout"].value += 1
            if self.host is not None:
                self.host.pool.cancel(self)
        self.lstats.timeout.value += 1
        up = self.up
        self.up = None
        if up is not None:
            self.host.observe_failure("timeout")
            up.stream = None
            self._after_upstream_gone(False)
            up.close()
        self.fail(504, "upstream_response_timeout")

    def _on_try_timeout(self) -> None:
        self.try_timer = None
        if not self.alive or self.response_started:
            return
        self.cluster.c["upstream_rq_per_try_timeout"].value += 1
        self.host.observe_failure("timeout")
        up = self.up
        self.up = None
        if up is not None:
            up.stream = None
            self._after_upstream_gone(False)
            up.close()
        if self._can_retry():
            return self._retry()
        self.fail(504, "upstream_per_try_timeout")

    def check_timeouts(self, now: float) -> None:
        """From the worker's sweep, for a stream its connection has started: a long
        route timeout that has passed, and the stream idle timeout (no byte either
        way for too long). Progress is read from counters the data path keeps
        anyway, so the hot path pays nothing for it."""
        if not self.alive:
            return
        t = self.timeout_at
        if t and t <= now:
            self._on_timeout()
            return
        ctx = self.ctx
        mark = ctx.bytes_received + ctx.bytes_sent + self.attempts + (1 if self.response_started else 0)
        if mark != self.idle_mark:
            self.idle_mark = mark
            self.idle_since = now
            return
        action = self.action
        limit = action.idle_timeout if action is not None and action.idle_timeout else \
            self.listener.config.timeouts.stream_idle
        if not limit or now - self.idle_since < limit:
            return
        self.worker.stats.counter(f"http.{self.listener.config.name}.downstream_rq_idle_timeout").value += 1
        if self.response_started:
            ctx.error_detail = "stream_idle_timeout"
            self.response_done = True
            self._release_upstream(False)
            self.down.abort(self)
            self._finish()
            return
        up = self.up
        self.up = None
        if up is not None:
            up.stream = None
            self._after_upstream_gone(False)
            up.close()
        self.fail(504, "stream_idle_timeout")

    # ---------------------------------------------------------------- tunnel
    def _start_tunnel(self, headers: Headers) -> None:
        self.response_started = True
        self.tunnel_up = self.up
        up = headers.getb(b"upgrade")
        headers.items = [kv for kv in headers.items if kv[0] not in RESP_HOP_BY_HOP]
        headers.items.append((b"connection", b"upgrade"))
        if up is not None:
            headers.items.append((b"upgrade", up))
        self.down.send_head(self, 101, headers, None, False)
        self.down.start_tunnel(self)

    def on_tunnel_upstream_data(self, data: bytes) -> None:
        self.ctx.bytes_sent += len(data)
        self.down.send_raw(self, data)
        if not self.down.writable() and self.up is not None:
            self.up.pause_reading()

    def on_tunnel_downstream_data(self, data: bytes) -> None:
        self.ctx.bytes_received += len(data)
        up = self.tunnel_up
        if up is not None:
            up.send(data)

    def on_tunnel_closed(self) -> None:
        if self.response_done:
            return
        self.response_done = True
        up, self.tunnel_up = self.tunnel_up, None
        if up is not None:
            up.close()
        self._after_upstream_gone(False)
        self.down.abort(self)
        self._finish()

    # ---------------------------------------------------------------- endings
    def local_reply(self, r: LocalReply) -> None:
        """A reply decided by a step or the route (not a proxy failure)."""
        self._send_local(r)

    def fail(self, status: int, detail: str) -> None:
        """The proxy itself fails the stream: the `error` phase may replace the reply."""
        if not self.alive or self.response_started:
            return
        ctx = self.ctx
        ctx.error_detail = detail
        reply = LocalReply(status, _ERROR_BODIES.get(status, b""), (), detail)
        for step in self.chain.error:
            r = step(ctx)
            if isinstance(r, LocalReply):
                reply = r
        self._send_local(reply)

    def _send_local(self, r: LocalReply) -> None:
        if not self.alive or self.response_started:
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
        chain = self.chain
        for step in chain.response:
            try:
                res = step(ctx)
            except Exception:
                self.worker.log_exception("response step failed on a local reply")
                continue
            if isinstance(res, Pause):
                # a local reply is not held for a step's I/O: drop what the step started
                aw = res.awaitable
                stop = getattr(aw, "close", None) or getattr(aw, "cancel", None)
                if stop is not None:
                    stop()
        body = r.body if ctx.request.method != "HEAD" else b""
        self.response_started = True
        self.response_done = True
        if not self.request_done:
            # the client may still be sending a body we will never read: close after
            self.client_keep_alive = False
        self.down.send_head(self, r.status, headers, len(r.body), not body)
        if body:
            self.ctx.bytes_sent += len(body)
            self.down.send_data(self, body)
        self.down.send_end(self, None)
        self._finish()

    def _finish(self) -> None:
        if self.timer is not None or self.timeout_at:
            self._disarm_timeout()
        self.alive = False
        self._log()
        if self.request_done or not self.client_keep_alive:
            self.down.stream_finished(self)

    def _log(self) -> None:
        if self.log_done:
            return
        self.log_done = True
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
        for step in self.chain.log:
            try:
                step(ctx)
            except Exception:
                self.worker.log_exception("log step failed")
        al = self.worker.access_logs.get(self.listener.config.name)
        if al is not None:
            al.write(ctx)

    def reset(self) -> None:
        """The client went away mid-stream: release everything, log once."""
        if not self.rq_counted:
            return
        if self.alive:
            self.lstats.rx_reset.value += 1
            self.ctx.error_detail = self.ctx.error_detail or "downstream_remote_disconnect"
        self.alive = False
        if self.timer is not None or self.timeout_at:
            self._disarm_timeout()
        if self.host is not None:
            self.host.pool.cancel(self)
        if self.up is not None:
            self._release_upstream(False)
        if self.tunnel_up is not None:
            up, self.tunnel_up = self.tunnel_up, None
            up.close()
        self._log()


def _end_to_end(items) -> tuple:
    """A response's headers without the hop-by-hop ones."""
    out = []
    listed = None
    for kv in items:
        k = kv[0]
        if k in RESP_HOP_BY_HOP:
            if k == b"connection":
                # headers the upstream names in Connection are hop-by-hop too (the
                # usual "keep-alive" names one that goes anyway)
                v = kv[1].lower()
                listed = None if v == b"keep-alive" else {t.strip() for t in v.split(b",")}
            continue
        out.append(kv)
    if listed:
        out = [kv for kv in out if kv[0] not in listed]
    return tuple(out)


# An upstream repeats its response heads (the same headers for a resource until the
# Date changes, a second later): what they keep end to end is remembered, bounded.
_KEPT: dict[tuple, tuple] = {}
# by the identity of the codec's memory of a response head: [memory, its end-to-end
# fields, what the downstream made of them (send_whole's memo)]
_BY_RESPONSE_ORIGIN: dict[int, list] = {}
_MEMO_ENTRIES = 64
_MEMO_FIELDS = 16


def _pick_weighted(weighted: tuple[tuple[str, int], ...]) -> str:
    total = 0
    for _, w in weighted:
        total += w
    r = random.random() * total
    for name, w in weighted:
        r -= w
        if r < 0:
            return name
    return weighted[-1][0]


_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# Local replies for circuit-breaker overflow; Envoy marks them with x-envoy-overloaded.
_OVERLOADED = frozenset({"upstream_overflow", "upstream_rq_overflow"})

_ERROR_BODIES = {
    404: b"route not found\n",
    500: b"internal error\n",
    502: b"upstream protocol error\n",
    503: b"upstream unavailable\n",
    504: b"upstream request timeout\n",
}
