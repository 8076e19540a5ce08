"""The downstream side of an RPC listener: frames in, calls routed, governed and answered.

Invariants:
- One connection decodes frames in order with the listener's codec; a heartbeat is
  answered here; each request becomes a Call, many in flight at once, answered in
  whatever order upstreams answer (the protocols match by request id).
- A frame that cannot be framed (bad magic, above rpc.max_frame_size) closes this
  connection only, counted in `<proto>.<listener>.request_decoding_error`; a
  request whose header map cannot be read (routing needed it) is answered with the
  protocol's codec error, and the connection goes on.
- Every request ends exactly once: the upstream's response (its id restored), or a
  local reply in the protocol's error format (no route, overflow, no healthy
  endpoint, reset, timeout), or nothing for a one-way call or a client gone. Its
  breaker counts (the cluster's rq_active, the host's) are given back then.
- Governance is the cluster's own: balancer pick (ring_hash/maglev hash an
  attachment through request.headers[...]), circuit breakers, outlier detection
  (each attempt's result or local failure), timeouts; a retry (route retry) only
  for a method in rpc.idempotent_methods, on a reset, a connect failure or a
  per-try timeout, never to the same endpoint twice in a row, under max_retries.
- The listener's request-phase filters (`filters:`, the default route's rate_limit
  and fault) run before routing, on a StreamContext made from the call only when
  there are any (call_context); a filter's local reply is answered in the
  protocol's error format, its HTTP status choosing the reason (429: rate limited).
- Routing is the listener's .mdsl rpc blocks when it has rules (dsl.rpc: a `respond`
  answers with the protocol's error its status picks), else rpc.routes; then route:.
- Every request's end is told once to RpcServer.ended: the per-method stats (when
  rpc.method_stats), and, when the call has a StreamContext (filters, an access
  log or tracing on the listener), its access-log line and its trace. A listener
  that traces reads the context the call carries in its attachments (traceparent,
  b3, sw8), and each attempt carries its client span's context upstream in the
  request's attachments (codec.with_headers); the client's frame is kept as it came.
- A client whose answers pile up unread (the transport's write buffer above its
  high-water mark) is not read until they drain, so it cannot queue more calls.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from mosnx.runtime.actions import LocalReply, Pause
from mosnx.runtime.config.rpc import RpcOptions
from mosnx.runtime.context import RequestHead, ResponseHead, RpcInfo, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.model import ListenerConfig
from mosnx.runtime.pipeline import Step
from mosnx.runtime.routes import RouteAction
from mosnx.runtime.stats import Store
from mosnx.runtime.tracing.propagation import WRITTEN

from ..sockets import set_nodelay
from ..stream.decide import pick_weighted
from . import codec as rc
from .codec import Codec, Frame, FrameError
from .pool import RpcConnection, RpcPool, pool_for

if TYPE_CHECKING:
    from ..upstream.cluster import Cluster, Host

log = logging.getLogger("mosnx.rpc")
_DEFAULT = RpcOptions()
_HASHING = frozenset({"ring_hash", "maglev"})
_monotonic = time.monotonic


class RpcStats:
    """`<proto>.<listener>.<stat>`, the names of Envoy's dubbo_proxy where it has one."""
    __slots__ = ("cx_total", "cx_active", "request", "twoway", "oneway", "heartbeat", "decode_error",
                 "active", "response", "success", "error", "local", "local_by", "retry",
                 "cx_destroy_local_with_active_rq", "time")

    def __init__(self, store: Store, proto: str, name: str):
        p = f"{proto}.{name}."
        self.cx_total = store.counter(p + "cx_total")
        self.cx_active = store.gauge(p + "cx_active")
        self.request = store.counter(p + "request")
        self.twoway = store.counter(p + "request_twoway")
        self.oneway = store.counter(p + "request_oneway")
        self.heartbeat = store.counter(p + "request_heartbeat")
        self.decode_error = store.counter(p + "request_decoding_error")
        self.active = store.gauge(p + "request_active")
        self.response = store.counter(p + "response")
        self.success = store.counter(p + "response_success")
        self.error = store.counter(p + "response_error")
        self.local = store.counter(p + "local_reply")
        self.local_by = {r: store.counter(f"{p}local_reply_{r}") for r in rc.ERRORS}
        self.retry = store.counter(p + "request_retry")
        self.cx_destroy_local_with_active_rq = store.counter(p + "cx_destroy_remote_with_active_rq")
        self.time = store.histogram(p + "request_time_ms")


_stats: dict = {}

MAX_METHODS = 512          # distinct service.method series per listener and worker; the rest go uncounted
_UNSAFE = str.maketrans({c: "_" for c in " \t\n\r:/\\{}\"'=,"})


class MethodStats:
    """`<proto>.<listener>.method.<service>.<method>.<stat>`: the listener's call stats
    for one method (opt-in: rpc.method_stats, since each method is a series of its own)."""
    __slots__ = ("request", "success", "error", "local", "timeout", "retry", "time")

    def __init__(self, store: Store, prefix: str):
        self.request = store.counter(prefix + "request")
        self.success = store.counter(prefix + "response_success")
        self.error = store.counter(prefix + "response_error")
        self.local = store.counter(prefix + "local_reply")
        self.timeout = store.counter(prefix + "local_reply_timeout")
        self.retry = store.counter(prefix + "request_retry")
        self.time = store.histogram(prefix + "request_time_ms")


class MethodTable:
    """A listener's MethodStats by (service, method), at most MAX_METHODS of them."""
    __slots__ = ("store", "prefix", "by", "overflow")

    def __init__(self, store: Store, proto: str, name: str):
        self.store = store
        self.prefix = f"{proto}.{name}.method."
        self.by: dict[tuple[str, str], MethodStats] = {}
        self.overflow = store.counter(f"{proto}.{name}.method_stats_overflow")

    def of(self, frame: Frame) -> MethodStats | None:
        try:
            h = frame.headers
            key = (h.get(rc.SERVICE) or "", h.get(rc.METHOD) or "")
        except FrameError:
            key = ("", "")
        m = self.by.get(key)
        if m is None:
            if len(self.by) >= MAX_METHODS:
                self.overflow.value += 1
                return None
            svc, meth = (k.translate(_UNSAFE) or "unknown" for k in key)
            m = self.by[key] = MethodStats(self.store, f"{self.prefix}{svc}.{meth}.")
        return m


_methods: dict = {}


def method_table(worker: Any, proto: str, name: str) -> MethodTable:
    key = (id(worker.stats), proto, name)
    t = _methods.get(key)
    if t is None:
        t = _methods[key] = MethodTable(worker.stats, proto, name)
    return t


# an RPC local reply's reason as the error detail HTTP streams log (Envoy's response flags)
DETAIL = {rc.NO_ROUTE: "route_not_found", rc.TIMEOUT: "upstream_response_timeout",
          rc.OVERFLOW: "upstream_overflow", rc.UNAVAILABLE: "no_healthy_upstream",
          rc.RESET: "upstream_reset_before_response_started", rc.RATE_LIMITED: "rate_limited",
          rc.CODEC_ERROR: "rpc_codec_error", "connect_failure": "upstream_connect_failure",
          "gone": "downstream_remote_disconnect"}
_EMPTY = Headers([])


def rpc_stats(worker: Any, proto: str, name: str) -> RpcStats:
    key = (id(worker.stats), proto, name)
    s = _stats.get(key)
    if s is None:
        s = _stats[key] = RpcStats(worker.stats, proto, name)
    return s


def match_route(opts: RpcOptions, frame: Frame) -> RouteAction | None:
    """The first of opts.routes whose every condition holds for the call, or None."""
    headers = frame.headers
    for r in opts.routes:
        for k, v in r.match.pairs():
            if headers.get(k) != v:
                break
        else:
            return r.route
    return None


# a filter's local reply, by its HTTP status, as the reason an RPC protocol answers with
_REASON_OF_STATUS = {429: rc.RATE_LIMITED, 503: rc.OVERFLOW, 504: rc.TIMEOUT, 404: rc.NO_ROUTE,
                     400: rc.CODEC_ERROR}


def call_context(down: "RpcServer", frame: Frame) -> StreamContext:
    """A call as filters and balancers read a request: request.method is the RPC method,
    request.path "/<service>/<method>", request.headers the attachments, request.protocol
    the codec's name, ctx.rpc what the call is (the rpc.* attributes). Made only when a
    filter, a hashing balancer, an access log or tracing needs it."""
    h = frame.headers
    try:
        d = dict(h.items())
    except FrameError:
        d = dict(dict.items(h))     # the attachments are unreadable: what was read (Dubbo's leading strings)
    items = [(k.encode(), v.encode()) for k, v in d.items() if not k.startswith(":")]
    method = d.get(rc.METHOD) or ""
    service = d.get(rc.SERVICE) or ""
    ctx = StreamContext(RequestHead(method, f"/{service}/{method}", Headers(items), down.codec.name),
                        down.name, down.codec.name, down.peer, down.local)
    ctx.rpc = RpcInfo(down.codec.name, service, method, d.get(rc.VERSION) or "", d.get(rc.GROUP) or "",
                      frame.request_id)
    ctx.request_id = str(frame.request_id)
    ctx.bytes_received = len(frame.raw)
    return ctx


class RpcServer(asyncio.Protocol):
    def __init__(self, worker: Any, name: str, codec: Codec):
        self.worker = worker
        self.name = name
        self.codec = codec
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.opts = _DEFAULT
        self.default_route: RouteAction | None = None
        self.stats: RpcStats = None  # type: ignore[assignment]  # set in connection_made
        self.steps: tuple[Step, ...] = ()     # the listener's request-phase filters
        self.rules: Any = None                # the listener's .mdsl rpc blocks (dsl.rpc.RpcRouter)
        self.tracer: Any = None               # runtime.tracing.Tracer when the listener traces
        self.want_ctx = False                 # filters, an access log or tracing: each call gets a context
        self.methods: MethodTable | None = None
        self.buf = bytearray()
        self.calls: set[RpcCall] = set()
        self.closing = False
        self.draining = False
        self.last = 0.0
        self.idle = 0.0
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)

    # ------------------------------------------------------------- connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream connection's transport
        w = self.worker
        listener = w.snapshot.listeners.get(self.name)
        if listener is None:
            self.transport.abort()
            return
        cfg = listener.config
        self.opts = cfg.options.get("rpc") or _DEFAULT
        self.codec = self.codec.for_listener(cfg.options)
        self.default_route = cfg.route
        self.steps = listener.pipeline.request
        self.rules = listener.rpc_rules
        self.tracer = listener.tracer
        self.want_ctx = bool(self.steps) or self.tracer is not None or cfg.access_log is not None
        self.idle = cfg.timeouts.idle
        self.stats = st = rpc_stats(w, self.codec.name, self.name)
        if self.opts.method_stats:
            self.methods = method_table(w, self.codec.name, self.name)
        st.cx_total.value += 1
        st.cx_active.value += 1
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.peer, self.local = (peer[0], peer[1]), (local[0], local[1])
        w.connections.add(self)
        self.last = w.loop.time()
        set_nodelay(transport)
        self.transport.set_write_buffer_limits(cfg.limits.write_high_water, cfg.limits.write_low_water)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last = self.worker.loop.time()
        buf = self.buf
        buf += data
        codec, limit = self.codec, self.opts.max_frame_size
        start = 0
        try:
            while not self.closing:
                frame = codec.decode(buf, start, limit)
                if frame is None:
                    break
                start += len(frame.raw)
                self._on_frame(frame)
        except FrameError as e:
            self.stats.decode_error.value += 1
            log.debug("%s listener %s: %s; connection closed", codec.name, self.name, e)
            self.close()
            return
        if start:
            del buf[:start]

    def _on_frame(self, frame: Frame) -> None:
        kind = frame.kind
        st = self.stats
        if kind == rc.REQUEST or kind == rc.ONEWAY:
            st.request.value += 1
            if kind == rc.ONEWAY:
                st.oneway.value += 1
            else:
                st.twoway.value += 1
            self._dispatch(frame)
        elif kind == rc.HEARTBEAT:
            st.heartbeat.value += 1
            self.transport.write(self.codec.heartbeat_reply(frame))
        # a response or heartbeat ack from a client answers nothing the proxy asked: dropped

    def _dispatch(self, frame: Frame) -> None:
        if self.want_ctx:
            try:
                ctx = call_context(self, frame)
            except FrameError:
                self.stats.decode_error.value += 1
                return self.local_reply(frame, rc.CODEC_ERROR, "the request could not be read")
            if self.tracer is not None:
                self.tracer.begin(ctx)      # the trace the call continues or starts (ctx.trace)
            if self.steps:
                return self._filter(frame, ctx, 0)
            return self._route(frame, ctx)
        self._route(frame, None)

    def _filter(self, frame: Frame, ctx: StreamContext, i: int) -> None:
        """The listener's request-phase filters (rate limit, fault, ...) from step i on:
        a local reply answers in the protocol's format, a pause waits, then goes on."""
        steps = self.steps
        while i < len(steps):
            action = steps[i](ctx)
            i += 1
            if action is None:
                continue
            if isinstance(action, Pause):
                task = asyncio.ensure_future(action.awaitable)
                resume_at = i
                task.add_done_callback(lambda t: self._resume(frame, ctx, resume_at, t))
                return
            if isinstance(action, LocalReply):
                reason = _REASON_OF_STATUS.get(action.status, rc.UNAVAILABLE)
                return self.local_reply(frame, reason, action.detail or f"local reply {action.status}", ctx)
        self._route(frame, ctx)

    def _resume(self, frame: Frame, ctx: StreamContext, i: int, task: asyncio.Future) -> None:
        if self.closing:
            return
        action = None if task.cancelled() or task.exception() is not None else task.result()
        if isinstance(action, LocalReply):
            reason = _REASON_OF_STATUS.get(action.status, rc.UNAVAILABLE)
            return self.local_reply(frame, reason, action.detail or f"local reply {action.status}", ctx)
        self._filter(frame, ctx, i)

    def _route(self, frame: Frame, ctx: StreamContext | None) -> None:
        oneway = frame.kind == rc.ONEWAY
        try:
            rules = self.rules
            if rules is not None:           # .mdsl rpc blocks, in place of rpc.routes
                action = rules(frame.headers)
                if isinstance(action, LocalReply):
                    return self.local_reply(frame, _REASON_OF_STATUS.get(action.status, rc.UNAVAILABLE),
                                            action.detail)
            else:
                action = match_route(self.opts, frame) if self.opts.routes else None
        except FrameError:
            self.stats.decode_error.value += 1
            return self.local_reply(frame, rc.CODEC_ERROR, "the request could not be read", ctx)
        if action is None:
            action = self.default_route
        if action is None:
            return self.local_reply(frame, rc.NO_ROUTE, "no route for the call", ctx)
        cname = action.cluster or pick_weighted(action.weighted_clusters)
        cluster = self.worker.clusters.get(cname)
        if ctx is not None:
            ctx.cluster_name = cname or ""
        if cluster is None or cluster.config.protocol != self.codec.name:
            return self.local_reply(frame, rc.NO_ROUTE, f"no {self.codec.name} cluster {cname}", ctx)
        call = RpcCall(self, frame, action, cluster, oneway)
        call.ctx = ctx
        call.start()

    def local_reply(self, frame: Frame, reason: str, message: str, ctx: StreamContext | None = None) -> None:
        """A call ended before it became an RpcCall (no route, a filter's answer, unreadable)."""
        self.ended(frame, ctx, None, self.write_local(frame, reason, message), reason)

    def write_local(self, frame: Frame, reason: str, message: str) -> bytes:
        st = self.stats
        st.local.value += 1
        st.local_by[reason].value += 1
        if frame.kind == rc.ONEWAY or self.closing:
            return b""
        data = self.codec.local_reply(frame, reason, f"mosnx: {message}")
        self.transport.write(data)
        return data

    def ended(self, frame: Frame, ctx: StreamContext | None, call: "RpcCall | None", answer: bytes | Frame,
              reason: str | None, elapsed_ms: float = 0.0, detail: str | None = None) -> None:
        """A request's end, told once: per-method stats, its access-log line and its trace.
        answer: the provider's response, or the bytes of the proxy's own (b"" for none);
        reason: a local reply's (codec.ERRORS), "gone" for a client gone, None otherwise."""
        m = self.methods
        if m is not None:
            ms = m.of(frame)
            if ms is not None:
                ms.request.value += 1
                if reason is None:
                    if isinstance(answer, Frame):
                        (ms.success if self.codec.is_success(answer) else ms.error).value += 1
                elif reason != "gone":
                    ms.local.value += 1
                    if reason == rc.TIMEOUT:
                        ms.timeout.value += 1
                if call is not None:
                    ms.time.record(elapsed_ms)
                    if call.attempts > 1:
                        ms.retry.value += call.attempts - 1
        if ctx is None:
            return
        if isinstance(answer, Frame):
            ctx.response = ResponseHead(self.codec.http_status(answer), _EMPTY)
            ctx.bytes_sent = len(answer.raw)
            if ctx.rpc is not None:
                ctx.rpc.status = answer.status
        elif answer:
            ctx.response = ResponseHead(rc.HTTP_STATUS.get(reason or "", 500), _EMPTY)
            ctx.bytes_sent = len(answer)
            try:
                if ctx.rpc is not None:
                    ctx.rpc.status = self.codec.decode(answer, 0, len(answer)).status  # type: ignore[union-attr]
            except (FrameError, AttributeError):
                pass
        if reason is not None:
            ctx.error_detail = DETAIL.get(detail or reason, reason)
        if call is not None:
            ctx.attempt_count = call.attempts
        al = self.worker.access_logs.get(self.name)
        if al is not None:
            al.write(ctx)
        if ctx.trace is not None:
            ctx.trace.finish(ctx)       # the server span ends; its record goes to export

    def respond(self, data: bytes) -> None:
        if not self.closing:
            self.transport.write(data)

    def eof_received(self):
        return False

    # a client that does not read its answers is not read either: its buffer stops growing
    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.closing:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.stats is not None:
            self.stats.cx_active.value -= 1
            if self.calls:
                self.stats.cx_destroy_local_with_active_rq.value += 1
        self.worker.connections.discard(self)
        for call in list(self.calls):
            call.abandon()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            for call in list(self.calls):
                call.abandon()
            self.transport.close()

    def check_deadline(self, now: float) -> None:
        """The worker's sweep: the idle timeout (only with nothing in flight)."""
        if self.idle and not self.closing and not self.calls and now - self.last >= self.idle:
            self.close()
        elif self.draining and not self.calls:
            self.close()

    def drain(self) -> None:
        """Stop taking calls once those in flight are answered (checked by the sweep)."""
        self.draining = True
        if not self.calls:
            self.close()


class RpcCall:
    """One request, from routing to its answer; its attempts go through the pool."""

    __slots__ = ("down", "frame", "orig", "route", "cluster", "oneway", "host", "conn", "up_id", "pool",
                 "attempts", "timer", "try_timer", "started", "try_started", "done", "ctx", "retrying",
                 "answer", "reason", "detail")

    def __init__(self, down: RpcServer, frame: Frame, route: RouteAction, cluster: "Cluster", oneway: bool):
        self.down = down
        self.frame = frame          # what goes upstream: the client's frame, or it with trace context added
        self.orig = frame           # the client's frame, as it came
        self.route = route
        self.cluster = cluster
        self.oneway = oneway
        self.host: Host | None = None
        self.conn: RpcConnection | None = None
        self.up_id = 0
        self.pool: RpcPool | None = None
        self.attempts = 0
        self.timer: asyncio.TimerHandle | None = None
        self.try_timer: asyncio.TimerHandle | None = None
        self.started = _monotonic()
        self.try_started = self.started
        self.done = False
        self.ctx: StreamContext | None = None
        self.retrying = False
        self.answer: Frame | bytes = b""    # the provider's response, or the proxy's own reply
        self.reason: str | None = None      # a local reply's reason; "gone": the client went away
        self.detail: str | None = None      # what the access log's flags say, where the reason is not enough

    def start(self) -> None:
        cluster = self.cluster
        down = self.down
        if cluster.rq_active >= cluster.cb.max_requests:
            cluster.c["upstream_rq_pending_overflow"].value += 1
            self.done = True
            return down.local_reply(self.frame, rc.OVERFLOW, f"cluster {cluster.name}: too many requests", self.ctx)
        if cluster.config.lb in _HASHING and self.ctx is None:
            try:
                self.ctx = call_context(down, self.frame)
            except FrameError:
                pass
        cluster.rq_active += 1
        down.calls.add(self)
        down.stats.active.value += 1
        t = self.route.timeout
        if t and not self.oneway:
            self.timer = down.worker.loop.call_later(t, self.on_timeout)
        self._attempt(None)

    def _attempt(self, exclude: "Host | None") -> None:
        cluster = self.cluster
        host = cluster.pick(self.ctx, exclude)
        if host is None:
            return self._local(rc.UNAVAILABLE, f"cluster {cluster.name}: no healthy upstream")
        self.host = host
        self.attempts += 1
        cluster.rq_total_counter.value += 1
        host.rq_total += 1
        ctx = self.ctx
        if ctx is not None:
            ctx.upstream_address = host.address
            if ctx.trace is not None:
                self._carry_trace(ctx, host)
        self.pool = pool = pool_for(host, self.down.codec, self.down.opts.max_frame_size)
        if self.oneway:
            ok = pool.send_oneway(self.frame)
            self.host = None
            return self._finish() if ok else self._local(rc.OVERFLOW, f"cluster {cluster.name}: too many connections")
        host.rq_active += 1
        self.try_started = _monotonic()
        retry = self.route.retry
        if retry is not None and retry.per_try_timeout and self._idempotent():
            self.try_timer = self.down.worker.loop.call_later(retry.per_try_timeout, self.on_try_timeout)
        if not pool.send(self):
            host.rq_active -= 1
            self.host = None
            self._local(rc.OVERFLOW, f"cluster {cluster.name}: too many pending requests")

    def _carry_trace(self, ctx: StreamContext, host: "Host") -> None:
        """The attempt's client span, and its context in the upstream request's attachments."""
        trace = ctx.trace
        trace.attempt_start(ctx, self.cluster.name, host.address, self.attempts)
        if trace.current is not None and ctx.rpc is not None:     # sampled: the call's names, as OpenTelemetry's
            r = ctx.rpc
            trace.attempt_attributes({"rpc.system": r.protocol, "rpc.service": r.service, "rpc.method": r.method})
        names = _written(trace.tracer.formats)
        extra = {k.decode("latin-1"): v.decode("latin-1") for k, v in ctx.request.headers.items if k in names}
        try:
            up = self.down.codec.with_headers(self.orig, extra)
        except FrameError:
            up = None           # a body the proxy cannot add to goes as it came
        self.frame = up if up is not None else self.orig

    def _idempotent(self) -> bool:
        try:
            return self.frame.headers.get(rc.METHOD) in self.down.opts.idempotent_methods
        except FrameError:
            return False

    # ------------------------------------------------------------- pool events
    def on_upstream_response(self, frame: Frame) -> None:
        if self.done:
            return
        self.conn = None
        codec = self.down.codec
        status = codec.http_status(frame)
        host = self.host
        if host is not None:
            host.rq_active -= 1
            host.observe(status, (_monotonic() - self.try_started) * 1000.0)
            self.host = None
        c = self.cluster
        c.count_status(status)
        c.rq_time.add((_monotonic() - self.try_started) * 1000.0)
        ctx = self.ctx
        if ctx is not None and ctx.trace is not None:
            ctx.trace.attempt_status(status)
        st = self.down.stats
        st.response.value += 1
        if codec.is_success(frame):
            st.success.value += 1
        else:
            st.error.value += 1
        if self.attempts > 1:
            c.c["upstream_rq_retry_success"].value += 1
        self.answer = frame
        self.down.respond(codec.with_id(frame, self.orig.request_id))
        self._finish()

    def on_upstream_failure(self, kind: str) -> None:
        """The attempt's connection reset or never opened ("reset", "connect_failure")."""
        if self.done:
            return
        self.conn = None
        self._attempt_failed(kind)

    def on_pool_overflow(self) -> None:
        self._local(rc.OVERFLOW, f"cluster {self.cluster.name}: too many pending requests")

    def on_try_timeout(self) -> None:
        self.try_timer = None
        if self.done:
            return
        self.cluster.c["upstream_rq_per_try_timeout"].value += 1
        self._detach()
        self._attempt_failed("timeout")

    def _attempt_failed(self, kind: str) -> None:
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        host = self.host
        if host is not None:
            host.rq_active -= 1
            host.observe_failure(kind)
            self.host = None
        ctx = self.ctx
        if ctx is not None and ctx.trace is not None:
            ctx.trace.attempt_end(_ATTEMPT_DETAIL.get(kind, kind))
        if kind == "reset":
            self.cluster.c["upstream_rq_rx_reset"].value += 1
        if self._may_retry():
            c = self.cluster
            c.c["upstream_rq_retry"].value += 1
            self.down.stats.retry.value += 1
            if not self.retrying:
                self.retrying = True
                c.retries_active += 1
            return self._attempt(host)
        if kind == "timeout":
            return self._timed_out()
        reason = rc.RESET if kind == "reset" else rc.UNAVAILABLE
        what = "upstream connection reset" if kind == "reset" else "upstream connect failure"
        self.detail = None if kind == "reset" else "connect_failure"
        self._local(reason, f"cluster {self.cluster.name}: {what}")

    def _may_retry(self) -> bool:
        retry = self.route.retry
        if retry is None or self.attempts > retry.num_retries or not self._idempotent():
            return False
        c = self.cluster
        if c.retries_active >= c.cb.max_retries:
            c.c["upstream_rq_retry_overflow"].value += 1
            return False
        return True

    def on_timeout(self) -> None:
        self.timer = None
        if self.done:
            return
        host = self.host
        self._detach()
        if host is not None:
            host.rq_active -= 1
            host.observe_failure("timeout")
            self.host = None
        self._timed_out()

    def _timed_out(self) -> None:
        self.cluster.c["upstream_rq_timeout"].value += 1
        self._local(rc.TIMEOUT, f"cluster {self.cluster.name}: upstream timeout")

    # ------------------------------------------------------------- ending
    def _detach(self) -> None:
        """Stop waiting on the current attempt: its late response will be dropped."""
        conn = self.conn
        if conn is not None:
            conn.detach(self)
            self.conn = None
        elif self.pool is not None:
            self.pool.cancel(self)

    def _local(self, reason: str, message: str) -> None:
        if self.done:
            return
        c = self.cluster
        if reason != rc.NO_ROUTE:
            c.count_status(rc.HTTP_STATUS[reason])
        self.reason = reason
        self.answer = self.down.write_local(self.orig, reason, message)
        self._finish()

    def abandon(self) -> None:
        """The client is gone: no answer; an attempt in flight is left to come back late."""
        if self.done:
            return
        host = self.host
        self._detach()
        if host is not None:
            host.rq_active -= 1
            self.host = None
        self.reason = "gone"
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        for t in (self.timer, self.try_timer):
            if t is not None:
                t.cancel()
        self.timer = self.try_timer = None
        if self.retrying:
            self.cluster.retries_active -= 1
        down = self.down
        elapsed = (_monotonic() - self.started) * 1000.0
        if self in down.calls:
            down.calls.discard(self)
            down.stats.active.value -= 1
            self.cluster.rq_active -= 1
            down.stats.time.record(elapsed)
        down.ended(self.orig, self.ctx, self, self.answer, self.reason, elapsed, self.detail)


_ATTEMPT_DETAIL = {"reset": "upstream_reset_before_response_started", "connect_failure": "upstream_connect_failure",
                   "timeout": "upstream_per_try_timeout"}
_WRITTEN: dict[tuple[str, ...], frozenset[bytes]] = {}


def _written(formats: tuple[str, ...]) -> frozenset[bytes]:
    """The header names a tracer of these formats writes on an upstream request."""
    names = _WRITTEN.get(formats)
    if names is None:
        names = _WRITTEN[formats] = frozenset(n for f in formats for n in WRITTEN[f])
    return names


async def listen(worker: Any, name: str, cfg: ListenerConfig) -> asyncio.Server:
    """The server of a listener whose protocol is a registered codec's name."""
    codec = rc.get(cfg.protocol)
    if codec is None:
        from mosnx.runtime.diagnostics import ConfigError, Diagnostic
        raise ConfigError([Diagnostic(cfg.span, "C301", f'listener "{name}": no codec serves protocol '
                                      f'{cfg.protocol}; registered: {", ".join(sorted(rc.CODECS))}')])
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: RpcServer(worker, name, codec), cfg.host, cfg.port,
                                    reuse_port=True, backlog=4096)
