"""The TCP proxy: one client connection piped to one upstream connection.

Invariants:
- The destination is decided once: the original destination (SO_ORIGINAL_DST) when
  the listener asks for it and the connection was redirected; else the cluster of
  the SNI route the ClientHello names; else the listener's route. The balancer picks
  the endpoint (an ORIGINAL_DST cluster's: the connection's destination, which
  proxy.filter_chain sets in `dst` when the connection was redirected). Nothing is parsed past the ClientHello, and only when SNI routes exist.
- Each direction is flow-controlled on its own: when one side's write buffer is
  above its high-water mark, the other side stops reading until it drains, so a slow
  peer never makes the proxy hold more than the buffer (plus one read).
- A half-close is passed on (write_eof); the pair closes when both directions ended,
  when either side closes or resets, or when the connection is idle too long.
- Istio's TCP metadata exchange runs on a side whose TLS negotiated its ALPN protocol
  (the listener's, or the cluster's, `istio_mx` option): this node's preamble is the
  first thing written to that side, and the peer's is read off the front of what it
  sends, never passed on (runtime.filters.tcp_metadata_exchange). Istio's TCP
  metrics count the connection opened once every exchange under way has read its
  peer (or found none), or as it closes.
"""
from __future__ import annotations

import asyncio
import socket
import struct
from typing import TYPE_CHECKING

from mosnx.runtime.config.protocols import TcpOptions
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.filters.istio_stats import IstioTcpStats, tcp_stats
from mosnx.runtime.filters.peer_metadata import DOWNSTREAM_PEER, UPSTREAM_PEER
from mosnx.runtime.filters.tcp_metadata_exchange import NEED_MORE as MX_MORE, Reader, local_preamble
from mosnx.runtime.headers import Headers

from ..stream.decide import pick_weighted
from .sni import NEED_MORE, match_route, parse_sni
from ..sockets import set_nodelay
from ..tls import client_connect_args, connect_failed, info_from, upstream_info
from ..upstream.pool_base import count_cx_closed, count_cx_open

if TYPE_CHECKING:
    from ..upstream.cluster import Cluster, Host

SO_ORIGINAL_DST = 80
_DEFAULT = TcpOptions()


class TcpStats:
    __slots__ = ("cx_total", "cx_active", "rx", "tx", "no_route", "connect_fail", "idle_timeout",
                 "sni_routed", "original_dst")

    def __init__(self, store, name: str):
        p = f"tcp.{name}."
        self.cx_total = store.counter(p + "downstream_cx_total")
        self.cx_active = store.gauge(p + "downstream_cx_active")
        self.rx = store.counter(p + "downstream_cx_rx_bytes_total")
        self.tx = store.counter(p + "downstream_cx_tx_bytes_total")
        self.no_route = store.counter(p + "downstream_cx_no_route")
        self.connect_fail = store.counter(p + "upstream_cx_connect_fail")
        self.idle_timeout = store.counter(p + "idle_timeout")
        self.sni_routed = store.counter(p + "sni_routed")
        self.original_dst = store.counter(p + "original_dst")


_stats: dict = {}


def _tcp_stats(worker, name: str) -> TcpStats:
    key = (id(worker.stats), name)
    s = _stats.get(key)
    if s is None:
        s = _stats[key] = TcpStats(worker.stats, name)
    return s


def original_dst(sock) -> tuple[str, int] | None:
    """Where a connection redirected by iptables (REDIRECT/DNAT) was going, IPv4 only."""
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), port


class TcpDownstream(asyncio.Protocol):
    def __init__(self, worker, name: str):
        self.worker = worker
        self.name = name
        # set in connection_made; None only on a connection refused there
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.up: TcpUpstream | None = None
        self.opts = _DEFAULT
        self.stats: TcpStats = None  # type: ignore[assignment]
        self.pending: list[bytes] = []      # client bytes before the upstream is connected
        self.pending_len = 0
        self.hello = b""                    # bytes held while waiting for a ClientHello
        self.hello_timer: asyncio.TimerHandle | None = None
        self.closing = False
        self.down_eof = False
        self.up_eof = False
        self.deadline = 0.0
        self.last = 0.0
        self.ctx: StreamContext = None  # type: ignore[assignment]  # as stats
        self.cluster: Cluster | None = None
        self.host: Host = None  # type: ignore[assignment]  # set with cluster, read while it is
        self.task: asyncio.Task | None = None
        self.reading = True
        self.istio: IstioTcpStats | None = None     # Istio's TCP metrics, when the listener asks
        self.istio_key: tuple[str, ...] | None = None
        self.dst: tuple[str, int] | None = None   # an original destination (filter_chain sets it)
        self.mx_down: Reader | None = None     # the client's metadata exchange preamble, when under way
        self.mx_up: Reader | None = None       # the upstream's

    # ---------------------------------------------------------------- client side
    def connection_made(self, transport) -> None:
        self.transport = transport
        w = self.worker
        listener = w.snapshot.listeners.get(self.name)
        if listener is None:
            transport.abort()
            return
        cfg = listener.config
        self.opts = opts = cfg.options.get("tcp") or _DEFAULT
        self.stats = st = _tcp_stats(w, self.name)
        self.istio = tcp_stats(w.stats, w.snapshot.config, cfg.options)
        st.cx_total.value += 1
        st.cx_active.value += 1
        transport.set_write_buffer_limits(opts.buffer, opts.buffer // 4)
        sock = transport.get_extra_info("socket")
        peer = transport.get_extra_info("peername") or ("", 0)
        local = self.dst or transport.get_extra_info("sockname") or ("", 0)
        self.ctx = ctx = StreamContext(RequestHead("", "", Headers(), "tcp"), self.name, "TCP",
                                       peer[:2], local[:2])
        w.connections.add(self)
        self.last = w.loop.time()
        set_nodelay(transport)
        ssl_obj = transport.get_extra_info("ssl_object")
        if ssl_obj is not None:             # a TLS chain: the stream knows its peer
            ctx.tls = t = info_from(transport)
            ctx.connection_sni, ctx.connection_mtls, ctx.peer_subject = t.sni, t.mtls, t.subject
            mx = cfg.options.get("istio_mx")
            if mx and t.alpn == mx:
                self.mx_down = Reader()
                transport.write(local_preamble(w.snapshot.config))
        if opts.original_dst and sock is not None:
            dst = original_dst(sock)
            if dst is not None and dst != tuple(local[:2]):
                st.original_dst.value += 1
                ctx.destination_address, ctx.destination_port = dst
                return self._connect_to(dst[0], dst[1], None)
        if opts.sni_routes:
            self.hello_timer = w.loop.call_later(opts.client_hello_timeout, self._hello_timeout)
            return
        self._route(None)

    def data_received(self, data: bytes) -> None:
        self.last = self.worker.loop.time()
        self.stats.rx.value += len(data)
        self.ctx.bytes_received += len(data)
        mx = self.mx_down
        if mx is not None and mx.state == MX_MORE:
            data = mx.feed(data)
            if mx.state != MX_MORE:
                self._mx_read(mx, DOWNSTREAM_PEER)
            if not data:
                return
        self._from_client(data)

    def _from_client(self, data: bytes) -> None:
        up = self.up
        if up is not None and up.connected:
            up.transport.write(data)
            return
        if self.hello_timer is not None:
            self.hello += data
            name = parse_sni(self.hello)
            if name is NEED_MORE:
                return
            self.hello_timer.cancel()
            self.hello_timer = None
            data, self.hello = self.hello, b""
            self._queue(data)
            self._route(name)
            return
        self._queue(data)

    def _queue(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_len += len(data)
        if self.pending_len > self.opts.buffer and self.reading:
            self.reading = False
            self.transport.pause_reading()

    def eof_received(self):
        self.down_eof = True
        mx = self.mx_down
        if mx is not None and mx.state == MX_MORE:
            rest = mx.eof()
            self._mx_read(mx, DOWNSTREAM_PEER)
            if rest:
                self._from_client(rest)
        up = self.up
        if up is not None and up.connected:
            if up.transport.can_write_eof():
                up.transport.write_eof()
            if self.up_eof:
                self.close()
                return False
            return True
        if up is None and self.hello_timer is None and self.task is None:
            return False
        return True       # the upstream gets the EOF once it is connected

    def connection_lost(self, exc) -> None:
        self.closing = True
        if self.stats is not None:
            self.stats.cx_active.value -= 1
        self.worker.connections.discard(self)
        if self.hello_timer is not None:
            self.hello_timer.cancel()
            self.hello_timer = None
        if self.task is not None and not self.task.done():
            self.task.cancel()
        up, self.up = self.up, None
        if up is not None:
            up.close()
        self._release_host()
        if self.istio is not None:
            self.istio.closed(self.ctx, self.istio_key)
        self._log()

    def pause_writing(self) -> None:
        up = self.up
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.up
        if up is not None and up.transport is not None and not up.closed:
            up.transport.resume_reading()

    # ---------------------------------------------------------------- routing
    def _hello_timeout(self) -> None:
        self.hello_timer = None
        data, self.hello = self.hello, b""
        if data:
            self._queue(data)
        self._route(None)

    def _route(self, sni: str | None) -> None:
        ctx = self.ctx
        cname = None
        if sni:
            ctx.connection_sni = sni
            cname = match_route(self.opts.sni_routes, sni)
            if cname is not None:
                self.stats.sni_routed.value += 1
        if cname is None:
            listener = self.worker.snapshot.listeners.get(self.name)
            action = listener.config.route if listener is not None else None
            if action is not None:
                cname = action.cluster or pick_weighted(action.weighted_clusters)
        cluster = self.worker.clusters.get(cname) if cname else None
        if cluster is None:
            self.stats.no_route.value += 1
            ctx.error_detail = "cluster_not_found"
            return self.close()
        ctx.cluster_name = cname  # type: ignore[assignment]  # a cluster was found by this name
        if cluster.cx_active >= cluster.cb.max_connections:
            cluster.c["upstream_cx_overflow"].value += 1
            ctx.error_detail = "upstream_cx_overflow"
            return self.close()
        host = cluster.pick(ctx, None)
        if host is None:
            ctx.error_detail = "no_healthy_upstream"
            return self.close()
        self.cluster = cluster
        self.host = host
        count_cx_open(cluster)
        host.rq_active += 1
        host.rq_total += 1
        self._connect_to(host.host, host.port, cluster.config.connect_timeout)

    def _connect_to(self, host: str, port: int, timeout: float | None) -> None:
        self.ctx.upstream_address = f"{host}:{port}"
        self.up = TcpUpstream(self)
        self.task = self.worker.loop.create_task(self._open(host, port, timeout or 5.0))

    async def _open(self, host: str, port: int, timeout: float) -> None:
        loop = self.worker.loop
        up: TcpUpstream = self.up  # type: ignore[assignment]  # _connect_to set it for this task
        # a cluster's TLS (its own, or what an endpoint's transport socket match chose)
        kw = client_connect_args(self.cluster.config, host, self.host.endpoint) \
            if self.cluster is not None and self.host is not None else {}
        if self.cluster is not None:
            source = self.cluster.config.options.get("source_address")
            if source is not None:      # upstream_bind_config (Istio's 127.0.0.6 for inbound)
                kw["local_addr"] = source
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: up, host, port, **kw)
        except (OSError, TimeoutError, asyncio.TimeoutError) as e:
            self.stats.connect_fail.value += 1
            if self.cluster is not None:
                connect_failed(self.cluster, f"{host}:{port}", e)
                c = self.cluster.c
                c["upstream_cx_connect_fail"].value += 1
                if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
                    c["upstream_cx_connect_timeout"].value += 1
                self.host.observe_failure("connect_failure")
            self.ctx.error_detail = "upstream_connect_failure"
            self.up = None
            self._release_host()
            self.close()
            return
        if self.closing:
            up.close()
            return
        pending, self.pending = self.pending, []
        self.pending_len = 0
        if pending:
            up.transport.write(b"".join(pending))
        up.connected = True          # from here on client bytes go straight through, in order
        self._count_opened()
        if not self.reading:
            self.reading = True
            self.transport.resume_reading()
        if self.down_eof and up.transport.can_write_eof():
            up.transport.write_eof()

    def upstream_made(self, transport: asyncio.Transport) -> None:
        """The upstream connection is up (its handshake done): its TLS facts, and the
        metadata exchange when it negotiated the cluster's protocol. Here, not after
        create_connection returns: the peer's preamble may arrive before that."""
        self.ctx.upstream_tls = t = upstream_info(transport)
        mx = self.cluster.config.options.get("istio_mx") if self.cluster is not None else None
        if mx and t is not None and t.alpn == mx:
            # the preamble goes before any byte of the client's
            self.mx_up = Reader()
            transport.write(local_preamble(self.worker.snapshot.config))

    def _mx_read(self, mx: Reader, key: str) -> None:
        """An exchange is over: the peer it read (if any) goes where Istio's TCP metrics
        and the access log find it."""
        if mx.peer is not None:
            st = self.ctx.state()
            st[key] = mx.peer
            if mx.peer_id:
                st[key + "_id"] = mx.peer_id
        self._count_opened()

    def _count_opened(self) -> None:
        """Istio's connection opened: once the upstream is connected and no exchange
        still waits for its peer."""
        if self.istio is None or self.istio_key is not None or self.up is None or not self.up.connected:
            return
        for mx in (self.mx_down, self.mx_up):
            if mx is not None and mx.state == MX_MORE:
                return
        self.istio_key = self.istio.opened(self.ctx)

    def _release_host(self) -> None:
        if self.cluster is not None:
            count_cx_closed(self.cluster)
            self.host.rq_active -= 1
            self.cluster = None

    # ---------------------------------------------------------------- upstream events
    def on_upstream_data(self, data: bytes) -> None:
        self.last = self.worker.loop.time()
        self.stats.tx.value += len(data)
        self.ctx.bytes_sent += len(data)
        mx = self.mx_up
        if mx is not None and mx.state == MX_MORE:
            data = mx.feed(data)
            if mx.state != MX_MORE:
                self._mx_read(mx, UPSTREAM_PEER)
            if not data:
                return
        self.transport.write(data)

    def on_upstream_eof(self) -> bool:
        self.up_eof = True
        mx = self.mx_up
        if mx is not None and mx.state == MX_MORE:
            rest = mx.eof()
            self._mx_read(mx, UPSTREAM_PEER)
            if rest and not self.closing:
                self.transport.write(rest)
        if not self.closing:
            if self.transport.can_write_eof():
                self.transport.write_eof()
            elif self.transport.get_extra_info("ssl_object") is not None:
                # TLS to the client has no half-close to pass on: the upstream sent all
                # it will, so the pair ends once that is flushed (else both stay open)
                self.close()
                return False
        if self.down_eof:
            self.close()
            return False
        return True

    def on_upstream_lost(self) -> None:
        self.up = None
        self._release_host()
        self.close()

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        # alike HttpStream.on_tunnel_closed only in shape: this ends the connection itself, both sides
        if self.closing:
            return
        self.closing = True
        up, self.up = self.up, None
        if up is not None:
            up.close()
        self._release_host()
        self.transport.close()

    def check_deadline(self, now: float) -> None:
        """The worker's sweep: the idle timeout."""
        t = self.opts.idle_timeout
        if t and not self.closing and now - self.last >= t:
            self.stats.idle_timeout.value += 1
            self.ctx.error_detail = "idle_timeout"
            self.close()

    def drain(self) -> None:
        """A byte stream has no boundary to stop at: it runs until the drain deadline."""

    def _log(self) -> None:
        al = self.worker.access_logs.get(self.name)
        if al is not None and self.ctx is not None:
            try:
                al.write(self.ctx)
            except Exception:
                self.worker.log_exception("tcp access log failed")


class TcpUpstream(asyncio.Protocol):
    __slots__ = ("down", "transport", "connected", "closed")

    def __init__(self, down: TcpDownstream):
        self.down = down
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.connected = False
        self.closed = False

    def connection_made(self, transport) -> None:
        # alike TcpDownstream's start only in shape: the upstream side takes the client's buffer settings
        self.transport = transport
        d = self.down
        transport.set_write_buffer_limits(d.opts.buffer, d.opts.buffer // 4)
        set_nodelay(transport)
        d.upstream_made(transport)

    def data_received(self, data: bytes) -> None:
        self.down.on_upstream_data(data)

    def eof_received(self):
        return self.down.on_upstream_eof()

    def connection_lost(self, exc) -> None:
        self.closed = True
        d = self.down
        if d.up is self:
            d.on_upstream_lost()

    def pause_writing(self) -> None:
        self.down.transport.pause_reading()

    def resume_writing(self) -> None:
        d = self.down
        if not d.closing and d.reading:
            d.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
