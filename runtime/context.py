"""StreamContext: everything the pipeline knows about one stream.

One is made per HTTP request (or gRPC call, or TCP connection) by the proxy core,
handed to every step, and read through the attribute table (runtime.attributes).
It owns no I/O; steps mutate its heads and metadata, never the connection.
"""
from __future__ import annotations

import time
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from .headers import Headers

if TYPE_CHECKING:
    from .routes import Route, VirtualHost

_monotonic = time.monotonic
_time = time.time


class TlsFacts(Protocol):
    """What a TLS connection tells its streams (the proxy's TlsInfo): the peer
    certificate's names as Envoy reads them for a principal."""
    sni: str
    mtls: bool
    subject: str
    uri_sans: tuple[str, ...]
    dns_sans: tuple[str, ...]
    local_uri_sans: tuple[str, ...]


def path_of(target: str) -> str:
    """A request target's path: what stands before its query."""
    i = target.find("?")
    return target if i < 0 else target[:i]


class RequestHead:
    __slots__ = ("method", "path", "version", "headers", "scheme", "authority", "trailers")

    def __init__(self, method: str, path: str, headers: Headers, version: str = "1.1",
                 scheme: str = "http", authority: str | None = None):
        self.method = method
        # path and query, origin-form: as the listener's path normalisation made it
        # (proxy.codec.path) before any step ran, or as a step set it since
        self.path = path
        self.version = version      # "1.0", "1.1", "2"
        self.headers = headers
        self.scheme = scheme
        self.authority = authority  # :authority for HTTP/2; None means use Host
        self.trailers: Headers | None = None   # set by the core before request_trailers steps

    @property
    def host(self) -> str:
        if self.authority is not None:
            return self.authority
        h = self.headers.getb(b"host")
        return h.decode("latin-1") if h is not None else ""


class ResponseHead:
    __slots__ = ("status", "reason", "headers", "version", "trailers")

    def __init__(self, status: int, headers: Headers, reason: str = "", version: str = "1.1"):
        self.status = status
        self.headers = headers
        self.reason = reason
        self.version = version
        self.trailers: Headers | None = None   # set by the core before response_trailers steps


class RpcInfo:
    """A call on an RPC listener, as access logs and rules name it (`rpc.*`)."""
    __slots__ = ("protocol", "service", "method", "version", "group", "request_id", "status")

    def __init__(self, protocol: str, service: str, method: str, version: str, group: str, request_id: int):
        self.protocol = protocol
        self.service = service
        self.method = method
        self.version = version
        self.group = group
        self.request_id = request_id
        self.status: int | None = None      # the response's status in the protocol's numbers


class StreamContext:
    __slots__ = (
        "request", "response", "listener", "protocol",
        "source_address", "source_port", "destination_address", "destination_port",
        "connection_sni", "connection_mtls", "peer_subject", "tls",
        "vhost", "route", "cluster_name", "upstream_address", "upstream_tls",
        "metadata", "filter_state", "start", "start_wall", "request_id",
        "error_detail", "bytes_received", "bytes_sent",
        "attempt_count", "timeout_override", "request_bodyless", "trace", "rpc",
        "_url_path", "_query", "_cookies",
    )

    def __init__(self, request: RequestHead, listener: str = "", protocol: str = "HTTP/1.1",
                 source: tuple[str, int] | None = None, destination: tuple[str, int] | None = None):
        self.request = request
        self.response: ResponseHead | None = None
        self.listener = listener
        self.protocol = protocol
        self.source_address, self.source_port = source or ("", 0)
        self.destination_address, self.destination_port = destination or ("", 0)
        self.connection_sni = ""
        self.connection_mtls = False
        self.peer_subject = ""
        self.tls: TlsFacts | None = None   # the connection's TLS facts; None in cleartext
        self.vhost: VirtualHost | None = None
        self.route: Route | None = None
        self.cluster_name = ""
        self.upstream_address = ""
        # the TLS facts of the upstream connection the stream went out on (its peer is
        # the server); None in cleartext or before one was taken
        self.upstream_tls: TlsFacts | None = None
        self.metadata: dict[str, Any] | None = None
        self.filter_state: dict[object, Any] | None = None   # keyed by the filter (or a key it owns)
        self.start = _monotonic()
        self.start_wall = _time()
        self.request_id = ""
        self.error_detail = ""
        self.bytes_received = 0
        self.bytes_sent = 0
        self.attempt_count = 0
        self.timeout_override: float | None = None
        # set by the core: True when the request head ended the request (no body
        # follows), False when a body follows, None when not known
        self.request_bodyless: bool | None = None
        # the stream's trace (runtime.tracing.trace.StreamTrace) when its listener traces
        self.trace: Any = None
        # what an RPC call is (RpcInfo), on the stream of a call on an RPC listener
        self.rpc: RpcInfo | None = None
        self._url_path: str | None = None
        self._query: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None

    # -- derived request facts, parsed once on first use --
    @property
    def url_path(self) -> str:
        if self._url_path is None:
            self._url_path = path_of(self.request.path)
        return self._url_path

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            p = self.request.path
            i = p.find("?")
            self._query = dict(parse_qsl(p[i + 1:], keep_blank_values=True)) if i >= 0 else {}
        return self._query

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            jar: dict[str, str] = {}
            for raw in self.request.headers.get_all("cookie"):
                c = SimpleCookie()
                try:
                    c.load(raw)
                except Exception:
                    continue
                for k, m in c.items():
                    jar.setdefault(k, m.value)
            self._cookies = jar
        return self._cookies

    def set_path(self, path: str) -> None:
        """Replace the request target (path and query); derived caches follow."""
        self.request.path = path
        self._url_path = None
        self._query = None

    def meta(self) -> dict[str, Any]:
        if self.metadata is None:
            self.metadata = {}
        return self.metadata

    def state(self) -> dict[object, Any]:
        if self.filter_state is None:
            self.filter_state = {}
        return self.filter_state

    @property
    def duration_ms(self) -> float:
        return (time.monotonic() - self.start) * 1000.0
