"""proxy/rpc/thrift.py and thrift_wire.py: messages written by a real Thrift library
(thriftpy2) in every transport and protocol decode whole and ask for more on every
prefix; the seqid is rewritten and nothing else; local replies are
TApplicationExceptions thriftpy2 reads back with the right type; unframed messages
are skipped field by field within the size limit; malformed input is a FrameError."""
from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings, strategies as st

from mosnx.proxy.rpc import codec as rc, thrift as t, thrift_wire as w

thriftpy2 = pytest.importorskip("thriftpy2", reason="thriftpy2 is a test dependency (pip install .[test])")
from thriftpy2.protocol import TBinaryProtocol, TCompactProtocol  # noqa: E402
from thriftpy2.thrift import TApplicationException, TMessageType  # noqa: E402
from thriftpy2.transport import TMemoryBuffer  # noqa: E402

IDL = """
struct Item {
  1: string name, 2: list<i64> nums, 3: map<string, double> weights, 4: set<bool> flags,
  5: optional Item child, 6: bool on, 7: byte b, 8: i16 s, 9: binary raw, 10: list<Item> items,
  40: i32 far
}
exception Oops { 1: string why }
service Greeter {
  string hello(1: string name, 2: Item item) throws (1: Oops oops),
  oneway void ping(1: i32 n)
}
"""
g = thriftpy2.load_fp(io.StringIO(IDL), module_name="thrift_codec_test_thrift")
ITEM = g.Item(name="x", nums=[1, -2, 300000000000], weights={"a": 1.5, "b": -2.0}, flags=[False, True],
              child=g.Item(name="c", on=True, child=g.Item(name="d")), on=False, b=-3, s=-300, raw=b"\x00\x01",
              items=[g.Item(name="i1"), g.Item(name="i2", nums=[])], far=7)

# (protocol label, thriftpy2 protocol factory for writing, one for reading)
ENCODINGS = {
    "binary": (lambda b: TBinaryProtocol(b, strict_write=True), lambda b: TBinaryProtocol(b)),
    "binary_lax": (lambda b: TBinaryProtocol(b, strict_write=False), lambda b: TBinaryProtocol(b, strict_read=False)),
    "compact": (TCompactProtocol, TCompactProtocol),
}
CASES = [(p, framed) for p in ENCODINGS for framed in (True, False)]
LIMIT = 1 << 20


def message(proto: str, framed: bool, name: str = "hello", mtype: int = TMessageType.CALL, seqid: int = 7,
            args: object = None) -> bytes:
    buf = TMemoryBuffer()
    p = ENCODINGS[proto][0](buf)
    p.write_message_begin(name, mtype, seqid)
    (args if args is not None else g.Greeter.hello_args(name="bob", item=ITEM)).write(p)
    p.write_message_end()
    raw = buf.getvalue()
    return struct.pack(">i", len(raw)) + raw if framed else raw


def read_reply(proto: str, framed: bool, data: bytes) -> tuple[str, int, int, TApplicationException]:
    p = ENCODINGS[proto][1](TMemoryBuffer(data[4:] if framed else data))
    name, mtype, seqid = p.read_message_begin()
    x = TApplicationException()
    x.read(p)
    return name, mtype, seqid, x


def test_registered():
    assert rc.get("thrift") is t.CODEC


@pytest.mark.parametrize("proto,framed", CASES)
def test_call_decodes_whole_and_every_prefix_needs_more(proto, framed):
    raw = message(proto, framed)
    for i in range(len(raw)):
        assert t.CODEC.decode(raw[:i], 0, LIMIT) is None, i
    f = t.CODEC.decode(raw + message(proto, framed, seqid=8), 0, LIMIT)
    assert f is not None and f.raw == raw and f.kind == rc.REQUEST and f.request_id == 7
    assert f.headers == {rc.METHOD: "hello"}
    assert f.meta[0] is framed and w.PROTOCOL_NAMES[f.meta[1]] == proto.split("_")[0]
    nxt = t.CODEC.decode(b"junk" + raw + raw, 4 + len(raw), LIMIT)
    assert nxt is not None and nxt.raw == raw


@pytest.mark.parametrize("proto,framed", CASES)
def test_oneway_reply_and_exception_kinds(proto, framed):
    one = t.CODEC.decode(message(proto, framed, "ping", TMessageType.ONEWAY, 3, g.Greeter.ping_args(n=1)), 0, LIMIT)
    assert one.kind == rc.ONEWAY and one.request_id == 3
    ok = t.CODEC.decode(message(proto, framed, "hello", TMessageType.REPLY, 4, g.Greeter.hello_result(success="hi")),
                        0, LIMIT)
    assert ok.kind == rc.RESPONSE and t.CODEC.is_success(ok) and t.CODEC.http_status(ok) == 200
    # a declared exception is the provider's answer too: a business error, not a failure
    oops = t.CODEC.decode(message(proto, framed, "hello", TMessageType.REPLY, 5,
                                  g.Greeter.hello_result(oops=g.Oops(why="no"))), 0, LIMIT)
    assert t.CODEC.is_success(oops)
    exc = t.CODEC.decode(message(proto, framed, "hello", TMessageType.EXCEPTION, 6,
                                 TApplicationException(TApplicationException.INTERNAL_ERROR, "boom")), 0, LIMIT)
    assert exc.kind == rc.RESPONSE and not t.CODEC.is_success(exc) and t.CODEC.http_status(exc) == 500


@pytest.mark.parametrize("proto,framed", CASES)
@pytest.mark.parametrize("new_id", [1, 127, 128, 16384, 2 ** 31 - 1])
def test_seqid_rewrite_changes_only_the_seqid(proto, framed, new_id):
    raw = message(proto, framed)
    f = t.CODEC.decode(raw, 0, LIMIT)
    up = t.CODEC.with_id(f, new_id)
    h = t.CODEC.decode(up, 0, LIMIT)
    assert h is not None and h.raw == up and h.request_id == new_id and h.headers == f.headers
    # thriftpy2 reads the rewritten message back: the same call under the new seqid
    p = ENCODINGS[proto][1](TMemoryBuffer(up[4:] if framed else up))
    assert p.read_message_begin() == ("hello", TMessageType.CALL, new_id)
    args = g.Greeter.hello_args()
    args.read(p)
    assert args.name == "bob" and args.item == ITEM
    assert t.CODEC.with_id(h, 7) == raw


def test_compact_seqid_written_longer_than_needed_is_read_and_rewritten_shortest():
    raw = t.encode_message("m", w.CALL, 1, b"\x00", protocol=w.COMPACT)
    long = raw[:6] + b"\x81\x80\x00" + raw[7:]
    long = struct.pack(">i", len(long) - 4) + long[4:]
    f = t.CODEC.decode(long, 0, LIMIT)
    assert f.request_id == 1 and t.CODEC.with_id(f, 1) == raw


def test_negative_seqid_kept():
    # thriftpy2's compact writer loops forever on a negative seqid: that one is written here
    msgs = [message(p, framed, seqid=-5) for p, framed in CASES if p != "compact"]
    msgs += [t.encode_message("hello", w.CALL, -5, b"\x00", protocol=w.COMPACT, framed=framed)
             for framed in (True, False)]
    for raw in msgs:
        f = t.CODEC.decode(raw, 0, LIMIT)
        assert f.request_id == -5
        assert t.CODEC.decode(t.CODEC.with_id(t.CODEC.decode(t.CODEC.with_id(f, 9), 0, LIMIT), -5), 0,
                              LIMIT).raw == f.raw


@pytest.mark.parametrize("proto,framed", CASES)
@pytest.mark.parametrize("reason,app_type", [
    (rc.NO_ROUTE, TApplicationException.UNKNOWN_METHOD), (rc.TIMEOUT, TApplicationException.INTERNAL_ERROR),
    (rc.OVERFLOW, TApplicationException.INTERNAL_ERROR), (rc.UNAVAILABLE, TApplicationException.INTERNAL_ERROR),
    (rc.RESET, TApplicationException.INTERNAL_ERROR), (rc.RATE_LIMITED, TApplicationException.INTERNAL_ERROR),
    (rc.CODEC_ERROR, TApplicationException.PROTOCOL_ERROR)])
def test_local_reply_is_an_application_exception(proto, framed, reason, app_type):
    f = t.CODEC.decode(message(proto, framed, "Greeter:hello", seqid=2 ** 31 - 9), 0, LIMIT)
    out = t.CODEC.local_reply(f, reason, "mosnx: why ü")
    r = t.CODEC.decode(out, 0, LIMIT)
    assert r.kind == rc.RESPONSE and r.request_id == 2 ** 31 - 9 and not t.CODEC.is_success(r) and r.raw == out
    assert r.meta[:2] == f.meta[:2]               # the caller's transport and protocol
    name, mtype, seqid, x = read_reply(proto, framed, out)
    assert (name, mtype, seqid) == ("Greeter:hello", TMessageType.EXCEPTION, 2 ** 31 - 9)
    assert x.type == app_type and x.message == "mosnx: why ü"


def test_multiplexed_name_routes_as_service_and_method():
    f = t.CODEC.decode(message("compact", True, "com.example.Greeter:hello"), 0, LIMIT)
    assert f.headers == {rc.SERVICE: "com.example.Greeter", rc.METHOD: "hello"}


def test_non_utf8_name_is_a_frame_error_when_routing_reads_it():
    raw = t.encode_message("x", w.CALL, 1, b"\x00")
    bad = raw.replace(b"x", b"\xff")
    f = t.CODEC.decode(bad, 0, LIMIT)
    with pytest.raises(rc.FrameError, match="not UTF-8"):
        f.headers


@pytest.mark.parametrize("data,why", [
    (b"\x80\x02\x00\x01" + b"\x00" * 12, "version 0x8002 is not 0x8001"),
    (b"\x82\x22\x01\x01x\x00", "compact protocol version 2"),
    (b"\x80\x01\x00\x07\x00\x00\x00\x01x\x00\x00\x00\x01\x00", "unknown message type 7"),
    (b"\x82\xe1\x01\x01x\x00", "unknown message type 7"),
    (b"\x90\x00\x00\x00\x00", "first byte 0x90"),
    (b"\xff\xff\xff\xff\x80", "first byte 0xff"),
    (b"\x00\x00\x00\x00\x80", "frame length of 0"),
    (b"GET / HTTP/1.1\r\n\r\n", "past the frame size limit"),
    (b"\x80\x01\x00\x01\xff\xff\xff\xff", "negative method name length"),
    (t.encode_message("m", w.CALL, 1, b"\x07\x00\x01\x00", framed=False), "unknown binary type 7"),
    (t.encode_message("m", w.CALL, 1, b"\x0b\x00\x01\xff\xff\xff\xfe", framed=False), "negative string length"),
    (t.encode_message("m", w.CALL, 1, b"\x0f\x00\x01\x0c\x7f\xff\xff\xff", framed=False), "cannot fit"),
    (t.encode_message("m", w.CALL, 1, b"\x0d\x00\x01\x0b\x0b\xff\xff\xff\xff", framed=False),
     "negative collection size"),
    (t.encode_message("m", w.CALL, 1, b"\x0f\x00\x01\x63\x00\x00\x00\x01", framed=False), "unknown binary type 99"),
    (t.encode_message("m", w.CALL, 1, b"\x1e", protocol=w.COMPACT, framed=False), "unknown compact type 14"),
    (t.encode_message("m", w.CALL, 1, b"\x19\xfc\xff\xff\xff\x0f", protocol=w.COMPACT, framed=False), "cannot fit"),
    (t.encode_message("m", w.CALL, 1, b"\x16" + b"\xff" * 11, protocol=w.COMPACT, framed=False),
     "varint longer than 10"),
    (b"\x82\x21" + b"\xff" * 6, "varint longer than 5"),
    (b"\x82\x21\xff\xff\xff\xff\x2f\x01x\x00", "seqid above 32 bits"),
    (t.encode_message("m", w.CALL, 1, b"\x0c\x00\x01" * 70 + b"\x00" * 71, framed=False), "nested deeper"),
    (t.encode_message("m", w.CALL, 1, b"\x1c" * 70 + b"\x00" * 71, protocol=w.COMPACT, framed=False),
     "nested deeper"),
    (t.encode_message("m", w.CALL, 1, b"\x0f\x00\x01" + b"\x0f\x00\x00\x00\x01" * 70 + b"\x0c\x00\x00\x00\x00\x00",
                      framed=False), "nested deeper"),
])
def test_malformed_is_a_clear_frame_error(data, why):
    with pytest.raises(rc.FrameError, match=why):
        t.CODEC.decode(data, 0, 4096)


def test_framed_header_cannot_run_past_its_frame():
    msg = t.encode_message("hello", w.CALL, 1, b"\x00", framed=False)
    with pytest.raises(rc.FrameError, match="past"):
        t.CODEC.decode(struct.pack(">i", 6) + msg[:6], 0, LIMIT)


@pytest.mark.parametrize("proto", list(ENCODINGS))
def test_oversized_refused_framed_before_it_is_read_unframed_at_the_limit(proto):
    big = g.Greeter.hello_args(name="x" * 5000, item=g.Item(name="y"))
    framed = message(proto, True, args=big)
    with pytest.raises(rc.FrameError, match="above the limit of 4096"):
        t.CODEC.decode(framed[:8], 0, 4096)
    unframed = message(proto, False, args=big)
    # the string's length already passes the limit: refused before its bytes come
    with pytest.raises(rc.FrameError, match="past the frame size limit"):
        t.CODEC.decode(unframed[:100], 0, 4096)
    many = message(proto, False, args=g.Greeter.hello_args(name="x", item=g.Item(items=[g.Item(name="n")] * 1500)))
    assert t.CODEC.decode(many[:100], 0, 4096) is None          # could still end within the limit
    with pytest.raises(rc.FrameError, match="past the frame size limit"):
        t.CODEC.decode(many, 0, 4096)
    assert t.CODEC.decode(unframed, 0, len(unframed)).raw == unframed     # exactly at the limit: whole


def test_pinned_listener_codec_refuses_other_calls_not_responses():
    from mosnx.runtime.config.rpc import ThriftOptions
    pinned = t.CODEC.for_listener({"thrift": ThriftOptions("framed", "binary")})
    assert pinned is t.CODEC.for_listener({"thrift": ThriftOptions("framed", "binary")})
    assert t.CODEC.for_listener({}) is t.CODEC and t.CODEC.for_listener({"thrift": ThriftOptions()}) is t.CODEC
    assert pinned.decode(message("binary", True), 0, LIMIT).request_id == 7
    assert pinned.decode(message("binary_lax", True), 0, LIMIT).request_id == 7
    for proto, framed in (("compact", True), ("binary", False)):
        with pytest.raises(rc.FrameError, match="on a listener of thrift: {transport: framed, protocol: binary}"):
            pinned.decode(message(proto, framed), 0, LIMIT)
    with pytest.raises(rc.FrameError, match="unframed binary call"):
        pinned.decode(message("binary", False)[:20], 0, LIMIT)       # refused from its header, not walked
    reply = message("compact", False, mtype=TMessageType.REPLY, args=g.Greeter.hello_result(success="hi"))
    assert pinned.decode(reply, 0, LIMIT).kind == rc.RESPONSE


def test_no_heartbeats():
    f = t.CODEC.decode(message("binary", True), 0, LIMIT)
    with pytest.raises(rc.FrameError, match="no heartbeats"):
        t.CODEC.heartbeat_reply(f)


def _check(data: bytes, limit: int) -> None:
    try:
        f = t.CODEC.decode(data, 0, limit)
    except rc.FrameError:
        return
    if f is not None:
        assert 0 < len(f.raw) <= min(len(data), limit) and f.raw == data[:len(f.raw)]
        try:
            f.headers
        except rc.FrameError:
            pass
        assert t.CODEC.decode(t.CODEC.with_id(f, 12345), 0, 1 << 30).request_id == 12345


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 300))
def test_any_bytes_are_a_frame_need_more_or_a_frame_error(data, limit):
    _check(data, limit)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CASES), st.data())
def test_mutated_messages_are_a_frame_need_more_or_a_frame_error(case, data):
    raw = bytearray(message(*case))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _check(bytes(raw[:cut]), data.draw(st.sampled_from([64, 256, LIMIT])))


def _counting(monkeypatch) -> list[int]:
    walks: list[int] = []
    real = w.skip_binary_struct

    def counted(buf, pos, end, depth=0):
        walks.append(len(buf))
        return real(buf, pos, end, depth)
    monkeypatch.setattr(w, "skip_binary_struct", counted)
    return walks


def _trickle(codec: t.ThriftCodec, data: bytes, step: int) -> rc.Frame:
    buf = bytearray()
    for i in range(0, len(data), step):
        buf += data[i:i + step]
        f = codec.decode(buf, 0, 8 << 20)
        if f is not None:
            assert i + step >= len(data)
            return f
    raise AssertionError("never decoded")


def test_trickled_unframed_message_is_not_walked_on_every_read(monkeypatch):
    codec = t.ThriftCodec()
    walks = _counting(monkeypatch)
    blob = t.encode_message("m", w.CALL, 3, b"\x0b\x00\x01" + struct.pack(">i", 2 << 20) + b"x" * (2 << 20) + b"\x00",
                            framed=False)
    f = _trickle(codec, blob, 65536)
    assert f.raw == blob and f.request_id == 3
    assert len(walks) <= 3, walks          # the string's length says how far to wait: not 33 walks
    walks.clear()
    items = b"".join(struct.pack(">i", 10) + b"y" * 10 for _ in range(60000))
    many = t.encode_message("m", w.CALL, 4, b"\x0f\x00\x01\x0b" + struct.pack(">i", 60000) + items + b"\x00",
                            framed=False)
    f = _trickle(codec, many, 16384)
    assert f.raw == many and f.request_id == 4
    assert len(walks) < 20, (len(walks), len(many) // 16384)
    assert not codec._waiting


def test_remembered_shortfall_is_dropped_when_the_bytes_change():
    codec = t.ThriftCodec()
    big = t.encode_message("m", w.CALL, 5, b"\x0b\x00\x01" + struct.pack(">i", 200000) + b"z" * 200000 + b"\x00",
                           framed=False)
    buf = bytearray(big[:100000])
    assert codec.decode(buf, 0, 8 << 20) is None and codec._waiting
    # the same buffer object, now holding another, complete message at the same offset
    small = t.encode_message("m", w.CALL, 6, b"\x0b\x00\x01" + struct.pack(">i", 100) + b"q" * 100 + b"\x00",
                             framed=False)
    buf[:] = small + b"q" * 100000
    f = codec.decode(buf, 0, 8 << 20)
    assert f is not None and f.raw == small and f.request_id == 6 and not codec._waiting
