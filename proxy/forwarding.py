"""Forwarding rules, the same for every protocol on either side: which fields are
hop-by-hop, what goes upstream of a request (its end-to-end fields plus the
X-Forwarded-For and X-Forwarded-Proto the proxy writes), and what of a response
goes downstream. Pure functions over header items; framing is the codecs'.
"""
from __future__ import annotations

from collections.abc import Iterable

from mosnx.runtime.context import RequestHead

from .fastpath import memo
from .fastpath.memo import remember

# Hop-by-hop headers (RFC 9110 §7.6.1) plus the framing we re-derive ourselves.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te",
                        b"transfer-encoding", b"upgrade", b"trailer", b"proxy-authenticate",
                        b"expect"})
# request headers never forwarded as received: hop-by-hop, and the forwarding headers
# the proxy writes itself
_REQ_SPECIAL = HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto"}


def request_fields(items: Iterable[tuple[bytes, bytes]]) -> tuple[list, bytes | None, set | None]:
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


def upstream_fields(req: RequestHead, source: str, extra: list | tuple = ()) -> list:
    """The fields `req` carries upstream, framing aside: its end-to-end fields (with
    `extra` after its own, as if it held them), then X-Forwarded-For (with `source`)
    and X-Forwarded-Proto."""
    out, xff, _ = request_fields([*req.headers.items, *extra] if extra else req.headers.items)
    addr = source.encode()
    out.append((b"x-forwarded-for", xff + b", " + addr if xff else addr))
    out.append((b"x-forwarded-proto", b"https" if req.scheme == "https" else b"http"))
    return out



# content-length stays: the downstream codec re-frames, and a HEAD answer keeps it as sent
RESP_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te",
                             b"transfer-encoding", b"upgrade"})


def end_to_end(items: Iterable[tuple[bytes, bytes]]) -> tuple:
    """A response's headers without the hop-by-hop ones."""
    out = []
    listed = None
    for kv in items:
        k = kv[0]
        if k in RESP_HOP_BY_HOP:
            if k == b"connection":
                # headers the upstream names in Connection are hop-by-hop too (the
                # usual "keep-alive" names one that goes anyway)
                v = kv[1].lower()
                listed = None if v == b"keep-alive" else {t.strip() for t in v.split(b",")}
            continue
        out.append(kv)
    if listed:
        out = [kv for kv in out if kv[0] not in listed]
    return tuple(out)


# An upstream repeats its response heads (the same headers for a resource until the
# Date changes, a second later): what they keep end to end is remembered, bounded.
KEPT = memo.kind("response.end_to_end", 64, "response fields without the hop-by-hop ones, by the fields as they came")
_KEPT: dict[tuple, tuple] = KEPT.table()
_KEPT_FIELDS = 16


def kept_end_to_end(items: list[tuple[bytes, bytes]]) -> tuple:
    """end_to_end(items), remembered for heads that repeat."""
    try:
        key = tuple(items)
        kept = _KEPT.get(key)
    except TypeError:       # a step left something unhashable: no memo
        return end_to_end(items)
    if kept is not None:
        KEPT.hits += 1
        return kept
    kept = end_to_end(items)
    if len(key) <= _KEPT_FIELDS:
        remember(_KEPT, KEPT, key, kept)
    return kept
