"""What a traced stream leaves behind: its spans, grouped as one record per stream.

A Span is plain data an exporter turns into its wire format (OTLP, Zipkin JSON,
SkyWalking segments). A record is one stream's spans (the server span first, then
a client span per upstream attempt) with who recorded them and, when the request
came with sw8, the SkyWalking reference its segment points back to.

Records come in three shapes with the same reading (service, instance, spans, size,
sw_parent, sw_trace, segment_id):
* TraceRecord holds Span objects, as anything may build them;
* StreamRecord is what a sampled stream hands its sink: the facts the stream
  already held when it ended, as one flat tuple (Facts), nothing converted. The
  Span objects and their OpenTelemetry attributes are derived only when an
  exporter asks (`spans`), and the OTLP exporter encodes the facts directly
  (proxy.tracing.otlp), so a request pays for no attribute dict, no Span and no
  string it would not have made anyway, and its export queue keeps the tuple as
  it is;
* ExpressRecord is what an express stream whose sampled trace was only its context
  hands over: what it held at its end, made into a StreamRecord's facts (its ids
  read, its server span's drawn) only at export.
"""
from __future__ import annotations

import random
from typing import Any, Sequence, Union

from ..context import path_of
from .sw8 import Sw8

_getrandbits = random.getrandbits

SERVER, CLIENT = "server", "client"


class Span:
    __slots__ = ("name", "kind", "trace_id", "span_id", "parent_id", "start_ns", "end_ns",
                 "attributes", "error", "message", "peer")

    def __init__(self, name: str, kind: str, trace_id: int, span_id: int, parent_id: int,
                 start_ns: int) -> None:
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id          # 0: a root span
        self.start_ns = start_ns
        self.end_ns = 0
        self.attributes: dict[str, Any] = {}
        self.error = False
        self.message = ""                   # the x-mosnx-error cause, when the proxy failed it
        self.peer = ""                      # host:port of the other side

    def __repr__(self) -> str:
        return f"Span({self.kind} {self.name!r} {self.trace_id:032x}/{self.span_id:016x}<-{self.parent_id:016x})"


class TraceRecord:
    __slots__ = ("service", "instance", "spans", "sw_parent", "sw_trace", "segment_id", "size")

    def __init__(self, service: str, instance: str, spans: list[Span], sw_parent: Sw8 | None,
                 sw_trace: str, segment_id: str) -> None:
        self.service = service
        self.instance = instance
        self.spans = spans
        self.size = len(spans)
        self.sw_parent = sw_parent          # the sw8 the request came with, if any
        self.sw_trace = sw_trace            # the trace id as SkyWalking spells it
        self.segment_id = segment_id        # this stream's SkyWalking segment


# An upstream attempt's client span, as the stream records it: a list, filled as
# the attempt goes (one BUILD_LIST per attempt, where an object would run an
# __init__), read by index through these names.
A_SPAN, A_START, A_END, A_CLUSTER, A_HOST, A_ATTEMPT, A_STATUS, A_MESSAGE, A_EXTRA = range(9)
Attempt = list                  # [span_id, start_ns, end_ns (0: open), cluster, host, attempt number,
                                #  status (0: no answer), failure detail, extra attributes or None]

# A stream's facts as its end leaves them (StreamTrace.finish): one flat tuple, the
# server span's first (by these indices), then each attempt's ATTEMPT_FIELDS, as in
# Attempt (its extra attributes as a tuple of pairs, or None). Numbers, strings and
# bytes only (the request's header fields a tuple of their pairs, the rules' span
# attributes too): waiting in an export queue for its batch, such a tuple stops being
# tracked by the garbage collector within a pass or three, where a list or an object
# would be walked by every pass. The url path is context.path_of(the request's path),
# as StreamContext.url_path reads it.
(F_TRACE, F_SPAN, F_PARENT, F_START, F_END, F_METHOD, F_PATH, F_ROUTE, F_SCHEME, F_AUTHORITY,
 F_PEER_ADDRESS, F_PEER_PORT, F_VERSION, F_FIELDS, F_CLUSTER, F_UPSTREAM, F_ATTEMPTS, F_STATUS,
 F_REQUEST_ID, F_DETAIL, F_TAGS) = range(21)
R_CLIENTS = F_TAGS + 1          # where the first attempt's fields start
ATTEMPT_FIELDS = A_EXTRA + 1
Facts = tuple

NO_RESPONSE = "upstream_no_response"


class _Recorded:
    """Who recorded a stream's record: its tracer's service and instance."""
    __slots__ = ()
    tracer: Any                         # runtime.tracing.tracer.Tracer

    @property
    def service(self) -> str:
        return str(self.tracer.service)

    @property
    def instance(self) -> str:
        return str(self.tracer.instance)


class StreamRecord(_Recorded):
    """A sampled stream's spans as facts; `spans` derives the Span objects once."""
    __slots__ = ("tracer", "sw_parent", "facts", "size", "_spans")

    def __init__(self, tracer: Any, sw_parent: Sw8 | None, facts: Facts) -> None:
        self.tracer = tracer                # who recorded it (runtime.tracing.tracer.Tracer)
        self.sw_parent = sw_parent          # the sw8 the request came with, if any
        self.facts = facts
        self.size = 1 + (len(facts) - R_CLIENTS) // ATTEMPT_FIELDS
        self._spans: list[Span] | None = None

    @property
    def sw_trace(self) -> str:
        p = self.sw_parent
        return p.trace_id if p is not None else f"{self.facts[F_TRACE]:032x}"

    @property
    def segment_id(self) -> str:
        f = self.facts
        return f"{f[F_TRACE]:032x}.{f[F_SPAN]:016x}"

    @property
    def spans(self) -> list[Span]:
        if self._spans is None:
            self._spans = self._derive()
        return self._spans

    def _derive(self) -> list[Span]:
        f = self.facts
        trace_id, span_id, method, detail = f[F_TRACE], f[F_SPAN], f[F_METHOD], f[F_DETAIL]
        path = path_of(f[F_PATH])
        s = server_span(f)
        spans = [s]
        last = len(f) - ATTEMPT_FIELDS
        for at in range(R_CLIENTS, len(f), ATTEMPT_FIELDS):
            c = f[at:at + ATTEMPT_FIELDS]
            spans.append(client_span(trace_id, span_id, method, path, c, attempt_message(c, detail, at == last)))
        return spans


# What an express stream's sampled trace leaves at its end (Tracer.finish_express), as
# the stream held it: the ids of the context it sent ("<trace id>-<client span id>"
# in hex, as W3C writes them), its start (time.time()) and end (ns), then what the
# facts hold from F_METHOD to F_DETAIL. Bytes, numbers and strings only: kept in an
# export queue, the tuple stops being walked by the garbage collector, as Facts do.
(X_IDS, X_START, X_END, X_METHOD) = range(4)
Raw = tuple


class ExpressRecord(_Recorded):
    """The record of a sampled trace that an express stream kept as its context alone
    (Tracer.finish_express): what the stream held at its end, as it held it (`raw`),
    made into a StreamRecord of its facts when first read, at export: its ids read
    from the context, its server span's drawn then. Its stream hands it over with one
    call, the sink's: at 1 % a sampled stream's code runs cold, and each call and
    conversion on its way costs the fetch of its code and data again. It reads as
    StreamRecord does."""
    __slots__ = ("tracer", "raw", "size", "made")
    raw: Raw                            # X_* above
    size: int
    made: StreamRecord | None
    sw_parent = None

    def record(self) -> StreamRecord:
        """The StreamRecord of this stream's facts, made once."""
        r: StreamRecord | None = self.made
        if r is None:
            r = self.made = StreamRecord(self.tracer, None, express_facts(self.raw))
        return r

    @property
    def facts(self) -> Facts:
        return self.record().facts

    @property
    def spans(self) -> list[Span]:
        return self.record().spans

    @property
    def sw_trace(self) -> str:
        return self.record().sw_trace

    @property
    def segment_id(self) -> str:
        return self.record().segment_id


def express_facts(raw: Raw) -> Facts:
    """An express stream's facts (Facts) from what its end left (Raw): the trace and
    client span ids its context carried, the server span's id drawn, one attempt
    begun with the stream and ended with it (when it made one), answered unless the
    proxy failed the stream."""
    ids = raw[X_IDS]
    start, end = int(raw[X_START] * 1e9), raw[X_END]
    f = (int(ids[:32], 16) or 1, _getrandbits(64) | 1, 0, start, end, *raw[X_METHOD:], None)
    if f[F_ATTEMPTS]:
        detail = f[F_DETAIL]
        f += (int(ids[33:], 16), start, end, f[F_CLUSTER], f[F_UPSTREAM], f[F_ATTEMPTS],
              0 if detail else f[F_STATUS], detail, None)
    return f


def facts_of(kept: Facts | Raw) -> Facts:
    """The facts of what an export queue keeps of a stream's record: its Facts, or
    the Raw of an ExpressRecord (bytes where Facts have the trace id)."""
    return kept if type(kept[0]) is int else express_facts(kept)


def server_span(f: Facts) -> Span:
    """The server span of a stream's facts."""
    method, route, path = f[F_METHOD], f[F_ROUTE], path_of(f[F_PATH])
    s = Span(f"{method} {route}" if route else method, SERVER, f[F_TRACE], f[F_SPAN], f[F_PARENT], f[F_START])
    s.end_ns = f[F_END]
    peer = f[F_PEER_ADDRESS]
    s.peer = f"{peer}:{f[F_PEER_PORT]}"
    host, ua = host_and_agent(f[F_AUTHORITY], f[F_FIELDS])
    a = s.attributes
    a["http.request.method"] = method
    a["url.path"] = path
    a["url.scheme"] = f[F_SCHEME]
    a["server.address"] = host.decode("latin-1") if isinstance(host, bytes) else host or ""
    a["network.peer.address"] = peer
    a["network.protocol.version"] = f[F_VERSION]
    if ua is not None:
        a["user_agent.original"] = ua.decode("latin-1")
    if route:
        a["http.route"] = route
    if f[F_CLUSTER]:
        a["mosnx.cluster"] = f[F_CLUSTER]
    if f[F_UPSTREAM]:
        a["mosnx.upstream_host"] = f[F_UPSTREAM]
    a["mosnx.attempts"] = f[F_ATTEMPTS]
    a["mosnx.request_id"] = f[F_REQUEST_ID]
    _outcome(s, f[F_STATUS], f[F_DETAIL])
    if f[F_TAGS]:
        a.update(f[F_TAGS])
    return s


def host_and_agent(authority: str | None, fields: tuple[tuple[bytes, bytes], ...]
                   ) -> tuple[str | bytes | None, bytes | None]:
    """The request's host (its :authority, else its first Host field, undecoded) and
    its first User-Agent field (undecoded, None without one): RequestHead.host and
    user_agent() of the request the fields were."""
    host: str | bytes | None = authority
    ua = None
    for k, v in fields:
        if k == b"host":
            if host is None:
                host = v
        elif k == b"user-agent" and ua is None:
            ua = v
    return host, ua


def attempt_message(c: Sequence[Any], detail: str, last: bool) -> str:
    """The failure an attempt's span reports ("" for none): its own, or, when it ended
    without an answer (a reset, a timeout, a client gone), the stream's for the last
    attempt and upstream_no_response for any other."""
    if c[A_MESSAGE] or c[A_STATUS]:
        return str(c[A_MESSAGE])
    return (detail if last else "") or NO_RESPONSE


def client_span(trace_id: int, parent_id: int, method: str, path: str, c: Sequence[Any], message: str) -> Span:
    cluster, host, attempt, status = c[A_CLUSTER], c[A_HOST], c[A_ATTEMPT], c[A_STATUS]
    s = Span(f"{method} {cluster}", CLIENT, trace_id, c[A_SPAN], parent_id, c[A_START])
    s.end_ns = c[A_END]
    s.peer = host
    a = s.attributes
    a["http.request.method"] = method
    a["url.path"] = path
    a["server.address"] = host
    a["mosnx.cluster"] = cluster
    a["mosnx.upstream_host"] = host
    a["mosnx.attempt"] = attempt
    if attempt > 1:
        a["http.request.resend_count"] = attempt - 1
    if c[A_EXTRA]:
        a.update(c[A_EXTRA])            # the pairs of the attributes the stream set
    _outcome(s, status, message)
    return s


def _outcome(s: Span, status: int, message: str) -> None:
    """A span's answer (its status, 0 for none) and failure (the x-mosnx-error cause)."""
    if status:
        s.attributes["http.response.status_code"] = status
        s.error = status >= 500
    if message:
        s.error = True
        s.message = message


Record = Union[TraceRecord, StreamRecord, ExpressRecord]
