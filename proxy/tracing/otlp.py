"""OTLP export: spans as opentelemetry-proto's ExportTraceServiceRequest, over gRPC
(TraceService/Export, a host:port endpoint) or OTLP/HTTP protobuf (an http:// URL,
as http://127.0.0.1:4318/v1/traces).

Records are grouped by (service.name, service.instance.id), one ResourceSpans each,
with the proxy as the instrumentation scope. Span and trace ids are the 8 and 16
big-endian bytes of the ids the proxy wrote in its headers.

The message is written here as protobuf bytes, not built from the generated
classes: a span would otherwise cost a message object per attribute. Only the
wire format of the few messages above is spelled out (field numbers as in
opentelemetry/proto/trace/v1/trace.proto); the tests decode what this writes with
opentelemetry-proto's own classes. What never changes is encoded once: the
resource and scope of a service, each attribute key. A stream's record
(span.StreamRecord) is encoded from its facts: the attributes that repeat from
request to request (method, route, host, cluster, status, ...) are one memo
lookup for the whole block, encoded the first time that combination is seen;
only ids, times, the path and the request id are written per span. The memos
are bounded (cleared when full), so hostile variety costs encoding, not memory.
What waits in the export queue for its batch is a stream's facts as one flat tuple
(item), not the stream's objects; the batch encodes them (encode_items). The gRPC
call (grpc_call) sends these bytes as they are.
"""
from __future__ import annotations

import struct
from typing import Any, Awaitable, Callable

from mosnx import __version__
from mosnx.runtime.context import path_of
from mosnx.runtime.tracing.span import (ATTEMPT_FIELDS, R_CLIENTS, SERVER, ExpressRecord, Record, Span, StreamRecord,
                                         attempt_message, facts_of, host_and_agent, server_span)

from .grpc_call import GrpcChannel
from .http_post import post

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MEMO_SIZE = 1024                # entries per memo before it starts afresh

_M64 = (1 << 64) - 1
_V1 = [bytes((i,)) for i in range(128)]
_IDS = struct.Struct(">BBQQBBQ")        # trace_id (1), span_id (2): 16 and 8 big-endian bytes
_IDS_PARENT = struct.Struct(">BBQQBBQBBQ")     # the same and parent_span_id (4)
_PARENT = struct.Struct(">BBQ")
_TIMES = struct.Struct("<BQBQ")         # start (7) and end (8) time, fixed64
_DOUBLE = struct.Struct("<d")
_KIND_SERVER, _KIND_CLIENT = b"\x30\x02", b"\x30\x03"       # kind (6): SPAN_KIND_SERVER, _CLIENT
_ERROR = b"\x18\x02"                    # Status.code (3): STATUS_CODE_ERROR


def varint(n: int) -> bytes:
    if n < 0x80:
        return _V1[n]
    if n < 0x4000:                      # a span's length, usually
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag + varint(len(payload)) + payload


def _utf8(s: str) -> bytes:
    try:
        return s.encode()
    except UnicodeEncodeError:          # a lone surrogate: protobuf strings are valid UTF-8
        return s.encode("utf-8", "replace")


def _any(v: Any) -> bytes:
    """An AnyValue: string (1), bool (2), int (3), double (4)."""
    if isinstance(v, str):
        return _ld(b"\x0a", _utf8(v))
    if isinstance(v, bool):
        return b"\x10\x01" if v else b"\x10\x00"
    if isinstance(v, int):
        return b"\x18" + varint(v & _M64)       # int64, two's complement
    if isinstance(v, float):
        return b"\x21" + _DOUBLE.pack(v)
    return _ld(b"\x0a", _utf8(str(v)))


_KEYS: dict[str, bytes] = {}


def attribute(key: str, v: Any, tag: bytes = b"\x4a") -> bytes:
    """A KeyValue as the field `tag` (Span.attributes (9) by default)."""
    k = _KEYS.get(key)
    if k is None:
        if len(_KEYS) >= MEMO_SIZE:
            _KEYS.clear()
        k = _KEYS[key] = _ld(b"\x0a", _utf8(key)) + b"\x12"
    a = _any(v)
    return _ld(tag, k + varint(len(a)) + a)


def _attributes(attrs: dict[str, Any]) -> bytes:
    return b"".join([attribute(k, v) for k, v in attrs.items()])


def _status(message: str) -> bytes:
    """Status (15) of a failed span."""
    return _ld(b"\x7a", (_ld(b"\x12", _utf8(message)) if message else b"") + _ERROR)


def span_bytes(s: Span) -> bytes:
    """A Span message, from a Span object."""
    parts = [_IDS.pack(0x0A, 16, s.trace_id >> 64, s.trace_id & _M64, 0x12, 8, s.span_id)]
    if s.parent_id:
        parts.append(_PARENT.pack(0x22, 8, s.parent_id))
    parts.append(_ld(b"\x2a", _utf8(s.name)))
    parts.append(_KIND_SERVER if s.kind == SERVER else _KIND_CLIENT)
    parts.append(_TIMES.pack(0x39, s.start_ns, 0x41, s.end_ns or s.start_ns))
    parts.append(_attributes(s.attributes))
    if s.error:
        parts.append(_status(s.message))
    return b"".join(parts)


# -- a stream's record, from its facts --------------------------------------------------

_SERVER_BLOCKS: dict[tuple[Any, ...], bytes] = {}
_CLIENT_BLOCKS: dict[tuple[Any, ...], bytes] = {}
_PATHS: dict[str, bytes] = {}
_STATUSES: dict[str, bytes] = {}


def _server_block(key: tuple[Any, ...]) -> bytes:
    method, route, scheme, host, peer, version, ua, cluster, upstream, attempts, status = key
    if isinstance(host, bytes):
        host = host.decode("latin-1")
    elif host is None:
        host = ""
    if ua is not None:
        ua = ua.decode("latin-1")
    parts = [_ld(b"\x2a", _utf8(f"{method} {route}" if route else method)), _KIND_SERVER,
             attribute("http.request.method", method), attribute("url.scheme", scheme),
             attribute("server.address", host), attribute("network.peer.address", peer),
             attribute("network.protocol.version", version)]
    if ua is not None:
        parts.append(attribute("user_agent.original", ua))
    if route:
        parts.append(attribute("http.route", route))
    if cluster:
        parts.append(attribute("mosnx.cluster", cluster))
    if upstream:
        parts.append(attribute("mosnx.upstream_host", upstream))
    parts.append(attribute("mosnx.attempts", attempts))
    if status:
        parts.append(attribute("http.response.status_code", status))
    if len(_SERVER_BLOCKS) >= MEMO_SIZE:
        _SERVER_BLOCKS.clear()
    b = _SERVER_BLOCKS[key] = b"".join(parts)
    return b


def _client_block(key: tuple[Any, ...]) -> bytes:
    method, cluster, host, attempt, status = key
    parts = [_ld(b"\x2a", _utf8(f"{method} {cluster}")), _KIND_CLIENT,
             attribute("http.request.method", method), attribute("server.address", host),
             attribute("mosnx.cluster", cluster), attribute("mosnx.upstream_host", host),
             attribute("mosnx.attempt", attempt)]
    if attempt > 1:
        parts.append(attribute("http.request.resend_count", attempt - 1))
    if status:
        parts.append(attribute("http.response.status_code", status))
    if len(_CLIENT_BLOCKS) >= MEMO_SIZE:
        _CLIENT_BLOCKS.clear()
    b = _CLIENT_BLOCKS[key] = b"".join(parts)
    return b


def _path(path: str) -> bytes:
    if len(_PATHS) >= MEMO_SIZE:
        _PATHS.clear()
    b = _PATHS[path] = attribute("url.path", path)
    return b


def _failed(message: str) -> bytes:
    b = _STATUSES.get(message)
    if b is None:
        if len(_STATUSES) >= MEMO_SIZE:
            _STATUSES.clear()
        b = _STATUSES[message] = _status(message)
    return b


_RID_HEADS: dict[int, bytes] = {}
_SPAN_HEADS = [b"\x12" + varint(n) for n in range(1024)]     # ScopeSpans.spans (2) of n bytes


def _request_id(rid: str) -> bytes:
    """The mosnx.request_id attribute: its head depends only on the id's length."""
    whole = attribute("mosnx.request_id", rid)
    n = len(_utf8(rid))
    _RID_HEADS[n] = whole[:len(whole) - n]
    return whole


def stream_spans(f: tuple, out: list[bytes]) -> None:
    """Append a stream's spans (its facts, span.Facts), each as a ScopeSpans.spans (2)
    field, to `out` (its head and its body, two items: `out` is joined, a span's
    bytes not copied twice)."""
    (tid, sid, pid, start, end, method, path, route, scheme, host, peer, _, version, fields, cluster, upstream,
     attempts, status, rid, detail, tags) = f[:R_CLIENTS]
    path = path_of(path)
    hi, lo = tid >> 64, tid & _M64
    path_attr = _PATHS.get(path) or _path(path)
    if tags is not None:
        body = span_bytes(server_span(f))     # the rules' attributes may replace the proxy's own
    else:
        # the host and user agent undecoded: the memo key, decoded only on a miss
        host, ua = host_and_agent(host, fields)
        key = (method, route, scheme, host, peer, version, ua, cluster, upstream, attempts, status)
        try:
            rb = rid.encode()
        except UnicodeEncodeError:
            rb = _utf8(rid)
        rhead = _RID_HEADS.get(len(rb))
        body = b"".join((_IDS_PARENT.pack(0x0A, 16, hi, lo, 0x12, 8, sid, 0x22, 8, pid) if pid
                         else _IDS.pack(0x0A, 16, hi, lo, 0x12, 8, sid),
                         _TIMES.pack(0x39, start, 0x41, end),
                         _SERVER_BLOCKS.get(key) or _server_block(key), path_attr,
                         rhead + rb if rhead is not None else _request_id(rid),
                         (_STATUSES.get(detail) or _failed(detail)) if detail or status >= 500 else b""))
    n = len(body)
    out += (_SPAN_HEADS[n] if n < 1024 else b"\x12" + varint(n)), body
    last = len(f) - ATTEMPT_FIELDS
    for at in range(R_CLIENTS, len(f), ATTEMPT_FIELDS):
        c = f[at:at + ATTEMPT_FIELDS]
        span_id, cstart, cend, ccluster, chost, attempt, cstatus, _, extra = c
        message = attempt_message(c, detail, at == last)
        ckey = (method, ccluster, chost, attempt, cstatus)
        body = b"".join((_IDS_PARENT.pack(0x0A, 16, hi, lo, 0x12, 8, span_id, 0x22, 8, sid),
                         _TIMES.pack(0x39, cstart, 0x41, cend or cstart),
                         _CLIENT_BLOCKS.get(ckey) or _client_block(ckey), path_attr,
                         _attributes(dict(extra)) if extra else b"",
                         (_STATUSES.get(message) or _failed(message)) if message or cstatus >= 500 else b""))
        n = len(body)
        out += (_SPAN_HEADS[n] if n < 1024 else b"\x12" + varint(n)), body


# -- the request ------------------------------------------------------------------------

_SCOPE = _ld(b"\x0a", _ld(b"\x0a", b"mosnx") + _ld(b"\x12", __version__.encode()))    # ScopeSpans.scope (1)
_RESOURCES: dict[tuple[str, str], bytes] = {}


def _resource(service: str, instance: str) -> bytes:
    """ResourceSpans.resource (1) of one service instance."""
    b = _RESOURCES.get((service, instance))
    if b is None:
        if len(_RESOURCES) >= MEMO_SIZE:
            _RESOURCES.clear()
        attrs = (attribute("service.name", service, b"\x0a") + attribute("service.instance.id", instance, b"\x0a")
                 + attribute("telemetry.sdk.name", "mosnx", b"\x0a"))
        b = _RESOURCES[(service, instance)] = _ld(b"\x0a", attrs)
    return b


Item = tuple[bytes, Any]


def item(r: Record) -> Item:
    """A record as the export queue keeps it until its batch goes: (the
    ResourceSpans.resource of who recorded it, its spans), holding none of the
    stream's objects. A stream's record keeps its facts (an express stream's, what
    they are made from: span.Raw), encoded with the rest of its batch
    (encode_items): run as each sampled stream ends, one in a hundred at
    1 %, the encoder's code would displace the request path's from the processor's
    caches and predictors every time, and the requests after it pay to bring them
    back (bench/tracing_inprocess.py --after); run for a batch, it does so once.
    Any other record keeps its spans encoded, as ScopeSpans.spans fields."""
    if type(r) is StreamRecord:
        tracer = r.tracer
        return _resource(tracer.service, tracer.instance), r.facts
    if type(r) is ExpressRecord:
        tracer = r.tracer
        return _resource(tracer.service, tracer.instance), r.raw      # its facts made with its batch
    out: list[bytes] = []
    for s in r.spans:
        body = span_bytes(s)
        out.append(b"\x12" + varint(len(body)) + body)
    return _resource(r.service, r.instance), b"".join(out)


def encode_items(items: list[Item]) -> bytes:
    """An ExportTraceServiceRequest holding the spans of `items`, one ResourceSpans per
    resource."""
    groups: dict[bytes, list[bytes]] = {}
    for resource, spans in items:
        g = groups.get(resource)
        if g is None:
            g = groups[resource] = [_SCOPE]
        if type(spans) is tuple:
            stream_spans(facts_of(spans), g)
        else:
            g.append(spans)
    return b"".join([_ld(b"\x0a", resource + _ld(b"\x12", b"".join(g)))      # resource_spans (1)
                     for resource, g in groups.items()])


def encode(records: list[Record]) -> bytes:
    """An ExportTraceServiceRequest holding every span of `records`."""
    return encode_items([item(r) for r in records])


def scope_spans(rs: Any) -> list[Any]:
    """A decoded ResourceSpans' scope spans, as either copy of the opentelemetry-proto
    classes names them (xds-protos ships an older one under the same module names:
    ScopeSpans was InstrumentationLibrarySpans, on the wire the same field)."""
    return list(rs.scope_spans if hasattr(rs, "scope_spans") else rs.instrumentation_library_spans)


def scope_name(ss: Any) -> str:
    return str(ss.scope.name if hasattr(ss, "scope") else ss.instrumentation_library.name)


class OtlpGrpc:
    """Export calls on one connection to the collector (grpc_call), opened by the first."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self.channel = GrpcChannel(endpoint, timeout)

    async def send(self, items: list[Item]) -> None:
        # the answer (an ExportTraceServiceResponse, its partial_success unused) is not decoded
        await self.channel.call(EXPORT_METHOD, [encode_items(items)])

    async def close(self) -> None:
        await self.channel.close()


def otlp_http(url: str) -> Callable[[list[Item]], Awaitable[None]]:
    async def send(items: list[Item]) -> None:
        await post(url, encode_items(items), "application/x-protobuf")
    return send
