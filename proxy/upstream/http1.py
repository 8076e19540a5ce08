"""One upstream HTTP/1.1 connection: encodes nothing itself, decodes responses into
callbacks on the stream that holds it, and tells the stream about write pressure.

Exactly one stream uses a connection at a time; the pool owns it otherwise.
"""
from __future__ import annotations

import asyncio
from typing import Any

from .. import write_batch
from ..codec.http1 import ParseError, ResponseDecoder
from ..sockets import set_nodelay


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("pool", "transport", "decoder", "stream", "closed", "requests",
                 "idle_since", "tunnel", "paused", "_resp_framing_close", "got_bytes")
    structured = False      # takes the request as HTTP/1.1 bytes (send)

    def __init__(self, pool):
        self.pool = pool
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.decoder = ResponseDecoder(self)
        self.stream: Any = None    # the stream being answered, None when idle
        self.closed = False
        self.requests = 0
        self.idle_since = 0.0
        self.tunnel = None         # the stream, once an Upgrade switched to raw bytes
        self.paused = False
        self._resp_framing_close = False
        self.got_bytes = False     # any response byte for the current request

    # -- pool side --
    def take(self) -> None:
        self.idle_since = 0.0
        self.requests += 1
        self.got_bytes = False

    def park(self, now: float) -> None:
        """Back in the pool; Pool.sweep closes it once idle longer than the cluster allows."""
        if self.paused:
            self.transport.resume_reading()
            self.paused = False
        self.idle_since = now

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            write_batch.flush()
            self.transport.close()

    # -- stream side --
    def expect_head(self) -> None:
        """The request is HEAD: its response has no body whatever its framing says."""
        self.decoder.head_only = True

    def send(self, data: bytes) -> None:
        write_batch.write(self.transport, data)

    def pause_reading(self) -> None:
        if not self.paused and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    # -- asyncio.Protocol --
    def connection_made(self, transport) -> None:
        self.transport = transport
        set_nodelay(transport)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.on_tunnel_upstream_data(data)
            return
        stream = self.stream
        if stream is None:
            # bytes nobody asked for: the connection is no longer in a known state
            self.close()
            return
        self.got_bytes = True
        try:
            self.decoder.feed(data)
        except ParseError as e:
            self.pool.host.cluster.c["upstream_cx_protocol_error"].value += 1
            # the stream this read was for may have ended within it and the connection
            # gone back to the pool, or on to a waiting stream: only one still on it is told
            current, self.stream = self.stream, None
            self.close()
            if current is not None:
                current.on_upstream_reset(e.detail, 502)
            return
        finally:
            stream.down.flush()
        off = self.decoder.upgraded_offset
        if off >= 0 and self.stream is not None:
            self.tunnel = self.stream
            rest = data[off:]
            if rest:
                self.tunnel.on_tunnel_upstream_data(rest)

    def eof_received(self):
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.pool.on_closed(self)
        if self.tunnel is not None:
            t, self.tunnel = self.tunnel, None
            t.on_tunnel_closed()
            return
        stream, self.stream = self.stream, None
        if stream is not None:
            if self._resp_framing_close and exc is None:
                stream.on_upstream_end(None)      # close-delimited body: a clean EOF is its end
            else:
                self.pool.host.cluster.c["upstream_cx_destroy_remote"].value += 1
                stream.on_upstream_reset("upstream_reset_before_response_started"
                                         if not stream.response_started else "upstream_reset_after_response_started",
                                         503)

    def pause_writing(self) -> None:
        s = self.stream or self.tunnel
        if s is not None:
            s.on_upstream_pressure(True)

    def resume_writing(self) -> None:
        s = self.stream or self.tunnel
        if s is not None:
            s.on_upstream_pressure(False)

    # -- ResponseSink --
    def on_response(self, status, reason, version, headers, keep_alive, body) -> None:
        self._resp_framing_close = body is None and not self.decoder.chunked
        self.stream.on_upstream_head(status, headers, keep_alive and not self._resp_framing_close, body)

    def on_response_body(self, data: bytes) -> None:
        s = self.stream
        if s is not None:
            s.on_upstream_data(data)

    def on_whole_response(self, status, version, headers, keep_alive, body_len, body, origin=None) -> None:
        # the stream decides whether it takes the three events in one step
        self.stream.on_upstream_whole(self, status, headers, keep_alive, body_len, body, origin)

    def on_response_end(self, trailers) -> None:
        s, self.stream = self.stream, None
        self._resp_framing_close = False
        if s is not None:
            s.on_upstream_end(trailers)
