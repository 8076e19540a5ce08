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

Malformed incoming headers are counted (tracing.<format>.invalid) and start a
fresh trace; they never fail the request. The sink is bound by the worker that
serves the snapshot (proxy.tracing); it must not block.
"""
from __future__ import annotations

import os
import random
import socket
import time
from typing import TYPE_CHECKING, Any, Callable

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


class Tracer:
    __slots__ = ("formats", "random_sampling", "client_sampling", "overall_sampling", "service",
                 "instance", "sink", "invalid", "sampled_total", "listener", "sw8", "sw_who")

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

    def bind(self, sink: Sink | None, store: Store | None) -> None:
        """Where finished records go, and the store counting what this tracer sees."""
        self.sink = sink
        if store is not None:
            self.invalid = {f: store.counter(f"tracing.{f}.invalid") for f in propagation.FORMATS}
            self.sampled_total = store.counter("tracing.sampled")

    def decide(self, carried: bool | None, client_trace: bool) -> bool:
        if carried is not None:
            return carried
        pct = self.client_sampling if client_trace else self.random_sampling
        if pct < 100.0 and _random() * 100.0 >= pct:
            return False
        return self.overall_sampling >= 100.0 or _random() * 100.0 < self.overall_sampling

    def begin(self, ctx: StreamContext) -> None:
        """The request is admitted: its trace (continued or new) goes on ctx.trace."""
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
    __slots__ = ("tracer", "trace_id", "span_id", "parent_id", "sampled", "tracestate", "sw_parent",
                 "start_ns", "clients", "current", "segment_id", "sw_trace", "sw_ids", "replaced", "clean",
                 "tags")

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
        span_id = _id64()
        tracer = self.tracer
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
        if self.current is not None:
            self.attempt_end(ctx.error_detail)
        if not self.sampled:
            return
        sink = self.tracer.sink
        if sink is None:
            return
        # what the server span needs, read now (the stream's objects are done after
        # this); turned into span attributes only by an exporter (span.StreamRecord)
        route = ctx.route
        resp = ctx.response
        sink(StreamRecord(self, (_time_ns(), ctx.request, ctx.source_address, ctx.source_port,
                                 route.name if route is not None else "", ctx.cluster_name,
                                 ctx.upstream_address, ctx.attempt_count, ctx.request_id,
                                 resp.status if resp is not None else 0, ctx.error_detail)))


def make_tracer(listener: Any, tracing: Any) -> Tracer | None:
    """The Tracer of a listener (model.ListenerConfig) under the top-level settings
    (model.TracingConfig or None), or None when the listener does not trace."""
    t = listener.tracing
    if t is None:
        return None
    return Tracer(listener.name, t.propagation, t.random_sampling, t.client_sampling, t.overall_sampling,
                  tracing.service_name if tracing is not None else None,
                  tracing.service_instance if tracing is not None else None)
