"""The trace of one stream (StreamTrace), and the lighter objects a trace the proxy
started is until more is asked of it: UnsampledTrace and UnsampledPooled (an
unsampled one, recording nothing) and SampledPooled (a sampled one of a W3C
listener, one attempt). Each of those shadows StreamTrace's slots with class
constants and becomes the StreamTrace it stands for in place (_full). The Tracer
(tracer.py) makes them; tracer.py's docstring says when.
"""
from __future__ import annotations

import binascii
import random
import time
from typing import TYPE_CHECKING, Any

from . import propagation
from .span import A_END, A_EXTRA, A_MESSAGE, A_STATUS, Attempt, StreamRecord
from .sw8 import Sw8, b64e

if TYPE_CHECKING:
    from ..context import StreamContext
    from .tracer import Tracer

_getrandbits = random.getrandbits
_time_ns = time.time_ns
_hexlify = binascii.hexlify
_b64 = binascii.b2a_base64
M64 = (1 << 64) - 1


def id64() -> int:
    """A span id: 64 random bits, never 0."""
    return _getrandbits(64) or 1


class SampledWire(bytes):
    """A sampled fresh trace's first context drawn ahead (Tracer.fresh_sampled), as a
    place of the tracer's pool holds it: an express stream keeps it and its upstream
    connection writes it as they do an unsampled one's, and its class alone says that
    the stream's end must be recorded (Tracer.finish_express), or, when more is asked
    of the trace first, that its trace object is a sampled one (Tracer.adopt)."""
    __slots__ = ()


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
        span_id = id64()
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
        sink(StreamRecord(self.tracer, self.sw_parent, tuple(f)))


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
        return self.drawn & M64

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
    """A sampled fresh trace of a listener writing W3C alone, as a trace object
    (Tracer.begin_sampled, Tracer.adopt of a SampledWire; on the express path such a
    trace most often never becomes one): one upstream attempt, whose context was drawn ahead
    (`drawn`, from Tracer.fresh_sampled: the trace id and the client span's id), no
    rule's tag or decision. Only tracer, drawn, trace_id, span_id (the server
    span's), start_ns, clients, current, wire and clean are set; the rest reads from
    the class. Its attempt is StreamTrace's first attempt of a context drawn ahead;
    a retry, a tag or a decision first makes it the StreamTrace it stands for
    (_full), in place, as UnsampledTrace does. It records what StreamTrace records,
    in fewer calls (no __init__, no format's writer): at
    1 % sampling a sampled stream's code runs cold, and the requests after it pay to
    bring the request path's back into the processor's caches
    (bench/tracing_inprocess.py --after)."""
    __slots__ = ()
    sampled = True

    def _full(self) -> None:
        """Become the StreamTrace begin_sampled() would otherwise have made."""
        me: StreamTrace = self
        me.__class__ = StreamTrace      # the slots StreamTrace reads are all filled below
        me.sampled = True
        me.parent_id = 0
        me.tracestate = ()
        me.sw_parent = None
        me.replaced = False
        me.tags = None
        me.sw_trace = me.segment_id = me.sw_ids = ""       # no sw8: W3C alone

    def tag(self, key: str, value: Any) -> None:
        self._full()
        self.tag(key, value)

    def force(self, sampled: bool) -> None:
        if not sampled:
            self._full()
            self.force(False)

    def attempt_start(self, ctx: StreamContext, cluster: str, host: str, attempt: int) -> None:
        if attempt != 1 or self.drawn is None:
            self._full()        # a retry, or attempt 1 made again (an HTTP/2 refused stream)
        StreamTrace.attempt_start(self, ctx, cluster, host, attempt)
