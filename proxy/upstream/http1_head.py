"""A request's head as it goes to an HTTP/1.1 upstream: the forwarding rules'
fields (proxy.forwarding) plus the framing, as bytes.

Clients repeat their requests but for the request id, so a bodiless head is encoded
once and remembered with the id's place in it (bounded memos, below); the result is
byte for byte what the general encoder makes (tests/proxy/upstream/test_http1_head.py).
The trace context a tracer writes on each attempt (runtime.tracing.propagation) is
per request too: it stands last, so a memo entry stops before it and it is encoded
afresh, in its place before the forwarding fields (or, when the tracer hands it over
encoded already, its bytes go there as they are, whether the request's fields hold
it or not).
"""
from __future__ import annotations

from typing import Any

from mosnx.runtime.context import RequestHead

from ..codec.http1 import encode_request_head
from ..fastpath import memo
from ..fastpath.memo import remember
from ..forwarding import request_fields, upstream_fields
from mosnx.runtime.tracing.propagation import WRITTEN, fields_of

# the fields a tracer writes last on each attempt
_PER_ATTEMPT = frozenset(n for names in WRITTEN.values() for n in names)


def request_head(req: RequestHead, source: str, upgrade: bool, chunked: bool) -> bytes:
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


def bodiless_request_head(req: RequestHead, source: str, decoded: object = None, wire: bytes | None = None,
                          wire_n: int = 0) -> bytes:
    """request_head for a request without a body or upgrade. Clients repeat their
    requests but for the request id: the rest is encoded once and remembered, with
    the id's place in it. The id is most often the last field (the proxy appends its
    own), but a client's own, or a header a step added after it, leaves it elsewhere;
    keyed by its place, such requests are remembered too. `decoded`: the decoder's
    memo entry for the head `req` was decoded from, given only when nothing but the
    request id was added to it since; what it encodes to is then also found by that
    entry's identity (the trace context written last aside: `decoded` is then given only
    when writing it removed nothing). `wire`: the trace context, when the tracer gives
    it encoded already: the last `wire_n` fields, or with 0, fields `req` does not
    hold, written after the rest."""
    items = req.headers.items
    at = last = len(items) - 1
    tail: Any = None        # the trace context last: its fields, or `wire`
    if wire_n and wire is not None:
        tail = wire
        at = last = last - wire_n
        while at >= 0 and items[at][0] != b"x-request-id":
            at -= 1
    elif at >= 0 and items[at][0] != b"x-request-id":
        if items[at][0] in _PER_ATTEMPT:
            while at > 0 and items[at - 1][0] in _PER_ATTEMPT:
                at -= 1
            tail = items[at:]
            items = items[:at]
            at = last = at - 1
        while at >= 0 and items[at][0] != b"x-request-id":
            at -= 1
    hit = None
    if decoded is not None:
        m = _BY_DECODED.get(id(decoded))
        if m is not None and m[0] is decoded:
            BY_DECODED.hits += 1
            hit = m[1]
    if hit is None:
        if tail is wire and wire is not None:
            items = items[:last + 1]
        try:
            if at == last:
                key = (req.method, req.path, at, *items[:at])
            elif at >= 0:
                key = (req.method, req.path, at, *items[:at], *items[at + 1:])
            else:
                key = (req.method, req.path, at, *items)
            hit = _UPSTREAM_HEADS.get(key)
        except TypeError:       # a step left something unhashable: no memo
            key = None
            hit = None
        if hit is None:
            hit = _bodiless_parts(req, items, at)
            if key is not None and len(key) <= _MEMO_FIELDS + 1:
                remember(_UPSTREAM_HEADS, UPSTREAM_HEADS, key, hit)
        else:
            UPSTREAM_HEADS.hits += 1
        if decoded is not None:
            remember(_BY_DECODED, BY_DECODED, id(decoded), (decoded, hit))
    before, after, xff, hop = hit
    # (with a Connection header naming fields, one of the context's may stay behind)
    if tail is None:
        if wire is None:
            trace = b""
        elif hop is None:       # fields the request does not hold (wire_n 0)
            trace = wire
        else:
            trace = _fields(fields_of(wire), hop)
    elif tail is wire:
        trace = wire if hop is None else _fields(req.headers.items[last + 1:], hop)
    else:
        trace = _fields(tail, hop)
        if wire is not None:    # (a context a request holding per-attempt fields never gets)
            trace += _fields(fields_of(wire), hop)
    addr = source.encode()
    return b"".join((before,
                     b"x-request-id: " + items[at][1] + b"\r\n" + after if after is not None else b"",
                     trace, b"x-forwarded-for: ",
                     xff + b", " + addr if xff else addr,
                     b"\r\nx-forwarded-proto: https\r\n\r\n" if req.scheme == "https"
                     else b"\r\nx-forwarded-proto: http\r\n\r\n"))


def _fields(items: list, hop: frozenset[bytes] | None) -> bytes:
    return b"".join([k + b": " + v + b"\r\n" for k, v in items if hop is None or k not in hop])


# where the request id stands among the fields of a head being remembered
_RID_MARK = (b"x-request-id", None)


Parts = tuple[bytes, bytes | None, bytes | None, "frozenset[bytes] | None"]


def _bodiless_parts(req: RequestHead, items: list, at: int) -> Parts:
    """(the start line and the fields before the request id, encoded; those after it,
    or None when no request id goes upstream; the X-Forwarded-For the request came
    with; the names its Connection header lists, which no later field may carry
    upstream) for the request id at `at` (-1: none)."""
    if at >= 0:
        items = list(items)
        items[at] = _RID_MARK
    out, xff, listed = request_fields(items)
    hop = frozenset(listed) if listed else None
    start = b"%s %s HTTP/1.1\r\n" % (req.method.encode("ascii"), req.path.encode("ascii"))
    for j, kv in enumerate(out):
        if kv is _RID_MARK:
            return (b"".join([start, *[b": ".join(f) + b"\r\n" for f in out[:j]]]),
                    b"".join([b": ".join(f) + b"\r\n" for f in out[j + 1:]]), xff, hop)
    # no request id, or one the client's Connection names (it may not keep it)
    return b"".join([start, *[b": ".join(f) + b"\r\n" for f in out]]), None, xff, hop


# request heads as they go upstream, but for the request id and forwarding headers
UPSTREAM_HEADS = memo.kind("http1.upstream_head", 64, "HTTP/1.1 upstream request heads without a body, but for the request id and forwarding headers, by method, path and fields")
_UPSTREAM_HEADS: dict[tuple, tuple] = UPSTREAM_HEADS.table()
# the same, by the identity of the decoder's memo entry for the request head: (entry, parts)
BY_DECODED = memo.kind("http1.upstream_head_by_decoded", 64, "the same, by the identity of the decoded request head's memo entry")
_BY_DECODED: dict[int, tuple] = BY_DECODED.table()
_MEMO_FIELDS = 16
