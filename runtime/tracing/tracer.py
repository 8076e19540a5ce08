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
ahead the same way, with the flag on and its first client span's id, and its place
in the pool holds that context as a SampledWire. On the express path the stream
keeps it as it keeps an unsampled one's, and its end alone differs: the record is
made in one call from what the stream holds then (finish_express; span.ExpressRecord,
its facts made at export). At 1 % such a stream's code runs cold, and each call on
its way costs the fetch of its code and data again (bench/tracing_inprocess.py
--after), many times what its instructions cost. Elsewhere, or once more is asked
of it (a retry, a refused stream made again, a rule, an access log), it is a
SampledPooled (adopt), until anything but its one attempt is asked of that.

Malformed incoming headers are counted (tracing.<format>.invalid) and start a
fresh trace; they never fail the request. The sink is bound by the worker that
serves the snapshot (proxy.tracing); it must not block.
"""
from __future__ import annotations

import math
import os
import random
import socket
import time
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable, cast

from . import propagation
from .span import ExpressRecord, Record
from .sw8 import b64e
from .trace import M64, SampledPooled, SampledWire, StreamTrace, UnsampledPooled, UnsampledTrace, id64

if TYPE_CHECKING:
    from ..context import StreamContext
    from ..stats import Store

_getrandbits = random.getrandbits
_time_ns = time.time_ns
_random = random.random

Sink = Callable[[Record], None]


class _Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def default_instance() -> str:
    """service.instance.id: this process on this host."""
    return f"{os.getpid()}@{socket.gethostname()}"


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
                 "unsampled", "pool", "countdown", "log_keep", "fresh_sampled", "sampled_ids")

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
        # the fresh contexts drawn ahead, in the place of each that random sampling
        # takes a sampled one (SampledWire), or None where none is drawn ahead (_draw).
        # A caller on the hot path may take the last itself (begin_express's usual
        # case): a context is what begin_express returns, None calls for
        # begin_sampled(); an empty pool is begin_express's to refill
        self.pool = cast("list[bytes | None] | None", fresh.pool if fresh is not None else None)
        # a sampled fresh trace's first context, drawn ahead the same way (W3C alone)
        self.fresh_sampled = propagation.Fresh.of(formats, self.sw_who, True) if self.pool is not None else None
        self.unsampled = UnsampledPooled if self.pool is not None else UnsampledTrace
        # where a sampled context drawn ahead has its ids, "<trace id>-<span id>"
        fs = self.fresh_sampled
        self.sampled_ids = slice(fs.trace_at, fs.trace_at + 49) if fs is not None else slice(0)
        assert fs is None or fs.span_at == fs.trace_at + 33
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
        A sampled one drawn ahead is returned the same way (SampledWire): the stream
        ends it with finish_express(). Any other trace is made as begin_fresh() makes
        it (None)."""
        pool = self.pool
        if pool is None:
            self.begin_fresh(ctx)
            return None
        drawn = pool.pop() if pool else self._draw()
        if drawn is None:
            self.begin_sampled(ctx)
        return drawn

    def _draw(self) -> bytes | None:
        """The pool is empty: fill it, put a sampled context (SampledWire, W3C alone;
        None for any other formats) in the place of each fresh trace random sampling
        takes (the countdown: fresh traces to the next one sampled, 1 the next), and
        take the first. At 100 % every place is a sampled one: only those are drawn,
        or with formats that have none, nothing (None)."""
        pool = self.pool
        assert pool is not None
        fs = self.fresh_sampled
        if self.log_keep == 0.0:
            if fs is None:
                return None
            pool += map(SampledWire, fs.draw())
            return pool.pop()
        pool.append(self.fresh.refill())     # type: ignore[union-attr]
        n = len(pool)           # the k-th taken is pool[n - k]
        c = self.countdown
        while c <= n:
            pool[n - c] = SampledWire(fs.take()) if fs is not None else None
            c += self._gap()
        self.countdown = c - n
        return pool.pop()

    def adopt(self, ctx: StreamContext, wire: bytes, written: bool) -> None:
        """The trace object of a context begin_express() returned, on ctx.trace.
        `written`: it went upstream (the object says so), and its fields now go on the
        request too, as the request written; else its first attempt writes them. A
        sampled one (SampledWire) makes a SampledPooled (_adopt_sampled)."""
        if wire.__class__ is SampledWire:
            return self._adopt_sampled(ctx, wire, written)
        t = _new(self.unsampled)
        t.tracer = self
        t.drawn = wire
        t.start_wall = ctx.start_wall
        if written:
            t.wire = wire
            self.fresh.put(ctx.request.headers.items, wire)     # type: ignore[union-attr]
        ctx.trace = t

    def begin_sampled(self, ctx: StreamContext) -> None:
        """A fresh trace random sampling takes, as a trace object (also the trace of a
        None taken from `pool`)."""
        fs = self.fresh_sampled
        if fs is not None:
            self._adopt_sampled(ctx, fs.take(), False)
            return
        self.sampled_total.value += 1
        bits = _getrandbits(192) | 1
        tr = ctx.trace = StreamTrace(self, bits >> 64 or 1, bits & M64, 0, True, (), None,
                                     int(ctx.start_wall * 1e9))
        tr.clean = True

    def _adopt_sampled(self, ctx: StreamContext, w: bytes, written: bool) -> None:
        """The trace object of a sampled fresh trace whose first attempt's context is
        `w` (drawn ahead: its trace id is the trace's, its span id the first client
        span's; the server span's id is drawn here). `written`: the stream sent it
        already (SampledWire, on the express path), so its attempt is recorded as the
        attempt would have: begun with the stream, to the cluster and host the context
        names, answered with the response it has unless the proxy failed the stream
        (finish_express records the same)."""
        self.sampled_total.value += 1
        fs = self.fresh_sampled
        assert fs is not None
        t = _new(SampledPooled)
        t.tracer = self
        at = fs.trace_at
        t.trace_id = int(w[at:at + 32], 16) or 1
        t.span_id = _getrandbits(64) | 1
        t.start_ns = start = int(ctx.start_wall * 1e9)
        ctx.trace = t
        if not written or not ctx.attempt_count:
            t.drawn = w
            t.clients = []
            t.current = t.wire = None
            t.clean = True
            return
        at = fs.span_at
        resp = ctx.response
        t.drawn = None
        t.wire = w
        fs.put(ctx.request.headers.items, w)
        t.clean = False
        t.current = c = [int(w[at:at + 16], 16), start, 0, ctx.cluster_name, ctx.upstream_address,
                         ctx.attempt_count, resp.status if resp is not None and not ctx.error_detail else 0,
                         "", None]
        t.clients = [c]

    def finish_express(self, ctx: StreamContext, w: bytes) -> None:
        """The end of an express stream that kept a sampled context (SampledWire) and
        nothing else of its trace: its record, as the trace object _adopt_sampled()
        would make of it hands over at its end (StreamTrace.finish), as what the stream
        holds now (span.ExpressRecord), its facts made at export."""
        self.sampled_total.value += 1
        sink = self.sink
        if sink is None:
            return
        req = ctx.request
        route = ctx.route
        resp = ctx.response
        r = _new(ExpressRecord)
        r.tracer = self
        r.size = 2 if ctx.attempt_count else 1
        r.made = None
        r.raw = (w[self.sampled_ids], ctx.start_wall, _time_ns(), req.method, req.path,
                 route.name if route is not None else "", req.scheme, req.authority, ctx.source_address,
                 ctx.source_port, req.version, tuple(req.headers.items), ctx.cluster_name, ctx.upstream_address,
                 ctx.attempt_count,
                 resp.status if resp is not None else 0, ctx.request_id, ctx.error_detail)
        sink(r)

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
        tr = ctx.trace = StreamTrace(self, trace_id, id64(), parent_id, sampled, tracestate, sw,
                                     int(ctx.start_wall * 1e9))
        tr.clean = bad is propagation.NONE_PRESENT


def make_tracer(listener: Any, tracing: Any) -> Tracer | None:
    """The Tracer of a listener (model.ListenerConfig) under the top-level settings
    (model.TracingConfig or None), or None when the listener does not trace."""
    t = listener.tracing
    if t is None:
        return None
    return Tracer(listener.name, t.propagation, t.random_sampling, t.client_sampling, t.overall_sampling,
                  tracing.service_name if tracing is not None else None,
                  tracing.service_instance if tracing is not None else None)
