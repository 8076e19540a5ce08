"""Filter chain dispatch: one listener, several protocol stacks, one chosen per connection.

A listener with filter chains (protocol "chains") accepts with ChainAccept. It reads
the connection's first bytes without consuming them, as Envoy's listener filters do
(tls_inspector: TLS or not, the server name and the ALPN offer of a ClientHello;
http_inspector: an HTTP/1.x request line or the HTTP/2 preface), for at most the
listener's listener_filters_timeout; then select() picks the chain, and the
connection is handed to that chain's stack (an `http` or `tcp` listener of its own,
named "<listener>/<chain>"; an `http` stack terminates TLS itself, a `tcp` one behind
TlsGate) with the bytes read so far replayed, as if they had just arrived.

Invariants:
- select() is pure: Envoy's order (destination port, destination IP, server name,
  transport protocol, application protocols, direct source IP, source type, source
  IP, source port); at each step the chains that match most specifically go on and
  the others are dropped; no backtracking. None: no chain takes the connection (the
  default chain does, when there is one, else it is closed and counted).
- Nothing is read beyond what the inspectors need, and never more than MAX_PEEK.
  A client that closes before its bytes tell the chain gets none (as in Envoy).
- A connection is handed over once; ChainAccept never sees its bytes afterwards.
- The destination is taken once, in destination(): the original destination
  (SO_ORIGINAL_DST, as Istio's iptables redirect) on a listener with the original_dst
  filter or use_original_dst, else the socket's local address. Chains match on it,
  and the stack's streams see it as destination.address.
- use_original_dst: before any byte is read, a connection whose destination is
  another listener's address (exact, then the wildcard of that port) is handed to
  that listener (bind_to_port false ones included), which inspects and chooses as if
  it had accepted it; else this listener's own chains serve it.
- A stack's network filters (before its last: proxy.network_filters) decide once per
  connection, when the chain is chosen, or after the TLS handshake of a stack that
  terminates TLS (the peer's certificate is a fact they read); a deny closes it.
- A listener with a single chain and no match is not a "chains" listener at all:
  its stack serves the connection directly, at no extra cost; ChainAccept serves it
  (as its only chain) only when it needs the above: an original destination, a
  hand-off or network filters.
"""
from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mosnx.runtime.model import ChainMatch, FilterChain, IPNetwork, ListenerConfig

from . import network_filters, original_dst
from .codec.http2_connection import PREFACE
from .listeners import HttpAccept
from .tcp.proxy import TcpDownstream
from .tcp.sni import NEED_MORE, parse_hello
from .tls import info_from, server_context

MAX_PEEK = 64 * 1024          # a ClientHello or request line bigger than this decides with what is known

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Facts:
    """What a connection shows before a chain is chosen."""
    destination_ip: IPAddress | None
    destination_port: int
    source_ip: IPAddress | None
    source_port: int
    server_name: str = ""
    transport_protocol: str = "raw_buffer"    # Envoy's default when nothing detected another
    application_protocols: tuple[str, ...] = ()
    direct_source_ip: IPAddress | None = None  # None: the source (no PROXY protocol here)

    @property
    def local(self) -> bool:
        """Envoy's source_type LOCAL: from this host (loopback, or the address it reached)."""
        s = self.source_ip
        return s is not None and (s.is_loopback or s == self.destination_ip)


def ip_of(host: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# ---------------------------------------------------------------- selection
# each step scores a chain's match against the facts: -1 no match, 0 matches as
# "any", higher is more specific

def _prefix(ranges: tuple[IPNetwork, ...], ip: IPAddress | None) -> int:
    if not ranges:
        return 0
    best = -1
    if ip is not None:
        for net in ranges:
            if net.version == ip.version and ip in net and net.prefixlen + 1 > best:
                best = net.prefixlen + 1
    return best


def _server_name(names: tuple[str, ...], sni: str) -> int:
    if not names:
        return 0
    if not sni:
        return -1
    best = -1
    for n in names:
        if n == sni:
            return 1 << 16
        # "*.example.com" takes any name under example.com; the longest suffix wins
        if n.startswith("*.") and sni.endswith(n[1:]) and len(n) > best:
            best = len(n)
    return best


def _application(protocols: tuple[str, ...], offered: tuple[str, ...]) -> int:
    if not protocols:
        return 0
    for i, p in enumerate(offered):
        if p in protocols:
            return len(offered) - i       # the client's first choice that a chain takes wins
    return -1


def _source_type(kind: str, f: Facts) -> int:
    if kind == "any":
        return 0
    return 1 if (kind == "local") == f.local else -1


Step = Callable[[ChainMatch, Facts], int]
STEPS: tuple[tuple[str, Step], ...] = (
    ("destination_port", lambda m, f: 0 if not m.destination_port else 1 if m.destination_port == f.destination_port else -1),
    ("prefix_ranges", lambda m, f: _prefix(m.prefix_ranges, f.destination_ip)),
    ("server_names", lambda m, f: _server_name(m.server_names, f.server_name)),
    ("transport_protocol", lambda m, f: 0 if not m.transport_protocol
        else 1 if m.transport_protocol == f.transport_protocol else -1),
    ("application_protocols", lambda m, f: _application(m.application_protocols, f.application_protocols)),
    ("direct_source_prefix_ranges", lambda m, f: _prefix(
        m.direct_source_prefix_ranges, f.direct_source_ip if f.direct_source_ip is not None else f.source_ip)),
    ("source_type", lambda m, f: _source_type(m.source_type, f)),
    ("source_prefix_ranges", lambda m, f: _prefix(m.source_prefix_ranges, f.source_ip)),
    ("source_ports", lambda m, f: 0 if not m.source_ports else 1 if f.source_port in m.source_ports else -1),
)


def select(chains: Sequence[FilterChain], facts: Facts) -> FilterChain | None:
    """The chain Envoy would pick for `facts` among `chains` (the default chain not
    included), or None."""
    cands = list(chains)
    for _, step in STEPS:
        best = -1
        kept: list[FilterChain] = []
        for c in cands:
            s = step(c.match, facts)
            if s > best:
                best = s
                kept = [c]
            elif s == best and s >= 0:
                kept.append(c)
        if not kept:
            return None
        cands = kept
    return cands[0]


def choose(cfg: ListenerConfig, facts: Facts) -> FilterChain | None:
    """The chain of `cfg` that serves `facts`: select()'s, else the default one."""
    return select(cfg.filter_chains, facts) or cfg.default_filter_chain


# ---------------------------------------------------------------- inspectors
_REQUEST_LINE = re.compile(rb"[A-Z]{1,20} [^ \r\n]+ HTTP/1\.([01])\r\n")
_METHOD_SO_FAR = re.compile(rb"[A-Z]{0,20}(?: |$)")


def inspect_http(buf: bytes) -> Any:
    """Envoy's http_inspector: NEED_MORE, "h2c", "http/1.1", "http/1.0", or None (not HTTP)."""
    n = len(buf)
    if buf[:24] == PREFACE[:n] if n < 24 else buf[:24] == PREFACE:
        return NEED_MORE if n < 24 else "h2c"
    end = buf.find(b"\r\n")
    if end < 0:
        return NEED_MORE if n < MAX_PEEK and _METHOD_SO_FAR.match(buf) else None
    m = _REQUEST_LINE.match(buf, 0, end + 2)
    if m is None:
        return None
    return "http/1.1" if m.group(1) == b"1" else "http/1.0"


def destination(transport: asyncio.BaseTransport, original: bool = False) -> tuple[str, int]:
    """The address a connection was going to: its original destination (SO_ORIGINAL_DST)
    when `original` and it was redirected, else the socket's local address."""
    return original_dst.destination(transport, original)


class ChainStats:
    """A chains listener's counters, by its address as Envoy names them: made once
    per listener and worker store."""
    __slots__ = ("cx_total", "no_match", "timeout")

    def __init__(self, store: Any, cfg: ListenerConfig):
        p = f"listener.{cfg.host}_{cfg.port}."
        self.cx_total = store.counter(p + "downstream_cx_total")
        self.no_match = store.counter(p + "no_filter_chain_match")
        self.timeout = store.counter(p + "downstream_pre_cx_timeout")


_stats: dict[tuple[int, str, int], ChainStats] = {}


def chain_stats(store: Any, cfg: ListenerConfig) -> ChainStats:
    key = (id(store), cfg.host, cfg.port)
    s = _stats.get(key)
    if s is None:
        s = _stats[key] = ChainStats(store, cfg)
    return s


# ---------------------------------------------------------------- the connection
class ChainAccept(asyncio.Protocol):
    """Inspects one accepted connection, picks its chain, hands it over, steps aside."""

    __slots__ = ("worker", "name", "cfg", "stats", "transport", "buf", "timer", "tls", "http", "dst", "src",
                 "sni", "alpn", "transport_protocol", "handed")

    def __init__(self, worker: Any, name: str, handed: tuple[str, int] | None = None):
        """`handed`: the original destination of a connection another listener handed
        over (use_original_dst), already read."""
        self.worker = worker
        self.handed = handed
        self.name = name
        self.cfg: ListenerConfig = None  # type: ignore[assignment]  # set in connection_made
        self.stats: ChainStats = None  # type: ignore[assignment]  # as cfg
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = b""
        self.timer: asyncio.TimerHandle | None = None
        self.tls = False              # the tls_inspector still has to decide
        self.http = False             # the http_inspector still has to decide
        self.dst: tuple[str, int] = ("", 0)
        self.src: tuple[str, int] = ("", 0)
        self.sni = ""
        self.alpn: tuple[str, ...] = ()
        self.transport_protocol = "raw_buffer"

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        listener = self.worker.snapshot.listeners.get(self.name)
        if listener is None:
            transport.abort()
            return
        cfg = self.cfg = listener.config
        if self.handed is not None:
            self.dst = self.handed
        else:
            self.dst = destination(transport, cfg.original_dst or cfg.use_original_dst)
            if cfg.use_original_dst:
                to = original_dst.handoff(self.dst, original_dst.table_of(self.worker.snapshot), self.name)
                if to is not None:
                    return self._hand_off(to)
        if cfg.protocol != "chains":
            return self._serve(cfg)
        self.stats = chain_stats(self.worker.stats, cfg)
        self.stats.cx_total.value += 1
        peer = transport.get_extra_info("peername") or ("", 0)
        self.src = (peer[0], peer[1])
        for lf in cfg.listener_filters:
            if lf.runs_for(self.dst[1]):
                if lf.kind == "tls_inspector":
                    self.tls = True
                else:
                    self.http = True
        if not (self.tls or self.http):
            return self._decide()
        t = cfg.listener_filters_timeout
        if t > 0:
            self.timer = asyncio.get_running_loop().call_later(t, self._timed_out)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._inspect()

    def _inspect(self) -> None:
        buf = self.buf
        final = len(buf) >= MAX_PEEK
        if self.tls:
            got = parse_hello(buf)
            if got is NEED_MORE and not final:
                return
            self.tls = False
            if got is not NEED_MORE and got is not None:
                self.transport_protocol = "tls"
                self.sni = got[0] or ""
                self.alpn = got[1]
                self.http = False         # HTTP inside TLS is the chain's business
        if self.http:
            got = inspect_http(buf)
            if got is NEED_MORE and not final:
                return
            self.http = False
            if isinstance(got, str):
                self.alpn = (got,)
        self._decide()

    def _timed_out(self) -> None:
        self.timer = None
        self.stats.timeout.value += 1
        if not self.cfg.continue_on_listener_filters_timeout:
            self.transport.abort()
            return
        self.tls = self.http = False
        self._decide()

    def facts(self) -> Facts:
        return Facts(ip_of(self.dst[0]), self.dst[1], ip_of(self.src[0]), self.src[1], self.sni,
                     self.transport_protocol, self.alpn)

    def _hand_off(self, name: str) -> None:
        """Give the connection to listener `name` (use_original_dst): nothing was read."""
        proto = ChainAccept(self.worker, name, self.dst)
        self.transport.set_protocol(proto)
        proto.connection_made(self.transport)

    def _decide(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        chain = choose(self.cfg, self.facts())
        if chain is None:
            self.stats.no_match.value += 1
            self.transport.abort()
            return
        self._serve(chain.stack)

    def _serve(self, stack: ListenerConfig) -> None:
        if self.worker.snapshot.listeners.get(stack.name) is None:
            self.transport.abort()        # the chain's stack did not build
            return
        tls = stack.options.get("tls")
        check = None
        if stack.network_filters:
            src = self.src if self.src[0] else tuple((self.transport.get_extra_info("peername") or ("", 0))[:2])
            check = network_filters.Check(self.worker, stack, src, self.dst, self.sni)
            if tls is None and not check(None):
                self.transport.abort()
                return
        redirected = self.dst != _local(self.transport)
        proto: asyncio.Protocol
        if stack.protocol == "tcp":
            down = TcpDownstream(self.worker, stack.name)
            if redirected:
                down.dst = self.dst
            proto = down
            if tls is not None:
                proto = TlsGate(self.worker, stack.name, proto, tls, check)
        else:
            accept = HttpAccept(self.worker, stack.name)
            if redirected:
                accept.dst = self.dst
            if tls is not None:
                accept.check = check
            proto = accept
        tr = self.transport
        data, self.buf = self.buf, b""
        tr.set_protocol(proto)
        proto.connection_made(tr)
        if tr.is_closing():
            return
        if data:
            now = tr.get_protocol()
            if now is proto:
                proto.data_received(data)
            else:
                # the stack began a TLS handshake (loop.start_tls): its TLS layer takes
                # the ClientHello, once its connection_made (already scheduled) has run
                asyncio.get_running_loop().call_soon(_feed, now, data)

    def eof_received(self) -> bool:
        # the client went away before its first bytes told which chain it wants: as
        # in Envoy, no chain is made for it
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _local(transport: Any) -> tuple[str, int]:
    local = transport.get_extra_info("sockname") or ("", 0)
    return original_dst._plain(local[0]), local[1]


class TlsGate(asyncio.Protocol):
    """TLS termination for a stack that does not terminate TLS itself (tcp_proxy): the
    handshake with the chain's certificate, then the stack gets the plaintext transport
    (connection_made, then what was decrypted meanwhile). Counted as an HTTP stack's
    handshakes are, under listener.<stack>.ssl."""

    __slots__ = ("worker", "name", "then", "tls", "transport", "coro", "buf", "eof", "check")

    def __init__(self, worker: Any, name: str, then: asyncio.Protocol, tls: Any,
                 check: Callable[[Any], bool] | None = None):
        """`check`: the stack's network filters, given the handshake's TlsInfo."""
        self.worker = worker
        self.check = check
        self.name = name
        self.then = then
        self.tls = tls
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.coro: Any = None                     # loop.start_tls, driven by _step
        self.buf = b""
        self.eof = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        try:
            ctx = server_context(self.tls)
        except (ssl.SSLError, OSError) as e:
            return self._failed(e)
        listener = self.worker.snapshot.listeners.get(self.name)
        t = listener.config.timeouts.request_headers if listener is not None else 10.0
        loop = asyncio.get_running_loop()
        # as HttpAccept: the TLS layer takes the transport now, not a loop turn later
        self.coro = loop.start_tls(transport, self, ctx, server_side=True, ssl_handshake_timeout=t or 10.0)
        self._step(None)

    def _step(self, _fut: Any) -> None:
        try:
            fut = self.coro.send(None)
        except StopIteration as done:
            self.coro = None
            return self._ready(done.value)
        except (ssl.SSLError, OSError, ConnectionError, asyncio.TimeoutError, TimeoutError,
                asyncio.CancelledError) as e:
            self.coro = None
            return self._failed(e)
        if fut is None:
            asyncio.get_running_loop().call_soon(self._step, None)
        else:
            fut.add_done_callback(self._step)

    def _failed(self, e: BaseException) -> None:
        stats = self.worker.stats
        stats.counter(f"listener.{self.name}.ssl.connection_error").value += 1
        if isinstance(e, ssl.SSLError) and "CERTIFICATE" in str(e).upper():
            stats.counter(f"listener.{self.name}.ssl.fail_verify_cert").value += 1
        self.transport.abort()

    def _ready(self, tr: Any) -> None:
        self.worker.stats.counter(f"listener.{self.name}.ssl.handshake").value += 1
        if self.check is not None and not self.check(info_from(tr)):
            tr.abort()
            return
        then = self.then
        early, self.buf = self.buf, b""
        tr.set_protocol(then)
        then.connection_made(tr)
        if early and not tr.is_closing():
            then.data_received(early)
        if self.eof and not tr.is_closing() and not then.eof_received():
            tr.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data          # decrypted bytes racing the end of the handshake

    def eof_received(self) -> bool:
        self.eof = True
        return True


def _feed(proto: Any, data: bytes) -> None:
    """Hand `data` to a protocol as the transport would (buffered or not)."""
    if hasattr(proto, "buffer_updated"):
        view = memoryview(data)
        while view:
            buf = proto.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            proto.buffer_updated(n)
            view = view[n:]
    else:
        proto.data_received(data)
