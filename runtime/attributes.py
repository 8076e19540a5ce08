"""The one attribute vocabulary (Envoy/Istio attribute names).

Every front end resolves request facts here: DSL fields, WASM proxy_get_property
paths, access-log format keys and admin dumps. A name is declared once with its
type and a getter; keyed attributes (headers, query, cookies, metadata) take a key
bound at compile time, so the per-request getter is a single closure call.
Getters never raise: a missing header reads as "" (as in Envoy's CEL and MOSN).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .context import StreamContext

Getter = Callable[[StreamContext], Any]

# Types the checkers know. A DSL operator is legal for a field by this type.
STRING, INT, BOOL, DURATION, IP, MAP = "string", "int", "bool", "duration", "ip", "map"


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    type: str                                   # type of the value (of each entry for keyed)
    doc: str
    getter: Getter | None = None                # plain attributes
    keyed: Callable[[str], Getter] | None = None  # keyed attributes: key -> getter
    phase: str = "request"                      # earliest phase where the value is known


def _req_header(key: str) -> Getter:
    lk = key.lower().encode("latin-1")

    def get(ctx: StreamContext) -> str:
        v = ctx.request.headers.getb(lk)
        return "" if v is None else v.decode("latin-1")
    return get


def _resp_header(key: str) -> Getter:
    lk = key.lower().encode("latin-1")

    def get(ctx: StreamContext) -> str:
        r = ctx.response
        if r is None:
            return ""
        v = r.headers.getb(lk)
        return "" if v is None else v.decode("latin-1")
    return get


def _query(key: str) -> Getter:
    return lambda ctx: ctx.query.get(key, "")


def _cookie(key: str) -> Getter:
    return lambda ctx: ctx.cookies.get(key, "")


def _metadata(key: str) -> Getter:
    return lambda ctx: (ctx.metadata or {}).get(key, "")


def _uri_san(ctx: StreamContext) -> str:
    t = ctx.tls
    return t.uri_sans[0] if t is not None and t.uri_sans else ""


def _local_uri_san(ctx: StreamContext) -> str:
    t = ctx.tls
    return t.local_uri_sans[0] if t is not None and t.local_uri_sans else ""


def _upstream_uri_san(ctx: StreamContext) -> str:
    t = ctx.upstream_tls
    return t.uri_sans[0] if t is not None and t.uri_sans else ""


def _upstream_local_uri_san(ctx: StreamContext) -> str:
    t = ctx.upstream_tls
    return t.local_uri_sans[0] if t is not None and t.local_uri_sans else ""


def _destination_principal(ctx: StreamContext) -> str:
    # the stream went on over TLS: the server's identity; else this proxy's own, as
    # the destination the client reached
    t = ctx.upstream_tls
    if t is not None:
        return t.uri_sans[0] if t.uri_sans else ""
    return _local_uri_san(ctx)


def _dns_san(ctx: StreamContext) -> str:
    t = ctx.tls
    return t.dns_sans[0] if t is not None and t.dns_sans else ""


def _route_name(ctx: StreamContext) -> str:
    r = ctx.route
    return r.name if r is not None else ""


def _request_size(ctx: StreamContext) -> int:
    return ctx.bytes_received


def _trace_id(ctx: StreamContext) -> str:
    t = ctx.trace
    return t.trace_id_hex if t is not None else ""


def _span_id(ctx: StreamContext) -> str:
    t = ctx.trace
    return f"{t.span_id:016x}" if t is not None else ""


def _trace_sampled(ctx: StreamContext) -> bool:
    t = ctx.trace
    return t is not None and t.sampled


def _rpc(field: str, empty: Any) -> Getter:
    def get(ctx: StreamContext) -> Any:
        r = ctx.rpc
        if r is None:
            return empty
        v = getattr(r, field)
        return empty if v is None else v
    return get


_ATTRS = [
    Attribute("request.method", STRING, "HTTP method, e.g. GET", lambda c: c.request.method),
    Attribute("request.path", STRING, "request target: path and query", lambda c: c.request.path),
    Attribute("request.url_path", STRING, "path without the query", lambda c: c.url_path),
    Attribute("request.host", STRING, "Host header or :authority", lambda c: c.request.host),
    Attribute("request.scheme", STRING, "http or https", lambda c: c.request.scheme),
    Attribute("request.protocol", STRING, "HTTP/1.0, HTTP/1.1 or HTTP/2", lambda c: c.protocol),
    Attribute("request.id", STRING, "x-request-id", lambda c: c.request_id),
    Attribute("request.size", INT, "request body bytes received", _request_size),
    Attribute("request.time", INT, "request start, Unix time in ms", lambda c: int(c.start_wall * 1000)),
    Attribute("request.headers", STRING, "a request header; '' when absent", keyed=_req_header),
    Attribute("request.query", STRING, "a query parameter; '' when absent", keyed=_query),
    Attribute("request.cookies", STRING, "a cookie; '' when absent", keyed=_cookie),
    Attribute("source.address", IP, "downstream peer address", lambda c: c.source_address),
    Attribute("source.port", INT, "downstream peer port", lambda c: c.source_port),
    Attribute("destination.address", IP, "local address the stream arrived on", lambda c: c.destination_address),
    Attribute("destination.port", INT, "local port the stream arrived on", lambda c: c.destination_port),
    Attribute("connection.sni", STRING, "TLS server name", lambda c: c.connection_sni),
    Attribute("connection.mtls", BOOL, "client presented a verified certificate", lambda c: c.connection_mtls),
    Attribute("connection.subject_peer_certificate", STRING, "peer certificate subject", lambda c: c.peer_subject),
    Attribute("connection.uri_san_peer_certificate", STRING, "the peer certificate's first URI SAN", _uri_san),
    Attribute("connection.dns_san_peer_certificate", STRING, "the peer certificate's first DNS SAN", _dns_san),
    Attribute("source.principal", STRING, "the peer's identity: its certificate's first URI SAN "
              "(a SPIFFE id under Istio); '' without one", _uri_san),
    Attribute("connection.uri_san_local_certificate", STRING,
              "the first URI SAN of the certificate this proxy presented to the client", _local_uri_san),
    Attribute("upstream.uri_san_peer_certificate", STRING,
              "the upstream server certificate's first URI SAN; '' in cleartext", _upstream_uri_san,
              phase="response"),
    Attribute("upstream.uri_san_local_certificate", STRING,
              "the first URI SAN of the certificate this proxy presented upstream", _upstream_local_uri_san,
              phase="response"),
    Attribute("destination.principal", STRING, "the destination's identity: the upstream server "
              "certificate's first URI SAN when the stream went upstream over TLS, else that of the "
              "certificate this proxy presented to the client; '' without one", _destination_principal,
              phase="response"),
    Attribute("listener.name", STRING, "listener that accepted the stream", lambda c: c.listener),
    Attribute("response.code", INT, "response status (0 before the response)",
              lambda c: c.response.status if c.response is not None else 0, phase="response"),
    Attribute("response.headers", STRING, "a response header; '' when absent", keyed=_resp_header, phase="response"),
    Attribute("response.size", INT, "response body bytes sent", lambda c: c.bytes_sent, phase="log"),
    Attribute("response.flags", STRING, "why the proxy ended the stream itself", lambda c: c.error_detail, phase="log"),
    Attribute("upstream.address", STRING, "chosen endpoint host:port", lambda c: c.upstream_address, phase="response"),
    Attribute("route.name", STRING, "matched route", _route_name, phase="route"),
    Attribute("cluster.name", STRING, "target cluster", lambda c: c.cluster_name, phase="route"),
    Attribute("metadata", STRING, "stream metadata set by filters", keyed=_metadata),
    Attribute("duration_ms", INT, "time since the request started, ms", lambda c: int(c.duration_ms), phase="log"),
    Attribute("trace.id", STRING, "the trace id, 32 hex digits ('' when the listener does not trace)", _trace_id),
    Attribute("trace.span_id", STRING, "the proxy's server span id, 16 hex digits ('' untraced)", _span_id),
    Attribute("trace.sampled", BOOL, "whether the stream's spans are recorded", _trace_sampled),
    Attribute("upstream.attempt_count", INT, "upstream attempts made", lambda c: c.attempt_count, phase="response"),
    Attribute("rpc.protocol", STRING, "an RPC call's protocol (bolt, dubbo, thrift); '' on HTTP",
              _rpc("protocol", "")),
    Attribute("rpc.service", STRING, "an RPC call's service (Dubbo's interface, SOFA's interface name)",
              _rpc("service", "")),
    Attribute("rpc.method", STRING, "an RPC call's method", _rpc("method", "")),
    Attribute("rpc.version", STRING, "an RPC call's service version", _rpc("version", "")),
    Attribute("rpc.group", STRING, "an RPC call's service group (Bolt: the unique id)", _rpc("group", "")),
    # a call's attachments are its request headers (proxy.rpc: one header view for every codec)
    Attribute("rpc.headers", STRING, "an RPC call's attachment (a Bolt header-map entry, a Dubbo attachment); "
              "'' when absent", keyed=_req_header),
    Attribute("rpc.request_id", INT, "an RPC call's request id as the client sent it", _rpc("request_id", 0)),
    Attribute("rpc.status", INT, "an RPC response's status in its protocol's numbers (Dubbo 20, Bolt 0: "
              "success); -1 without a response", _rpc("status", -1), phase="response"),
]

ATTRIBUTES: dict[str, Attribute] = {a.name: a for a in _ATTRS}


class UnknownAttribute(KeyError):
    pass


def getter(name: str, key: str | None = None) -> Getter:
    """A compiled getter for `name` (with `key` for keyed attributes)."""
    attr = ATTRIBUTES.get(name)
    if attr is None:
        raise UnknownAttribute(name)
    if attr.keyed is not None:
        if key is None:
            raise UnknownAttribute(f"{name} needs a key, as {name}[\"...\"]")
        return attr.keyed(key)
    if key is not None:
        raise UnknownAttribute(f"{name} takes no key")
    return attr.getter  # type: ignore[return-value]


def parse_reference(ref: str) -> tuple[str, str | None]:
    """'request.headers["x-a"]' -> ('request.headers', 'x-a'); 'request.path' -> ('request.path', None)."""
    i = ref.find("[")
    if i < 0:
        return ref, None
    key = ref[i + 1:].rstrip("]").strip().strip("'\"")
    return ref[:i], key


def getter_for(ref: str) -> Getter:
    """A getter for a reference written as in config and access-log formats."""
    name, key = parse_reference(ref)
    return getter(name, key)


def property_path(path: list[str]) -> Getter | None:
    """Resolve a WASM property path (['request', 'headers', 'x-a']) to a getter, or None."""
    for n in range(len(path), 0, -1):
        name = ".".join(path[:n])
        attr = ATTRIBUTES.get(name)
        if attr is None:
            continue
        rest = path[n:]
        if attr.keyed is not None and len(rest) == 1:
            return attr.keyed(rest[0])
        if attr.keyed is None and not rest:
            return attr.getter
        return None
    return None


def names() -> list[str]:
    return list(ATTRIBUTES)
