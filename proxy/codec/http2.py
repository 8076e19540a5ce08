"""HTTP/2 header translation: pseudo-headers to request and response heads and back.

Sans-I/O, and pure: the only state is bounded memos of results, so a request
block or response head that repeats is mapped once. Framing, HPACK and flow
control are http2_connection's.
What lives here is the mapping between an HTTP/2 header block and the proxy's
heads, with the validation RFC 9113 §8.2-8.3 asks of a block in either direction
(the connection codec passes blocks through untouched), so the HTTP/2 server and
the HTTP/2 upstream agree on it; and the gRPC status mapping a proxy-made reply uses.
"""
from __future__ import annotations

import re

from mosnx.runtime.headers import Headers

from ..fastpath import memo
from ..fastpath.memo import remember
from .framing import ContentLengthError, content_length


# Connection-specific headers (RFC 9113 §8.2.2) never cross into an HTTP/2 block;
# `te` is the exception when it says exactly "trailers".
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"upgrade", b"host", b"te",
                                 b"http2-settings"})

_STATUS = {s: str(s).encode() for s in range(100, 600)}
_STATUS_FIELD = {s: (b":status", v) for s, v in _STATUS.items()}
# what a response block never carries from the head: its own content-length comes from body_len
_RESPONSE_DROP = CONNECTION_SPECIFIC | {b"content-length"}
_BODYLESS = frozenset({204, 304})


class H2HeadError(Exception):
    """A request header block that cannot become a request (malformed per RFC 9113 §8.1.1)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


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
# RFC 3986 authority without userinfo: a reg-name or an IP literal, then an optional port
# (no "@", "/", "?", "#": a proxy that routes on the host must not forward another one)
_AUTHORITY_OK = re.compile(rb"(?:[A-Za-z0-9\-._~%!$&'()*+,;=]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?\Z").match
_METHOD_OK = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
_SCHEME_OK = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*\Z").match
_REQUEST_FORBIDDEN = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                b"upgrade", b"http2-settings"})


# Fields already found valid, as (name, value) tuples: a repeated field (most of them,
# with HPACK's tables) costs a set lookup instead of two regexes. Bounded; values
# longer than _OK_VALUE_MAX are checked every time rather than kept.
_ok_fields: set[tuple[bytes, bytes]] = set()
_ok_pseudo: set[tuple[bytes, bytes]] = set()
_OK_MAX = 4096
_OK_VALUE_MAX = 256
# regular fields request_from_block treats specially; every other valid one is kept as is
_REQUEST_SPECIAL = frozenset({b"cookie", b"host", b"content-length", b"te"})


def _check_field(k: bytes, v: bytes) -> None:
    # RFC 9113 §8.2.1: a name with upper case or a value with CR, LF or NUL is malformed;
    # passed on to HTTP/1.1 such a field would split or smuggle a message
    if _NAME_OK(k) is None:
        raise H2HeadError("invalid_header_name")
    if v and _VALUE_BAD(v) is not None:
        raise H2HeadError("invalid_header_value")


def _check_regular(kv: tuple[bytes, bytes]) -> None:
    """A regular field of a block in either direction (never a pseudo-header)."""
    k, v = kv
    if k[:1] == b":":
        raise H2HeadError("pseudo_header_after_regular")
    _check_field(k, v)
    if k in _REQUEST_FORBIDDEN:
        raise H2HeadError("connection_specific_header")
    if len(v) <= _OK_VALUE_MAX:
        if len(_ok_fields) >= _OK_MAX:
            _ok_fields.clear()
        _ok_fields.add(kv)


def _check_pseudo(kv: tuple[bytes, bytes]) -> None:
    k, v = kv
    if k not in _PSEUDO:
        raise H2HeadError("unknown_pseudo_header")
    if _VALUE_BAD(v) is not None or b" " in v:
        raise H2HeadError("invalid_pseudo_header")
    if k == b":authority":
        if _AUTHORITY_OK(v) is None:
            raise H2HeadError("invalid_authority")
    elif k == b":method":
        if _METHOD_OK(v) is None:
            raise H2HeadError("invalid_method")
    elif k == b":scheme":
        if _SCHEME_OK(v) is None:
            raise H2HeadError("invalid_scheme")
    if len(v) <= _OK_VALUE_MAX:
        if len(_ok_pseudo) >= _OK_MAX:
            _ok_pseudo.clear()
        _ok_pseudo.add(kv)


def request_from_block(block) -> RequestFields:
    """An inbound request block as a head, validated as RFC 9113 §8.2-8.3 asks. A
    `host` header is added from :authority so an HTTP/1.1 upstream gets one; cookies
    split by HPACK are joined again."""
    method, path, scheme, authority, items, content_length, te = request_parts(block)
    return RequestFields(method, path, scheme, authority, Headers(list(items)), content_length, te)


# A block the HPACK decoder remembered comes back as the same tuple (a client
# repeating its headers): what it means as a request is remembered with it, so a
# repeated request costs a dict lookup. Bounded; lists (blocks that changed the
# decoder's table, or were too long to remember) are parsed every time.
REQUEST_PARTS = memo.kind("http2.request_parts", 256, "HTTP/2 request blocks, as requests, by their decoded fields")
RESPONSE_PARTS = memo.kind("http2.response_parts", 256, "HTTP/2 response blocks, as responses, by their decoded fields")
_parts_memo: dict[tuple, tuple] = REQUEST_PARTS.table()
_response_memo: dict[tuple, tuple] = RESPONSE_PARTS.table()


def request_parts(block) -> tuple:
    """(method, path, scheme, authority, header items as a tuple, content-length or
    None, te: trailers?) of a request block; the items are shared, callers copy them."""
    if type(block) is tuple:
        hit = _parts_memo.get(block)
        if hit is not None:
            REQUEST_PARTS.hits += 1
            return hit
        return remember(_parts_memo, REQUEST_PARTS, block, _request_parts(block))
    return _request_parts(block)


def _request_parts(block) -> tuple:
    method = path = scheme = authority = None
    n = len(block)
    i = 0
    ok = _ok_pseudo
    while i < n:
        kv = block[i]
        k = kv[0]
        if k[:1] != b":":
            break
        i += 1
        if kv not in ok:
            _check_pseudo(kv)
        v = kv[1]
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
    items: list[tuple[bytes, bytes]] = []
    append = items.append
    cookies = None
    host = None
    cl = None
    te = False
    ok = _ok_fields
    special = _REQUEST_SPECIAL
    while i < n:
        kv = block[i]
        i += 1
        if kv not in ok:
            _check_regular(kv)
        k = kv[0]
        if k not in special:
            append(kv)
        elif k == b"cookie":
            if cookies is None:
                cookies = []
            cookies.append(kv[1])
        elif k == b"te":
            if kv[1].strip().lower() != b"trailers":
                raise H2HeadError("invalid_te")
            te = True
        else:
            if k == b"host":
                if host is not None:
                    raise H2HeadError("duplicate_host")
                host = kv[1]
                append(kv)
            else:
                try:
                    m = content_length(kv[1])
                except ContentLengthError:
                    raise H2HeadError("invalid_content_length") from None
                if cl is None:
                    cl = m
                    # a list of one value repeated goes on as that value (RFC 9110 §8.6)
                    append(kv if kv[1].isdigit() else (b"content-length", b"%d" % m))
                elif m != cl:
                    raise H2HeadError("invalid_content_length")
    if method is None:
        raise H2HeadError("missing_method")
    if method == b"CONNECT":
        raise H2HeadError("connect_not_supported")
    if path is None or scheme is None:
        raise H2HeadError("missing_path" if path is None else "missing_scheme")
    if not path or (path[0] != 47 and (path != b"*" or method != b"OPTIONS")):
        raise H2HeadError("invalid_path")
    if authority is None:
        authority = host
        if authority is None:
            raise H2HeadError("missing_authority")
        if _AUTHORITY_OK(authority) is None:
            raise H2HeadError("invalid_authority")
    elif host is not None and host.lower() != authority.lower():
        # the upstream would get one host and the route be chosen by the other (RFC 9113 §8.3.1)
        raise H2HeadError("host_authority_mismatch")
    if host is None:
        items.insert(0, (b"host", authority))
    if cookies is not None:
        append((b"cookie", b"; ".join(cookies)))
    try:
        return (method.decode("ascii"), path.decode("ascii"), scheme.decode("ascii"),
                authority.decode("latin-1"), tuple(items), cl, te)
    except UnicodeDecodeError:
        raise H2HeadError("invalid_path") from None


def response_block(status: int, headers: Headers, body_len: int | None) -> list[tuple[bytes, bytes]]:
    """A response head as an HTTP/2 block; `body_len` replaces any content-length."""
    return list(response_fields(status, headers.items, body_len))


# An upstream repeating a response head (same status, headers and length: most
# answers within the second of their Date) gets the same block back, shared.
# Bounded in entries and in fields per entry.
RESPONSE_FIELDS = memo.kind("http2.response_fields", 64, "HTTP/2 response fields, by status, length and headers")
_fields_memo: dict[tuple, tuple] = RESPONSE_FIELDS.table()
_FIELDS_MEMO_FIELDS = 16


def response_fields(status: int, items, body_len: int | None) -> tuple:
    """response_block's fields as a tuple the caller must not change."""
    key = (status, body_len, *items)
    hit = _fields_memo.get(key)
    if hit is not None:
        RESPONSE_FIELDS.hits += 1
        return hit
    drop = _RESPONSE_DROP
    out = [kv for kv in items if kv[0] not in drop]
    out.insert(0, _STATUS_FIELD.get(status) or (b":status", str(status).encode()))
    if body_len is not None and status >= 200 and status not in _BODYLESS:
        out.append((b"content-length", b"%d" % body_len))
    fields = tuple(out)
    if len(items) <= _FIELDS_MEMO_FIELDS:
        remember(_fields_memo, RESPONSE_FIELDS, key, fields)
    return fields


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
    """An inbound final response block: status, headers, content-length (None: unknown).
    Validated as a request block is: it is about to become HTTP/1.1 bytes."""
    if type(block) is tuple:
        # a block the decoder remembered, as for request_parts
        hit = _response_memo.get(block)
        if hit is None:
            status, items, body = _response_parts(block)
            hit = remember(_response_memo, RESPONSE_PARTS, block, (status, tuple(items), body))
        else:
            RESPONSE_PARTS.hits += 1
        status, items, body = hit
        return status, Headers(list(items)), body
    status, items, body = _response_parts(block)
    return status, Headers(items), body


def _response_parts(block) -> tuple:
    status = None
    items = []
    cl = None
    regular = False
    ok = _ok_fields
    for kv in block:
        k, v = kv
        if kv not in ok:
            if k[:1] == b":":
                if k != b":status" or status is not None or regular:
                    raise H2HeadError("invalid_pseudo_header")
                if len(v) != 3 or not v.isdigit():
                    raise H2HeadError("invalid_status")
                status = int(v)
                continue
            _check_regular(kv)
        regular = True
        if k == b"content-length":
            try:
                m = content_length(v)
            except ContentLengthError:
                raise H2HeadError("invalid_content_length") from None
            if cl is not None and m != cl:
                raise H2HeadError("invalid_content_length")
            cl = m
        items.append(kv)
    if status is None:
        raise H2HeadError("missing_status")
    return status, items, cl


def trailers_from_block(block, validate: bool = False) -> Headers:
    if validate:
        for k, v in block:
            if k[:1] == b":":
                raise H2HeadError("pseudo_header_in_trailers")
            _check_field(k, v)
    return Headers([kv for kv in block if kv[0][:1] != b":"])


# -- gRPC --------------------------------------------------------------------
# What a proxy-made HTTP status means as a gRPC status (the mapping Envoy and the
# gRPC spec's "HTTP to gRPC status code mapping" use).
GRPC_STATUS_FOR_HTTP = {
    400: 13, 401: 16, 403: 7, 404: 12, 408: 4, 413: 8, 429: 8, 431: 8,
    500: 13, 501: 12, 502: 14, 503: 14, 504: 4,
}


def is_grpc(headers: Headers) -> bool:
    return is_grpc_type(headers.getb(b"content-type"))


def is_grpc_type(content_type: bytes | None) -> bool:
    """A gRPC request's content type: application/grpc, or application/grpc+proto etc."""
    return content_type is not None and content_type[:16] == b"application/grpc"


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
