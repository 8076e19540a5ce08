"""proxy/codec/http2_connection.py: raw frames in, sink calls and frames out, on both
ends; the connection and stream errors RFC 9113 asks for."""
from __future__ import annotations

import base64
import struct

import hpack
import pytest

from mosnx.proxy.codec import http2_connection as h2c
from mosnx.proxy.codec.http2_connection import PREFACE, H2Connection, H2ConnectionError, StreamGone

REQ = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.test"), (b":path", b"/x")]


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes((ftype, flags)) + struct.pack(">I", sid) + payload


def settings(**kv):
    codes = {"window": 4, "streams": 3, "frame": 5, "table": 1, "push": 2, "list": 6}
    return frame(4, 0, 0, b"".join(struct.pack(">HI", codes[k], v) for k, v in kv.items()))


def parse(data: bytes):
    """Frames as (type, flags, stream, payload)."""
    out = []
    while data:
        n = int.from_bytes(data[:3], "big")
        out.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF, data[9:9 + n]))
        data = data[9 + n:]
    return out


def settings_of(payload: bytes) -> dict:
    return dict(struct.unpack(">HI", payload[i:i + 6]) for i in range(0, len(payload), 6))


class Sink:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if not name.startswith("on_"):
            raise AttributeError(name)
        # a decoded block may be a shared tuple: compared here as a list
        return lambda *a: self.calls.append((name[3:],) + tuple(list(x) if isinstance(x, tuple) else x for x in a))


class Peer:
    """The other end: its own HPACK encoder, so blocks are made independently of ours."""

    def __init__(self):
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()

    def headers(self, sid, fields, end=True, flags=0x4):
        return frame(1, flags | (1 if end else 0), sid, self.enc.encode(fields))


def server(**settings_kw):
    sink = Sink()
    c = H2Connection(sink, False, settings_kw.pop("settings", None), **settings_kw)
    c.initiate()
    out = parse(c.data_to_send())
    c.feed(PREFACE + settings())
    sent = parse(c.data_to_send())
    assert sent == [(4, 1, 0, b"")]          # our ACK of the client's SETTINGS
    return c, sink, out


def errors(c, data, code):
    with pytest.raises(H2ConnectionError) as e:
        c.feed(data)
    assert e.value.code == code
    frames = parse(c.data_to_send())
    assert frames[-1][0] == 7 and struct.unpack(">II", frames[-1][3])[1] == code
    return frames


# ------------------------------------------------------------------ server side
def test_server_preface_settings_and_window():
    c, sink, out = server(settings={h2c.MAX_CONCURRENT_STREAMS: 7, h2c.MAX_HEADER_LIST_SIZE: 4096},
                          connection_window=1 << 20)
    assert out[0][0] == 4 and settings_of(out[0][3]) == {3: 7, 4: 65535, 6: 4096}
    assert out[1] == (8, 0, 0, struct.pack(">I", (1 << 20) - 65535))
    assert sink.calls == [("settings",)]


def test_request_headers_and_body_reach_the_sink_byte_by_byte():
    sink = Sink()
    c = H2Connection(sink, False)
    c.initiate()
    p = Peer()
    wire = (PREFACE + settings() + p.headers(1, REQ + [(b"content-length", b"5")], end=False)
            + frame(0, 0, 1, b"hel") + frame(0, 1, 1, b"lo"))
    for i in range(len(wire)):
        c.feed(wire[i:i + 1])
    assert sink.calls[1] == ("headers", 1, REQ + [(b"content-length", b"5")], False)
    assert sink.calls[2:] == [("data", 1, b"hel", 3, 0), ("data", 1, b"lo", 2, 1)]


def test_ping_is_answered_and_priority_ignored():
    c, sink, _ = server()
    c.feed(frame(6, 0, 0, b"12345678") + frame(2, 0, 3, b"\0\0\0\0\x10"))
    assert parse(c.data_to_send()) == [(6, 1, 0, b"12345678")]
    errors(c, frame(2, 0, 3, b"\0\0\0"), h2c.FRAME_SIZE_ERROR)


@pytest.mark.parametrize("wire,code", [
    (b"GET / HTTP/1.1\r\n\r\n" + b"x" * 20, h2c.PROTOCOL_ERROR),                   # not the preface
    (PREFACE + frame(6, 0, 0, b"12345678"), h2c.PROTOCOL_ERROR),                    # SETTINGS must be first
])
def test_bad_connection_start(wire, code):
    c = H2Connection(Sink(), False)
    c.initiate()
    c.data_to_send()
    errors(c, wire, code)


def test_continuation_joins_a_block_and_may_not_be_interrupted():
    c, sink, _ = server()
    p = Peer()
    block = p.enc.encode(REQ + [(b"x-long", b"v" * 100)])
    c.feed(frame(1, 1, 1, block[:10]) + frame(9, 0, 1, block[10:50]) + frame(9, 4, 1, block[50:]))
    assert sink.calls[-1] == ("headers", 1, REQ + [(b"x-long", b"v" * 100)], True)
    c.feed(frame(1, 1, 3, p.enc.encode(REQ)[:2]))
    errors(c, frame(0, 0, 3, b"x"), h2c.PROTOCOL_ERROR)


def test_padding_on_headers_and_data_counts_against_the_window():
    c, sink, _ = server()
    p = Peer()
    block = p.enc.encode(REQ)
    # PADDED | PRIORITY | END_HEADERS: pad length, 5 priority bytes, block, padding
    c.feed(frame(1, 0x8 | 0x20 | 0x4, 1, b"\x03" + b"\0\0\0\0\x10" + block + b"\0\0\0"))
    assert sink.calls[-1] == ("headers", 1, REQ, False)
    c.feed(frame(0, 0x8, 1, b"\x04data\0\0\0\0"))
    assert sink.calls[-1] == ("data", 1, b"data", 9, 0)
    errors(c, frame(0, 0x8, 1, b"\x05abc"), h2c.PROTOCOL_ERROR)


def test_ack_gives_windows_back_in_half_window_updates():
    c, sink, _ = server(settings={h2c.INITIAL_WINDOW_SIZE: 1000}, connection_window=4000)
    c.data_to_send()
    c.feed(frame(4, 1, 0))           # the client acknowledges our SETTINGS: 1000 binds it now
    p = Peer()
    c.feed(p.headers(1, REQ, end=False))
    c.feed(frame(0, 0, 1, b"x" * 400))
    c.ack(1, 400)
    assert parse(c.data_to_send()) == []
    c.feed(frame(0, 0, 1, b"x" * 200))
    c.ack(1, 200)
    assert parse(c.data_to_send()) == [(8, 0, 1, struct.pack(">I", 600))]
    # the stream window is 1000: 1001 bytes more than it allows is that stream's error only
    c.feed(frame(0, 0, 1, b"x" * 1001))
    assert parse(c.data_to_send()) == [(3, 0, 1, struct.pack(">I", h2c.FLOW_CONTROL_ERROR))]
    assert sink.calls[-1] == ("reset", 1, h2c.FLOW_CONTROL_ERROR)


def test_connection_window_overrun_is_a_connection_error():
    c, sink, _ = server()
    p = Peer()
    c.feed(p.headers(1, REQ, end=False) + p.headers(3, REQ, end=False))
    c.feed(frame(0, 0, 1, b"x" * 16384) * 3 + frame(0, 0, 3, b"x" * 16383))
    errors(c, frame(0, 0, 3, b"x" * 100), h2c.FLOW_CONTROL_ERROR)


def test_send_data_respects_stream_and_connection_windows():
    c, sink, _ = server()
    c.feed(settings(window=10))
    c.data_to_send()
    p = Peer()
    c.feed(p.headers(1, REQ) + p.headers(3, REQ))
    c.send_headers(1, [(b":status", b"200")])
    c.send_headers(3, [(b":status", b"200")])
    c.data_to_send()
    assert c.send_data(1, b"a" * 25, True) == 10          # a slow reader: its own window is spent
    assert c.send_data(3, b"b" * 4) == 4                  # yet the other stream flows
    assert c.window(1) == 0
    c.feed(frame(8, 0, 1, struct.pack(">I", 15)))
    assert sink.calls[-1] == ("window", 1)
    assert c.send_data(1, b"a" * 15, True) == 15
    frames = parse(c.data_to_send())
    assert [(t, f, s, len(pl)) for t, f, s, pl in frames if t == 0] == [(0, 0, 1, 10), (0, 0, 3, 4), (0, 1, 1, 15)]
    with pytest.raises(StreamGone):
        c.send_data(1, b"more")


def test_large_frames_are_split_at_the_peer_max_frame_size():
    c, sink, _ = server()
    c.feed(settings(window=1 << 20) + frame(8, 0, 0, struct.pack(">I", 1 << 20)))
    p = Peer()
    c.feed(p.headers(1, REQ))
    c.data_to_send()
    c.send_headers(1, [(b":status", b"200")] + [(b"x-h%d" % i, b"v" * 1000) for i in range(20)])
    assert c.send_data(1, b"z" * 40000, True) == 40000
    frames = parse(c.data_to_send())
    assert [t for t, *_ in frames] == [1, 9, 0, 0, 0]
    assert [len(pl) for t, f, s, pl in frames if t == 0] == [16384, 16384, 7232]
    assert frames[-1][1] == 1 and frames[1][1] == 4
    dec = hpack.Decoder()
    block = frames[0][3] + frames[1][3]
    assert dec.decode(block, raw=True)[0] == (b":status", b"200")


def test_initial_window_change_applies_to_open_streams():
    c, sink, _ = server()
    p = Peer()
    c.feed(p.headers(1, REQ))
    c.send_headers(1, [(b":status", b"200")])
    c.feed(settings(window=100))
    assert c.window(1) == 100
    c.feed(settings(window=200))
    assert c.window(1) == 200 and sink.calls[-1] == ("window", 0)


@pytest.mark.parametrize("wire,code", [
    (frame(0, 0, 5, b"x"), h2c.PROTOCOL_ERROR),                                      # DATA on an idle stream
    (frame(1, 5, 2, b"\x82"), h2c.PROTOCOL_ERROR),                                   # even id from a client
    (frame(8, 0, 0, struct.pack(">I", 2 ** 31 - 1)), h2c.FLOW_CONTROL_ERROR),        # connection window overflow
    (frame(8, 0, 0, struct.pack(">I", 0)), h2c.PROTOCOL_ERROR),
    (frame(0, 0, 1, b"x" * 16385), h2c.FRAME_SIZE_ERROR),                           # over SETTINGS_MAX_FRAME_SIZE
    (frame(4, 0, 0, b"\0\x05\0\0\0\x01"), h2c.PROTOCOL_ERROR),                       # MAX_FRAME_SIZE below 16384
    (settings(window=2 ** 31), h2c.FLOW_CONTROL_ERROR),
    (frame(4, 0, 0, b"\0\x01\0"), h2c.FRAME_SIZE_ERROR),
    (frame(4, 1, 0, b"\0\0\0\0\0\0"), h2c.FRAME_SIZE_ERROR),
    (frame(5, 4, 1, b"\0\0\0\x02\x82"), h2c.PROTOCOL_ERROR),                         # a client may not push
    (frame(9, 4, 1, b"\x82"), h2c.PROTOCOL_ERROR),                                   # CONTINUATION out of a block
    (frame(1, 5, 1, b"\xff\xff\xff\xff\x0f"), h2c.COMPRESSION_ERROR),                # index far out of range
    (frame(3, 0, 9, b"\0\0\0\x08"), h2c.PROTOCOL_ERROR),                             # RST_STREAM on an idle stream
    (frame(7, 0, 1, b"\0" * 8), h2c.PROTOCOL_ERROR),
    (frame(6, 0, 0, b"1234"), h2c.FRAME_SIZE_ERROR),
])
def test_connection_errors(wire, code):
    c, sink, _ = server()
    errors(c, wire, code)
    c.feed(frame(6, 0, 0, b"12345678"))      # nothing more is read after a connection error
    assert c.data_to_send() == b""


def test_stream_errors_reset_only_that_stream():
    c, sink, _ = server()
    p = Peer()
    c.feed(p.headers(1, REQ, end=False) + p.headers(3, REQ, end=False))
    c.send_headers(1, [(b":status", b"200")])
    c.send_headers(3, [(b":status", b"200")])
    c.data_to_send()
    c.feed(frame(8, 0, 1, struct.pack(">I", 2 ** 31 - 1)))     # stream window overflow
    assert parse(c.data_to_send()) == [(3, 0, 1, struct.pack(">I", h2c.FLOW_CONTROL_ERROR))]
    assert sink.calls[-1] == ("reset", 1, h2c.FLOW_CONTROL_ERROR)
    c.feed(p.headers(3, [(b"x-a", b"1")], end=False))          # trailers must end the stream
    assert parse(c.data_to_send()) == [(3, 0, 3, struct.pack(">I", h2c.PROTOCOL_ERROR))]
    c.feed(p.headers(5, REQ))
    assert sink.calls[-1][:2] == ("headers", 5)


def test_content_length_disagreeing_with_the_body_resets_the_stream():
    c, sink, _ = server()
    p = Peer()
    c.feed(p.headers(1, REQ + [(b"content-length", b"3")], end=False))
    c.expect_length(1, 3)
    c.feed(frame(0, 0, 1, b"ab") + frame(0, 1, 1, b"cd"))
    assert parse(c.data_to_send())[-1] == (3, 0, 1, struct.pack(">I", h2c.PROTOCOL_ERROR))
    assert sink.calls[-1] == ("reset", 1, h2c.PROTOCOL_ERROR)
    c.feed(p.headers(3, REQ, end=False))
    c.expect_length(3, 3)
    c.feed(frame(0, 1, 3, b"ab"))                               # short at the end
    assert sink.calls[-1] == ("reset", 3, h2c.PROTOCOL_ERROR)


def test_trailers_end_the_stream():
    c, sink, _ = server()
    p = Peer()
    c.feed(p.headers(1, REQ, end=False) + frame(0, 0, 1, b"x") + p.headers(1, [(b"x-sum", b"1")]))
    assert sink.calls[-1] == ("trailers", 1, [(b"x-sum", b"1")])


def test_peer_reset_then_late_frames_are_ignored_but_counted():
    c, sink, _ = server(connection_window=65535)
    p = Peer()
    c.feed(p.headers(1, REQ, end=False))
    c.feed(frame(3, 0, 1, struct.pack(">I", h2c.CANCEL)))
    assert sink.calls[-1] == ("reset", 1, h2c.CANCEL)
    c.feed(frame(0, 0, 1, b"x" * 16000) * 3)
    # no error, and the connection window came back for the bytes nobody reads
    assert parse(c.data_to_send()) == [(8, 0, 0, struct.pack(">I", 48000))]
    c.feed(p.headers(1, [(b"x-late", b"1")]))                   # HPACK still decoded, then ignored
    c.feed(p.headers(3, REQ + [(b"x-late", b"1")]))
    assert sink.calls[-1] == ("headers", 3, REQ + [(b"x-late", b"1")], True)


def test_oversized_header_list_keeps_hpack_in_step():
    c, sink, _ = server(settings={h2c.MAX_HEADER_LIST_SIZE: 300})
    p = Peer()
    c.feed(p.headers(1, REQ + [(b"x-big", b"v" * 400)]))
    assert sink.calls[-1] == ("header_list_too_large", 1)
    # the next block refers to the entry the refused one added to the dynamic table
    c.feed(p.headers(3, REQ + [(b"x-ok", b"1")]))
    assert sink.calls[-1] == ("headers", 3, REQ + [(b"x-ok", b"1")], True)


def test_goaway_received_keeps_streams_going():
    c, sink, _ = server()
    p = Peer()
    c.feed(p.headers(1, REQ, end=False))
    c.feed(frame(7, 0, 0, struct.pack(">II", 1, 0)))
    assert sink.calls[-1] == ("goaway", 1, 0)
    c.feed(frame(0, 1, 1, b"body"))
    assert sink.calls[-1] == ("data", 1, b"body", 4, 1)
    c.send_headers(1, [(b":status", b"200")], True)
    c.goaway()
    assert parse(c.data_to_send())[-1] == (7, 0, 0, struct.pack(">II", 1, 0))


def test_upgrade_takes_settings_from_the_header_and_answers_on_stream_1():
    sink = Sink()
    c = H2Connection(sink, False)
    raw = struct.pack(">HI", 4, 100) + struct.pack(">HI", 5, 32768)
    c.initiate_upgrade(base64.urlsafe_b64encode(raw).rstrip(b"="))
    assert c.window(1) == 100 and c.remote_max_frame == 32768
    c.feed(PREFACE + settings())
    c.send_headers(1, [(b":status", b"200")])
    assert c.send_data(1, b"x" * 150, True) == 100
    frames = parse(c.data_to_send())
    assert (1, 4, 1) == frames[-2][:3] and frames[-1][:3] == (0, 0, 1)


# ------------------------------------------------------------------ client side
def client():
    sink = Sink()
    c = H2Connection(sink, True, {h2c.ENABLE_PUSH: 0, h2c.INITIAL_WINDOW_SIZE: 1 << 20}, 1 << 22)
    c.initiate()
    out = c.data_to_send()
    assert out.startswith(PREFACE)
    frames = parse(out[len(PREFACE):])
    assert settings_of(frames[0][3]) == {3: 100, 4: 1 << 20, 2: 0}
    c.feed(settings(streams=2))
    assert parse(c.data_to_send()) == [(4, 1, 0, b"")]
    assert c.remote_max_streams == 2 and sink.calls == [("settings",)]
    return c, sink


def test_client_request_response_trailers():
    c, sink = client()
    p = Peer()
    sid = c.next_stream_id()
    c.send_headers(sid, REQ)
    assert c.send_data(sid, b"body", True) == 4
    frames = parse(c.data_to_send())
    assert [(t, f, s) for t, f, s, _ in frames] == [(1, 4, 1), (0, 1, 1)]
    assert p.dec.decode(frames[0][3], raw=True) == REQ
    c.feed(p.headers(1, [(b":status", b"100")], end=False))           # informational: skipped
    c.feed(p.headers(1, [(b":status", b"200"), (b"x-a", b"1")], end=False))
    c.feed(frame(0, 0, 1, b"resp") + p.headers(1, [(b"grpc-status", b"0")]))
    assert sink.calls[1:] == [("headers", 1, [(b":status", b"200"), (b"x-a", b"1")], False),
                              ("data", 1, b"resp", 4, 0), ("trailers", 1, [(b"grpc-status", b"0")])]
    assert c.next_stream_id() == 3


def test_client_refuses_push_and_server_first_frame_must_be_settings():
    c, sink = client()
    c.send_headers(c.next_stream_id(), REQ)
    errors(c, frame(5, 4, 1, b"\0\0\0\x02\x82"), h2c.PROTOCOL_ERROR)
    c2 = H2Connection(Sink(), True)
    c2.initiate()
    c2.data_to_send()
    errors(c2, frame(6, 0, 0, b"12345678"), h2c.PROTOCOL_ERROR)


def test_client_reset_stream_and_late_response_ignored():
    c, sink = client()
    p = Peer()
    sid = c.next_stream_id()
    c.send_headers(sid, REQ, True)
    c.reset_stream(sid, h2c.CANCEL)
    assert parse(c.data_to_send())[-1] == (3, 0, 1, struct.pack(">I", h2c.CANCEL))
    c.feed(p.headers(1, [(b":status", b"200")]))
    assert sink.calls[-1] == ("settings",)
    errors(c, p.headers(5, [(b":status", b"200")]), h2c.PROTOCOL_ERROR)     # a stream never opened


# ------------------------------------------------------------------ abuse limits
LIMITS = dict(max_block=1000, max_fields=20, max_outbound_frames=50, max_outbound_control_frames=10,
              max_empty_frames=1, max_priority_per_stream=3, max_window_updates_per_data=2)


def limited(**over):
    c, sink, out = server(limits=h2c.H2Limits(**{**LIMITS, **over}))
    c.written()                           # the transport took the preface and the ACK
    return c, sink, out


def flood_kind(c, data, code=h2c.ENHANCE_YOUR_CALM):
    with pytest.raises(H2ConnectionError) as e:
        c.feed(data)
    assert e.value.code == code
    frames = parse(c.data_to_send())
    assert frames[-1][0] == 7 and struct.unpack(">II", frames[-1][3])[1] == code
    return e.value.kind


def test_an_unfinished_block_is_refused_as_its_fragments_pass_the_limit():
    c, sink, _ = limited()
    c.feed(frame(1, 1, 1, b"x" * 600))
    assert c.block_sid == 1 and sink.calls == [("settings",)]
    assert flood_kind(c, frame(9, 0, 1, b"x" * 401)) == "header_overflow"
    assert c.block_parts == []            # nothing of it is kept
    c2, _, _ = limited()
    assert flood_kind(c2, frame(1, 1, 1, b"x" * 1001)) == "header_overflow"


def test_too_many_fields_refuse_the_stream_not_the_connection():
    c, sink, _ = limited()
    p = Peer()
    c.feed(p.headers(1, REQ + [(b"x-%d" % i, b"v") for i in range(20)]))
    assert sink.calls[-1] == ("header_list_too_large", 1) and c.refusal == "too_many_headers"
    c.feed(p.headers(3, REQ))
    assert sink.calls[-1] == ("headers", 3, REQ, True)


def test_a_lower_or_reused_stream_id_for_a_request_is_a_connection_error():
    for reuse in (3, 5):
        c, sink, _ = server()
        p = Peer()
        c.feed(p.headers(5, REQ))
        c.send_headers(5, [(b":status", b"200")], True)
        c.data_to_send()
        assert flood_kind(c, p.headers(reuse, REQ), h2c.PROTOCOL_ERROR) == "rx_messaging_error"


def test_trailers_for_a_stream_we_reset_are_ignored():
    c, sink, _ = server()
    p = Peer()
    c.feed(p.headers(1, REQ, end=False))
    c.reset_stream(1, h2c.CANCEL)
    c.feed(p.headers(1, [(b"x-t", b"1")], end=True))
    assert not c.closed and sink.calls[-1] == ("headers", 1, REQ, False)


def test_control_frames_past_the_limit_in_one_read_close_the_connection():
    c, sink, _ = limited()
    c.feed(frame(6, 0, 0, b"12345678") * 10)
    c.data_to_send()
    c.written()                           # the transport took them
    c.feed(frame(6, 0, 0, b"12345678") * 10)
    c.data_to_send()                      # ... and these it did not
    assert flood_kind(c, frame(4, 0, 0)) == "outbound_control_flood"


def test_frames_not_written_count_toward_the_outbound_limit():
    c, sink, _ = limited(max_outbound_control_frames=1000)
    p = Peer()
    c.feed(p.headers(1, REQ))
    for _ in range(50):
        c.send_data(1, b"x")
    assert c.flooded() is None
    c.send_data(1, b"x")
    assert c.flooded() == "outbound_flood"
    c.data_to_send()
    c.written()
    assert c.flooded() is None


def test_empty_frames_in_a_row():
    c, sink, _ = limited()
    p = Peer()
    c.feed(p.headers(1, REQ, end=False) + frame(0, 0, 1) + frame(0, 0, 1, b"x") + frame(0, 0, 1))
    assert flood_kind(c, frame(0, 0, 1)) == "inbound_empty_frames_flood"


def test_priority_frames_per_stream():
    c, sink, _ = limited()
    prio = frame(2, 0, 3, b"\0\0\0\0\x10")
    c.feed(prio * 3)                      # 3 per stream opened, plus one stream's worth
    c.feed(Peer().headers(1, REQ) + prio * 3)
    assert flood_kind(c, prio * 3) == "inbound_priority_frames_flood"


def test_window_updates_per_data_frame_sent():
    c, sink, _ = limited()
    wu = frame(8, 0, 0, struct.pack(">I", 1))
    c.feed(wu * 5)
    assert flood_kind(c, wu * 3) == "inbound_window_update_frames_flood"


def test_mutated_frame_sequences_meet_only_connection_errors_and_the_limits():
    """Generated input: valid frames, mutated and reordered; the codec answers with its
    own error, never another exception, and never holds more than its limits."""
    import random
    rnd = random.Random(2024)
    p = Peer()
    pieces = [p.headers(1, REQ, end=False), p.headers(3, REQ), frame(0, 0, 1, b"abc"), frame(0, 1, 1),
              frame(6, 0, 0, b"12345678"), frame(4, 0, 0), frame(8, 0, 1, struct.pack(">I", 10)),
              frame(3, 0, 1, struct.pack(">I", 8)), frame(2, 0, 5, b"\0\0\0\1\x10"),
              frame(1, 0, 5, p.enc.encode(REQ)[:3]), frame(9, 4, 5, b"\x84"), frame(9, 0, 5, b"x" * 400)]
    for _ in range(1500):
        c, sink, _ = limited()
        wire = b"".join(rnd.choice(pieces) for _ in range(rnd.randrange(1, 12)))
        wire = bytearray(wire)
        for _ in range(rnd.randrange(0, 4)):
            if wire:
                wire[rnd.randrange(len(wire))] = rnd.randrange(256)
        step = rnd.choice((1, 7, 4096))
        try:
            for off in range(0, len(wire), step):
                c.feed(bytes(wire[off:off + step]))
        except H2ConnectionError:
            continue
        assert sum(len(x) for x in c.block_parts) <= LIMITS["max_block"]
        assert c.control <= LIMITS["max_outbound_control_frames"]
