"""Round trips, as hypothesis properties: what one side of each codec encodes, the
other decodes to the same thing (the fuzz targets check the same on what
libFuzzer makes; these explore it from generated values, in every `make test`).
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosnx.proxy.codec.http1 import (RequestDecoder, RequestSink, encode_chunk, encode_last_chunk,
                                     encode_request_head)
from mosnx.proxy.codec.http2_connection import H2Connection
from mosnx.proxy.codec.http2_hpack import Decoder, Encoder
from mosnx.runtime.headers import Headers
from mosnx.wasm import abi

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- HPACK ---------------------------------------------------------------------
_names = st.one_of(st.sampled_from([b":path", b":method", b"user-agent", b"cookie", b"authorization",
                                     b"content-length", b"x-request-id", b"accept"]),
                   st.binary(max_size=40))
_field = st.tuples(_names, st.one_of(st.binary(max_size=40), st.binary(min_size=120, max_size=300)))
_lists = st.lists(st.lists(_field, max_size=12), min_size=1, max_size=6)


@SETTINGS
@given(_lists, st.lists(st.sampled_from([0, 1, 64, 256, 4096, 10000]), max_size=3))
def test_hpack_decodes_what_it_encodes(lists, table_sizes):
    enc, dec = Encoder(), Decoder()
    for i, fields in enumerate(lists):
        if i < len(table_sizes):
            enc.set_max_table(table_sizes[i])
        assert list(dec.decode(enc.encode(fields))) == fields
        # the same list again: now from the tables (and the encoder's memo)
        assert list(dec.decode(enc.encode(fields))) == fields


# -- proxy-wasm pairs ------------------------------------------------------------
_pairs = st.lists(st.tuples(st.binary(max_size=30), st.binary(max_size=60)), max_size=20)


@SETTINGS
@given(_pairs)
def test_wasm_pairs_decode_what_they_encode(pairs):
    assert abi.decode_pairs(abi.encode_pairs(pairs)) == pairs


@SETTINGS
@given(st.binary(max_size=200))
def test_wasm_pairs_that_decode_encode_to_what_decodes_the_same(data):
    try:
        pairs = abi.decode_pairs(data)
    except abi.PairsError:
        return
    assert abi.decode_pairs(abi.encode_pairs(pairs)) == pairs


# -- HTTP/1.1 ------------------------------------------------------------------------
_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
_token = st.text(_TCHAR, min_size=1, max_size=20)
_value = st.binary(max_size=40).map(lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E or c == 0x20).strip())
_extra = st.lists(st.tuples(_token.filter(lambda t: t not in ("host", "content-length", "transfer-encoding",
                                                              "connection", "upgrade", "expect", "te"))
                            .map(str.encode), _value), max_size=8)
# targets already in the one normalised form the decoder hands on (codec.path)
_segment = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_~", min_size=1, max_size=8)
_target = st.tuples(st.lists(_segment, max_size=5), st.text("abcdefghijklmnopqrstuvwxyz0123456789=&%./",
                                                            max_size=12)) \
    .map(lambda t: "/" + "/".join(t[0]) + ("?" + t[1] if t[1] else ""))


class _Req(RequestSink):
    def __init__(self):
        self.got = []

    def on_request(self, method, target, version, headers, keep_alive, body, upgrade):
        self.got.append(["head", method, target, list(headers.items), body])

    def on_request_body(self, data):
        self.got[-1].append(bytes(data))

    def on_request_end(self, trailers):
        self.got[-1].append(("end", list(trailers.items) if trailers else None))


@SETTINGS
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]), _target, _extra,
       st.lists(st.binary(min_size=1, max_size=100), max_size=4), _extra)
def test_http1_request_decodes_as_encoded(method, target, extra, chunks, trailers):
    items = [(b"host", b"example.com")] + extra + [(b"transfer-encoding", b"chunked")]
    wire = encode_request_head(method, target, items) + b"".join(encode_chunk(c) for c in chunks) \
        + encode_last_chunk(Headers(list(trailers)) if trailers else None)
    sink = _Req()
    RequestDecoder(sink).feed(wire)
    (head,) = sink.got
    assert head[:5] == ["head", method, target, [(k.lower(), v) for k, v in items], None]
    assert b"".join(head[5:-1]) == b"".join(chunks)
    assert head[-1] == ("end", [(k.lower(), v) for k, v in trailers] or None)


# -- HTTP/2 framing -----------------------------------------------------------------
class _Sink:
    def __init__(self):
        self.got = []

    def on_headers(self, sid, fields, end):
        self.got.append(("headers", sid, list(fields), end))

    def on_trailers(self, sid, fields):
        self.got.append(("trailers", sid, list(fields)))

    def on_data(self, sid, data, flow, end):
        self.got.append(("data", sid, bytes(data), end))

    def __getattr__(self, name):
        return lambda *a: None


@SETTINGS
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=20).map(bytes.lower), st.binary(max_size=9000)),
                min_size=1, max_size=4),
       st.binary(max_size=40000), st.lists(_field, max_size=3))
def test_http2_frames_carry_blocks_and_bodies_whole(fields, body, trailers):
    client, server = H2Connection(_Sink(), True), _Sink()
    srv = H2Connection(server, False, connection_window=1 << 20)
    client.initiate()
    srv.initiate()
    client.feed(srv.data_to_send())
    srv.feed(client.data_to_send())
    client.feed(srv.data_to_send())     # the SETTINGS ACK
    block = [(b":method", b"POST"), (b":path", b"/")] + fields
    sid = client.next_stream_id()
    client.send_headers(sid, block)
    sent = 0
    while sent < len(body):
        n = client.send_data(sid, body[sent:], end_stream=False)
        srv.feed(client.data_to_send())
        got = sum(len(e[2]) for e in server.got if e[0] == "data")
        srv.ack(sid, got - sent if got > sent else 0)
        client.feed(srv.data_to_send())
        sent += n
    client.send_headers(sid, trailers, end_stream=True)
    srv.feed(client.data_to_send())
    assert server.got[0] == ("headers", sid, block, False)
    assert b"".join(e[2] for e in server.got if e[0] == "data") == body
    assert server.got[-1] == ("trailers", sid, trailers)
