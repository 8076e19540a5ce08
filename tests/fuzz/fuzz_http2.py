"""Fuzz the HTTP/2 connection (proxy/codec/http2_connection.py) as a server fed a
client's bytes, with a sink that answers as proxy/http2/server.py does: each
request block is validated (proxy/codec/http2.py), a malformed one reset, a
declared content-length enforced, DATA acknowledged, a finished request answered.

Input: byte 0 flags (bit 0: send the client preface first; bit 1: then an empty
SETTINGS frame), byte 1 how many of the next bytes are cut points, then the bytes.

Properties:
- only H2ConnectionError leaves the connection (H2HeadError and StreamGone are
  the codec's own and are handled by the sink, as the server does);
- the sink's calls and the bytes queued to send are the same for the bytes fed
  whole and fed in pieces.

    python tests/fuzz/fuzz_http2.py -max_total_time=60 tests/fuzz/corpus/http2
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzzing import fuzz, instrumented, split  # noqa: E402

with instrumented(__name__ == "__main__", "mosnx", "hpack"):
    from mosnx.proxy.codec import http2
    from mosnx.proxy.codec.http2 import H2HeadError, request_parts, trailers_from_block
    from mosnx.proxy.codec.http2_connection import (
        INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE, PREFACE, PROTOCOL_ERROR, SETTINGS,
        H2Connection, H2ConnectionError, StreamGone, frame)

SERVER_SETTINGS = {MAX_CONCURRENT_STREAMS: 100, MAX_HEADER_LIST_SIZE: 8192, INITIAL_WINDOW_SIZE: 65535}
ANSWER = [(b":status", b"200"), (b"content-length", b"2")]


class Server:
    """The sink: records every call and answers as the proxy's HTTP/2 server does."""

    def __init__(self):
        self.events: list[tuple] = []
        self.h2 = H2Connection(self, False, SERVER_SETTINGS, 1 << 20)

    def _answer(self, sid: int) -> None:
        try:
            self.h2.send_headers(sid, ANSWER)
            self.h2.send_data(sid, b"ok", True)
        except StreamGone:
            self.events.append(("gone", sid))

    def on_headers(self, sid, fields, end):
        self.events.append(("headers", sid, list(fields), end))
        try:
            parts = request_parts(fields)
        except H2HeadError as e:
            self.events.append(("malformed", sid, e.detail))
            self.h2.reset_stream(sid, PROTOCOL_ERROR)
            return
        if not end and parts[5] is not None:
            self.h2.expect_length(sid, parts[5])
        if end:
            self._answer(sid)

    def on_trailers(self, sid, fields):
        self.events.append(("trailers", sid, list(fields)))
        try:
            trailers_from_block(fields, validate=True)
        except H2HeadError as e:
            self.events.append(("malformed", sid, e.detail))
            self.h2.reset_stream(sid, PROTOCOL_ERROR)
            return
        self._answer(sid)

    def on_data(self, sid, data, flow_len, end):
        self.events.append(("data", sid, bytes(data), flow_len, end))
        if flow_len:
            self.h2.ack(sid, flow_len)
        if end:
            self._answer(sid)

    def on_reset(self, sid, code):
        self.events.append(("reset", sid, code))

    def on_window(self, sid):
        self.events.append(("window", sid))

    def on_settings(self):
        self.events.append(("settings",))

    def on_goaway(self, last, code):
        self.events.append(("goaway", last, code))

    def on_header_list_too_large(self, sid):
        self.events.append(("too_large", sid))
        try:
            self.h2.send_headers(sid, [(b":status", b"431"), (b"content-length", b"0")], True)
        except StreamGone:
            return
        self.h2.reset_stream(sid, 0)


def run(pieces: list[bytes]) -> tuple[list[tuple], bytes]:
    s = Server()
    s.h2.initiate()
    out = [s.h2.data_to_send()]
    for piece in pieces:
        try:
            s.h2.feed(piece)
        except H2ConnectionError as e:
            s.events.append(("connection_error", e.code, e.detail))
            break
        finally:
            out.append(s.h2.data_to_send())
    return s.events, b"".join(out)


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    flags = data[0]
    ncuts = data[1] & 31
    cuts, payload = data[2:2 + ncuts], data[2 + ncuts:]
    if flags & 2:
        payload = frame(SETTINGS, 0, 0) + payload
    if flags & 1:
        payload = PREFACE + payload
    # each input starts from empty memos, so it replays the same way on its own
    http2._parts_memo.clear()
    whole = run([payload])
    pieces = run(split(payload, cuts))
    assert pieces[0] == whole[0], f"events differ when fed in pieces:\n{pieces[0]}\n!=\n{whole[0]}"
    assert pieces[1] == whole[1], "bytes sent differ when fed in pieces"


if __name__ == "__main__":
    fuzz(test_one_input)
