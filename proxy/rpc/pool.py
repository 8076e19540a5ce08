"""The multiplexed upstream: a few connections per endpoint, many calls in flight on each.

Invariants:
- A call sent upstream gets a request id of the connection's own (1..codec.max_id,
  never one in flight there), so ids from many clients never collide; the response
  is matched by that id and handed back to the call, which restores the client's id.
- A pool opens up to `rpc.connections` connections to its endpoint, a new one only
  when every open one already has calls in flight (so light traffic uses one), each
  under the cluster's max_connections breaker. A call that finds every connection
  full (`rpc.max_requests_per_connection`) waits as a pending request under
  max_pending_requests, and is sent when a call ends.
- A call that gives up (timeout, client gone) is detached: its id is remembered for
  a while, and the late response is dropped and counted (`response_late`); a
  response with an id never sent is dropped and counted (`response_unknown`).
- A connection that resets, or sends bytes that are not a frame, fails only its
  own calls in flight (each with its protocol's error, or a retry).
- A connection with nothing in flight for the cluster's idle_timeout closes; a pool
  with no connection and no waiter leaves the registry.
The connection accounting (upstream_cx_total/active, the max_connections breaker)
is pool_base's, shared with the HTTP pools.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Protocol

from mosnx.runtime.config.rpc import RpcClusterOptions

from ..sockets import set_nodelay
from ..tls import client_connect_args, connect_failed
from ..upstream.pool_base import count_cx_closed, count_cx_open
from .codec import HEARTBEAT, HEARTBEAT_ACK, RESPONSE, Codec, Frame, FrameError

if TYPE_CHECKING:
    from ..upstream.cluster import Cluster, Host

_DEFAULT = RpcClusterOptions()
EXPIRED_KEPT = 4096          # ids of given-up calls remembered per connection, to tell late from unknown


class Call(Protocol):
    """What the pool needs of a call (server.RpcCall)."""
    frame: Frame
    conn: "RpcConnection | None"
    up_id: int

    def on_upstream_response(self, frame: Frame) -> None: ...
    def on_upstream_failure(self, kind: str) -> None: ...
    def on_pool_overflow(self) -> None: ...


class UpstreamStats:
    __slots__ = ("late", "unknown", "decode_error", "heartbeat", "cx_destroy_with_active_rq")

    def __init__(self, cluster: "Cluster", codec: Codec):
        p = f"cluster.{cluster.name}.{codec.name}."
        s = cluster.stats
        self.late = s.counter(p + "response_late")
        self.unknown = s.counter(p + "response_unknown")
        self.decode_error = s.counter(p + "response_decoding_error")
        self.heartbeat = s.counter(p + "heartbeat")
        self.cx_destroy_with_active_rq = s.counter(p + "cx_destroy_remote_with_active_rq")


class RpcConnection(asyncio.Protocol):
    def __init__(self, pool: "RpcPool"):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.connected = False
        self.closed = False
        self.inflight: dict[int, Call] = {}
        self.pending: list[bytes] = []       # frames for upstream before the connection is made
        self.expired: set[int] = set()
        self.next_id = 0
        self.buf = bytearray()
        self.idle_timer: asyncio.TimerHandle | None = None

    @property
    def load(self) -> int:
        return len(self.inflight)

    # ------------------------------------------------------------- sending
    def assign(self, call: Call) -> None:
        codec = self.pool.codec
        rid = self.next_id
        while True:
            rid = rid + 1 if rid < codec.max_id else 1
            if rid not in self.inflight:
                break
        self.next_id = rid
        self.inflight[rid] = call
        call.conn = self
        call.up_id = rid
        self._cancel_idle()
        self.write(codec.with_id(call.frame, rid))

    def send_oneway(self, frame: Frame) -> None:
        codec = self.pool.codec
        rid = self.next_id = self.next_id + 1 if self.next_id < codec.max_id else 1
        self.write(codec.with_id(frame, rid))

    def write(self, data: bytes) -> None:
        if self.connected and self.transport is not None:
            self.transport.write(data)
        else:
            self.pending.append(data)

    def detach(self, call: Call) -> None:
        """The call gave up: a response to it is late from now on."""
        if self.inflight.pop(call.up_id, None) is not None:
            if len(self.expired) >= EXPIRED_KEPT:
                self.expired.clear()
            self.expired.add(call.up_id)
            self.pool.slot_freed(self)

    # ------------------------------------------------------------- transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream connection's transport
        set_nodelay(transport)

    def opened(self) -> None:
        self.connected = True
        pending, self.pending = self.pending, []
        if pending and self.transport is not None:
            self.transport.write(b"".join(pending))
        if not self.inflight:
            self._start_idle()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pool = self.pool
        codec = pool.codec
        limit = pool.max_frame
        start = 0
        try:
            while True:
                frame = codec.decode(buf, start, limit)
                if frame is None:
                    break
                start += len(frame.raw)
                self._on_frame(frame)
        except FrameError:
            pool.cluster.c["upstream_cx_protocol_error"].value += 1
            pool.stats.decode_error.value += 1
            self.close()
            return
        finally:
            if start:
                del buf[:start]

    def _on_frame(self, frame: Frame) -> None:
        kind = frame.kind
        if kind == RESPONSE:
            call = self.inflight.pop(frame.request_id, None)
            if call is None:
                if frame.request_id in self.expired:
                    self.expired.discard(frame.request_id)
                    self.pool.stats.late.value += 1
                else:
                    self.pool.stats.unknown.value += 1
                return
            self.pool.slot_freed(self)
            call.on_upstream_response(frame)
        elif kind == HEARTBEAT:
            self.pool.stats.heartbeat.value += 1
            self.write(self.pool.codec.heartbeat_reply(frame))
        elif kind == HEARTBEAT_ACK:
            pass
        else:                      # a provider does not call its client
            self.pool.stats.unknown.value += 1

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        was_connected = self.connected
        self.closed = True
        self.connected = False
        self._cancel_idle()
        pool = self.pool
        if self.inflight and was_connected:
            pool.cluster.c["upstream_cx_destroy_remote"].value += 1
            pool.stats.cx_destroy_with_active_rq.value += 1
        pool.connection_gone(self, "reset" if was_connected else "connect_failure")

    # ------------------------------------------------------------- idle
    def _start_idle(self) -> None:
        t = self.pool.cluster.config.idle_timeout
        if t and self.idle_timer is None and not self.closed:
            self.idle_timer = asyncio.get_running_loop().call_later(t, self._idle)

    def _cancel_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def _idle(self) -> None:
        self.idle_timer = None
        if not self.inflight:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def slot_free(self) -> None:
        if not self.inflight:
            self._start_idle()


class RpcPool:
    """One endpoint's connections for one codec."""

    def __init__(self, host: "Host", codec: Codec, max_frame: int):
        self.host = host
        self.cluster: Cluster = host.cluster
        self.codec = codec
        self.max_frame = max_frame
        opts = host.cluster.config.options.get("rpc") or _DEFAULT
        self.max_conns = opts.connections
        self.per_conn = opts.max_requests_per_connection
        self.conns: list[RpcConnection] = []
        self.waiters: deque[Call] = deque()
        self.stats = UpstreamStats(self.cluster, codec)

    # ------------------------------------------------------------- calls
    def send(self, call: Call) -> bool:
        """Send `call` on a connection with room, or queue it; False: the breakers refused."""
        best: RpcConnection | None = None
        for c in self.conns:
            if c.load < self.per_conn and (best is None or c.load < best.load):
                best = c
        if (best is None or best.load > 0) and len(self.conns) < self.max_conns and self._room():
            best = self._open()
        if best is None:
            cluster = self.cluster
            if cluster.rq_pending >= cluster.cb.max_pending_requests:
                cluster.c["upstream_rq_pending_overflow"].value += 1
                return False
            cluster.c["upstream_rq_pending_total"].value += 1
            cluster.rq_pending += 1
            self.waiters.append(call)
            return True
        best.assign(call)
        return True

    def send_oneway(self, frame: Frame) -> bool:
        best = min(self.conns, key=lambda c: c.load, default=None)
        if best is None:
            if not self._room():
                return False
            best = self._open()
        best.send_oneway(frame)
        return True

    def cancel(self, call: Call) -> None:
        """A queued call gave up."""
        try:
            self.waiters.remove(call)
        except ValueError:
            return
        self.cluster.rq_pending -= 1

    def slot_freed(self, conn: RpcConnection) -> None:
        if self.waiters and not conn.closed:
            self.cluster.rq_pending -= 1
            conn.assign(self.waiters.popleft())
        else:
            conn.slot_free()

    # ------------------------------------------------------------- connections
    def _room(self) -> bool:
        c = self.cluster
        if c.cx_active < c.cb.max_connections:
            return True
        c.c["upstream_cx_overflow"].value += 1
        return False

    def _open(self) -> RpcConnection:
        conn = RpcConnection(self)
        self.conns.append(conn)
        count_cx_open(self.cluster)
        asyncio.get_running_loop().create_task(self._connect(conn))
        return conn

    async def _connect(self, conn: RpcConnection) -> None:
        host, cluster = self.host, self.cluster
        loop = asyncio.get_running_loop()
        kw = client_connect_args(cluster.config, host.host, host.endpoint)
        try:
            async with asyncio.timeout(cluster.config.connect_timeout):
                await loop.create_connection(lambda: conn, host.host, host.port, **kw)
        except (OSError, TimeoutError, asyncio.TimeoutError) as e:
            connect_failed(cluster, f"{host.host}:{host.port}", e)
            cluster.c["upstream_cx_connect_fail"].value += 1
            if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
                cluster.c["upstream_cx_connect_timeout"].value += 1
            conn.closed = True
            self.connection_gone(conn, "connect_failure")
            return
        if conn.closed:
            return
        conn.opened()

    def connection_gone(self, conn: RpcConnection, kind: str) -> None:
        if conn not in self.conns:
            return
        self.conns.remove(conn)
        count_cx_closed(self.cluster)
        calls = list(conn.inflight.values())
        conn.inflight.clear()
        if kind == "connect_failure":
            # the endpoint cannot be reached now: what waits for it fails too
            while self.waiters:
                self.cluster.rq_pending -= 1
                calls.append(self.waiters.popleft())
        for call in calls:
            call.conn = None
            call.on_upstream_failure(kind)
        if self.waiters and not self.conns and self._room():
            nxt = self._open()
            while self.waiters and nxt.load < self.per_conn:
                self.cluster.rq_pending -= 1
                nxt.assign(self.waiters.popleft())
        if not self.conns and not self.waiters:
            POOLS.pop((self.host, self.codec.name), None)

    def close(self) -> None:
        for c in list(self.conns):
            c.close()


POOLS: dict[tuple["Host", str], RpcPool] = {}


def pool_for(host: "Host", codec: Codec, max_frame: int) -> RpcPool:
    key = (host, codec.name)
    p = POOLS.get(key)
    if p is None:
        p = POOLS[key] = RpcPool(host, codec, max_frame)
    return p
