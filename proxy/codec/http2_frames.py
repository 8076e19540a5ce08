"""The wire vocabulary of HTTP/2 (RFC 9113) that a connection speaks: frame types,
flags, error codes and settings; the frame header; the limits a connection keeps
against a hostile peer and the error it raises when one is passed; the record of
one stream; and what a connection calls on its owner (H2Sink).

Data and pure functions only; the state machine that moves them is
codec.http2_connection.
"""
from __future__ import annotations

import struct
from typing import Protocol, Sequence

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
# flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# error codes
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

# settings
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65535
MAX_WINDOW = 2 ** 31 - 1
DEFAULT_FRAME = 16384
# a header block may span CONTINUATION frames; beyond this much compressed, the peer is abusing it
MAX_BLOCK = 1 << 20

# a frame header: the 24-bit length as a byte and a 16-bit half, type, flags, stream id
_pack_head = struct.Struct(">BHBBI").pack

# stream halves
OPEN, CLOSED = 0, 1


class H2ConnectionError(Exception):
    """A connection error: a GOAWAY with `code` is queued; the owner flushes and closes.
    `kind`: the stat a limit counts (Envoy's http2.* name), or None for other violations."""

    def __init__(self, code: int, detail: str, kind: str | None = None):
        super().__init__(f"{detail} (error {code})")
        self.code = code
        self.detail = detail
        self.kind = kind


class H2Limits:
    """Abuse limits of one connection (see the module docstring); None: no limit."""

    __slots__ = ("max_block", "max_fields", "max_outbound_frames", "max_outbound_control_frames",
                 "max_empty_frames", "max_priority_per_stream", "max_window_updates_per_data")

    def __init__(self, max_block: int = MAX_BLOCK, max_fields: int = 1 << 30,
                 max_outbound_frames: int | None = None, max_outbound_control_frames: int | None = None,
                 max_empty_frames: int | None = None, max_priority_per_stream: int | None = None,
                 max_window_updates_per_data: int | None = None):
        self.max_block = max_block
        self.max_fields = max_fields
        self.max_outbound_frames = max_outbound_frames
        self.max_outbound_control_frames = max_outbound_control_frames
        self.max_empty_frames = max_empty_frames
        self.max_priority_per_stream = max_priority_per_stream
        self.max_window_updates_per_data = max_window_updates_per_data


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _pack_head(n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


class Stream:
    """Per-stream state: the two halves, the windows, the body accounting."""

    __slots__ = ("sid", "local", "remote", "send_window", "recv_window", "unacked", "got_head",
                 "body_left")

    def __init__(self, sid: int, send_window: int, recv_window: int, remote: int = OPEN,
                 got_head: bool = False):
        self.sid = sid
        self.local = OPEN              # our half: END_STREAM not sent yet
        self.remote = remote           # the peer's half
        self.send_window = send_window
        self.recv_window = recv_window  # what the peer may still send before our WINDOW_UPDATE
        self.unacked = 0               # consumed by the owner, not yet given back
        self.got_head = got_head       # a final header block arrived: the next one is trailers
        self.body_left: int | None = None  # body bytes still due by the peer's content-length


class H2Sink(Protocol):
    """What a connection calls (the module docstring says when); the server connection
    and the upstream connection implement it."""

    def on_headers(self, sid: int, fields: Sequence[tuple[bytes, bytes]], end_stream: bool, /) -> None: ...

    def on_trailers(self, sid: int, fields: Sequence[tuple[bytes, bytes]], /) -> None: ...

    def on_data(self, sid: int, data: bytes, flow_len: int, end_stream: bool, /) -> None: ...

    def on_reset(self, sid: int, code: int, /) -> None: ...

    def on_window(self, sid: int, /) -> None: ...

    def on_settings(self) -> None: ...

    def on_goaway(self, last_stream_id: int, code: int, /) -> None: ...

    def on_header_list_too_large(self, sid: int, /) -> None: ...
