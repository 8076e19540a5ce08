"""HTTP/2 upstream: multiplexed connections per host, and the per-stream handle a
stream holds as its `up` (contracts.Upstream, as http1.UpstreamConnection is).

Invariants:
- A connection carries at most min(the endpoint's SETTINGS_MAX_CONCURRENT_STREAMS,
  the cluster's max_concurrent_streams) streams; the pool opens another connection
  (under the cluster's max_connections) when every one is full, and queues the
  stream otherwise (under max_pending_requests).
- The stream hands its `up` the request as fields, body chunks and an end
  (send_request/send_body/send_end), which become HEADERS/DATA/trailers; nothing is encoded as HTTP/1.1 only to be decoded again. (An Upgrade
  has no HTTP/2 form: its Connection and Upgrade fields are hop-by-hop and dropped.)
- Response DATA is acknowledged to the endpoint only while the stream's downstream
  takes it (pause_reading holds that stream's window, not the connection).
- Releasing a handle ends its stream only; a connection closes when the endpoint
  sends GOAWAY and its streams are done, on idle timeout, or when its host retires.
"""
from __future__ import annotations

import asyncio

from mosnx.runtime.headers import Headers
from mosnx.runtime.tracing.propagation import fields_of

from ..codec.http2 import H2HeadError, request_block, response_from_block, trailer_block, trailers_from_block
from ..forwarding import upstream_fields
from ..codec.http2_connection import (CANCEL, ENABLE_PUSH, INITIAL_WINDOW_SIZE, NO_ERROR, PROTOCOL_ERROR,
                                      REFUSED_STREAM, H2Connection, H2ConnectionError, StreamGone)
from ..codec.http2_pending import WindowedStream, WindowedStreams
from ..sockets import set_nodelay
from ..tls import TlsInfo, connect_failed, endpoint_tls, upstream_info
from .pool import connect_args
from .pool_base import PoolBase

DEFAULT_STREAM_CAP = 100
_WINDOW = 4 * 1024 * 1024


class H2Pool(PoolBase):
    """Per-host HTTP/2 connections; acquire() mirrors Pool.acquire(). `idle` holds the
    open connections with no stream."""

    __slots__ = ("conns",)

    def __init__(self, host):
        super().__init__(host)
        self.conns: list[H2UpstreamConnection] = []   # open, ready for new streams or busy

    def _cap(self) -> int:
        return self.host.cluster.config.options.get("max_concurrent_streams") or DEFAULT_STREAM_CAP

    def acquire(self, stream):
        for conn in reversed(self.conns):
            if conn.has_room():
                return conn.open_stream(stream)
        cluster = self.host.cluster
        if self.connecting * self._cap() <= len(self.waiters):
            if cluster.cx_active < cluster.cb.max_connections:
                self._queue(stream)
                self._connect()
                return None
        elif cluster.rq_pending < cluster.cb.max_pending_requests:
            # a connection on its way has room for this one
            self._queue(stream)
            return None
        return self._wait(stream)

    def release(self, handle, reusable: bool) -> None:
        handle.finish(reusable)

    def dispatch(self) -> None:
        """Hand queued streams to connections with room; open another if none has."""
        waiters = self.waiters
        cluster = self.host.cluster
        while waiters:
            conn = None
            for c in reversed(self.conns):
                if c.has_room():
                    conn = c
                    break
            if conn is None:
                break
            # _next_waiter() inline: with streams queued, each one's handoff passes here
            stream = waiters.popleft()
            cluster.rq_pending -= 1
            if stream.alive:
                stream.on_pool_ready(conn.open_stream(stream))
        if (waiters and not self.retired and self.connecting * self._cap() < len(waiters)
                and cluster.cx_active < cluster.cb.max_connections):
            self._connect()

    def wake(self) -> None:
        """The cluster may have room again (another worker closed a connection)."""
        if self.waiters and not self.retired:
            self.dispatch()

    def _connect(self) -> None:
        self._cx_opening()
        self.connecting += 1
        asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        cluster = self.host.cluster
        loop = asyncio.get_running_loop()
        # the stream waiting longest asked for it (its listener's istio.alpn overrides)
        kw = connect_args(cluster.config, self.host.host, self.host.endpoint,
                          self.waiters[0] if self.waiters else None)
        conn = None
        try:
            async with asyncio.timeout(cluster.config.connect_timeout):
                _, conn = await loop.create_connection(lambda: H2UpstreamConnection(self),
                                                       self.host.host, self.host.port, **kw)
                # streams go out once the endpoint's SETTINGS say how many it takes
                await conn.settled
        except (TimeoutError, asyncio.TimeoutError):
            cluster.c["upstream_cx_connect_timeout"].value += 1
            if conn is not None:
                conn.settled.cancel()
                conn.transport.abort()
            return self._failed("upstream_connect_timeout")
        except (OSError, ConnectionError) as e:
            if conn is not None:
                conn.transport.abort()
            connect_failed(cluster, self.host.address, e)
            return self._failed("upstream_connect_failure")
        self.connecting -= 1
        conn.opened = True
        self.conns.append(conn)
        self.idle.append(conn)
        if self.retired:
            conn.close()
            return
        self.dispatch()
        if not conn.streams:
            conn.arm_idle()

    def _failed(self, detail: str) -> None:
        self.connecting -= 1
        self._cx_failed()
        # the streams this connection was meant for fail; others keep waiting for theirs
        self._fail_waiters(max(0, len(self.waiters) - self.connecting * self._cap()), detail)

    def on_closed(self, conn) -> None:
        try:
            self.conns.remove(conn)
        except ValueError:
            pass
        self._cx_closed(conn)
        if self.waiters and not self.retired:
            self.dispatch()

    def sweep(self, now: float) -> None:
        """Idle connections close on their own timers (H2UpstreamConnection.arm_idle)."""

    def _retire_connections(self) -> None:
        """Connections without streams close now, the others when their streams are done."""
        for conn in list(self.conns):
            conn.draining = True
            if not conn.streams:
                conn.close()


class H2UpstreamConnection(WindowedStreams, asyncio.Protocol):
    """One connection to an endpoint; the sink of its HTTP/2 codec."""

    def __init__(self, pool: H2Pool):
        self.pool = pool
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.h2 = H2Connection(self, True, {ENABLE_PUSH: 0, INITIAL_WINDOW_SIZE: 1024 * 1024}, _WINDOW)
        self.streams: dict[int, H2UpStream] = {}   # by stream id, once HEADERS went out
        self.active = 0                            # handles given out, sent or not
        self.total = 0
        self.closed = False
        self.draining = False
        self.write_paused = False
        self.receiving = False
        self.write_soon = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self.cap = pool._cap()
        self.settled = asyncio.get_running_loop().create_future()
        self.opened = False          # the pool counts it among its connections
        self.touched: set = set()    # downstreams that got something in this read
        self.tls: TlsInfo | None = None   # what its handshake told, None in cleartext

    # -- pool side --
    def has_room(self) -> bool:
        if self.closed or self.draining:
            return False
        cap = self.cap
        remote = self.h2.remote_max_streams
        if remote < cap:
            cap = remote
        return self.active < cap

    def open_stream(self, stream) -> "H2UpStream":
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if self.active == 0:
            try:
                self.pool.idle.remove(self)
            except ValueError:
                pass
        self.active += 1
        self.total += 1
        return H2UpStream(self, stream)

    def handle_done(self, handle: "H2UpStream") -> None:
        if handle.counted:
            handle.counted = False
            self.active -= 1
        if handle.sid and self.streams.get(handle.sid) is handle:
            del self.streams[handle.sid]
        if self.active == 0:
            if self.draining or self.pool.retired:
                self.close()
                return
            self.pool.idle.append(self)
            self.arm_idle()
        elif self.pool.waiters:
            self.pool.dispatch()

    def arm_idle(self) -> None:
        t = self.pool.host.cluster.config.idle_timeout
        if t and self.idle_timer is None and not self.closed:
            self.idle_timer = asyncio.get_running_loop().call_later(t, self._idle)

    def _idle(self) -> None:
        self.idle_timer = None
        if self.active == 0:
            self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.h2.goaway(NO_ERROR, 0)
            self._write_now()
            self.transport.close()

    def flush(self) -> None:
        """Frames of many streams started in one loop turn share one write."""
        if self.receiving or self.closed or self.write_soon:
            return
        self.write_soon = True
        asyncio.get_running_loop().call_soon(self._write_now)

    def _write_now(self) -> None:
        self.write_soon = False
        if self.closed:
            return
        out = self.h2.data_to_send()
        if out:
            self.transport.write(out)

    # -- asyncio.Protocol --
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.tls = upstream_info(transport)
        set_nodelay(transport)
        c = self.h2
        c.initiate()
        transport.write(c.data_to_send())

    def data_received(self, data: bytes) -> None:
        self.receiving = True
        touched = self.touched
        try:
            self.h2.feed(data)
        except H2ConnectionError:
            self.pool.host.cluster.c["upstream_cx_protocol_error"].value += 1
            self.receiving = False
            self._write_now()
            self.transport.close()
            # the streams learn of it in connection_lost
        finally:
            self.receiving = False
        self._write_now()
        if touched:
            for down in touched:
                down.flush()
            touched.clear()

    def eof_received(self):
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if not self.opened:
            # the pool is still opening this one and counts the failure itself
            if not self.settled.done():
                self.settled.set_exception(ConnectionError("closed before SETTINGS"))
            return
        handles = list(self.streams.values())
        self.streams.clear()
        self.pool.on_closed(self)
        for h in handles:
            h.lost("upstream_reset_before_response_started")

    def pause_writing(self) -> None:
        self.write_paused = True
        for h in list(self.streams.values()):
            if h.stream is not None:
                h.stream.on_upstream_pressure(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        for h in list(self.streams.values()):
            if h.stream is not None and not h.pending:
                h.stream.on_upstream_pressure(False)

    # -- codec calls --
    def _handle(self, sid: int):
        h = self.streams.get(sid)
        if h is not None and h.stream is not None:
            self.touched.add(h.stream.down)
        return h

    def on_headers(self, sid: int, fields, end: bool) -> None:
        h = self._handle(sid)
        if h is None or h.stream is None:
            return
        try:
            status, headers, body = response_from_block(fields)
        except H2HeadError:
            return h.malformed()
        if end:
            body = 0       # trailers-only (gRPC errors): nothing follows the head
        elif body is not None:
            self.h2.expect_length(sid, body)
        h.got_head = True
        h.stream.on_upstream_head(status, headers, True, body)
        if end:
            self._ended(h)

    def on_header_list_too_large(self, sid: int) -> None:
        h = self._handle(sid)
        if h is not None:
            h.malformed()

    def on_data(self, sid: int, data: bytes, n: int, end: bool) -> None:
        # Http2Server.on_data's acknowledgement rule on the response side, kept inline: it runs per frame
        h = self._handle(sid)
        if h is None or h.stream is None or not data:
            if n:
                self.h2.ack(sid, n)
        else:
            h.stream.on_upstream_data(data)
            if h.paused:
                h.unacked += n
            else:
                self.h2.ack(sid, n)
        if end and h is not None:
            self._ended(h)

    def on_trailers(self, sid: int, fields) -> None:
        h = self._handle(sid)
        if h is None:
            return
        try:
            h.trailers = trailers_from_block(fields, validate=True)
        except H2HeadError:
            return h.malformed()
        self._ended(h)

    def _ended(self, h) -> None:
        h.remote_closed = True
        s, h.stream = h.stream, None
        if s is not None:
            s.on_upstream_end(h.trailers)
        if h.local_closed:
            h.finish(True)

    def on_reset(self, sid: int, code: int) -> None:
        h = self._handle(sid)
        if h is None:
            return
        h.remote_closed = h.local_closed = True
        detail = "upstream_refused_stream" if code == REFUSED_STREAM else (
            "upstream_reset_after_response_started" if h.got_head else "upstream_reset_before_response_started")
        h.lost(detail)

    def on_settings(self) -> None:
        if not self.settled.done():
            self.settled.set_result(None)

    def on_goaway(self, last_stream_id: int, code: int) -> None:
        self.draining = True
        try:
            self.pool.idle.remove(self)
        except ValueError:
            pass
        for h in [x for x in self.streams.values() if x.sid > last_stream_id]:
            # never processed by the endpoint: safe for the stream to try elsewhere
            h.lost("upstream_refused_stream")
        if not self.streams and self.active == 0:
            self.close()
        if self.pool.waiters:
            self.pool.dispatch()


class H2UpStream(WindowedStream):
    """One request on an HTTP/2 connection, as the stream sees its upstream: the
    stream hands it the request as fields and body chunks (send_request, send_body,
    send_end), which become frames."""
    # a pooled HTTP/1.1 connection's race with its close has no HTTP/2 counterpart (a
    # stream the endpoint never processed is made again by the stream itself, once)
    reused = False

    __slots__ = ("conn", "pool", "stream", "sid", "paused", "closed",
                 "body_len", "local_closed", "remote_closed", "pending", "end_pending",
                 "trailers_pending", "unacked", "trailers", "got_head", "counted", "pressure")

    @property
    def tls(self) -> TlsInfo | None:
        return self.conn.tls

    def __init__(self, conn: H2UpstreamConnection, stream):
        # fields like H2Down's and HttpStream's only in looks: each is this handle's own state
        self.conn = conn
        self.pool = conn.pool
        self.stream = stream
        self.sid = 0
        self.paused = False
        self.closed = False
        self.body_len: int | None = None
        self.local_closed = False
        self.remote_closed = False
        self.pending: list[bytes] = []
        self.end_pending = False
        self.trailers_pending = None
        self.unacked = 0
        self.trailers = None
        self.got_head = False
        self.counted = True
        self.pressure = False

    # -- what the stream calls (contracts.Upstream) --
    def send_request(self, req, source: str, body: int | None, upgrade: bool, chunks,
                     ended: bool, trailers, decoded=None, wire: bytes | None = None, wire_n: int = 0) -> None:
        """The request so far: its head (`body`: the Content-Length, 0 for none, None
        for a length unknown), the body `chunks` read so far, and its end when `ended`.
        An Upgrade has no HTTP/2 form (its fields are hop-by-hop and dropped). HEAD
        needs nothing: HTTP/2 ends a bodiless answer with END_STREAM. `wire`,
        `wire_n`: a trace context the request's fields hold (the last wire_n), or with
        0 do not, so its fields are read from it."""
        extra = fields_of(wire) if wire is not None and not wire_n else ()
        self._framed(self._head, req, upstream_fields(req, source, extra), body)
        if self.closed:
            return
        for c in chunks or ():
            self.send_body(c)
        if ended and body != 0:
            self.send_end(trailers)

    def send_body(self, data: bytes) -> None:
        self._framed(self._body, data)

    def send_end(self, trailers) -> None:
        self._framed(self._end_of_request, trailers)

    def _framed(self, fn, *args) -> None:
        if self.closed or self.local_closed:
            return
        try:
            fn(*args)
        except StreamGone:
            self._broken()
            return
        self.conn.flush()

    def _broken(self) -> None:
        # the endpoint closed this stream (or the connection) under us
        self.lost("upstream_reset_before_response_started" if not self.got_head
                  else "upstream_reset_after_response_started")

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        if not self.paused:
            return
        self.paused = False
        n = self.unacked
        if n and not self.closed and self.sid:
            self.unacked = 0
            self.conn.h2.ack(self.sid, n)
            self.conn.flush()

    def close(self) -> None:
        """The stream gave up on this attempt (timeout): reset it, keep the connection."""
        self.stream = None
        self.finish(False)

    # -- the request becoming frames --
    def _head(self, req, fields: list, body: int | None) -> None:
        conn = self.conn
        v = req.headers.getb(b"te")
        te = v is not None and b"trailers" in v.lower()
        host = conn.pool.host
        tls = endpoint_tls(host.cluster.config, host.endpoint)      # the endpoint's transport socket
        block = request_block(req.method, req.path, Headers(fields), "https" if tls is not None else "http", te)
        sid = conn.h2.next_stream_id()
        self.sid = sid
        self.body_len = body
        end = body == 0
        conn.h2.send_headers(sid, block, end)
        conn.streams[sid] = self
        if end:
            self.local_closed = True

    def _body(self, data: bytes) -> None:
        if self.local_closed or self.closed:
            return
        if self.pending:
            self.pending.append(data)
            return
        self._push(data)

    def _end_of_request(self, trailers) -> None:
        if self.local_closed or self.closed:
            return
        if self.pending:
            self.end_pending = True
            self.trailers_pending = trailers
            return
        self._end(trailers)

    def _end(self, trailers) -> None:
        self.local_closed = True
        if trailers:
            self.conn.h2.send_headers(self.sid, trailer_block(trailers), True)
        else:
            self.conn.h2.end_stream(self.sid)
        if self.remote_closed:
            self.finish(True)

    def _push(self, data: bytes) -> bool:
        sent = self.conn.h2.send_data(self.sid, data)
        if sent == len(data):
            return True
        self.pending.append(data[sent:] if sent else data)
        if not self.pressure and self.stream is not None:
            self.pressure = True
            self.stream.on_upstream_pressure(True)
        return False

    def _drain_pending(self) -> None:
        """The endpoint opened its window (drain_pending): send what waited, then lift
        the stream's back-pressure."""
        pend = self.pending
        self.pending = []
        for i, data in enumerate(pend):
            if not self._push(data):
                self.pending.extend(pend[i + 1:])
                self.conn.flush()
                return
        if self.end_pending:
            self.end_pending = False
            self._end(self.trailers_pending)
        self.conn.flush()
        if self.pressure and self.stream is not None and not self.conn.write_paused:
            self.pressure = False
            self.stream.on_upstream_pressure(False)

    # -- endings --
    def finish(self, reusable: bool) -> None:
        """Release: reset the stream if either side is still open; the connection stays."""
        if self.closed:
            return
        self.closed = True
        self.stream = None
        self.pending = []
        conn = self.conn
        if self.sid and not (self.local_closed and self.remote_closed) and not conn.closed:
            conn.h2.reset_stream(self.sid, NO_ERROR if self.remote_closed else CANCEL)
            conn.flush()
        conn.handle_done(self)

    def malformed(self) -> None:
        """The endpoint's answer cannot be passed on (RFC 9113 §8.1.1): a stream error for
        the endpoint, a 502 for the stream, as a malformed HTTP/1.1 response is."""
        s, self.stream = self.stream, None
        conn = self.conn
        if self.sid and not conn.closed:
            conn.h2.reset_stream(self.sid, PROTOCOL_ERROR)
            conn.flush()
        self.local_closed = self.remote_closed = True
        if not self.closed:
            self.closed = True
            conn.handle_done(self)
        if s is not None:
            s.on_upstream_reset("upstream_protocol_error", 502)

    def lost(self, detail: str) -> None:
        """The stream died on the connection (reset, GOAWAY, connection gone)."""
        s, self.stream = self.stream, None
        self.local_closed = self.remote_closed = True
        if not self.closed:
            self.closed = True
            self.conn.handle_done(self)
        if s is not None:
            s.on_upstream_reset(detail, 503)
