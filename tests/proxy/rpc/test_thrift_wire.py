"""proxy/rpc/thrift_wire.py: the schema-less struct skipping, as hypothesis properties over
generated structs (every type, nested collections of structs, field ids needing the long
form) written here in both protocols: the skip ends exactly at the struct's end, every
strict prefix needs more, a limit below the struct's size is a FrameError, never a
read past it; and the header and TApplicationException writers."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from mosnx.proxy.rpc import thrift_wire as w
from mosnx.proxy.rpc.codec import FrameError

# type name -> (binary type id, compact type id)
TYPES = {"bool": (2, 1), "byte": (3, 3), "i16": (6, 4), "i32": (8, 5), "i64": (10, 6), "double": (4, 7),
         "string": (11, 8), "struct": (12, 12), "list": (15, 9), "set": (14, 10), "map": (13, 11)}
SCALARS = {"bool": st.booleans(), "byte": st.integers(-128, 127), "i16": st.integers(-2 ** 15, 2 ** 15 - 1),
           "i32": st.integers(-2 ** 31, 2 ** 31 - 1), "i64": st.integers(-2 ** 63, 2 ** 63 - 1),
           "double": st.floats(allow_nan=False), "string": st.binary(max_size=20)}


def _typed(depth: int) -> st.SearchStrategy:
    """(type name, value) pairs; containers only above depth 0."""
    scalar = st.one_of(*(v.map(lambda x, k=k: (k, x)) for k, v in SCALARS.items()))
    if depth == 0:
        return scalar
    inner = st.deferred(lambda: _typed(depth - 1))
    elem_type = st.sampled_from(list(SCALARS) + ["struct"])

    def values_of(t: str) -> st.SearchStrategy:
        return _struct(depth - 1) if t == "struct" else SCALARS[t]

    coll = st.tuples(st.sampled_from(["list", "set"]), elem_type).flatmap(
        lambda kt: st.lists(values_of(kt[1]), max_size=4).map(lambda vs: (kt[0], (kt[1], vs))))
    mapping = st.tuples(elem_type, elem_type).flatmap(
        lambda kv: st.lists(st.tuples(values_of(kv[0]), values_of(kv[1])), max_size=3)
        .map(lambda items: ("map", (kv[0], kv[1], items))))
    return st.one_of(scalar, _struct(depth - 1).map(lambda s: ("struct", s)), coll, mapping, inner)


def _struct(depth: int) -> st.SearchStrategy:
    return st.lists(st.tuples(st.integers(-40, 400), st.deferred(lambda: _typed(depth))), max_size=5)


def _zz(n: int, bits: int) -> bytes:
    return w.varint(((n << 1) ^ (n >> (bits - 1))) & ((1 << bits) - 1))


def enc_binary(t: str, v) -> bytes:
    if t == "bool":
        return bytes((int(v),))
    if t == "byte":
        return struct.pack(">b", v)
    if t in ("i16", "i32", "i64", "double"):
        return struct.pack({"i16": ">h", "i32": ">i", "i64": ">q", "double": ">d"}[t], v)
    if t == "string":
        return struct.pack(">i", len(v)) + v
    if t == "struct":
        return b"".join(bytes((TYPES[ft][0],)) + struct.pack(">h", fid) + enc_binary(ft, fv)
                        for fid, (ft, fv) in v) + b"\x00"
    if t in ("list", "set"):
        et, vs = v
        return bytes((TYPES[et][0],)) + struct.pack(">i", len(vs)) + b"".join(enc_binary(et, x) for x in vs)
    kt, vt, items = v
    return (bytes((TYPES[kt][0], TYPES[vt][0])) + struct.pack(">i", len(items))
            + b"".join(enc_binary(kt, k) + enc_binary(vt, x) for k, x in items))


def enc_compact(t: str, v) -> bytes:
    if t == "bool":
        return bytes((1 if v else 2,))          # as a collection element; a field's is in its header
    if t == "byte":
        return struct.pack(">b", v)
    if t in ("i16", "i32"):
        return _zz(v, 32)
    if t == "i64":
        return _zz(v, 64)
    if t == "double":
        return struct.pack("<d", v)
    if t == "string":
        return w.varint(len(v)) + v
    if t == "struct":
        out, last = b"", 0
        for fid, (ft, fv) in v:
            ct = (1 if fv else 2) if ft == "bool" else TYPES[ft][1]
            delta = fid - last
            out += bytes(((delta << 4) | ct,)) if 0 < delta <= 15 else bytes((ct,)) + _zz(fid, 16)
            last = fid
            if ft != "bool":
                out += enc_compact(ft, fv)
        return out + b"\x00"
    if t in ("list", "set"):
        et, vs = v
        head = bytes(((len(vs) << 4) | TYPES[et][1],)) if len(vs) < 15 else bytes((0xF0 | TYPES[et][1],)) + w.varint(len(vs))
        return head + b"".join(enc_compact(et, x) for x in vs)
    kt, vt, items = v
    if not items:
        return b"\x00"
    return (w.varint(len(items)) + bytes(((TYPES[kt][1] << 4) | TYPES[vt][1],))
            + b"".join(enc_compact(kt, k) + enc_compact(vt, x) for k, x in items))


SKIP = {"binary": (enc_binary, w.skip_binary_struct), "compact": (enc_compact, w.skip_compact_struct)}


@pytest.mark.parametrize("proto", list(SKIP))
@settings(max_examples=300, deadline=None)
@given(_struct(3), st.binary(max_size=8))
def test_skip_ends_exactly_at_the_struct_and_every_prefix_needs_more(proto, fields, tail):
    enc, skip = SKIP[proto]
    data = b"\x07\x07" + enc("struct", fields)       # at an offset, with what follows
    end = len(data)
    assert skip(data + tail, 2, 1 << 20) == end
    for cut in range(2, end):
        with pytest.raises(w.NeedMore):
            skip(data[:cut], 2, 1 << 20)
    if end - 2 > 1:
        with pytest.raises(FrameError, match="limit|cannot fit"):
            skip(data + tail, 2, end - 1)        # the limit one byte short: never read past it


def test_nesting_is_capped():
    deep = b"\x0c\x00\x01" * (w.MAX_DEPTH + 2) + b"\x00" * (w.MAX_DEPTH + 3)
    with pytest.raises(FrameError, match="nested deeper"):
        w.skip_binary_struct(deep, 0, len(deep))
    ok = b"\x0c\x00\x01" * 10 + b"\x00" * 11
    assert w.skip_binary_struct(ok, 0, len(ok)) == len(ok)


def test_varint_and_headers():
    assert [w.varint(n) for n in (0, 127, 128, 2 ** 32 - 1)] == [b"\x00", b"\x7f", b"\x80\x01", b"\xff\xff\xff\xff\x0f"]
    assert w.read_varint(b"\x80\x01", 0, 2) == (128, 2)
    with pytest.raises(FrameError, match="longer than 5"):
        w.read_varint(b"\xff" * 6, 0, 10, 5)
    assert w.message_header(w.BINARY, b"m", w.CALL, 5) == b"\x80\x01\x00\x01\x00\x00\x00\x01m\x00\x00\x00\x05"
    assert w.message_header(w.BINARY_LAX, b"m", w.REPLY, 5) == b"\x00\x00\x00\x01m\x02\x00\x00\x00\x05"
    assert w.message_header(w.COMPACT, b"m", w.EXCEPTION, 300) == b"\x82\x61\xac\x02\x01m"
    for proto, skip in ((w.BINARY, w.skip_binary_struct), (w.COMPACT, w.skip_compact_struct)):
        body = w.app_exception(proto, "why", w.APP_UNKNOWN_METHOD)
        assert skip(body, 0, len(body)) == len(body)
