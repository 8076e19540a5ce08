"""Thrift's wire encodings without a schema: message headers read and written, and a
message's struct skipped field by field to find where it ends.

Two protocols, each under two transports (the transport is the codec's business):

    binary, strict:  0x80 0x01 0x00 type | name length:4 | name | seqid:4 | struct
    binary, lax:     name length:4 | name | type:1 | seqid:4 | struct     (old clients)
    compact:         0x82 | type<<5 | 1 | seqid:varint | name length:varint | name | struct

All integers of the binary protocol are big-endian; the compact protocol writes
integers as (zigzag) varints and a field's id as a delta from the previous one.

Invariants:
- skip_binary_struct and skip_compact_struct return the offset just past a struct's STOP, or raise NeedMore
  when the buffer ends first (its `at_least`: an offset the message certainly reaches,
  counting what the collection being read still needs at its items' least size), or FrameError when the bytes cannot be a struct: an
  unknown type, a negative length, a collection whose least size already passes
  `end_limit`, a value running past `end_limit`, nesting deeper than MAX_DEPTH. It
  never reads past `end_limit`, so its work is bounded by the frame size limit.
- Nothing here allocates per field: lengths and counts are checked, values are
  stepped over, never built.
"""
from __future__ import annotations

import struct

from .codec import FrameError

# Message types
CALL, REPLY, EXCEPTION, ONEWAY = 1, 2, 3, 4
MESSAGE_TYPES = (CALL, REPLY, EXCEPTION, ONEWAY)

# Protocols, as a Frame's meta records them
BINARY = 0          # strict binary (versioned header)
BINARY_LAX = 1      # binary without the version word
COMPACT = 2
PROTOCOL_NAMES = {BINARY: "binary", BINARY_LAX: "binary", COMPACT: "compact"}

STRICT_VERSION = 0x80010000
COMPACT_ID = 0x82
COMPACT_VERSION = 1
MAX_DEPTH = 64

# TApplicationException's type codes (Apache Thrift)
APP_UNKNOWN = 0
APP_UNKNOWN_METHOD = 1
APP_INTERNAL_ERROR = 6
APP_PROTOCOL_ERROR = 7

_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_U32 = struct.Struct(">I")


class NeedMore(Exception):
    """The buffer ends before the message does, which reaches at least `at_least`."""

    def __init__(self, at_least: int):
        super().__init__(at_least)
        self.at_least = at_least


# ----------------------------------------------------------------- binary
# binary type -> fixed size in bytes (0: not fixed)
_B_FIXED = {2: 1, 3: 1, 4: 8, 6: 2, 8: 4, 10: 8, 16: 16}
_B_STRING, _B_STRUCT, _B_MAP, _B_SET, _B_LIST = 11, 12, 13, 14, 15
# the least bytes one value of a type takes, to refuse absurd collection sizes early
_B_LEAST = {**_B_FIXED, _B_STRING: 4, _B_STRUCT: 1, _B_MAP: 6, _B_SET: 5, _B_LIST: 5}


def _b_value(buf: bytes | bytearray, pos: int, t: int, end: int, depth: int) -> int:
    size = _B_FIXED.get(t)
    if size is not None:
        pos += size
    elif t == _B_STRING:
        _need(buf, pos + 4, end)
        (n,) = _I32.unpack_from(buf, pos)
        if n < 0:
            raise FrameError("thrift: a negative string length")
        pos += 4 + n
    elif t == _B_STRUCT:
        return skip_binary_struct(buf, pos, end, depth + 1)
    elif t == _B_MAP:
        _need(buf, pos + 6, end)
        kt, vt = buf[pos], buf[pos + 1]
        (n,) = _I32.unpack_from(buf, pos + 2)
        pos += 6
        pos = _b_items(buf, pos, (kt, vt), n, end, depth)
    elif t == _B_SET or t == _B_LIST:
        _need(buf, pos + 5, end)
        et = buf[pos]
        (n,) = _I32.unpack_from(buf, pos + 1)
        pos = _b_items(buf, pos + 5, (et,), n, end, depth)
    else:
        raise FrameError(f"thrift: unknown binary type {t}")
    if pos > end or pos > len(buf):
        raise _past(pos, buf, end)
    return pos


def _b_items(buf: bytes | bytearray, pos: int, types: tuple[int, ...], n: int, end: int, depth: int) -> int:
    if n < 0:
        raise FrameError("thrift: a negative collection size")
    if n == 0:
        return pos
    least = 0
    for t in types:
        s = _B_LEAST.get(t)
        if s is None:
            raise FrameError(f"thrift: unknown binary type {t}")
        least += s
    if pos + n * least > end:
        raise FrameError(f"thrift: a collection of {n} items cannot fit in the frame size limit")
    if depth >= MAX_DEPTH:
        raise FrameError(f"thrift: values nested deeper than {MAX_DEPTH}")
    if len(types) == 1 and types[0] in _B_FIXED:
        pos += n * _B_FIXED[types[0]]
        if pos > len(buf):
            raise NeedMore(pos)
        return pos
    for i in range(n):
        try:
            for t in types:
                pos = _b_value(buf, pos, t, end, depth + 1)
        except NeedMore as e:
            raise NeedMore(e.at_least + (n - i - 1) * least) from None
    return pos


def skip_binary_struct(buf: bytes | bytearray, pos: int, end: int, depth: int = 0) -> int:
    """The offset past the binary struct starting at buf[pos] (see the module's invariants)."""
    if depth > MAX_DEPTH:
        raise FrameError(f"thrift: values nested deeper than {MAX_DEPTH}")
    while True:
        _need(buf, pos + 1, end)
        t = buf[pos]
        if t == 0:
            return pos + 1
        pos = _b_value(buf, pos + 3, t, end, depth)


# ----------------------------------------------------------------- compact
_C_TRUE, _C_FALSE, _C_BYTE, _C_I16, _C_I32, _C_I64, _C_DOUBLE = 1, 2, 3, 4, 5, 6, 7
_C_BINARY, _C_LIST, _C_SET, _C_MAP, _C_STRUCT, _C_UUID = 8, 9, 10, 11, 12, 13
_C_LEAST = {_C_TRUE: 1, _C_FALSE: 1, _C_BYTE: 1, _C_I16: 1, _C_I32: 1, _C_I64: 1, _C_DOUBLE: 8,
            _C_BINARY: 1, _C_LIST: 1, _C_SET: 1, _C_MAP: 1, _C_STRUCT: 1, _C_UUID: 16}


def read_varint(buf: bytes | bytearray, pos: int, end: int, most: int = 10) -> tuple[int, int]:
    """An unsigned varint at buf[pos] of at most `most` bytes, and the offset after it."""
    shift = 0
    value = 0
    for i in range(most):
        p = pos + i
        _need(buf, p + 1, end)
        b = buf[p]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, p + 1
        shift += 7
    raise FrameError(f"thrift: a varint longer than {most} bytes")


def _c_value(buf: bytes | bytearray, pos: int, t: int, end: int, depth: int, in_collection: bool) -> int:
    if t == _C_TRUE or t == _C_FALSE:
        if in_collection:       # a bool in a field is its type; in a collection, one byte
            pos += 1
    elif t == _C_BYTE:
        pos += 1
    elif t == _C_I16 or t == _C_I32:
        _, pos = read_varint(buf, pos, end, 5)
    elif t == _C_I64:
        _, pos = read_varint(buf, pos, end, 10)
    elif t == _C_DOUBLE:
        pos += 8
    elif t == _C_UUID:
        pos += 16
    elif t == _C_BINARY:
        n, pos = read_varint(buf, pos, end, 5)
        pos += n
    elif t == _C_STRUCT:
        return skip_compact_struct(buf, pos, end, depth + 1)
    elif t == _C_LIST or t == _C_SET:
        _need(buf, pos + 1, end)
        h = buf[pos]
        n = h >> 4
        pos += 1
        if n == 15:
            n, pos = read_varint(buf, pos, end, 5)
        pos = _c_items(buf, pos, (h & 0x0F,), n, end, depth)
    elif t == _C_MAP:
        n, pos = read_varint(buf, pos, end, 5)
        if n:
            _need(buf, pos + 1, end)
            kv = buf[pos]
            pos = _c_items(buf, pos + 1, (kv >> 4, kv & 0x0F), n, end, depth)
    else:
        raise FrameError(f"thrift: unknown compact type {t}")
    if pos > end or pos > len(buf):
        raise _past(pos, buf, end)
    return pos


def _c_items(buf: bytes | bytearray, pos: int, types: tuple[int, ...], n: int, end: int, depth: int) -> int:
    if n == 0:
        return pos
    least = 0
    for t in types:
        s = _C_LEAST.get(t)
        if s is None:
            raise FrameError(f"thrift: unknown compact type {t}")
        least += s
    if pos + n * least > end:
        raise FrameError(f"thrift: a collection of {n} items cannot fit in the frame size limit")
    if depth >= MAX_DEPTH:
        raise FrameError(f"thrift: values nested deeper than {MAX_DEPTH}")
    for i in range(n):
        try:
            for t in types:
                pos = _c_value(buf, pos, t, end, depth + 1, True)
        except NeedMore as e:
            raise NeedMore(e.at_least + (n - i - 1) * least) from None
    return pos


def skip_compact_struct(buf: bytes | bytearray, pos: int, end: int, depth: int = 0) -> int:
    """The offset past the compact struct starting at buf[pos] (see the module's invariants)."""
    if depth > MAX_DEPTH:
        raise FrameError(f"thrift: values nested deeper than {MAX_DEPTH}")
    while True:
        _need(buf, pos + 1, end)
        h = buf[pos]
        if h == 0:
            return pos + 1
        pos += 1
        if not h & 0xF0:        # no delta: the field id follows as a zigzag varint
            _, pos = read_varint(buf, pos, end, 3)
        pos = _c_value(buf, pos, h & 0x0F, end, depth, False)


def _need(buf: bytes | bytearray, pos: int, end: int) -> None:
    """Raise unless buf[:pos] is there and within the limit."""
    if pos > end:
        raise FrameError("thrift: a message runs past the frame size limit")
    if pos > len(buf):
        raise NeedMore(pos)


def _past(pos: int, buf: bytes | bytearray, end: int) -> Exception:
    """The error for needing buf[:pos]: past the limit is malformed, past the buffer is early."""
    if pos > end:
        return FrameError("thrift: a message runs past the frame size limit")
    return NeedMore(pos)


# ----------------------------------------------------------------- writing
def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def zigzag32(n: int) -> int:
    return ((n << 1) ^ (n >> 31)) & 0xFFFFFFFF


def message_header(protocol: int, name: bytes, mtype: int, seqid: int) -> bytes:
    if protocol == COMPACT:
        return (bytes((COMPACT_ID, (mtype << 5) | COMPACT_VERSION)) + varint(seqid & 0xFFFFFFFF)
                + varint(len(name)) + name)
    if protocol == BINARY_LAX:
        return _I32.pack(len(name)) + name + bytes((mtype,)) + _I32.pack(seqid)
    return _U32.pack(STRICT_VERSION | mtype) + _I32.pack(len(name)) + name + _I32.pack(seqid)


def app_exception(protocol: int, message: str, type_code: int) -> bytes:
    """TApplicationException's struct: {1: string message, 2: i32 type}."""
    text = message.encode()
    if protocol == COMPACT:
        return (b"\x18" + varint(len(text)) + text          # field 1 (delta 1), binary
                + b"\x15" + varint(zigzag32(type_code))        # field 2 (delta 1), i32
                + b"\x00")
    return (b"\x0b" + _I16.pack(1) + _I32.pack(len(text)) + text
            + b"\x08" + _I16.pack(2) + _I32.pack(type_code) + b"\x00")
