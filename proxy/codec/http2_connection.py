"""One HTTP/2 connection (RFC 9113), either end: frames in, sink calls out; calls in, bytes out.

Sans-I/O: `feed(bytes)` parses frames and calls the sink (the server or upstream
protocol); `send_*` queue frames and `data_to_send()` hands them over. No
sockets, no clocks, no asyncio.

What it owns: framing (padding, CONTINUATION, frame-size limits), HPACK state,
the stream-state table, flow-control windows both ways, SETTINGS and their ACK,
PING answers, GOAWAY, and turning protocol violations into GOAWAY (connection
errors, raised as H2ConnectionError after the GOAWAY is queued) or RST_STREAM
(stream errors, reported to the sink as on_reset). What it never does: look
inside header blocks beyond `:status` of a 1xx on the client side (the block's
meaning and validation are proxy/codec/http2.py's), refuse a stream for
concurrency (the owner refuses with REFUSED_STREAM, which keeps the others
alive), or close the connection on a GOAWAY it receives (streams the peer
accepted may finish, RFC 9113 §6.8).

Stream states are a table (_RECV_OK/_SEND_OK below): a stream is in the table
from its first HEADERS until both halves are closed or it is reset; an id not in
the table is idle (above the highest seen) or closed.

The sink implements:
    on_headers(sid, fields, end_stream)   first header block (request or final response)
    on_trailers(sid, fields)              a block after it; the stream's remote half ends
    on_data(sid, data, flow_len, end_stream)
    on_reset(sid, code)                   peer RST_STREAM, or a stream error found here
    on_window(sid)                        send window grew (0: the connection, or all streams)
    on_settings()                         peer SETTINGS applied
    on_goaway(last_stream_id, code)
    on_header_list_too_large(sid)         a block over SETTINGS_MAX_HEADER_LIST_SIZE, or over
                                          the field count (`refusal` says which)

Limits against a hostile peer (H2Limits; all off unless the owner sets them, as the
server does from its listener's `http2:` options; names and defaults are Envoy's):
- an unfinished header block (HEADERS + CONTINUATION) holds at most `max_block`
  encoded bytes, checked as each fragment arrives; the HPACK decoder bounds what a
  block may decode to (http2_hpack.Decoder);
- frames queued for a peer that does not read: control frames (SETTINGS/PING
  ACKs, RST_STREAMs) count from the last write the transport took whole (the owner
  calls `written()`, or zeroes `control`), and the owner adds to `held_frames` the
  frames it hands to a transport whose writes are paused; the frames queued here
  count too. Checked against `max_outbound_control_frames` / `max_outbound_frames`
  once per feed (one read's worth at most goes beyond them) and by `flooded()`;
- empty DATA/HEADERS/CONTINUATION in a row, PRIORITY frames per stream opened, and
  WINDOW_UPDATEs per DATA frame sent, as Envoy counts them;
- a request header block on a stream id at or below one already used is a
  connection error (RFC 9113 §5.1.1); trailers for a stream we closed are ignored.
A limit exceeded is an H2ConnectionError whose `kind` names the stat it counts.

Why one module: every frame handler here reads and moves the same state (the
stream table, both directions' windows, the HPACK contexts, the header block in
progress, the flood counters), and the order of those moves is RFC 9113's state
machine; spread over modules, each handler would reach into another's state. What
does not need that state lives apart: the wire vocabulary (frame types, flags, codes,
settings, the frame header, the limits and the error a connection raises, the stream
record, the sink contract) in codec.http2_frames, header-block meaning and validation
in codec.http2, HPACK in codec.http2_hpack.
"""
from __future__ import annotations

import base64
import struct
from typing import NoReturn, Sequence

from .http2_frames import (  # noqa: F401  (re-exported: where the connection's users import them)
    PREFACE, DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE,
    CONTINUATION, END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG, NO_ERROR, PROTOCOL_ERROR,
    INTERNAL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL,
    COMPRESSION_ERROR, ENHANCE_YOUR_CALM, HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS,
    INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE, DEFAULT_WINDOW, MAX_WINDOW, DEFAULT_FRAME,
    MAX_BLOCK, OPEN, CLOSED, H2ConnectionError, H2Limits, frame, Stream, H2Sink,
)
from .http2_hpack import Decoder, Encoder, HeaderListTooLarge, HpackError, TooManyHeaders

_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_setting = struct.Struct(">HI").unpack_from
_pack_setting = struct.Struct(">HI").pack
_pack_u32 = struct.Struct(">I").pack
_pack_goaway = struct.Struct(">II").pack
_END_BLOCK_AND_STREAM = END_HEADERS | END_STREAM
# of these flags, a block in one frame without padding or priority has END_HEADERS alone
_PLAIN_BLOCK = END_HEADERS | PADDED | PRIORITY_FLAG
# a frame header: the 24-bit length as a byte and a 16-bit half, type, flags, stream id
_pack_head = struct.Struct(">BHBBI").pack
_unpack_head = struct.Struct(">BHBBI").unpack_from
_NO_LIMITS = H2Limits()
_HUGE = 1 << 62


class H2Connection:
    __slots__ = ("client", "sink", "out", "buf", "streams", "preface_left", "settings_seen",
                 "decoder", "encoder", "send_window", "recv_window", "recv_unacked", "conn_window_target",
                 "remote_initial_window", "remote_max_frame", "remote_max_streams", "remote_max_header_list",
                 "local_initial_window", "pending_local", "local_max_frame", "highest_inbound",
                 "next_sid", "block_sid", "block_flags", "block_parts", "block_size", "goaway_received",
                 "closed", "local_settings", "limits", "max_block", "max_frames", "max_control",
                 "max_empty", "held_frames", "control", "empty_run", "priority_frames",
                 "window_updates", "data_sent", "refusal", "peer_reset")

    def __init__(self, sink: H2Sink, client: bool, settings: dict[int, int] | None = None,
                 connection_window: int = DEFAULT_WINDOW, limits: H2Limits | None = None):
        self.client = client
        self.sink = sink
        self.out: list[bytes] = []
        self.buf = b""
        self.streams: dict[int, Stream] = {}
        # a server first reads the client's preface; a client sees the server's SETTINGS first
        self.preface_left = 0 if client else len(PREFACE)
        self.settings_seen = False
        local = {MAX_CONCURRENT_STREAMS: 100, INITIAL_WINDOW_SIZE: DEFAULT_WINDOW}
        if client:
            local[ENABLE_PUSH] = 0
        if settings:
            local.update(settings)
        self.local_settings = local
        lim = self.limits = limits or _NO_LIMITS
        self.decoder = Decoder(limit=local.get(MAX_HEADER_LIST_SIZE, 1 << 30), max_fields=lim.max_fields)
        self.max_block = lim.max_block
        self.max_frames = lim.max_outbound_frames or _HUGE
        self.max_control = lim.max_outbound_control_frames or _HUGE
        self.max_empty = _HUGE if lim.max_empty_frames is None else lim.max_empty_frames
        self.held_frames = 0          # frames handed to a paused transport (kept by the owner)
        self.control = 0              # of which control frames, counted as queued
        self.empty_run = 0            # empty frames in a row
        self.priority_frames = 0
        self.window_updates = 0
        self.data_sent = 0            # DATA frames queued, for the WINDOW_UPDATE allowance
        self.refusal = ""             # why the last on_header_list_too_large
        self.peer_reset = False       # during on_reset: the peer sent the RST_STREAM
        self.encoder = Encoder()
        self.send_window = DEFAULT_WINDOW
        self.recv_window = DEFAULT_WINDOW    # what the peer may still send on the connection
        self.recv_unacked = 0
        self.conn_window_target = max(connection_window, DEFAULT_WINDOW)
        self.remote_initial_window = DEFAULT_WINDOW
        self.remote_max_frame = DEFAULT_FRAME
        self.remote_max_streams = 2 ** 31
        self.remote_max_header_list = 1 << 30
        # our INITIAL_WINDOW_SIZE binds the peer once it acknowledges our SETTINGS (RFC 9113 §6.9.2)
        self.local_initial_window = DEFAULT_WINDOW
        self.pending_local: list[int] = []
        self.local_max_frame = DEFAULT_FRAME
        self.highest_inbound = 0
        self.next_sid = 1
        self.block_sid = 0                   # a header block waiting for CONTINUATION
        self.block_flags = 0
        self.block_parts: list[bytes] = []
        self.block_size = 0
        self.goaway_received = False
        self.closed = False

    # ------------------------------------------------------------------ starting
    def initiate(self) -> None:
        """Queue our preface (client) and SETTINGS, and the connection window beyond the default."""
        if self.client:
            self.out.append(PREFACE)
        self._send_settings(self.local_settings)
        if self.conn_window_target > DEFAULT_WINDOW:
            grow = self.conn_window_target - DEFAULT_WINDOW
            self.recv_window += grow
            self.out.append(frame(WINDOW_UPDATE, 0, 0, _pack_u32(grow)))

    def initiate_upgrade(self, http2_settings: bytes) -> None:
        """Server side of `Upgrade: h2c`: the HTTP2-Settings header is the client's SETTINGS,
        and stream 1 is the upgraded request, already complete from the client's side."""
        try:
            raw = base64.urlsafe_b64decode(http2_settings + b"=" * (-len(http2_settings) % 4))
        except ValueError:
            raw = b""
        self.initiate()
        if len(raw) % 6 == 0:
            self._apply_settings(raw, notify=False)
        s = Stream(1, self.remote_initial_window, self.local_initial_window)
        s.remote = CLOSED
        s.got_head = True
        self.streams[1] = s
        self.highest_inbound = 1

    def _send_settings(self, values: dict[int, int]) -> None:
        payload = b"".join(_pack_setting(k, v) for k, v in values.items())
        self.out.append(frame(SETTINGS, 0, 0, payload))
        self.pending_local.append(values.get(INITIAL_WINDOW_SIZE, -1))

    # ------------------------------------------------------------------ sending
    def data_to_send(self) -> bytes:
        out = self.out
        if not out:
            return b""
        if len(out) == 1:
            data = out[0]
        else:
            data = b"".join(out)
        out.clear()
        return data

    def written(self) -> None:
        """The owner's transport took everything handed over so far: nothing is queued."""
        self.held_frames = 0
        self.control = 0

    def flooded(self) -> str | None:
        """The outbound limit exceeded, as the stat that counts it, or None."""
        if self.control > self.max_control:
            return "outbound_control_flood"
        if self.held_frames + len(self.out) > self.max_frames:
            return "outbound_flood"
        return None

    def next_stream_id(self) -> int:
        sid = self.next_sid
        self.next_sid = sid + 2
        return sid

    def send_headers(self, sid: int, fields: Sequence[tuple[bytes, bytes]], end_stream: bool = False) -> None:
        s = self.streams.get(sid)
        if s is None:
            if not self.client or sid % 2 == 0:
                raise StreamGone(sid)
            s = Stream(sid, self.remote_initial_window, self.local_initial_window)
            self.streams[sid] = s
        elif s.local:
            raise StreamGone(sid)
        block = self.encoder.encode(fields)
        n = len(block)
        if n <= self.remote_max_frame:
            self.out.append(_pack_head(n >> 16, n & 0xFFFF, HEADERS,
                                       _END_BLOCK_AND_STREAM if end_stream else END_HEADERS, sid) + block)
        else:
            maxf = self.remote_max_frame
            self.out.append(frame(HEADERS, END_STREAM if end_stream else 0, sid, block[:maxf]))
            off = maxf
            while off < n:
                chunk = block[off:off + maxf]
                off += maxf
                self.out.append(frame(CONTINUATION, END_HEADERS if off >= n else 0, sid, chunk))
        if end_stream:
            self._close_local(s)

    def window(self, sid: int) -> int:
        """How many DATA bytes may go out on `sid` now."""
        s = self.streams.get(sid)
        if s is None or s.local:
            return 0
        w = s.send_window
        c = self.send_window
        return w if w < c else c

    def send_data(self, sid: int, data: bytes, end_stream: bool = False) -> int:
        """Send what the windows allow of `data`, in frames the peer accepts; END_STREAM
        goes with the last byte if all of it went. The number of bytes sent."""
        s = self.streams.get(sid)
        if s is None or s.local:
            raise StreamGone(sid)
        n = len(data)
        if n and n <= s.send_window and n <= self.send_window and n <= self.remote_max_frame:
            # the common case: one frame
            self.out.append(_pack_head(n >> 16, n & 0xFFFF, DATA, END_STREAM if end_stream else 0, sid) + data)
            self.data_sent += 1
            s.send_window -= n
            self.send_window -= n
            if end_stream:
                s.local = CLOSED
                if s.remote:
                    del self.streams[sid]
            return n
        if not n:
            if end_stream:
                self.out.append(frame(DATA, END_STREAM, sid))
                self._close_local(s)
            return 0
        w = s.send_window
        c = self.send_window
        if c < w:
            w = c
        maxf = self.remote_max_frame
        out = self.out
        if w <= 0:
            return 0
        take = n if n < w else w
        off = 0
        while off < take:
            step = take - off
            if step > maxf:
                step = maxf
            last = off + step >= n
            out.append(frame(DATA, END_STREAM if (end_stream and last) else 0, sid, data[off:off + step]))
            self.data_sent += 1
            off += step
        s.send_window -= take
        self.send_window -= take
        if end_stream and take == n:
            self._close_local(s)
        return take

    def end_stream(self, sid: int) -> None:
        s = self.streams.get(sid)
        if s is None or s.local:
            raise StreamGone(sid)
        self.out.append(frame(DATA, END_STREAM, sid))
        self._close_local(s)

    def reset_stream(self, sid: int, code: int) -> None:
        """RST_STREAM, unless the stream is already closed both ways or reset."""
        s = self.streams.pop(sid, None)
        if s is None:
            return
        self.out.append(frame(RST_STREAM, 0, sid, _pack_u32(code)))
        self.control += 1

    def ack(self, sid: int, n: int) -> None:
        """The owner consumed `n` flow-controlled bytes of `sid`: give the window back,
        in updates of at least half a window so a busy stream is not a frame per DATA."""
        if n <= 0:
            return
        u = self.recv_unacked + n
        if u >= self.conn_window_target >> 1:
            self.recv_unacked = 0
            self.recv_window += u
            self.out.append(frame(WINDOW_UPDATE, 0, 0, _pack_u32(u)))
        else:
            self.recv_unacked = u
        s = self.streams.get(sid)
        if s is None or s.remote:
            return       # nothing more will come on it
        u = s.unacked + n
        if u >= self.local_initial_window >> 1:
            s.unacked = 0
            s.recv_window += u
            self.out.append(frame(WINDOW_UPDATE, 0, sid, _pack_u32(u)))
        else:
            s.unacked = u

    def goaway(self, code: int = NO_ERROR, last_stream_id: int | None = None) -> None:
        """GOAWAY; the connection stays usable for the streams already accepted."""
        if last_stream_id is None:
            last_stream_id = self.highest_inbound
        self.out.append(frame(GOAWAY, 0, 0, _pack_goaway(last_stream_id, code)))

    def _close_local(self, s: Stream) -> None:
        s.local = CLOSED
        if s.remote:
            del self.streams[s.sid]

    def _close_remote(self, s: Stream) -> None:
        s.remote = CLOSED
        if s.local:
            self.streams.pop(s.sid, None)

    # ------------------------------------------------------------------ receiving
    def feed(self, data: bytes) -> None:
        """Parse what arrived; raises H2ConnectionError after queuing the GOAWAY it warrants."""
        if self.closed:
            return
        buf = self.buf + data if self.buf else data
        pos = 0
        if self.preface_left:
            need = self.preface_left
            got = buf[:need]
            start = len(PREFACE) - need
            if got != PREFACE[start:start + len(got)]:
                self._fail(PROTOCOL_ERROR, "invalid connection preface")
            if len(got) < need:
                self.preface_left = need - len(got)
                self.buf = b""
                return
            self.preface_left = 0
            pos = need
        n = len(buf)
        maxf = self.local_max_frame
        try:
            while n - pos >= 9:
                high, low, ftype, flags, sid = _unpack_head(buf, pos)
                length = (high << 16) | low
                if length > maxf:
                    self._fail(FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
                end = pos + 9 + length
                if end > n:
                    break
                sid &= 0x7FFFFFFF
                payload = buf[pos + 9:end]
                pos = end
                if not self.settings_seen:
                    if ftype != SETTINGS or flags & ACK:
                        self._fail(PROTOCOL_ERROR, "the first frame must be SETTINGS")
                    self.settings_seen = True
                if self.block_sid and ftype != CONTINUATION:
                    self._fail(PROTOCOL_ERROR, "header block interrupted")
                if ftype == DATA:
                    self._on_data(sid, flags, payload)
                elif ftype == HEADERS:
                    if flags & _PLAIN_BLOCK == END_HEADERS and sid:
                        self.empty_run = 0
                        self._on_block(sid, flags, payload)      # the usual block: one plain frame
                    else:
                        self._on_headers(sid, flags, payload)
                elif ftype == WINDOW_UPDATE:
                    self._on_window_update(sid, payload)
                elif ftype == SETTINGS:
                    self._on_settings(sid, flags, payload)
                elif ftype == RST_STREAM:
                    self._on_rst(sid, payload)
                elif ftype == PING:
                    if sid:
                        self._fail(PROTOCOL_ERROR, "PING on a stream")
                    if length != 8:
                        self._fail(FRAME_SIZE_ERROR, "PING length")
                    if not flags & ACK:
                        self.out.append(frame(PING, ACK, 0, payload))
                        self.control += 1
                elif ftype == CONTINUATION:
                    self._on_continuation(sid, flags, payload)
                elif ftype == PRIORITY:
                    if not sid:
                        self._fail(PROTOCOL_ERROR, "PRIORITY on stream 0")
                    if length != 5:
                        self._fail(FRAME_SIZE_ERROR, "PRIORITY length")
                    lim = self.limits.max_priority_per_stream
                    if lim is not None:
                        self.priority_frames += 1
                        if self.priority_frames > lim * (1 + ((self.highest_inbound + 1) >> 1)):
                            self._fail(ENHANCE_YOUR_CALM, "too many PRIORITY frames",
                                       "inbound_priority_frames_flood")
                elif ftype == GOAWAY:
                    if sid:
                        self._fail(PROTOCOL_ERROR, "GOAWAY on a stream")
                    if length < 8:
                        self._fail(FRAME_SIZE_ERROR, "GOAWAY length")
                    last, code = struct.unpack_from(">II", payload)
                    self.goaway_received = True
                    self.sink.on_goaway(last & 0x7FFFFFFF, code)
                elif ftype == PUSH_PROMISE:
                    # we never allow push (ENABLE_PUSH 0), and a client may not push at all
                    self._fail(PROTOCOL_ERROR, "PUSH_PROMISE")
                # unknown frame types are ignored (RFC 9113 §5.5)
            if self.control > self.max_control or self.held_frames + len(self.out) > self.max_frames:
                self._fail(ENHANCE_YOUR_CALM, "peer does not read what it asks for", self.flooded())
        finally:
            if not self.closed:
                self.buf = buf[pos:] if pos < n else b""

    def _fail(self, code: int, detail: str, kind: str | None = None) -> NoReturn:
        if not self.closed:
            self.closed = True
            self.buf = b""
            self.block_parts = []
            self.out.append(frame(GOAWAY, 0, 0, _pack_goaway(self.highest_inbound, code)))
        raise H2ConnectionError(code, detail, kind)

    def _empty(self, empty: bool) -> None:
        """An empty DATA/HEADERS/CONTINUATION without END_STREAM extends the run."""
        if not empty:
            self.empty_run = 0
            return
        self.empty_run += 1
        if self.empty_run > self.max_empty:
            self._fail(ENHANCE_YOUR_CALM, "empty frames in a row", "inbound_empty_frames_flood")

    def _stream_error(self, sid: int, code: int) -> None:
        s = self.streams.pop(sid, None)
        self.out.append(frame(RST_STREAM, 0, sid, _pack_u32(code)))
        self.control += 1
        if s is not None:
            self.sink.on_reset(sid, code)

    def _is_idle(self, sid: int) -> bool:
        if self.client:
            return sid >= self.next_sid if sid % 2 else True
        return sid > self.highest_inbound if sid % 2 else True

    def _on_data(self, sid: int, flags: int, payload: bytes) -> None:
        if not sid:
            self._fail(PROTOCOL_ERROR, "DATA on stream 0")
        flow = len(payload)
        if flow > self.recv_window:
            self._fail(FLOW_CONTROL_ERROR, "connection window exceeded")
        self.recv_window -= flow
        if flags & PADDED:
            if not payload:
                self._fail(FRAME_SIZE_ERROR, "padded DATA without a pad length")
            pad = payload[0]
            if pad >= flow:
                self._fail(PROTOCOL_ERROR, "padding longer than the frame")
            payload = payload[1:flow - pad]
        self._empty(not payload and not flags & END_STREAM)
        s = self.streams.get(sid)
        if s is None or s.remote:
            if s is None and self._is_idle(sid):
                self._fail(PROTOCOL_ERROR, "DATA on an idle stream")
            # a stream closed or reset: its bytes still count on the connection (RFC 9113 §6.9)
            self.ack(0, flow)
            if s is not None:
                self._stream_error(sid, STREAM_CLOSED)
            return
        if flow > s.recv_window:
            self.ack(0, flow)
            self._stream_error(sid, FLOW_CONTROL_ERROR)
            return
        s.recv_window -= flow
        end = flags & END_STREAM
        left = s.body_left
        if left is not None:
            left -= len(payload)
            s.body_left = left
            if left < 0 or (end and left):
                # malformed (RFC 9113 §8.1.1): the body disagrees with its content-length
                self.ack(0, flow)
                self._stream_error(sid, PROTOCOL_ERROR)
                return
        if end:
            self._close_remote(s)
        self.sink.on_data(sid, payload, flow, end == END_STREAM)

    def _on_headers(self, sid: int, flags: int, payload: bytes) -> None:
        if not sid:
            self._fail(PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & (PADDED | PRIORITY_FLAG):
            start = 0
            end = len(payload)
            if flags & PADDED:
                if not payload:
                    self._fail(FRAME_SIZE_ERROR, "padded HEADERS without a pad length")
                end -= payload[0]
                start = 1
            if flags & PRIORITY_FLAG:
                if end - start < 5:
                    self._fail(FRAME_SIZE_ERROR, "HEADERS priority fields truncated")
                start += 5
            if end < start:
                self._fail(PROTOCOL_ERROR, "padding longer than the frame")
            payload = payload[start:end]
        self._empty(not payload and not flags & END_STREAM)
        if flags & END_HEADERS:
            self._on_block(sid, flags, payload)
        else:
            if len(payload) > self.max_block:
                self._fail(ENHANCE_YOUR_CALM, "header block too large", "header_overflow")
            self.block_sid = sid
            self.block_flags = flags
            self.block_parts = [payload]
            self.block_size = len(payload)

    def _on_continuation(self, sid: int, flags: int, payload: bytes) -> None:
        if not self.block_sid or sid != self.block_sid:
            self._fail(PROTOCOL_ERROR, "unexpected CONTINUATION")
        self._empty(not payload)
        self.block_size += len(payload)
        if self.block_size > self.max_block:
            # refused before it is kept: an unfinished block pins at most max_block bytes
            self._fail(ENHANCE_YOUR_CALM, "header block too large", "header_overflow")
        self.block_parts.append(payload)
        if flags & END_HEADERS:
            block = b"".join(self.block_parts)
            self.block_sid = 0
            self.block_parts = []
            self._on_block(sid, self.block_flags, block)

    def _on_block(self, sid: int, flags: int, block: bytes) -> None:
        # decoded whatever becomes of the stream: the HPACK tables must stay in step
        too_large = False
        try:
            fields = self.decoder.decode(block)
        except HpackError as e:
            self._fail(COMPRESSION_ERROR, str(e))
        except TooManyHeaders:
            fields = None
            too_large = True
            self.refusal = "too_many_headers"
        except HeaderListTooLarge:
            fields = None
            too_large = True
            self.refusal = "header_overflow"
        end = flags & END_STREAM
        s = self.streams.get(sid)
        if s is None:
            if self.client or sid % 2 == 0:
                if self._is_idle(sid):
                    self._fail(PROTOCOL_ERROR, "HEADERS on an idle stream")
                return      # a stream we reset or finished: ignored
            if sid <= self.highest_inbound:
                if fields and fields[0][0][:1] == b":":
                    # a new request on a used id (trailers carry no pseudo-header)
                    self._fail(PROTOCOL_ERROR, "stream id not above those used (RFC 9113 §5.1.1)",
                               "rx_messaging_error")
                return      # trailers of a stream closed or reset by us: ignored (RFC 9113 §5.1)
            self.highest_inbound = sid
            if not too_large:
                # a new request, the usual block: the stream starts with its head
                self.streams[sid] = Stream(sid, self.remote_initial_window, self.local_initial_window,
                                           CLOSED if end else OPEN, True)
                # fields is None only with too_large, answered below
                self.sink.on_headers(sid, fields, end == END_STREAM)  # type: ignore[arg-type]
                return
            s = Stream(sid, self.remote_initial_window, self.local_initial_window)
            self.streams[sid] = s
        elif s.remote:
            self._stream_error(sid, STREAM_CLOSED)
            return
        if too_large:
            if end:
                self._close_remote(s)
            self.sink.on_header_list_too_large(sid)
            return
        if not s.got_head:
            if self.client and fields and fields[0][0] == b":status" and fields[0][1][:1] == b"1":
                if end:
                    self._stream_error(sid, PROTOCOL_ERROR)
                return      # informational (1xx): the final head is still to come
            s.got_head = True
            if end:
                self._close_remote(s)
            self.sink.on_headers(sid, fields, bool(end))  # type: ignore[arg-type]  # too_large returned above
            return
        if not end:
            # a second block must be trailers, and trailers end the stream (RFC 9113 §8.1)
            self._stream_error(sid, PROTOCOL_ERROR)
            return
        self._close_remote(s)
        self.sink.on_trailers(sid, fields)  # type: ignore[arg-type]  # as above

    def expect_length(self, sid: int, n: int) -> None:
        """The peer announced content-length `n` for the body of `sid`: a body that
        disagrees is a stream error."""
        s = self.streams.get(sid)
        if s is not None:
            s.body_left = n

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            self._fail(FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        inc = _unpack_u32(payload)[0] & 0x7FFFFFFF
        lim = self.limits.max_window_updates_per_data
        if lim is not None:
            self.window_updates += 1
            if self.window_updates > 5 + 2 * ((self.highest_inbound + 1) // 2 + lim * self.data_sent):
                self._fail(ENHANCE_YOUR_CALM, "too many WINDOW_UPDATE frames",
                           "inbound_window_update_frames_flood")
        if not sid:
            if inc == 0:
                self._fail(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            w = self.send_window + inc
            if w > MAX_WINDOW:
                self._fail(FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            self.send_window = w
            self.sink.on_window(0)
            return
        s = self.streams.get(sid)
        if s is None:
            if self._is_idle(sid):
                self._fail(PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return
        if inc == 0:
            self._stream_error(sid, PROTOCOL_ERROR)
            return
        w = s.send_window + inc
        if w > MAX_WINDOW:
            self._stream_error(sid, FLOW_CONTROL_ERROR)
            return
        s.send_window = w
        self.sink.on_window(sid)

    def _on_rst(self, sid: int, payload: bytes) -> None:
        if not sid:
            self._fail(PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            self._fail(FRAME_SIZE_ERROR, "RST_STREAM length")
        s = self.streams.pop(sid, None)
        if s is None:
            if self._is_idle(sid):
                self._fail(PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            return
        self.peer_reset = True
        try:
            self.sink.on_reset(sid, _unpack_u32(payload)[0])
        finally:
            self.peer_reset = False

    def _on_settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid:
            self._fail(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                self._fail(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            if self.pending_local:
                w = self.pending_local.pop(0)
                if w >= 0 and w != self.local_initial_window:
                    delta = w - self.local_initial_window
                    self.local_initial_window = w
                    for s in self.streams.values():
                        s.recv_window += delta
            return
        if len(payload) % 6:
            self._fail(FRAME_SIZE_ERROR, "SETTINGS length")
        self._apply_settings(payload, notify=True)
        self.out.append(frame(SETTINGS, ACK, 0))
        self.control += 1

    def _apply_settings(self, payload: bytes, notify: bool) -> None:
        window_changed = False
        for off in range(0, len(payload), 6):
            k, v = _unpack_setting(payload, off)
            if k == INITIAL_WINDOW_SIZE:
                if v > MAX_WINDOW:
                    self._fail(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1")
                delta = v - self.remote_initial_window
                if delta:
                    self.remote_initial_window = v
                    for s in self.streams.values():
                        w = s.send_window + delta
                        if w > MAX_WINDOW:
                            self._fail(FLOW_CONTROL_ERROR, "stream window above 2^31-1")
                        s.send_window = w
                    window_changed = delta > 0
            elif k == MAX_FRAME_SIZE:
                if v < DEFAULT_FRAME or v > 16777215:
                    self._fail(PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self.remote_max_frame = v
            elif k == MAX_CONCURRENT_STREAMS:
                self.remote_max_streams = v
            elif k == HEADER_TABLE_SIZE:
                self.encoder.set_max_table(v)
            elif k == ENABLE_PUSH:
                if v > 1:
                    self._fail(PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH not 0 or 1")
            elif k == MAX_HEADER_LIST_SIZE:
                self.remote_max_header_list = v
        if notify:
            self.sink.on_settings()
            if window_changed:
                self.sink.on_window(0)


class StreamGone(Exception):
    """A frame was asked for on a stream that is closed on our side or reset."""
