"""One upstream HTTP/1.1 connection: takes the request from the stream that holds it
as fields and chunks and frames it (Content-Length or chunked, an Upgrade's
Connection and Upgrade), decodes responses into callbacks on that stream, and
tells the stream about write pressure.

Exactly one stream uses a connection at a time; the pool owns it otherwise.
"""
from __future__ import annotations

import asyncio
from typing import Any

from .. import write_batch
from ..codec.http1 import ParseError, ResponseDecoder, encode_chunk, encode_last_chunk
from ..sockets import set_nodelay
from ..tls import TlsInfo, upstream_info
from .http1_head import bodiless_request_head, request_head


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("pool", "transport", "decoder", "stream", "closed", "requests", "reused",
                 "idle_since", "tunnel", "paused", "_resp_framing_close", "got_bytes", "chunked", "tls")

    def __init__(self, pool):
        self.pool = pool
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.decoder = ResponseDecoder(self)
        self.stream: Any = None    # the stream being answered, None when idle
        self.closed = False
        self.requests = 0
        self.reused = False        # the current request is not the connection's first
        self.chunked = False       # the current request's body is framed chunked
        self.idle_since = 0.0
        self.tunnel = None         # the stream, once an Upgrade switched to raw bytes
        self.paused = False
        self._resp_framing_close = False
        self.got_bytes = False     # any response byte for the current request
        self.tls: TlsInfo | None = None   # what its handshake told, None in cleartext

    # -- pool side --
    def take(self) -> None:
        self.idle_since = 0.0
        self.requests += 1
        self.reused = self.requests > 1
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

    # -- stream side (contracts.Upstream) --
    def send_request(self, req, source: str, body: int | None, upgrade: bool, chunks,
                     ended: bool, trailers, decoded=None, wire: bytes | None = None, wire_n: int = 0) -> None:
        """The request so far, in one write: its head (`body`: the Content-Length, 0
        for none, None for a length unknown, framed chunked), the body `chunks` read
        so far, and its end when `ended`. `decoded`, `wire`, `wire_n`: as for
        bodiless_request_head (given only for a request without body or upgrade)."""
        if req.method == "HEAD":
            self.decoder.head_only = True      # no body in the answer, whatever its framing says
        if body == 0 and not upgrade:
            self.chunked = False
            data = bodiless_request_head(req, source, decoded, wire, wire_n)
        else:
            chunked = self.chunked = body is None
            data = request_head(req, source, upgrade, chunked)
            if chunks:
                data += b"".join([encode_chunk(c) for c in chunks] if chunked else chunks)
            if ended and chunked:
                data += encode_last_chunk(trailers)
        write_batch.write(self.transport, data)

    def send_body(self, data: bytes) -> None:
        write_batch.write(self.transport, encode_chunk(data) if self.chunked else data)

    def send_end(self, trailers) -> None:
        if self.chunked:
            write_batch.write(self.transport, encode_last_chunk(trailers))

    def send(self, data: bytes) -> None:
        """Raw bytes: an upgraded connection's tunnel."""
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
        self.tls = upstream_info(transport)
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

    def on_whole_response(self, status, version, headers, keep_alive, body_len, body, decoded=None) -> None:
        # the stream takes the three events in one step when it can, else they come one by one
        if not self.stream.on_upstream_whole(self, status, headers, keep_alive, body_len, body, decoded):
            self.on_response(status, "", version, headers, keep_alive, body_len)
            if body_len:
                self.on_response_body(body)
            self.on_response_end(None)

    def on_response_end(self, trailers) -> None:
        s, self.stream = self.stream, None
        self._resp_framing_close = False
        if s is not None:
            s.on_upstream_end(trailers)
