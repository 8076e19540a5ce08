"""Streams to put to an RBAC engine: a request with its connection's facts."""
from __future__ import annotations

from typing import Any, Iterable

from mosnx.proxy.tls import TlsInfo
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers


def stream(method: str = "GET", path: str = "/", host: str = "httpbin.foo",
           headers: Iterable[tuple[str, str]] = (), source: str = "10.0.0.9", port: int = 8000,
           destination: str = "10.10.10.10", sans: Iterable[str] | None = None, dns: Iterable[str] = (),
           subject: str = "", sni: str = "", metadata: dict[str, Any] | None = None) -> StreamContext:
    """One request; `sans` (the peer certificate's URI SANs) makes it arrive over TLS."""
    h = Headers.from_pairs([("host", host), *headers])
    ctx = StreamContext(RequestHead(method, path, h), "ingress", "HTTP/1.1", (source, 40000), (destination, port))
    if sans is not None:
        ctx.tls = TlsInfo(sni, True, subject, None, tuple(sans), tuple(dns))
    ctx.connection_sni = sni
    ctx.metadata = metadata
    return ctx


def connection(source: str = "10.0.0.9", port: int = 8000, destination: str = "10.10.10.10",
               sans: Iterable[str] | None = None, sni: str = "") -> StreamContext:
    """A TCP connection as the TCP proxy makes its context: no request."""
    ctx = StreamContext(RequestHead("", "", Headers(), "tcp"), "db", "TCP", (source, 40000), (destination, port))
    if sans is not None:
        ctx.tls = TlsInfo(sni, True, "", None, tuple(sans), ())
    ctx.connection_sni = sni
    return ctx


def jwt(iss: str, sub: str = "") -> dict[str, Any]:
    """The dynamic metadata Envoy's jwt_authn filter leaves for a verified token."""
    return {"envoy.filters.http.jwt_authn": {"payload": {"iss": iss, "sub": sub}}}
