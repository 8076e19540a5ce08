"""The Tracer of one listener, and the trace of one stream.

The stream calls these moments, each only when its listener traces (one attribute
check otherwise): begin (the request is admitted: read the incoming context,
decide sampling), attempt_start (an upstream attempt is about to send: a client
span, and the context written on the upstream request in every configured
format), attempt_status (the attempt's answer), attempt_end (the attempt failed,
or is given up for a retry), and finish (the stream is logged: the attempt still
open ends with it, the server span ends, and the record goes to the sink).

Sampling is Envoy's HCM: a decision the request carries (a sampled flag in any
format) is honoured; otherwise a request with x-client-trace-id is sampled at
client_sampling percent, any other at random_sampling percent, and what that
samples is kept at overall_sampling percent. An unsampled stream still carries its
context upstream (with the flag off), records no span and costs no export.

Rules may change two things per stream (dsl `trace` statements): force() replaces
the sampling decision while no attempt has started, and tag() adds attributes to
the server span; a stream that uses neither pays one None slot.

Each percentage is a threshold for a uniform 64-bit draw, computed once (the
random and overall percentages multiply into one). A request that carries no trace
header (nor x-client-trace-id) is the common case, and at low rates one that
sampling leaves out: the cheap one. Whether a header begin() reads is there comes
from the stream's own pass over the header names (begin_fresh when none is), or
one C-level pass (begin). Whether random sampling takes such a fresh trace is a
countdown: the number of fresh traces to the next one sampled is drawn at the
random percentage (geometric, so each is still taken independently with that
probability). Where contexts are drawn ahead (below), the countdown marks the
sampled ones' places in the pool when it is filled (None), so a fresh trace costs
one list pop, its sampling included; elsewhere one between two sampled only
decrements it.

An unsampled fresh trace records nothing: no span list, no clock read, no
attempt_status or finish call (the stream skips both for an unsampled trace). Its
ids are drawn ahead: where the written fields depend on the ids alone (no sw8),
its context comes encoded from a pool (propagation.Fresh, a list pop), and the
bytes (`wire`) are what an HTTP/1.1 upstream head appends as they are; with sw8
(which names the path and the peer) one getrandbits() gives the ids and the first
attempt formats them. On the express path (fastpath.express) such a trace is only
its context: the stream keeps the bytes begin_express() took for its upstream
connection to write, with no trace object and no field added to the request.
Elsewhere it is an UnsampledTrace, whose first
attempt writes the fields. Anything else asked of it (a retry, a rule's tag or
forced decision, an access log naming its ids) first makes it the trace object it
stands for (adopt, then _full), in place, so ctx.trace never changes identity once
set. A sampled fresh trace of a listener writing W3C alone draws its first context
ahead the same way, with the flag on and its first client span's id, and is a
SampledPooled until anything but its one attempt is asked of it.

Malformed incoming headers are counted (tracing.<format>.invalid) and start a
fresh trace; they never fail the request. The sink is bound by the worker that
serves the snapshot (proxy.tracing); it must not block.
"""
from __future__ import annotations

import binascii
import math
import os
import random
import socket
import time
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable, cast

from . import propagation
from .span import A_END, A_EXTRA, A_MESSAGE, A_STATUS, Attempt, Record, StreamRecord
from .sw8 import Sw8, b64e

if TYPE_CHECKING:
    from ..context import StreamContext
    from ..stats import Store

_getrandbits = random.getrandbits
_random = random.random
_time_ns = time.time_ns

Sink = Callable[[Record], None]


class _Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def default_instance() -> str:
    """service.instance.id: this process on this host."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _id64() -> int:
    return _getrandbits(64) or 1


_M64 = (1 << 64) - 1
_hexlify = binascii.hexlify
_b64 = binascii.b2a_base64
_first = itemgetter(0)
_new = object.__new__


def _below(*percents: float) -> int:
    """The threshold a uniform 64-bit draw is compared with to pass each of
    `percents` in turn (independent draws multiply): 2**64 at 100 %, 0 at 0 %."""
    p = 1.0
    for pct in percents:
        p *= min(max(pct, 0.0), 100.0) / 100.0
    return 1 << 64 if p >= 1.0 else int(p * (1 << 64))


class Tracer:
    __slots__ = ("formats", "random_sampling", "client_sampling", "overall_sampling", "service",
                 "instance", "sink", "invalid", "sampled_total", "listener", "sw8", "sw_who",
                 "random_below", "client_below", "untouched", "fresh", "wire_n",
                 "unsampled", "pool", "countdown", "log_keep", "fresh_sampled")

    def __init__(self, listener: str, formats: tuple[str, ...], random_sampling: float = 100.0,
                 client_sampling: float = 100.0, overall_sampling: float = 100.0,
                 service: str | None = None, instance: str | None = None) -> None:
        self.listener = listener
        self.formats = formats
        self.random_sampling = random_sampling
        self.client_sampling = client_sampling
        self.overall_sampling = overall_sampling
        self.service = service or listener
        self.instance = instance or default_instance()
        self.sw8 = "sw8" in formats
        # the parts of an sw8 value that never change: who the proxy is
        self.sw_who = f"{b64e(self.service)}-{b64e(self.instance)}-"
        self.sink: Sink | None = None
        self.invalid: dict[str, Any] = {f: _Count() for f in propagation.FORMATS}
        self.sampled_total: Any = _Count()
        # the sampling decision as one compare with a uniform 64-bit draw
        self.random_below = _below(random_sampling, overall_sampling)
        self.client_below = _below(client_sampling, overall_sampling)
        # whether a request's header names hold none that begin() reads
        self.untouched = propagation.READ_NAMES.isdisjoint
        self.fresh = propagation.Fresh.of(formats, self.sw_who)
        self.wire_n = len(self.fresh.names) + (self.fresh.sw8_at > 0) if self.fresh is not None else 0
        fresh = self.fresh
        # the fresh contexts drawn ahead, None in the place of each that random
        # sampling takes (_draw). A caller on the hot path may take the last itself
        # (begin_express's usual case): a context is what begin_express returns, None
        # calls for begin_sampled(); an empty pool is begin_express's to refill
        self.pool = cast("list[bytes | None] | None", fresh.pool if fresh is not None else None)
        # a sampled fresh trace's first context, drawn ahead the same way (W3C alone)
        self.fresh_sampled = propagation.Fresh.of(formats, self.sw_who, True) if self.pool is not None else None
        self.unsampled = UnsampledPooled if self.pool is not None else UnsampledTrace
        # the countdown to the next fresh trace sampled: log(1 - p) of the random percentage
        p = self.random_below / (1 << 64)
        self.log_keep = math.log1p(-p) if 0.0 < p < 1.0 else (0.0 if p >= 1.0 else -math.inf)
        self.countdown = self._gap()

    def _gap(self) -> int:
        """How many fresh traces from this one to the next one sampled (1: this one),
        drawn so that each is sampled independently at the random percentage."""
        k = self.log_keep
        if k == 0.0:
            return 1
        if k == -math.inf:
            return 1 << 62          # never (a request a nanosecond for a century and more)
        return int(math.log(1.0 - _random()) / k) + 1

    def bind(self, sink: Sink | None, store: Store | None) -> None:
        """Where finished records go, and the store counting what this tracer sees."""
        self.sink = sink
        if store is not None:
            self.invalid = {f: store.counter(f"tracing.{f}.invalid") for f in propagation.FORMATS}
            self.sampled_total = store.counter("tracing.sampled")
        self.countdown = self._gap()        # drawn afresh in each process that serves
        if self.pool:
            self.pool.clear()               # its places of sampled traces were the old countdown's

    def decide(self, carried: bool | None, client_trace: bool) -> bool:
        if carried is not None:
            return carried
        return _getrandbits(64) < (self.client_below if client_trace else self.random_below)

    def begin(self, ctx: StreamContext) -> None:
        """The request is admitted: its trace (continued or new) goes on ctx.trace."""
        if self.untouched(map(_first, ctx.request.headers.items)):
            self.begin_fresh(ctx)
        else:
            self._begin_read(ctx)

    def begin_fresh(self, ctx: StreamContext) -> None:
        """begin() for a request the caller knows holds none of propagation.READ_NAMES:
        no context to continue and no x-client-trace-id, so a trace of its own."""
        if self.pool is not None:
            wire = self.begin_express(ctx)
            if wire is not None:
                self.adopt(ctx, wire, False)
            return
        c = self.countdown - 1
        if not c:
            self.countdown = self._gap()
            return self.begin_sampled(ctx)
        self.countdown = c
        t = _new(self.unsampled)
        t.tracer = self
        # the trace id is the high 128 bits, the server span id the low 64 (odd)
        t.drawn = _getrandbits(192) | 1
        t.start_wall = ctx.start_wall
        ctx.trace = t

    def begin_express(self, ctx: StreamContext) -> bytes | None:
        """begin_fresh() for a stream that can keep the context itself (an HTTP stream,
        proxy.stream.decide: on the express path it keeps it; off it, it adopts it at
        once). Where the context is drawn ahead (`pool`), an unsampled trace is only its
        context: the encoded fields are returned, with ctx.trace left None, so the
        stream runs as an untraced one and hands the bytes to its upstream connection,
        which writes them last. The request's own fields never hold them: nothing
        between here and the upstream reads them (as Envoy's router writes the context
        when it forwards). Whoever needs more of it first makes it the trace object (adopt).
        Any other trace is made as begin_fresh() makes it (None)."""
        pool = self.pool
        if pool is None:
            self.begin_fresh(ctx)
            return None
        drawn = pool.pop() if pool else self._draw()
        if drawn is None:
            self.begin_sampled(ctx)
        return drawn

    def _draw(self) -> bytes | None:
        """The pool is empty: fill it, put None in the place of each fresh trace random
        sampling takes (the countdown: fresh traces to the next one sampled, 1 the
        next), and take the first. At 100 % every place would be None: none is drawn."""
        if self.log_keep == 0.0:
            return None
        pool = self.pool
        assert pool is not None
        pool.append(self.fresh.refill())     # type: ignore[union-attr]
        n = len(pool)           # the k-th taken is pool[n - k]
        c = self.countdown
        while c <= n:
            pool[n - c] = None
            c += self._gap()
        self.countdown = c - n
        return pool.pop()

    def adopt(self, ctx: StreamContext, wire: bytes, written: bool) -> None:
        """The trace object of a context begin_express() returned, on ctx.trace.
        `written`: it went upstream (the object says so), and its fields now go on the
        request too, as the request written; else its first attempt writes them."""
        t = _new(self.unsampled)
        t.tracer = self
        t.drawn = wire
        t.start_wall = ctx.start_wall
        if written:
            t.wire = wire
            self.fresh.put(ctx.request.headers.items, wire)     # type: ignore[union-attr]
        ctx.trace = t

    def begin_sampled(self, ctx: StreamContext) -> None:
        """A fresh trace random sampling takes (also the trace of a None taken from
        `pool`)."""
        self.sampled_total.value += 1
        fs = self.fresh_sampled
        if fs is not None:
            # the first attempt's context drawn ahead: its trace id is the trace's, its
            # span id the first client span's; the server span's id is drawn here
            t = _new(SampledPooled)
            t.tracer = self
            t.drawn = w = fs.pool.pop() if fs.pool else fs.refill()
            at = fs.trace_at
            t.trace_id = int(w[at:at + 32], 16) or 1
            t.span_id = _getrandbits(64) | 1
            t.start_ns = int(ctx.start_wall * 1e9)
            t.clients = ()      # type: ignore[assignment]  # its one attempt makes it a list
            t.current = t.wire = None
            ctx.trace = t
            return
        bits = _getrandbits(192) | 1
        tr = ctx.trace = StreamTrace(self, bits >> 64 or 1, bits & _M64, 0, True, (), None,
                                     int(ctx.start_wall * 1e9))
        tr.clean = True

    def _begin_read(self, ctx: StreamContext) -> None:
        headers = ctx.request.headers
        parent, bad = propagation.read(headers, self.formats)
        for fmt in bad:
            self.invalid[fmt].value += 1
        if parent is None or not parent.trace_id:
            carried = parent.sampled if parent is not None else None
            trace_id = _getrandbits(128) or 1
            parent_id = 0
            tracestate: tuple[tuple[str, str], ...] = ()
            sw = None
        else:
            carried = parent.sampled
            trace_id = parent.trace_id
            parent_id = parent.span_id
            tracestate = parent.tracestate
            sw = parent.sw
        # x-client-trace-id matters only to a request without a decision, and only
        # when it changes the percentage
        sampled = self.decide(carried, carried is None and self.client_sampling != self.random_sampling
                              and headers.has(b"x-client-trace-id"))
        if sampled:
            self.sampled_total.value += 1
        tr = ctx.trace = StreamTrace(self, trace_id, _id64(), parent_id, sampled, tracestate, sw,
                                     int(ctx.start_wall * 1e9))
        tr.clean = bad is propagation.NONE_PRESENT


class StreamTrace:
    """One stream's place in its trace, and the spans it records while sampled."""
    drawn: Any              # the ids or the context drawn at begin() (see __init__ and UnsampledTrace)
    __slots__ = ("tracer", "trace_id", "span_id", "parent_id", "sampled", "tracestate", "sw_parent",
                 "start_ns", "clients", "current", "segment_id", "sw_trace", "sw_ids", "replaced", "clean",
                 "tags", "wire", "start_wall", "drawn")

    def __init__(self, tracer: Tracer, trace_id: int, span_id: int, parent_id: int, sampled: bool,
                 tracestate: tuple[tuple[str, str], ...], sw_parent: Sw8 | None, start_ns: int) -> None:
        self.tracer = tracer
        self.trace_id = trace_id
        self.span_id = span_id              # the server span's
        self.parent_id = parent_id
        self.sampled = sampled
        self.tracestate = tracestate
        self.sw_parent = sw_parent
        self.start_ns = start_ns
        self.clients: list[Attempt] = []
        self.current: Attempt | None = None     # the client span of the attempt in flight
        self.replaced = False               # the last attempt's context replaced one the request had
        self.clean = False                  # the request holds no trace header (none to remove)
        self.tags: dict[str, Any] | None = None   # rules' span attributes (trace tag), if any
        # the encoded fields the last attempt wrote, when they were written as one
        # value drawn ahead (an HTTP/1.1 head appends them as they are); else None
        self.wire: bytes | None = None
        # a sampled fresh trace's first context, drawn ahead (Tracer.fresh_sampled)
        # until its first attempt writes it; else None
        self.drawn = None
        self.start_wall = 0.0               # UnsampledTrace's start, until it becomes this
        # SkyWalking's names for the same things (its trace id kept as it came), made
        # only when an sw8 header or a record needs them
        if tracer.sw8:
            self._sw_names()
        else:
            self.sw_trace = self.segment_id = self.sw_ids = ""

    def _sw_names(self) -> None:
        sw_parent = self.sw_parent
        self.sw_trace = sw_parent.trace_id if sw_parent is not None else f"{self.trace_id:032x}"
        self.segment_id = f"{self.trace_id:032x}.{self.span_id:016x}"
        self.sw_ids = f"{b64e(self.sw_trace)}-{b64e(self.segment_id)}" if self.tracer.sw8 else ""

    def tag(self, key: str, value: Any) -> None:
        """An attribute of the server span, set by the rules (`trace tag`)."""
        tags = self.tags
        if tags is None:
            tags = self.tags = {}
        tags[key] = value

    def force(self, sampled: bool) -> None:
        """The rules' sampling decision (`trace sample`), made before any upstream
        attempt: it replaces the one begin() made, the carried flag included."""
        if sampled != self.sampled:
            self.sampled = sampled
            self.drawn = None               # its flag says otherwise now
            self.tracer.sampled_total.value += 1 if sampled else -1
            if sampled and not self.segment_id:
                self._sw_names()

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    def attempt_start(self, ctx: StreamContext, cluster: str, host: str, attempt: int) -> None:
        """An upstream attempt: its client span, and the context on the upstream request."""
        if self.current is not None:
            self.attempt_end("")
        tracer = self.tracer
        drawn = self.drawn
        if drawn is not None:
            # the first attempt of a sampled fresh trace: its context was drawn ahead
            self.drawn = None
            fresh = tracer.fresh_sampled
            at = fresh.span_at      # type: ignore[union-attr]
            span_id = int(drawn[at:at + 16], 16)
            self.wire = drawn
            fresh.put(ctx.request.headers.items, drawn)       # type: ignore[union-attr]
            self.clean = False
            self.current = c = [span_id, _time_ns(), 0, cluster, host, attempt, 0, "", None]
            self.clients.append(c)
            return
        self.wire = None
        span_id = _id64()
        sw = None
        if tracer.sw8:
            # sample-trace-segment-span(the exit span: the attempt)-service-instance-endpoint-peer
            sw = (f"{'1' if self.sampled else '0'}-{self.sw_ids}-{attempt}-{tracer.sw_who}"
                  f"{b64e(ctx.url_path)}-{b64e(host)}")
        self.replaced = propagation.write(ctx.request.headers, tracer.formats, self.trace_id, span_id,
                                          self.span_id, self.sampled, self.tracestate, sw, self.clean)
        self.clean = False                  # what was written now is there for the next attempt
        if not self.sampled:
            return
        # the client span as facts (span.Attempt); its name and attributes are derived at export
        self.current = c = [span_id, _time_ns(), 0, cluster, host, attempt, 0, "", None]
        self.clients.append(c)

    def attempt_attributes(self, attributes: dict[str, Any]) -> None:
        """More attributes of the client span of the attempt in flight (an RPC call's names)."""
        c = self.current
        if c is not None:
            c[A_EXTRA] = attributes

    def attempt_status(self, status: int) -> None:
        c = self.current
        if c is not None:
            c[A_STATUS] = status

    def attempt_end(self, detail: str) -> None:
        """The attempt is over (answered, reset, failed, or given up); `detail` names
        a failure, as x-mosnx-error does."""
        c = self.current
        if c is None:
            return
        self.current = None
        c[A_END] = _time_ns()
        if detail:
            c[A_MESSAGE] = detail

    def finish(self, ctx: StreamContext) -> None:
        """The stream is logged: the server span ends and the record is handed over."""
        c = self.current
        if not self.sampled:
            if c is not None:
                self.attempt_end(ctx.error_detail)
            return
        end = _time_ns()
        if c is not None:
            # the attempt still open ends with the stream, at the same time
            self.current = None
            c[A_END] = end
            detail = ctx.error_detail
            if detail:
                c[A_MESSAGE] = detail
        sink = self.tracer.sink
        if sink is None:
            return
        # what the spans need, read now (the stream's objects are done after this);
        # turned into span attributes only by an exporter (span.StreamRecord)
        req = ctx.request
        route = ctx.route
        resp = ctx.response
        tags = self.tags
        f = [self.trace_id, self.span_id, self.parent_id, self.start_ns, end, req.method, req.path,
             route.name if route is not None else "", req.scheme, req.authority, ctx.source_address,
             ctx.source_port, req.version, tuple(req.headers.items), ctx.cluster_name, ctx.upstream_address,
             ctx.attempt_count, resp.status if resp is not None else 0, ctx.request_id, ctx.error_detail,
             tuple(tags.items()) if tags else None]
        for c in self.clients:
            extra = c[A_EXTRA]
            if extra:
                f += c[:A_EXTRA]
                f.append(tuple(extra.items()))
            else:
                f += c
        sink(StreamRecord(self, tuple(f)))


class _Fresh(StreamTrace):
    """What StreamTrace holds in slots, constant for a trace the proxy started, until
    more is asked of it (UnsampledTrace, SampledPooled): these names shadow the slots
    until the subclass's _full() fills them and changes the class."""
    __slots__ = ()
    parent_id = 0
    tracestate: tuple[tuple[str, str], ...] = ()
    sw_parent = None
    replaced = False
    tags = None
    segment_id = sw_trace = sw_ids = ""


class UnsampledTrace(_Fresh):
    """An unsampled stream that started its own trace, before anything asks more of
    it: only tracer, drawn (its ids: here one number, the trace id its high 128 bits
    and the server span id its low 64) and start_wall are set (begin() sets them
    without an __init__), then wire by the first attempt; the rest reads from the
    class. It records nothing, and
    its first attempt writes the context with the server span's id as the parent,
    as Envoy does for an unsampled request. A retry, a tag or a forced decision
    first makes it the StreamTrace it stands for (_full): the same slots, so the
    object changes class in place and whoever holds it keeps it."""
    __slots__ = ()
    sampled = False
    current = None

    @property
    def trace_id(self) -> int:  # type: ignore[override]
        return self.drawn >> 64 or 1

    @property
    def span_id(self) -> int:  # type: ignore[override]
        return self.drawn & _M64

    def _full(self, sampled: bool) -> None:
        """Become the StreamTrace begin() would have made (`sampled` its decision)."""
        try:
            wire = self.wire        # set by the first attempt
        except AttributeError:
            wire = None
        trace_id, span_id = self.trace_id, self.span_id
        me: StreamTrace = self
        me.__class__ = StreamTrace      # the slots StreamTrace reads are all filled below
        me.trace_id = trace_id
        me.span_id = span_id
        me.sampled = sampled
        me.parent_id = 0
        me.tracestate = ()
        me.sw_parent = None
        me.start_ns = int(me.start_wall * 1e9)
        me.clients = []
        me.current = None
        me.replaced = False
        # what the first attempt wrote must go before the next one writes
        me.clean = wire is None
        me.tags = None
        me.wire = None
        me.drawn = None
        if sampled or me.tracer.sw8:
            me._sw_names()
        else:
            me.sw_trace = me.segment_id = me.sw_ids = ""

    def tag(self, key: str, value: Any) -> None:
        self._full(False)
        self.tag(key, value)

    def force(self, sampled: bool) -> None:
        if sampled:
            self._full(False)
            self.force(True)

    def attempt_start(self, ctx: StreamContext, cluster: str, host: str, attempt: int) -> None:
        fresh = self.tracer.fresh
        if attempt != 1 or fresh is None:
            self._full(False)
            self.attempt_start(ctx, cluster, host, attempt)
            return
        # "<trace id>-<span id>" in hex, with no str made on the way
        raw = self.drawn.to_bytes(24, "big")
        ids = _hexlify(raw, b"-", -16)
        one = fresh.one
        if one is not None:
            wire = self.wire = fresh.fmt % ids
            ctx.request.headers.items.append((one, wire[fresh.at]))
            return
        args = [ids[s] for s in fresh.args]
        at = fresh.sw8_at
        if at:
            # SkyWalking's names: the trace id as it is, the segment "<trace id>.<span id>"
            args += (_b64(ids[:32], newline=False), _b64(_hexlify(raw, b".", -16), newline=False),
                     _b64(ctx.url_path.encode(), newline=False), _b64(host.encode(), newline=False))
        wire = self.wire = fresh.fmt % tuple(args)
        items = ctx.request.headers.items
        items += zip(fresh.names, map(wire.__getitem__, fresh.slices))
        if at:
            items.append((b"sw8", wire[at:-2]))

    def attempt_status(self, status: int) -> None:
        return None

    def attempt_end(self, detail: str) -> None:
        return None

    def finish(self, ctx: StreamContext) -> None:
        return None


class UnsampledPooled(UnsampledTrace):
    """UnsampledTrace when the listener writes no sw8: `drawn` is its context
    already encoded, from the pool of propagation.Fresh, and its ids are read back
    from there when asked for."""
    __slots__ = ()

    @property
    def trace_id(self) -> int:  # type: ignore[override]
        at = self.tracer.fresh.trace_at      # type: ignore[union-attr]
        return int(self.drawn[at:at + 32], 16) or 1

    @property
    def span_id(self) -> int:  # type: ignore[override]
        at = self.tracer.fresh.span_at      # type: ignore[union-attr]
        return int(self.drawn[at:at + 16], 16)

    def attempt_start(self, ctx: StreamContext, cluster: str, host: str, attempt: int) -> None:
        if attempt != 1:
            self._full(False)
            self.attempt_start(ctx, cluster, host, attempt)
            return
        self.wire = self.drawn
        self.tracer.fresh.put(ctx.request.headers.items, self.drawn)     # type: ignore[union-attr]


class SampledPooled(_Fresh):
    """A sampled fresh trace of a listener writing W3C alone, while it is what most
    are (Tracer.begin_sampled): one upstream attempt, whose context was drawn ahead
    (`drawn`, from Tracer.fresh_sampled: the trace id and the client span's id), no
    rule's tag or decision. Only tracer, drawn, trace_id, span_id (the server
    span's), start_ns, clients, current and wire are set; the rest reads from the
    class. A retry, a tag or a decision first makes it the
    StreamTrace it stands for (_full), in place, as UnsampledTrace does. It records
    what StreamTrace records, in fewer calls (no __init__, no format's writer): at
    1 % sampling a sampled stream's code runs cold, and the requests after it pay to
    bring the request path's back into the processor's caches
    (bench/tracing_inprocess.py --after)."""
    __slots__ = ()
    sampled = True
    clean = True

    def _full(self) -> None:
        """Become the StreamTrace begin_sampled() would otherwise have made."""
        written = self.wire is not None
        me: StreamTrace = self
        me.__class__ = StreamTrace      # the slots StreamTrace reads are all filled below
        me.sampled = True
        me.parent_id = 0
        me.tracestate = ()
        me.sw_parent = None
        me.clients = list(me.clients)
        me.replaced = False
        me.clean = not written          # what the first attempt wrote must go before the next one writes
        me.tags = None
        if written:
            me.drawn = None
        me.sw_trace = me.segment_id = me.sw_ids = ""       # no sw8: W3C alone

    def tag(self, key: str, value: Any) -> None:
        self._full()
        self.tag(key, value)

    def force(self, sampled: bool) -> None:
        if not sampled:
            self._full()
            self.force(False)

    def attempt_start(self, ctx: StreamContext, cluster: str, host: str, attempt: int) -> None:
        if attempt != 1 or self.wire is not None:
            self._full()
            self.attempt_start(ctx, cluster, host, attempt)
            return
        fresh = self.tracer.fresh_sampled
        w = self.wire = self.drawn
        at = fresh.span_at      # type: ignore[union-attr]
        self.current = c = [int(w[at:at + 16], 16), _time_ns(), 0, cluster, host, 1, 0, "", None]
        self.clients = [c]
        ctx.request.headers.items.append((b"traceparent", w[fresh.at]))     # type: ignore[union-attr]


def make_tracer(listener: Any, tracing: Any) -> Tracer | None:
    """The Tracer of a listener (model.ListenerConfig) under the top-level settings
    (model.TracingConfig or None), or None when the listener does not trace."""
    t = listener.tracing
    if t is None:
        return None
    return Tracer(listener.name, t.propagation, t.random_sampling, t.client_sampling, t.overall_sampling,
                  tracing.service_name if tracing is not None else None,
                  tracing.service_instance if tracing is not None else None)
