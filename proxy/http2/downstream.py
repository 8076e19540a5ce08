"""The Downstream of one HTTP/2 stream: what its HttpStream calls to answer, made into
frames on the connection's codec (proxy.http2.server owns the connection).

Invariants: response DATA goes out only within the client's window for this stream
(what does not fit waits here and pauses the stream's upstream, writable() is per
stream); the newest DATA chunk waits for the connection's write so an end arriving
first shares its frame; request bytes are acknowledged only once the stream took
them; a stream the client closed in ways the codec has not told us yet is over.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mosnx.runtime.headers import Headers

from ..codec.http2 import response_fields, trailer_block
from ..codec.http2_connection import INTERNAL_ERROR, NO_ERROR, StreamGone
from ..codec.http2_pending import WindowedStream
from ..stream import HttpStream

if TYPE_CHECKING:
    from .server import Http2Server

_NO_ERROR = NO_ERROR
_INTERNAL = INTERNAL_ERROR


class H2Down(WindowedStream):
    """The Downstream of one HTTP/2 stream (see proxy.stream.contracts.Downstream)."""

    __slots__ = ("conn", "h2", "sid", "http", "pending", "end_pending", "trailers_pending",
                 "sent_end", "closed", "unacked", "body_paused", "head", "req_ended", "finished",
                 "held", "tail", "born")

    def __init__(self, conn: "Http2Server", sid: int, head: bool, req_ended: bool):
        self.conn = conn
        self.h2 = conn.h2
        self.sid = sid
        self.http: HttpStream | None = None
        self.pending: list[bytes] = []        # response DATA beyond the client's window
        self.end_pending = False
        self.trailers_pending = None
        self.sent_end = False
        self.closed = False                   # reset, either way
        self.unacked = 0                      # request bytes taken while paused, not yet acknowledged
        self.body_paused = False
        self.head = head
        self.req_ended = req_ended
        self.finished = False
        self.held: tuple | None = None        # a bodiless response's HEADERS, until its end
        self.tail: bytes | None = None        # the newest DATA chunk, until the write or the end
        self.born = 0.0                       # loop time of its start, for premature resets

    # -- Downstream --
    # the codec refuses frames for a stream the client has just closed in ways its
    # calls have not told us yet; such a stream is over, whatever was being sent.
    def send_head(self, stream, status: int, headers: Headers, body_len, end: bool) -> None:
        if self.closed or self.sent_end:
            return
        if status == 101:
            return self.abort(stream)
        if self.head:
            block = response_fields(status, headers.items, None)
            cl = headers.getb(b"content-length")
            if cl is not None:
                block += ((b"content-length", cl),)
            end = True
        else:
            block = response_fields(status, headers.items, body_len)
            if body_len == 0 and not end:
                # held until the end arrives, so an empty response (gRPC's trailers-only
                # answer in particular) stays one HEADERS frame with END_STREAM
                self.held = block
                return
        try:
            self.h2.send_headers(self.sid, block, end)
        except StreamGone:
            return self._broken()
        if end:
            self.sent_end = True

    def _broken(self) -> None:
        http = self.http
        self._reset(_INTERNAL)
        if http is not None:
            http.reset()
        self.conn.flush()

    def _release_held(self) -> None:
        block, self.held = self.held, None
        self.h2.send_headers(self.sid, block)  # type: ignore[arg-type]  # called only while a block is held

    def send_data(self, stream, data: bytes) -> None:
        if self.sent_end or self.closed or not data:
            return
        try:
            if self.held is not None:
                self._release_held()
            if self.pending:
                if self.tail is not None:
                    self.pending.append(self.tail)
                    self.tail = None
                self.pending.append(data)
                return
            # the newest chunk waits for the write: if the end comes first, they share a frame
            tail = self.tail
            self.tail = data
            if tail is None:
                self.conn.tails.append(self)
            else:
                self._push(tail)
        except StreamGone:
            self._broken()

    def release_tail(self) -> None:
        tail, self.tail = self.tail, None
        if tail is not None and not self.closed and not self.sent_end:
            if self.pending:
                self.pending.append(tail)
                return
            try:
                self._push(tail)
            except StreamGone:
                self._broken()

    def _push(self, data: bytes, end: bool = False) -> bool:
        """Send what the windows allow; keep the rest. True when all of it went."""
        sent = self.h2.send_data(self.sid, data, end)
        if sent == len(data):
            return True
        self.pending.append(data[sent:] if sent else data)
        return False

    def send_end(self, stream, trailers) -> None:
        if self.closed or self.sent_end:
            self.conn.flush()
            return
        try:
            tail = self.tail
            if tail is not None:
                self.tail = None
                if not self.pending and not trailers and self.held is None:
                    # the usual end: the last chunk carries END_STREAM
                    sent = self.h2.send_data(self.sid, tail, True)
                    if sent == len(tail):
                        self.sent_end = True
                        if self.finished:
                            self._maybe_done()
                        self.conn.flush()
                        return
                    self.pending.append(tail[sent:] if sent else tail)
                elif self.pending:
                    self.pending.append(tail)
                else:
                    self._push(tail)
            if self.pending:
                self.end_pending = True
                self.trailers_pending = trailers
                self.conn.flush()
                return
            self._end(trailers)
        except StreamGone:
            return self._broken()
        self.conn.flush()

    def send_whole(self, stream, status: int, headers: Headers, body_len: int, body: bytes,
                   memo: list | None = None) -> None:
        self.send_head(stream, status, headers, body_len, False)
        self.send_data(stream, body)
        self.send_end(stream, None)

    def _end(self, trailers) -> None:
        self.sent_end = True
        if self.held is not None:
            block, self.held = self.held, None
            if trailers:
                block += tuple(trailer_block(trailers))
            self.h2.send_headers(self.sid, block, True)
        elif trailers:
            self.h2.send_headers(self.sid, trailer_block(trailers), True)
        else:
            self.h2.end_stream(self.sid)
        self._maybe_done()

    def flush(self) -> None:
        if self.held is not None and not self.closed:
            try:
                self._release_held()
            except StreamGone:
                return self._broken()
        self.conn.flush()

    def send_continue(self, stream) -> None:
        if not self.closed and not self.sent_end:
            try:
                self.h2.send_headers(self.sid, [(b":status", b"100")])
            except StreamGone:
                return self._broken()
            self.conn.flush()

    def abort(self, stream) -> None:
        self._reset(_INTERNAL)
        self.conn.flush()

    def pause_body(self, stream) -> None:
        self.body_paused = True

    def resume_body(self, stream) -> None:
        self.body_paused = False
        n = self.unacked
        if n and not self.closed:
            self.unacked = 0
            self.h2.ack(self.sid, n)
            self.conn.flush()

    def writable(self) -> bool:
        return not self.pending and not self.conn.write_paused

    def start_tunnel(self, stream) -> None:
        self.abort(stream)       # Upgrade has no meaning inside an HTTP/2 stream

    def send_raw(self, stream, data: bytes) -> None:
        pass

    def stream_finished(self, stream) -> None:
        self.finished = True
        self._maybe_done()

    # -- connection side --
    def _drain_pending(self) -> None:
        """The client opened its window (drain_pending): send what waited, then let
        the upstream go on."""
        pend = self.pending
        self.pending = []
        for i, data in enumerate(pend):
            if not self._push(data):
                self.pending.extend(pend[i + 1:])
                return
        if self.end_pending:
            self.end_pending = False
            self._end(self.trailers_pending)
            return
        if self.http is not None and not self.conn.write_paused:
            self.http.on_downstream_drain()

    def _maybe_done(self) -> None:
        if not (self.sent_end and self.finished):
            return
        if not self.req_ended and not self.closed:
            # the response is complete; tell the client to stop sending (RFC 9113 §8.1)
            self._reset(_NO_ERROR)
            return
        self.conn.stream_closed(self)

    def _reset(self, code) -> None:
        if self.closed:
            return
        self.closed = True
        self.pending = []
        self.tail = None
        self.h2.reset_stream(self.sid, code)     # nothing is sent for a stream already closed
        self.conn.stream_closed(self)
