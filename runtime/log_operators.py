"""Envoy's access-log command operators (`%REQ(:PATH)%`, `%RESPONSE_FLAGS%`, ...) as getters.

operator(name, arg, length) binds an operator once, when a format compiles: the
header name is lowered and encoded, the time format split, the truncation length
fixed, so a line costs one closure call per operator. A getter returns the raw
value (a str, an int, or None when not known); the format decides how missing
values show ("-" in text, null in JSON). Bad operators raise OperatorError with
the place (within the reference) to point at; nothing here raises at render time.

mosnx's own failure details (ctx.error_detail: route_not_found, upstream_connect_failure,
...) map onto Envoy's response flags and response code details in one table, FLAGS.
Operators mosnx does not measure (REQUEST_DURATION, UPSTREAM_LOCAL_ADDRESS,
CONNECTION_ID, ...) are accepted and render as missing, as Envoy renders them
where they are unknown.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .diagnostics import did_you_mean

if TYPE_CHECKING:
    from .context import StreamContext

Raw = Callable[["StreamContext"], Any]


class OperatorError(ValueError):
    """A bad operator; `where` is "name", "arg" or "length": the part to point at."""

    def __init__(self, message: str, where: str = "name"):
        super().__init__(message)
        self.where = where


@dataclass(frozen=True, slots=True)
class Operator:
    get: Raw
    numeric: bool = False      # a number in JSON logs (RESPONSE_CODE, DURATION, BYTES_*)


# Envoy's response flags in Envoy's order: (short, long)
RESPONSE_FLAGS = (
    ("UH", "NoHealthyUpstream"), ("UF", "UpstreamConnectionFailure"), ("UO", "UpstreamOverflow"),
    ("NR", "NoRouteFound"), ("URX", "UpstreamRetryLimitExceeded"), ("NC", "NoClusterFound"),
    ("DT", "DurationTimeout"), ("DC", "DownstreamConnectionTermination"), ("LH", "FailedLocalHealthCheck"),
    ("UT", "UpstreamRequestTimeout"), ("LR", "LocalReset"), ("UR", "UpstreamRemoteReset"),
    ("UC", "UpstreamConnectionTermination"), ("DI", "DelayInjected"), ("FI", "FaultInjected"),
    ("RL", "RateLimited"), ("UAEX", "UnauthorizedExternalService"), ("RLSE", "RateLimitServiceError"),
    ("IH", "InvalidEnvoyRequestHeaders"), ("SI", "StreamIdleTimeout"), ("DPE", "DownstreamProtocolError"),
    ("UPE", "UpstreamProtocolError"), ("UMSDR", "UpstreamMaxStreamDurationReached"),
    ("OM", "OverloadManagerTerminated"), ("DF", "DnsResolutionFailed"), ("DO", "DropOverload"),
    ("UDO", "UnconditionalDropOverload"),
)
LONG_FLAG = dict(RESPONSE_FLAGS)

# mosnx's failure detail -> (Envoy response flag or "", Envoy's response code details)
FLAGS: dict[str, tuple[str, str]] = {
    "route_not_found": ("NR", "route_not_found"),
    "cluster_not_found": ("NC", "cluster_not_found"),
    "no_healthy_upstream": ("UH", "no_healthy_upstream"),
    "upstream_removed": ("UH", "no_healthy_upstream"),
    "upstream_connect_failure": ("UF", "upstream_reset_before_response_started{connection_failure}"),
    "upstream_connect_timeout": ("UF", "upstream_reset_before_response_started{connection_timeout}"),
    "upstream_overflow": ("UO", "upstream_reset_before_response_started{overflow}"),
    "upstream_rq_overflow": ("UO", "upstream_reset_before_response_started{overflow}"),
    "upstream_cx_overflow": ("UO", "upstream_reset_before_response_started{overflow}"),
    "circuit_open": ("UO", "circuit_open"),
    "upstream_response_timeout": ("UT", "response_timeout"),
    "upstream_per_try_timeout": ("UT", "upstream_per_try_timeout"),
    "stream_idle_timeout": ("SI", "stream_idle_timeout"),
    "idle_timeout": ("SI", "idle_timeout"),
    "downstream_remote_disconnect": ("DC", "downstream_remote_disconnect"),
    "upstream_reset_before_response_started": ("UC", "upstream_reset_before_response_started{connection_termination}"),
    "upstream_reset_after_response_started": ("UC", "upstream_reset_after_response_started{connection_termination}"),
    "upstream_refused_stream": ("UR", "upstream_reset_before_response_started{remote_refused_stream_reset}"),
    "upstream_protocol_error": ("UPE", "upstream_reset_before_response_started{protocol_error}"),
    "rate_limited": ("RL", "local_rate_limited"),
    "fault_abort": ("FI", "fault_filter_abort"),
    "fault_delay": ("DI", "fault_filter_delay"),
    "system_overload": ("OM", "overload"),
    "ext_authz_denied": ("UAEX", "ext_authz_denied"),
    "ext_authz_error": ("UAEX", "ext_authz_error"),
    "invalid_url": ("DPE", "http1.codec_error"),
    "invalid_method": ("DPE", "http1.codec_error"),
    "invalid_host": ("DPE", "http1.invalid_characters"),
    "missing_host": ("DPE", "missing_host_header"),
    "duplicate_host": ("DPE", "http1.codec_error"),
    "invalid_content_length": ("DPE", "http1.content_length_not_allowed"),
    "repeated_transfer_encoding": ("DPE", "http1.invalid_transfer_encoding"),
    "unsupported_transfer_encoding": ("DPE", "http1.invalid_transfer_encoding"),
    "request_headers_too_large": ("DPE", "http1.headers_too_large"),
    "too_many_request_headers": ("DPE", "http1.too_many_headers"),
    "header_overflow": ("DPE", "http2.too_many_headers"),
    "rx_messaging_error": ("DPE", "http2.violation.of.messaging.rule"),
    "rpc_codec_error": ("DPE", "rpc.codec_error"),
}
# an upstream failure after more than one attempt: the retries ran out (URX)
_RETRIED = frozenset({"UF", "UC", "UR", "UPE"})


def flags_of(ctx: StreamContext) -> str:
    d = ctx.error_detail
    if not d:
        return ""
    flag = FLAGS.get(d, ("", ""))[0]
    if flag in _RETRIED and ctx.attempt_count > 1:
        return flag + ",URX"
    return flag


def _flags(ctx: StreamContext) -> str | None:
    return flags_of(ctx) or None


def _flags_long(ctx: StreamContext) -> str | None:
    f = flags_of(ctx)
    return ",".join(LONG_FLAG[x] for x in f.split(",")) if f else None


def _details(ctx: StreamContext) -> str | None:
    d = ctx.error_detail
    if d:
        got = FLAGS.get(d)
        return got[1] if got is not None else d
    if ctx.response is not None and ctx.upstream_address:
        return "via_upstream"
    return None


def _code(ctx: StreamContext) -> int:
    r = ctx.response
    return r.status if r is not None else 0


def _addr(host: str, port: int) -> str | None:
    if not host:
        return None
    if not port:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _hostport(v: str) -> tuple[str, str]:
    """'10.0.0.1:80' -> ('10.0.0.1', '80'); '[::1]:80' -> ('::1', '80')."""
    if v.startswith("["):
        i = v.find("]")
        return v[1:i], v[i + 2:]
    host, _, port = v.rpartition(":")
    return (host, port) if host else (v, "")


def _none(ctx: StreamContext) -> None:
    return None


def _tls(field: str, join: bool = False) -> Raw:
    def get(ctx: StreamContext) -> Any:
        t = ctx.tls
        v = getattr(t, field, None) if t is not None else None
        if join and v is not None:
            return ",".join(v) or None
        return v or None
    return get


# ---------------------------------------------------------------- START_TIME
# Envoy's extensions to strftime: %1f..%9f (and %f: nine digits) are the fraction of the
# second, %s the seconds since the epoch; the rest is strftime's, in UTC
_TIME_SPEC = re.compile(r"%%|%([1-9]?)f|%s")
DEFAULT_TIME = "%Y-%m-%dT%H:%M:%S.%3fZ"


def start_time(fmt: str = DEFAULT_TIME) -> Raw:
    pieces: list[str | int] = []       # strftime text, or a count of fraction digits (0: epoch seconds)
    last = 0
    for m in _TIME_SPEC.finditer(fmt):
        if m.group() == "%%":
            continue
        pieces.append(fmt[last:m.start()])
        pieces.append(0 if m.group() == "%s" else int(m.group(1) or 9))
        last = m.end()
    pieces.append(fmt[last:])
    cache: list[Any] = [None, ()]      # the second last rendered, and its strftime pieces

    def get(ctx: StreamContext) -> str:
        w = ctx.start_wall
        sec = int(w)
        if cache[0] != sec:
            tm = time.gmtime(sec)
            cache[1] = tuple(time.strftime(p, tm) if p.__class__ is str else p for p in pieces)
            cache[0] = sec
        out = []
        for p in cache[1]:
            if p.__class__ is str:
                out.append(p)
            elif p == 0:
                out.append(str(sec))
            else:
                out.append(("%09d" % int((w - sec) * 1e9))[:p])
        return "".join(out)
    return get


# ---------------------------------------------------------------- headers
def _pseudo_req(name: str) -> Raw | None:
    if name == ":path":
        return lambda c: c.request.path
    if name == ":method":
        return lambda c: c.request.method
    if name in (":authority", "host"):
        return lambda c: c.request.host
    if name == ":scheme":
        return lambda c: c.request.scheme
    return None


def _one_header(op: str, name: str) -> Raw:
    if op == "REQ":
        got = _pseudo_req(name)
        if got is not None:
            return got
    if op == "RESP" and name == ":status":
        return lambda c: str(c.response.status) if c.response is not None else None
    lk = name.encode("latin-1")
    if op == "REQ":
        def req(ctx: StreamContext) -> str | None:
            v = ctx.request.headers.getb(lk)
            return None if v is None else v.decode("latin-1")
        return req
    if op == "RESP":
        def resp(ctx: StreamContext) -> str | None:
            r = ctx.response
            v = r.headers.getb(lk) if r is not None else None
            return None if v is None else v.decode("latin-1")
        return resp

    def trailer(ctx: StreamContext) -> str | None:
        r = ctx.response
        t = r.trailers if r is not None else None
        v = t.getb(lk) if t is not None else None
        return None if v is None else v.decode("latin-1")
    return trailer


_HEADER = re.compile(r":?[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _headers(op: str, arg: str | None) -> Raw:
    if not arg:
        raise OperatorError(f"{op} needs a header name: %{op}(X-Name)% or %{op}(X-Name?Other)%", "name")
    names = arg.split("?")
    if len(names) > 2 or not all(_HEADER.fullmatch(n) for n in names):
        raise OperatorError(f'"{arg}" is not a header name (or two, as X?Y)', "arg")
    first = _one_header(op, names[0].lower())
    if len(names) == 1:
        return first
    second = _one_header(op, names[1].lower())

    def either(ctx: StreamContext) -> Any:
        v = first(ctx)
        return v if v else second(ctx)
    return either


def _without_query(g: Raw) -> Raw:
    def get(ctx: StreamContext) -> Any:
        v = g(ctx)
        if v:
            i = v.find("?")
            return v if i < 0 else v[:i]
        return v
    return get


# ---------------------------------------------------------------- metadata
def _show_value(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    try:
        return json.dumps(v, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(v)


def _dynamic_metadata(arg: str | None) -> Raw:
    if not arg:
        raise OperatorError("DYNAMIC_METADATA needs a namespace: %DYNAMIC_METADATA(NAMESPACE:KEY)%")
    path = arg.split(":")
    if not all(path):
        raise OperatorError(f'"{arg}" is not NAMESPACE or NAMESPACE:KEY:...', "arg")

    def get(ctx: StreamContext) -> Any:
        v: Any = ctx.metadata
        for k in path:
            if not isinstance(v, dict):
                return None
            v = v.get(k)
        return _show_value(v)
    return get


def _filter_state(arg: str | None) -> Raw:
    if not arg:
        raise OperatorError("FILTER_STATE needs a key: %FILTER_STATE(KEY)% or %FILTER_STATE(KEY:PLAIN)%")
    key, _, mode = arg.partition(":")
    if not key or mode not in ("", "PLAIN", "TYPED"):
        raise OperatorError(f'"{arg}" is not KEY, KEY:PLAIN or KEY:TYPED', "arg")

    def get(ctx: StreamContext) -> Any:
        fs = ctx.filter_state
        return _show_value(fs.get(key)) if fs else None
    return get


# ---------------------------------------------------------------- the table
def _trace_id(ctx: StreamContext) -> str | None:
    h = ctx.request.headers
    tp = h.getb(b"traceparent")
    if tp is not None:
        parts = tp.split(b"-")
        if len(parts) >= 3 and len(parts[1]) == 32:
            return parts[1].decode("latin-1")
    b3 = h.getb(b"x-b3-traceid")
    return b3.decode("latin-1") if b3 else None


def _trace_getter() -> Raw:
    """The stream's trace id: the tracing attribute where the proxy has one, else the
    incoming trace context (W3C traceparent, then B3)."""
    from .attributes import ATTRIBUTES
    for name in ("trace.id", "trace_id", "tracing.trace_id", "request.trace_id"):
        attr = ATTRIBUTES.get(name)
        if attr is not None and attr.getter is not None:
            g = attr.getter
            return lambda c: g(c) or _trace_id(c)
    return _trace_id


def _upstream_part(part: int) -> Raw:
    def get(ctx: StreamContext) -> str | None:
        v = ctx.upstream_address
        return (_hostport(v)[part] or None) if v else None
    return get


_PLAIN: dict[str, tuple[Raw, bool]] = {
    "RESPONSE_CODE": (_code, True),
    "RESPONSE_CODE_DETAILS": (_details, False),
    "RESPONSE_FLAGS": (_flags, False),
    "RESPONSE_FLAGS_LONG": (_flags_long, False),
    "CONNECTION_TERMINATION_DETAILS": (_none, False),
    "DURATION": (lambda c: int(c.duration_ms), True),
    "REQUEST_DURATION": (_none, True),
    "REQUEST_TX_DURATION": (_none, True),
    "RESPONSE_DURATION": (_none, True),
    "RESPONSE_TX_DURATION": (_none, True),
    "BYTES_RECEIVED": (lambda c: c.bytes_received, True),
    "BYTES_SENT": (lambda c: c.bytes_sent, True),
    "PROTOCOL": (lambda c: c.protocol if c.protocol.startswith("HTTP") else None, False),
    "UPSTREAM_HOST": (lambda c: c.upstream_address or None, False),
    "UPSTREAM_REMOTE_ADDRESS": (lambda c: c.upstream_address or None, False),
    "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": (_upstream_part(0), False),
    "UPSTREAM_REMOTE_PORT": (_upstream_part(1), False),
    "UPSTREAM_CLUSTER": (lambda c: c.cluster_name or None, False),
    "UPSTREAM_CLUSTER_RAW": (lambda c: c.cluster_name or None, False),
    "UPSTREAM_LOCAL_ADDRESS": (_none, False),
    "UPSTREAM_TRANSPORT_FAILURE_REASON": (_none, False),
    "UPSTREAM_CONNECTION_ID": (_none, True),
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": (lambda c: c.attempt_count, True),
    "DOWNSTREAM_REMOTE_ADDRESS": (lambda c: _addr(c.source_address, c.source_port), False),
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": (lambda c: c.source_address or None, False),
    "DOWNSTREAM_REMOTE_PORT": (lambda c: c.source_port or None, True),
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS": (lambda c: _addr(c.source_address, c.source_port), False),
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT": (lambda c: c.source_address or None, False),
    "DOWNSTREAM_DIRECT_REMOTE_PORT": (lambda c: c.source_port or None, True),
    "DOWNSTREAM_LOCAL_ADDRESS": (lambda c: _addr(c.destination_address, c.destination_port), False),
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": (lambda c: c.destination_address or None, False),
    "DOWNSTREAM_LOCAL_PORT": (lambda c: c.destination_port or None, True),
    "DOWNSTREAM_TRANSPORT_FAILURE_REASON": (_none, False),
    "DOWNSTREAM_PEER_URI_SAN": (_tls("uri_sans", join=True), False),
    "DOWNSTREAM_PEER_DNS_SAN": (_tls("dns_sans", join=True), False),
    "DOWNSTREAM_PEER_SUBJECT": (_tls("subject"), False),
    "DOWNSTREAM_TLS_VERSION": (_tls("version"), False),
    "DOWNSTREAM_TLS_CIPHER": (_tls("cipher"), False),
    "REQUESTED_SERVER_NAME": (lambda c: c.connection_sni or None, False),
    "ROUTE_NAME": (lambda c: c.route.name or None if c.route is not None else None, False),
    "VIRTUAL_CLUSTER_NAME": (_none, False),
    "CONNECTION_ID": (_none, True),
    "STREAM_ID": (lambda c: c.request_id or None, False),
}
_WITH_ARG = ("START_TIME", "REQ", "RESP", "TRAILER", "REQ_WITHOUT_QUERY", "DYNAMIC_METADATA",
             "FILTER_STATE", "ENVIRONMENT")
_NO_ARG = ("HOSTNAME", "TRACE_ID")
NAMES = tuple(sorted(set(_PLAIN) | set(_WITH_ARG) | set(_NO_ARG)))


def operator(name: str, arg: str | None, length: int | None) -> Operator:
    """The operator `%NAME(arg):length%`, bound; OperatorError when it is not one."""
    op = _bind(name, arg)
    if length is None:
        return op
    if op.numeric:
        raise OperatorError(f"{name} is a number: it takes no :length", "length")
    g = op.get

    def cut(ctx: StreamContext) -> Any:
        v = g(ctx)
        return v[:length] if v.__class__ is str else v
    return Operator(cut)


def _bind(name: str, arg: str | None) -> Operator:
    plain = _PLAIN.get(name)
    if plain is not None or name in _NO_ARG:
        if arg is not None:
            raise OperatorError(f"{name} takes no argument", "arg")
        if plain is not None:
            return Operator(plain[0], plain[1])
        if name == "HOSTNAME":
            host = socket.gethostname()
            return Operator(lambda c: host)
        return Operator(_trace_getter())
    if name == "START_TIME":
        return Operator(start_time(arg) if arg else start_time())
    if name in ("REQ", "RESP", "TRAILER"):
        return Operator(_headers(name, arg))
    if name == "REQ_WITHOUT_QUERY":
        return Operator(_without_query(_headers("REQ", arg)))
    if name == "DYNAMIC_METADATA":
        return Operator(_dynamic_metadata(arg))
    if name == "FILTER_STATE":
        return Operator(_filter_state(arg))
    if name == "ENVIRONMENT":
        if not arg:
            raise OperatorError("ENVIRONMENT needs a variable name: %ENVIRONMENT(NAME)%")
        value = os.environ.get(arg)
        return Operator(lambda c: value)
    raise OperatorError(f'unknown command operator "{name}"{did_you_mean(name, NAMES)}')
