"""Per-host HTTP/1.1 connection pool with the cluster's connection circuit breakers.

acquire() is synchronous on the hot path: it hands back an idle connection when
there is one. Otherwise it starts a connect (if the cluster is under
max_connections) or queues the stream (if under max_pending_requests), and later
calls stream.on_pool_ready(conn) or stream.on_pool_failure(detail, status).
The breakers' counts and limits are the cluster's (cluster.py): with N workers
they are proxy-wide, and a queued stream is also woken by wake() when another
worker gave room back. How connections and queued streams are counted against
those breakers is pool_base's, shared with the HTTP/2 pool and the TCP proxy.
"""
from __future__ import annotations

import asyncio
import time

from ..tls import client_connect_args, connect_failed, istio_alpn
from .pool_base import OVERFLOW, PoolBase

__all__ = ("OVERFLOW", "Pool")

_now = time.monotonic


def connect_args(config, host: str, endpoint, stream=None) -> dict:
    """loop.create_connection's keywords for one endpoint: its TLS (with the ALPN
    overrides of istio.alpn when the stream that asked for the connection came by a
    listener that has them), and the local address of the cluster's
    upstream_bind_config (options["source_address"])."""
    alpn = None
    if stream is not None:
        lst = getattr(stream, "listener", None)
        if lst is not None:
            alpn = istio_alpn(lst.config.options, config, stream.ctx.protocol)
    kw = client_connect_args(config, host, endpoint, alpn)
    source = config.options.get("source_address")
    if source is not None:
        kw["local_addr"] = source
    return kw


class Pool(PoolBase):
    __slots__ = ()

    def acquire(self, stream):
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():     # still usable
                conn.take()
                return conn
        if self.cluster_has_room():
            self._connect(stream)
            return None
        cluster = self.host.cluster
        if self.cx_active == 0 and not cluster.shared:
            # as Envoy: the limit is the cluster's, but a host with no connection at all
            # gets one, or its queued requests would wait on other hosts' connections.
            # Not with N workers: there every worker's pool would get one past a
            # proxy-wide limit; the request queues and the sweep's wake() retries.
            cluster.c["upstream_cx_overflow"].value += 1
            self._connect(stream)
            return None
        return self._wait(stream)

    def release(self, conn, reusable: bool) -> None:
        cluster = self.host.cluster
        limit = cluster.config.max_requests_per_connection
        if not reusable or self.retired or conn.closed or (limit and conn.requests >= limit):
            conn.close()
            return
        if self.waiters:
            # _next_waiter() inline: release runs per request
            stream = self.waiters.popleft()
            cluster.rq_pending -= 1
            conn.take()
            stream.on_pool_ready(conn)
            return
        self.idle.append(conn)
        conn.park(_now())

    def on_closed(self, conn) -> None:
        self._cx_closed(conn)
        if self.waiters and not self.retired and self.cluster_has_room():
            self._connect(self._next_waiter())

    def wake(self) -> None:
        """Connect queued streams while the cluster has room (with N workers, the
        room another worker's closed connection gave back)."""
        while self.waiters and not self.retired and self.cluster_has_room():
            self._connect(self._next_waiter())

    def _connect(self, stream) -> None:
        self._cx_opening()
        asyncio.get_running_loop().create_task(self._open(stream))

    async def _open(self, stream) -> None:
        from .http1 import UpstreamConnection
        cluster = self.host.cluster
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(cluster.config.connect_timeout):
                _, conn = await loop.create_connection(lambda: UpstreamConnection(self),
                                                       self.host.host, self.host.port,
                                                       **connect_args(cluster.config, self.host.host,
                                                                      self.host.endpoint, stream))
        except (TimeoutError, asyncio.TimeoutError):
            self._failed(stream, "upstream_connect_timeout")
            cluster.c["upstream_cx_connect_timeout"].value += 1
            return
        except OSError as e:
            connect_failed(cluster, self.host.address, e)
            self._failed(stream, "upstream_connect_failure")
            return
        conn.take()
        if stream.alive:
            stream.on_pool_ready(conn)
        else:
            self.release(conn, True)

    def _failed(self, stream, detail: str) -> None:
        self._cx_failed()
        if stream.alive:
            stream.on_pool_failure(detail, 503)

    def sweep(self, now: float) -> None:
        """Close connections idle longer than the cluster's idle_timeout (oldest sit first)."""
        limit = self.host.cluster.config.idle_timeout
        if not limit:
            return
        idle = self.idle
        while idle and now - idle[0].idle_since > limit:
            idle.pop(0).close()

    def _retire_connections(self) -> None:
        """Idle connections close now, busy ones on release (retired)."""
        if self.idle:
            for conn in list(self.idle):
                conn.close()
            self.idle.clear()
