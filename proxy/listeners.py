"""Listener factories by protocol: how a worker binds and serves one listener.

Each factory returns an asyncio server bound with SO_REUSEPORT, so every worker
accepts on the same address. A protocol this build cannot serve is a config error
positioned at the listener.

An `http` listener serves HTTP/1.1 and HTTP/2 on the same port. A connection
starts with an Accept protocol that decides once and then hands the transport to
the codec's protocol: with TLS, by the ALPN the handshake chose; otherwise by the
first bytes (the HTTP/2 client preface, an HTTP/1.1 request asking `Upgrade: h2c`,
or anything else, which is HTTP/1.1). TLS settings are read from the live snapshot
per connection, so a reload changes certificates without rebinding.

A `chains` listener (several filter chains) accepts with proxy.filter_chain, which
hands each connection to one chain's `http` or `tcp` stack, served as here. So does
a listener that needs its connections' original destination (original_dst,
use_original_dst) or runs network filters first: that work is filter_chain's alone.

A listener with bind_to_port false is never bound (NotBound stands for its server):
it takes only the connections a use_original_dst listener hands it. One that is
transparent or has socket_options gets a socket made by proxy.original_dst.
"""
from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any, Callable, Coroutine

from mosnx.runtime.config.rpc import RPC_PROTOCOLS
from mosnx.runtime.diagnostics import ConfigError, Diagnostic
from mosnx.runtime.headers import Headers

from .codec.http2 import H2HeadError, RequestFields
from .codec.http2_connection import PREFACE
from .http1.server import Http1Server
from .http2.server import Http2Server
from .tls import SanMismatch, TlsInfo, info_from, server_context

_H2C_UPGRADE = re.compile(rb"\r\nupgrade:[ \t]*h2c[ \t]*\r\n", re.I)
_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
_UPGRADE_DROP = frozenset({b"connection", b"upgrade", b"http2-settings", b"keep-alive",
                           b"proxy-connection", b"te", b"transfer-encoding"})


class TlsHttp1Server(Http1Server):
    """HTTP/1.1 after a TLS handshake: streams learn the server name and the client certificate."""

    def __init__(self, worker, listener_name: str, tls: TlsInfo):
        super().__init__(worker, listener_name)
        self.tls_info = tls
        self.scheme = "https"

    def on_request(self, *args) -> None:
        # the stream is queued here and started once its bytes parsed cleanly, so its
        # context learns the connection's TLS facts before any step reads them
        super().on_request(*args)
        if self.queue:
            ctx = self.queue[-1].ctx
            t = self.tls_info
            ctx.connection_sni = t.sni
            ctx.connection_mtls = t.mtls
            ctx.peer_subject = t.subject
            ctx.tls = t


class HttpAccept(asyncio.Protocol):
    """Decides between HTTP/1.1 and HTTP/2 for one accepted connection, then steps aside."""

    __slots__ = ("worker", "name", "transport", "buf", "timer", "tls_coro", "tls", "dst", "check")

    def __init__(self, worker, name: str):
        self.worker = worker
        self.name = name
        self.dst: tuple[str, int] | None = None      # an original destination, set by filter_chain
        self.check: Any = None        # network filters to ask after the handshake (filter_chain)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.buf = b""
        self.timer: asyncio.TimerHandle | None = None
        self.tls_coro: Coroutine[Any, Any, Any] | None = None  # loop.start_tls, driven by _tls_step
        self.tls: TlsInfo | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        listener = self.worker.snapshot.listeners.get(self.name)
        if listener is None:
            transport.abort()
            return
        cfg = listener.config
        t = cfg.timeouts.request_headers
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(t, self._too_slow)
        tls = cfg.options.get("tls")
        if tls is not None:
            try:
                ctx = server_context(tls)
            except (ssl.SSLError, OSError) as e:
                return self._tls_failed(e)
            # start_tls hands the transport to the TLS layer before its first await;
            # run that part now: as a task it would wait a loop turn, and a ClientHello
            # read meanwhile would land here instead
            self.tls_coro = loop.start_tls(transport, self, ctx, server_side=True, ssl_handshake_timeout=t)
            self._tls_step(None)

    def _tls_step(self, _fut) -> None:
        coro = self.tls_coro
        try:
            fut = coro.send(None)  # type: ignore[union-attr]  # called only while it runs
        except StopIteration as done:
            self.tls_coro = None
            return self._tls_ready(done.value)
        except (ssl.SSLError, OSError, ConnectionError, asyncio.TimeoutError, TimeoutError,
                asyncio.CancelledError) as e:
            self.tls_coro = None
            return self._tls_failed(e)
        if fut is None:
            asyncio.get_running_loop().call_soon(self._tls_step, None)
        else:
            fut.add_done_callback(self._tls_step)

    def _tls_failed(self, e) -> None:
        stats = self.worker.stats
        stats.counter(f"listener.{self.name}.ssl.connection_error").value += 1
        if isinstance(e, SanMismatch):
            stats.counter(f"listener.{self.name}.ssl.fail_verify_san").value += 1
        elif isinstance(e, ssl.SSLError) and "CERTIFICATE" in str(e).upper():
            stats.counter(f"listener.{self.name}.ssl.fail_verify_cert").value += 1
        self._cancel_timer()
        self.transport.abort()

    def _tls_ready(self, tr) -> None:
        stats = self.worker.stats
        stats.counter(f"listener.{self.name}.ssl.handshake").value += 1
        self.transport = tr
        info = info_from(tr)
        self.tls = info
        if self.check is not None and not self.check(info):
            self._cancel_timer()
            tr.abort()
            return
        if info.mtls:
            stats.counter(f"listener.{self.name}.ssl.mtls").value += 1
        early, self.buf = self.buf, b""
        if info.alpn == "h2":
            self._hand_over(Http2Server(self.worker, self.name, info), early)
        elif info.alpn == "http/1.1":
            self._hand_over(TlsHttp1Server(self.worker, self.name, info), early)
        elif early:
            self.data_received(early)
        # else: no ALPN; the first bytes decide, as in cleartext

    def _too_slow(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.abort()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if self.tls_coro is not None:
            self.buf = buf        # decrypted bytes racing the end of the handshake
            return
        n = len(buf)
        if n < 24 and PREFACE.startswith(buf):
            self.buf = buf
            return
        self.buf = b""
        if buf[:24] == PREFACE:
            self._hand_over(Http2Server(self.worker, self.name, self.tls), buf)
            return
        end = buf.find(b"\r\n\r\n")
        if end > 0 and _H2C_UPGRADE.search(buf, 0, end + 2) is not None:
            up = _parse_upgrade(buf[:end + 4], self.tls)
            if up is not None:
                self._cancel_timer()
                self.transport.write(_SWITCHING)
                proto = Http2Server(self.worker, self.name, self.tls)
                self.transport.set_protocol(proto)
                proto.connection_made(self.transport, up)
                if self.dst is not None:
                    set_destination(proto, self.dst)
                rest = buf[end + 4:]
                if rest:
                    proto.data_received(rest)
                return
        self._hand_over(TlsHttp1Server(self.worker, self.name, self.tls) if self.tls is not None
                        else Http1Server(self.worker, self.name), buf)

    def _hand_over(self, proto, data: bytes) -> None:
        self._cancel_timer()
        self.transport.set_protocol(proto)
        proto.connection_made(self.transport)
        if self.dst is not None:
            set_destination(proto, self.dst)
        if data:
            proto.data_received(data)

    def eof_received(self):
        return False

    def connection_lost(self, exc) -> None:
        self._cancel_timer()


def set_destination(proto: Any, dst: tuple[str, int]) -> None:
    """An HTTP server protocol's streams see `dst` (a redirected connection's original
    destination) as destination.address: set once its connection_made has run."""
    proto.local = dst
    addrs = getattr(proto, "addrs", None)
    if addrs is not None:
        proto.addrs = (addrs[0], dst)


def _parse_upgrade(head: bytes, tls) -> tuple[bytes, RequestFields] | None:
    """An `Upgrade: h2c` request without a body, as (HTTP2-Settings, request); None
    leaves it to HTTP/1.1 (which forwards the Upgrade header like any other)."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        return None
    items = []
    settings = host = None
    upgrade_conn = False
    for line in lines[1:]:
        k, sep, v = line.partition(b":")
        if not sep or k != k.strip():
            return None
        k = k.lower()
        v = v.strip(b" \t")
        if k == b"http2-settings":
            settings = v
        elif k == b"connection":
            upgrade_conn = b"upgrade" in v.lower()
        elif k == b"host":
            host = v
        elif k == b"content-length" and v != b"0":
            return None
        elif k == b"transfer-encoding":
            return None
        if k not in _UPGRADE_DROP:
            items.append((k, v))
    if settings is None or host is None or not upgrade_conn:
        return None
    try:
        method = parts[0].decode("ascii")
        path = parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    if method == "CONNECT" or not path.startswith("/"):
        return None
    try:
        f = RequestFields(method, path, "https" if tls is not None else "http", host.decode("latin-1"),
                          Headers(items), None, False)
    except H2HeadError:
        return None
    return settings, f


async def _serve(cfg, make: Callable[[], asyncio.Protocol]):
    loop = asyncio.get_running_loop()
    if cfg.transparent or cfg.socket_options:
        from .original_dst import listening_socket
        sock = listening_socket(cfg.host, cfg.port, cfg.transparent, cfg.socket_options)
        return await loop.create_server(make, sock=sock, backlog=4096)
    return await loop.create_server(make, cfg.host, cfg.port, reuse_port=True, backlog=4096)


def _gated(cfg) -> bool:
    """Whether proxy.filter_chain must see each connection before its stack does."""
    return cfg.original_dst or cfg.use_original_dst or bool(cfg.network_filters)


def _gate(worker, name: str) -> asyncio.Protocol | None:
    """ChainAccept for a connection of a plain listener that is gated now: decided per
    connection, from the live snapshot, so a listener that gains network filters (or
    use_original_dst) on a reload runs them without being bound again."""
    lst = worker.snapshot.listeners.get(name)
    if lst is not None and _gated(lst.config):
        from .filter_chain import ChainAccept
        return ChainAccept(worker, name)
    return None


async def _http(worker, name: str, cfg):
    return await _serve(cfg, lambda: _gate(worker, name) or HttpAccept(worker, name))


async def _tcp(worker, name: str, cfg):
    from .tcp.proxy import TcpDownstream
    return await _serve(cfg, lambda: _gate(worker, name) or TcpDownstream(worker, name))


async def _chains(worker, name: str, cfg):
    from .filter_chain import ChainAccept
    return await _serve(cfg, lambda: ChainAccept(worker, name))


async def _rpc(worker, name: str, cfg):
    from .rpc.server import listen as rpc_listen
    return await rpc_listen(worker, name, cfg)


FACTORIES = {"http": _http, "tcp": _tcp, "chains": _chains, **dict.fromkeys(RPC_PROTOCOLS, _rpc)}


class NotBound:
    """The server of a bind_to_port false listener: nothing listens, nothing to close."""

    sockets: tuple = ()

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass

    def is_serving(self) -> bool:
        return False


async def listen(worker, name: str, cfg):
    factory = FACTORIES.get(cfg.protocol)
    if factory is None:
        raise ConfigError([Diagnostic(cfg.span, "C301",
                                      f'listener "{name}": protocol {cfg.protocol} is not served by this build; '
                                      f'served: {", ".join(sorted(FACTORIES))}')])
    if not cfg.bind_to_port:
        return NotBound()
    return await factory(worker, name, cfg)
