"""What goes upstream of a request's head: its end-to-end fields plus the forwarding
headers the proxy writes (X-Forwarded-For, X-Forwarded-Proto), as fields for an
HTTP/2 upstream or as HTTP/1.1 bytes.

Clients repeat their requests but for the request id, so a bodiless head is encoded
once and remembered with the id's place in it (bounded memos, below); the result is
byte for byte what the general encoder makes (tests/proxy/test_request_head.py).
"""
from __future__ import annotations

from .codec.http1 import encode_request_head
from .codec.memo import remember

# Hop-by-hop headers (RFC 9110 §7.6.1) plus the framing we re-derive ourselves.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te",
                        b"transfer-encoding", b"upgrade", b"trailer", b"proxy-authenticate",
                        b"expect"})
# request headers never forwarded as received: hop-by-hop, and the forwarding headers
# the proxy writes itself
_REQ_SPECIAL = HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto"}


def _request_fields(items) -> tuple[list, bytes | None, set | None]:
    """(the fields a request sends upstream as it received them, the X-Forwarded-For it
    came with, the names its Connection header lists)."""
    out = []
    xff = None
    conn_tokens = None
    for kv in items:
        k = kv[0]
        if k in _REQ_SPECIAL:
            if k == b"x-forwarded-for":
                xff = kv[1] if xff is None else xff + b", " + kv[1]
            elif k == b"connection" and conn_tokens is None:
                conn_tokens = {t.strip().lower() for t in kv[1].split(b",")}
            continue
        out.append(kv)
    if conn_tokens:
        # headers the client names in Connection are hop-by-hop too
        out = [kv for kv in out if kv[0] not in conn_tokens]
    return out, xff, conn_tokens


def upstream_fields(req, source: str) -> list:
    """The fields `req` carries upstream, framing aside: its end-to-end fields, then
    X-Forwarded-For (with `source`) and X-Forwarded-Proto."""
    out, xff, _ = _request_fields(req.headers.items)
    addr = source.encode()
    out.append((b"x-forwarded-for", xff + b", " + addr if xff else addr))
    out.append((b"x-forwarded-proto", b"https" if req.scheme == "https" else b"http"))
    return out


def request_head(req, source: str, upgrade: bool, chunked: bool) -> bytes:
    """The HTTP/1.1 head that goes upstream for `req`."""
    out = upstream_fields(req, source)
    if upgrade:
        up = req.headers.getb(b"upgrade")
        if up is not None:
            out.append((b"connection", b"upgrade"))
            out.append((b"upgrade", up))
    if chunked:
        out.append((b"transfer-encoding", b"chunked"))
    return encode_request_head(req.method, req.path, out)


def bodiless_request_head(req, source: str, origin=None) -> bytes:
    """request_head for a request without a body or upgrade. Clients repeat their
    requests but for the request id: the rest is encoded once and remembered, with
    the id's place in it. The id is most often the last field (the proxy appends its
    own), but a client's own, or a header a step added after it, leaves it elsewhere;
    keyed by its place, such requests are remembered too. `origin`: the codec's
    memory of the head `req` was decoded from, given only when nothing but the
    request id was added to it since; what it encodes to is then also found by that
    memory's identity."""
    items = req.headers.items
    at = last = len(items) - 1
    if at >= 0 and items[at][0] != b"x-request-id":
        at -= 1
        while at >= 0 and items[at][0] != b"x-request-id":
            at -= 1
    hit = None
    if origin is not None:
        m = _BY_ORIGIN.get(id(origin))
        if m is not None and m[0] is origin:
            hit = m[1]
    if hit is None:
        try:
            if at == last:
                key = (req.method, req.path, at, *items[:at])
            elif at >= 0:
                key = (req.method, req.path, at, *items[:at], *items[at + 1:])
            else:
                key = (req.method, req.path, at, *items)
            hit = _UPSTREAM_HEADS.get(key)
        except TypeError:       # a step left something unhashable: no memo
            key = hit = None
        if hit is None:
            hit = _bodiless_parts(req, items, at)
            if key is not None and len(key) <= _MEMO_FIELDS + 1:
                remember(_UPSTREAM_HEADS, _MEMO_ENTRIES, key, hit)
        if origin is not None:
            remember(_BY_ORIGIN, _MEMO_ENTRIES, id(origin), (origin, hit))
    before, after, xff = hit
    addr = source.encode()
    return b"".join((before,
                     b"x-request-id: " + items[at][1] + b"\r\n" + after if after is not None else b"",
                     b"x-forwarded-for: ", xff + b", " + addr if xff else addr,
                     b"\r\nx-forwarded-proto: https\r\n\r\n" if req.scheme == "https"
                     else b"\r\nx-forwarded-proto: http\r\n\r\n"))


# where the request id stands among the fields of a head being remembered
_RID_MARK = (b"x-request-id", None)


def _bodiless_parts(req, items, at: int) -> tuple[bytes, bytes | None, bytes | None]:
    """(the start line and the fields before the request id, encoded; those after it,
    or None when no request id goes upstream; the X-Forwarded-For the request came
    with) for the request id at `at` (-1: none)."""
    if at >= 0:
        items = list(items)
        items[at] = _RID_MARK
    out, xff, _ = _request_fields(items)
    start = b"%s %s HTTP/1.1\r\n" % (req.method.encode("ascii"), req.path.encode("ascii"))
    for j, kv in enumerate(out):
        if kv is _RID_MARK:
            return (b"".join([start, *[b": ".join(f) + b"\r\n" for f in out[:j]]]),
                    b"".join([b": ".join(f) + b"\r\n" for f in out[j + 1:]]), xff)
    # no request id, or one the client's Connection names (it may not keep it)
    return b"".join([start, *[b": ".join(f) + b"\r\n" for f in out]]), None, xff


# request heads as they go upstream, but for the request id and forwarding headers
_UPSTREAM_HEADS: dict[tuple, tuple] = {}
# the same, by the identity of the codec's memory of the request head: (memory, entry)
_BY_ORIGIN: dict[int, tuple] = {}
_MEMO_ENTRIES = 64
_MEMO_FIELDS = 16
