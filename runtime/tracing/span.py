"""What a traced stream leaves behind: its spans, grouped as one record per stream.

A Span is plain data an exporter turns into its wire format (OTLP, Zipkin JSON,
SkyWalking segments). A record is one stream's spans (the server span first, then
a client span per upstream attempt) with who recorded them and, when the request
came with sw8, the SkyWalking reference its segment points back to.

Records come in two shapes with the same reading (service, instance, spans, size,
sw_parent, sw_trace, segment_id):
* TraceRecord holds Span objects, as anything may build them;
* StreamRecord is what a sampled stream hands its sink: the facts the stream
  already held when it ended (its StreamTrace, one tuple of request facts, an
  Attempt list per upstream attempt), nothing converted. The Span objects and
  their OpenTelemetry attributes are derived only when an exporter asks (`spans`),
  and the OTLP exporter encodes the facts directly (proxy.tracing.otlp), so a
  request pays for no attribute dict, no Span and no string it would not have
  made anyway. The facts are read once the stream is over: nothing writes them
  after finish().
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

from ..context import path_of
from .sw8 import Sw8

if TYPE_CHECKING:
    from ..context import RequestHead

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

# The request facts a stream's end leaves (StreamTrace.finish), by index.
(F_END, F_REQUEST, F_PEER_ADDRESS, F_PEER_PORT, F_ROUTE, F_CLUSTER, F_UPSTREAM,
 F_ATTEMPTS, F_REQUEST_ID, F_STATUS, F_DETAIL) = range(11)
Facts = tuple                   # (end_ns, RequestHead, source address, source port, route name, cluster
                                #  name, upstream address, attempts, request id, response status (0: none),
                                #  error detail); the url path is context.path_of(the request's path), as
                                #  StreamContext.url_path reads it

NO_RESPONSE = "upstream_no_response"


class StreamRecord:
    """A sampled stream's spans as facts; `spans` derives the Span objects once."""
    __slots__ = ("trace", "facts", "size", "_spans")

    def __init__(self, trace: Any, facts: Facts) -> None:
        self.trace = trace                  # the StreamTrace: ids, start, tracer, attempts, tags
        self.facts = facts
        self.size = 1 + len(trace.clients)
        self._spans: list[Span] | None = None

    @property
    def service(self) -> str:
        return str(self.trace.tracer.service)

    @property
    def instance(self) -> str:
        return str(self.trace.tracer.instance)

    @property
    def sw_parent(self) -> Sw8 | None:
        p: Sw8 | None = self.trace.sw_parent
        return p

    @property
    def sw_trace(self) -> str:
        t = self.trace
        return t.sw_parent.trace_id if t.sw_parent is not None else f"{t.trace_id:032x}"

    @property
    def segment_id(self) -> str:
        t = self.trace
        return f"{t.trace_id:032x}.{t.span_id:016x}"

    @property
    def spans(self) -> list[Span]:
        if self._spans is None:
            self._spans = self._derive()
        return self._spans

    def _derive(self) -> list[Span]:
        t, f = self.trace, self.facts
        req: RequestHead = f[F_REQUEST]
        method, route, path = req.method, f[F_ROUTE], path_of(req.path)
        s = Span(f"{method} {route}" if route else method, SERVER, t.trace_id, t.span_id, t.parent_id,
                 t.start_ns)
        s.end_ns = f[F_END]
        s.peer = f"{f[F_PEER_ADDRESS]}:{f[F_PEER_PORT]}"
        a = s.attributes
        a["http.request.method"] = method
        a["url.path"] = path
        a["url.scheme"] = req.scheme
        a["server.address"] = req.host
        a["network.peer.address"] = f[F_PEER_ADDRESS]
        a["network.protocol.version"] = req.version
        ua = user_agent(req)
        if ua is not None:
            a["user_agent.original"] = ua
        if route:
            a["http.route"] = route
        if f[F_CLUSTER]:
            a["mosnx.cluster"] = f[F_CLUSTER]
        if f[F_UPSTREAM]:
            a["mosnx.upstream_host"] = f[F_UPSTREAM]
        a["mosnx.attempts"] = f[F_ATTEMPTS]
        a["mosnx.request_id"] = f[F_REQUEST_ID]
        status, detail = f[F_STATUS], f[F_DETAIL]
        if status:
            a["http.response.status_code"] = status
            s.error = status >= 500
        if detail:
            s.error = True
            s.message = detail
        if t.tags:
            a.update(t.tags)
        spans = [s]
        clients = t.clients
        last = len(clients) - 1
        for i, c in enumerate(clients):
            spans.append(client_span(t.trace_id, t.span_id, method, path, c,
                                     attempt_message(c, detail, i == last)))
        return spans


def user_agent(req: RequestHead) -> str | None:
    ua = req.headers.getb(b"user-agent")
    return ua.decode("latin-1") if ua is not None else None


def attempt_message(c: Attempt, detail: str, last: bool) -> str:
    """The failure an attempt's span reports ("" for none): its own, or, when it ended
    without an answer (a reset, a timeout, a client gone), the stream's for the last
    attempt and upstream_no_response for any other."""
    if c[A_MESSAGE] or c[A_STATUS]:
        return str(c[A_MESSAGE])
    return (detail if last else "") or NO_RESPONSE


def client_span(trace_id: int, parent_id: int, method: str, path: str, c: Attempt, message: str) -> Span:
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
        a.update(c[A_EXTRA])
    if status:
        a["http.response.status_code"] = status
        s.error = status >= 500
    if message:
        s.error = True
        s.message = message
    return s


Record = Union[TraceRecord, StreamRecord]
