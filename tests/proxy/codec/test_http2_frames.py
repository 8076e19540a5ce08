"""The HTTP/2 wire vocabulary: a frame header is nine bytes (24-bit length, type,
flags, 31-bit stream id, RFC 9113 §4.1), and a connection keeps no abuse limit
unless its owner sets one."""
from __future__ import annotations

from mosnx.proxy.codec.http2_frames import (DATA, END_STREAM, HEADERS, MAX_BLOCK, OPEN, SETTINGS, H2ConnectionError,
                                            H2Limits, Stream, frame)


def test_a_frame_is_its_nine_byte_header_and_payload():
    assert frame(SETTINGS, 0, 0) == b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    big = b"x" * 70000                          # a length past 16 bits uses the third byte
    head = frame(DATA, END_STREAM, 3, big)[:9]
    assert head == (70000).to_bytes(3, "big") + bytes([DATA, END_STREAM]) + (3).to_bytes(4, "big")
    assert frame(HEADERS, 0x4, 1, b"ab")[9:] == b"ab"


def test_limits_are_off_unless_set():
    limits = H2Limits()
    assert limits.max_block == MAX_BLOCK and limits.max_outbound_frames is None
    assert limits.max_empty_frames is None and limits.max_window_updates_per_data is None


def test_a_connection_error_names_its_code_and_the_stat_it_counts():
    e = H2ConnectionError(0xB, "too many empty frames", "inbound_empty_frames_flood")
    assert (e.code, e.kind) == (0xB, "inbound_empty_frames_flood") and "error 11" in str(e)


def test_a_new_stream_has_both_halves_open():
    s = Stream(1, 65535, 65535)
    assert (s.local, s.remote, s.unacked, s.body_left) == (OPEN, OPEN, 0, None)
