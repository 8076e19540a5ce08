"""HTTP/2 header translation: pseudo-headers to request and response heads and back.

Sans-I/O and stateless: the framing, HPACK and flow control are h2's. What lives
here is the mapping between an HTTP/2 header block and the proxy's heads, so the
HTTP/2 server and the HTTP/2 upstream agree on it, and the gRPC status mapping a
proxy-made reply uses. Header names arrive lower-case (h2 refuses anything else).
"""
from __future__ import annotations

import logging
import re

import h2.config
import h2.connection
import h2.settings
from h2.connection import ConnectionInputs, ConnectionState, H2ConnectionStateMachine

from mosnx.runtime.headers import Headers

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Quiet:
    """hpack logs every field it codes at debug level; the calls alone cost a few
    percent of a request. Its module logger is replaced by this no-op."""

    def debug(self, *args, **kwargs) -> None:
        pass

    def isEnabledFor(self, level) -> bool:
        return False


def _silence_hpack() -> None:
    import hpack.hpack
    if not logging.getLogger("hpack.hpack").isEnabledFor(logging.DEBUG):
        hpack.hpack.log = _Quiet()


_silence_hpack()

# Connection-specific headers (RFC 9113 §8.2.2) never cross into an HTTP/2 block;
# `te` is the exception when it says exactly "trailers".
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"upgrade", b"host", b"te",
                                 b"http2-settings"})

_STATUS = {s: str(s).encode() for s in range(100, 600)}


class H2HeadError(Exception):
    """A request header block that cannot become a request (malformed per RFC 9113 §8.1.1)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def server_config() -> h2.config.H2Configuration:
    # request blocks are validated by request_from_block and trailers_from_block, in one
    # pass each (h2's own checks walk every header several times); outbound blocks are
    # built here from already-lower-cased, filtered headers
    return h2.config.H2Configuration(client_side=False, header_encoding=None,
                                     validate_outbound_headers=False,
                                     normalize_outbound_headers=False,
                                     validate_inbound_headers=False)


def client_config() -> h2.config.H2Configuration:
    return h2.config.H2Configuration(client_side=True, header_encoding=None,
                                     validate_outbound_headers=False,
                                     normalize_outbound_headers=False,
                                     validate_inbound_headers=True)


class RequestFields:
    __slots__ = ("method", "path", "scheme", "authority", "headers", "content_length", "te_trailers")

    def __init__(self, method, path, scheme, authority, headers, content_length, te_trailers):
        self.method = method
        self.path = path
        self.scheme = scheme
        self.authority = authority
        self.headers = headers
        self.content_length = content_length
        self.te_trailers = te_trailers


_NAME_OK = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z").match
_VALUE_BAD = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z").search
_PSEUDO = frozenset({b":method", b":path", b":scheme", b":authority"})
_REQUEST_FORBIDDEN = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                b"upgrade", b"http2-settings"})


def _check_field(k: bytes, v: bytes) -> None:
    # RFC 9113 §8.2.1: a name with upper case or a value with CR, LF or NUL is malformed;
    # passed on to HTTP/1.1 such a field would split or smuggle a message
    if _NAME_OK(k) is None:
        raise H2HeadError("invalid_header_name")
    if v and _VALUE_BAD(v) is not None:
        raise H2HeadError("invalid_header_value")


def request_from_block(block) -> RequestFields:
    """An inbound request block as a head, validated as RFC 9113 §8.2-8.3 asks. A
    `host` header is added from :authority so an HTTP/1.1 upstream gets one; cookies
    split by HPACK are joined again."""
    method = path = scheme = authority = None
    items: list[tuple[bytes, bytes]] = []
    cookies = None
    host = None
    cl = None
    te = False
    regular = False
    for k, v in block:
        if k[:1] == b":":
            if regular:
                raise H2HeadError("pseudo_header_after_regular")
            if k not in _PSEUDO:
                raise H2HeadError("unknown_pseudo_header")
            if k == b":method":
                if method is not None:
                    raise H2HeadError("duplicate_pseudo_header")
                method = v
            elif k == b":path":
                if path is not None:
                    raise H2HeadError("duplicate_pseudo_header")
                path = v
            elif k == b":scheme":
                if scheme is not None:
                    raise H2HeadError("duplicate_pseudo_header")
                scheme = v
            else:
                if authority is not None:
                    raise H2HeadError("duplicate_pseudo_header")
                authority = v
            if _VALUE_BAD(v) is not None or b" " in v:
                raise H2HeadError("invalid_pseudo_header")
            continue
        regular = True
        _check_field(k, v)
        if k in _REQUEST_FORBIDDEN:
            raise H2HeadError("connection_specific_header")
        if k == b"cookie":
            if cookies is None:
                cookies = []
            cookies.append(v)
            continue
        if k == b"host":
            host = v
        elif k == b"content-length":
            cl = v
        elif k == b"te":
            if v.strip().lower() != b"trailers":
                raise H2HeadError("invalid_te")
            te = True
            continue
        items.append((k, v))
    if method is None:
        raise H2HeadError("missing_method")
    if method == b"CONNECT":
        raise H2HeadError("connect_not_supported")
    if path is None or scheme is None:
        raise H2HeadError("missing_path" if path is None else "missing_scheme")
    if not path or (path[0] != 47 and path != b"*"):
        raise H2HeadError("invalid_path")
    if authority is None:
        authority = host
    if authority is None:
        raise H2HeadError("missing_authority")
    if host is None:
        items.insert(0, (b"host", authority))
    if cookies is not None:
        items.append((b"cookie", b"; ".join(cookies)))
    content_length = None
    if cl is not None:
        try:
            content_length = int(cl)
        except ValueError:
            raise H2HeadError("invalid_content_length") from None
        if content_length < 0:
            raise H2HeadError("invalid_content_length")
    try:
        return RequestFields(method.decode("ascii"), path.decode("ascii"), scheme.decode("ascii"),
                             authority.decode("latin-1"), Headers(items), content_length, te)
    except UnicodeDecodeError:
        raise H2HeadError("invalid_path") from None


def response_block(status: int, headers: Headers, body_len: int | None) -> list[tuple[bytes, bytes]]:
    """A response head as an HTTP/2 block; `body_len` replaces any content-length."""
    out = [(b":status", _STATUS.get(status) or str(status).encode())]
    for kv in headers.items:
        k = kv[0]
        if k in CONNECTION_SPECIFIC or k == b"content-length":
            continue
        out.append(kv)
    if body_len is not None and status >= 200 and status not in (204, 304):
        out.append((b"content-length", b"%d" % body_len))
    return out


def trailer_block(trailers: Headers) -> list[tuple[bytes, bytes]]:
    return [kv for kv in trailers.items if kv[0] not in CONNECTION_SPECIFIC and kv[0][:1] != b":"]


def request_block(method: str, target: str, headers: Headers, scheme: str,
                  te_trailers: bool) -> list[tuple[bytes, bytes]]:
    """An outbound request block from an HTTP/1.1-shaped head (Host becomes :authority)."""
    authority = headers.getb(b"host") or b""
    out = [(b":method", method.encode("ascii")), (b":scheme", scheme.encode("ascii")),
           (b":authority", authority), (b":path", target.encode("ascii"))]
    for kv in headers.items:
        if kv[0] in CONNECTION_SPECIFIC:
            continue
        out.append(kv)
    if te_trailers:
        out.append((b"te", b"trailers"))
    return out


def response_from_block(block) -> tuple[int, Headers, int | None]:
    """An inbound response block: status, headers, content-length (None: unknown)."""
    status = 0
    items = []
    cl = None
    for k, v in block:
        if k == b":status":
            status = int(v)
            continue
        if k[0] == 58:
            continue
        if k == b"content-length":
            cl = v
        items.append((k, v))
    body = None
    if cl is not None:
        try:
            body = int(cl)
        except ValueError:
            body = None
    return status, Headers(items), body


def trailers_from_block(block, validate: bool = False) -> Headers:
    if validate:
        for k, v in block:
            if k[:1] == b":":
                raise H2HeadError("pseudo_header_in_trailers")
            _check_field(k, v)
    return Headers([(k, v) for k, v in block if k[:1] != b":"])


def settings(max_streams: int, max_header_list: int, window: int) -> dict:
    return {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}


class _GracefulMachine(H2ConnectionStateMachine):
    """h2 closes a connection on any GOAWAY; RFC 9113 §6.8 lets the streams the peer
    already accepted finish. Receiving GOAWAY leaves the connection open here, and the
    owner refuses new streams itself."""
    _transitions = dict(H2ConnectionStateMachine._transitions)
    _transitions[(ConnectionState.CLIENT_OPEN, ConnectionInputs.RECV_GOAWAY)] = (None, ConnectionState.CLIENT_OPEN)
    _transitions[(ConnectionState.SERVER_OPEN, ConnectionInputs.RECV_GOAWAY)] = (None, ConnectionState.SERVER_OPEN)


class _ServerConnection(h2.connection.H2Connection):
    """h2 answers a stream over SETTINGS_MAX_CONCURRENT_STREAMS with a connection
    error, which would kill every stream in flight; the server refuses that one
    stream (REFUSED_STREAM) instead, so h2's own count is hidden from its check."""

    @property
    def open_inbound_streams(self) -> int:
        return 0


def new_connection(client: bool, initial: dict) -> h2.connection.H2Connection:
    """An H2Connection whose first SETTINGS frame carries `initial` (h2's update_settings
    would only take effect after a round trip) and which survives a graceful GOAWAY."""
    c = h2.connection.H2Connection(client_config()) if client else _ServerConnection(server_config())
    c.state_machine = _GracefulMachine()
    values = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
              h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: c.DEFAULT_MAX_HEADER_LIST_SIZE}
    values.update(initial)
    c.local_settings = h2.settings.Settings(client=client, initial_values=values)
    c.decoder.max_header_list_size = c.local_settings.max_header_list_size
    c.max_inbound_frame_size = c.local_settings.max_frame_size
    return c


# -- gRPC --------------------------------------------------------------------
# What a proxy-made HTTP status means as a gRPC status (the mapping Envoy and the
# gRPC spec's "HTTP to gRPC status code mapping" use).
GRPC_STATUS_FOR_HTTP = {
    400: 13, 401: 16, 403: 7, 404: 12, 408: 4, 413: 8, 429: 8, 431: 8,
    500: 13, 501: 12, 502: 14, 503: 14, 504: 4,
}


def is_grpc(headers: Headers) -> bool:
    ct = headers.getb(b"content-type")
    return ct is not None and ct[:16] == b"application/grpc"


def grpc_status_for(status: int) -> int:
    s = GRPC_STATUS_FOR_HTTP.get(status)
    if s is not None:
        return s
    return 0 if 200 <= status < 300 else 2     # UNKNOWN


_TIMEOUT_UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3,
                  ord("u"): 1e-6, ord("n"): 1e-9}


def parse_grpc_timeout(value: bytes | None) -> float | None:
    """`grpc-timeout` (1-8 digits and a unit) in seconds; None when absent or malformed."""
    if not value or len(value) > 9:
        return None
    unit = _TIMEOUT_UNITS.get(value[-1])
    digits = value[:-1]
    if unit is None or not digits.isdigit():
        return None
    return int(digits) * unit


def grpc_message_escape(text: str) -> bytes:
    """Percent-encode as the gRPC spec asks for grpc-message."""
    out = bytearray()
    for b in text.encode("utf-8"):
        if 0x20 <= b <= 0x7e and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def grpc_local_reply(r):
    """A reply the proxy makes to a gRPC call, as gRPC clients read one: trailers-only
    (HTTP 200, no body, grpc-status and grpc-message in the only header block)."""
    from mosnx.runtime.actions import LocalReply
    code = grpc_status_for(r.status)
    text = r.detail or r.body.decode("utf-8", "replace").strip() or f"HTTP {r.status}"
    keep = tuple((k, v) for k, v in r.headers
                 if k.lower() not in ("content-type", "grpc-status", "grpc-message", "content-length"))
    return LocalReply(200, b"", keep + (("content-type", "application/grpc"), ("grpc-status", str(code)),
                                        ("grpc-message", grpc_message_escape(text).decode("ascii"))), r.detail)
