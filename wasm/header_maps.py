"""The proxy-wasm header maps over mosnx's request/response heads.

mosnx keeps the request line in RequestHead fields and HTTP/1 `Host` in the
headers; proxy-wasm plugins see Envoy's view: pseudo-headers (`:method`, `:path`,
`:authority`, `:scheme`, `:status`) first, then the regular headers, with `host`
folded into `:authority`. Writes to a pseudo-header go to the head field, so a
`:path` rewrite is what the route and the upstream see.
"""
from __future__ import annotations

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers

from . import abi

REQUEST_PSEUDO = (b":authority", b":path", b":method", b":scheme")


class Unavailable(Exception):
    """The map does not exist in the current callback (e.g. response headers before the response)."""


def _req_pseudo_get(ctx: StreamContext, name: bytes) -> bytes | None:
    r = ctx.request
    if name == b":path":
        return r.path.encode("latin-1")
    if name == b":method":
        return r.method.encode("latin-1")
    if name == b":authority":
        return r.host.encode("latin-1")
    if name == b":scheme":
        return r.scheme.encode("latin-1")
    return None


def _req_pseudo_set(ctx: StreamContext, name: bytes, value: bytes) -> bool:
    r = ctx.request
    v = value.decode("latin-1")
    if name == b":path":
        ctx.set_path(v)
    elif name == b":method":
        r.method = v
    elif name == b":authority":
        if r.authority is not None:
            r.authority = v
        else:
            r.headers.set(b"host", value)
    elif name == b":scheme":
        r.scheme = v
    else:
        return False
    return True


class HeaderMap:
    """One proxy-wasm map bound to a stream (or to an http_call response)."""
    __slots__ = ("kind", "ctx", "headers", "fixed")

    def __init__(self, kind: int, ctx: StreamContext | None, headers: Headers | None,
                 fixed: list[tuple[bytes, bytes]] | None = None):
        self.kind = kind
        # None only in a map of fixed pairs, which every method answers from first
        self.ctx: StreamContext = ctx  # type: ignore[assignment]
        self.headers: Headers = headers  # type: ignore[assignment]
        self.fixed = fixed          # read-only pairs (http_call response)

    def pairs(self) -> list[tuple[bytes, bytes]]:
        if self.fixed is not None:
            return self.fixed
        if self.kind == abi.MAP_REQUEST_HEADERS:
            ctx = self.ctx
            # every name in REQUEST_PSEUDO has a value
            pseudo = [(n, _req_pseudo_get(ctx, n)) for n in REQUEST_PSEUDO]
            return pseudo + [kv for kv in self.headers.items if kv[0] != b"host"]  # type: ignore[return-value]
        if self.kind == abi.MAP_RESPONSE_HEADERS:
            return [(b":status", str(self.ctx.response.status).encode())] + self.headers.items  # type: ignore[union-attr]  # resolve: a response map has a response
        return list(self.headers.items)

    def get(self, name: bytes) -> bytes | None:
        if self.fixed is not None:
            for k, v in self.fixed:
                if k == name:
                    return v
            return None
        if name[:1] == b":":
            if self.kind == abi.MAP_REQUEST_HEADERS:
                return _req_pseudo_get(self.ctx, name)
            if self.kind == abi.MAP_RESPONSE_HEADERS and name == b":status":
                return str(self.ctx.response.status).encode()  # type: ignore[union-attr]  # as in pairs
            return None
        return self.headers.getb(name)

    def _set_pseudo(self, name: bytes, value: bytes) -> bool:
        if self.kind == abi.MAP_REQUEST_HEADERS:
            return _req_pseudo_set(self.ctx, name, value)
        if self.kind == abi.MAP_RESPONSE_HEADERS and name == b":status":
            try:
                status = int(value)
            except ValueError:
                raise ValueError("bad :status") from None
            if not 100 <= status <= 999:
                raise ValueError("bad :status")
            self.ctx.response.status = status  # type: ignore[union-attr]  # as in pairs
            return True
        return False

    def add(self, name: bytes, value: bytes) -> None:
        if name[:1] == b":" and self._set_pseudo(name, value):
            return
        self.headers.items.append((name, value))

    def replace(self, name: bytes, value: bytes) -> None:
        if name[:1] == b":" and self._set_pseudo(name, value):
            return
        self.headers.set(name, value)

    def remove(self, name: bytes) -> None:
        if name[:1] == b":":
            return          # pseudo-headers cannot be removed, as in Envoy
        self.headers.remove(name)

    def set_all(self, pairs: list[tuple[bytes, bytes]]) -> None:
        regular: list[tuple[bytes, bytes]] = []
        pseudo: list[tuple[bytes, bytes]] = []
        for k, v in pairs:
            k = k.lower()
            (pseudo if k[:1] == b":" else regular).append((k, v))
        if self.kind == abi.MAP_REQUEST_HEADERS and self.ctx.request.authority is None:
            # HTTP/1: the authority lives in Host; keep it unless a new one is given
            host = self.headers.getb(b"host")
            if host is not None and not any(k == b":authority" for k, _ in pseudo):
                regular.append((b"host", host))
        self.headers.items = regular
        for k, v in pseudo:
            self._set_pseudo(k, v)

    def byte_size(self) -> int:
        return sum(len(k) + len(v) for k, v in self.pairs())


def resolve(kind: int, ctx: StreamContext | None, call_response: tuple | None = None) -> HeaderMap:
    """The map `kind` for the current callback; raises Unavailable."""
    if kind in (abi.MAP_CALL_RESPONSE_HEADERS, abi.MAP_CALL_RESPONSE_TRAILERS):
        if call_response is None:
            raise Unavailable
        return HeaderMap(kind, None, None, call_response[0] if kind == abi.MAP_CALL_RESPONSE_HEADERS
                         else call_response[2])
    if ctx is None:
        raise Unavailable
    if kind == abi.MAP_REQUEST_HEADERS:
        return HeaderMap(kind, ctx, ctx.request.headers)
    if kind == abi.MAP_RESPONSE_HEADERS:
        if ctx.response is None:
            raise Unavailable
        return HeaderMap(kind, ctx, ctx.response.headers)
    head: RequestHead | ResponseHead | None
    if kind == abi.MAP_REQUEST_TRAILERS:
        head = ctx.request
    elif kind == abi.MAP_RESPONSE_TRAILERS:
        head = ctx.response
        if head is None:
            raise Unavailable
    else:
        raise Unavailable
    t = getattr(head, "trailers", None)
    if t is None:
        t = head.trailers = Headers()
    return HeaderMap(kind, ctx, t)
