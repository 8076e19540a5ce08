"""Apache Thrift: framed and unframed (buffered) transports, binary (strict and lax)
and compact protocols, read per message and passed through in the caller's encoding.

    framed:    length:4 | message        unframed: message
    message:   header (type, method name, seqid; thrift_wire.py) | the arguments' struct

The codec reads a message's header only: its type (CALL, ONEWAY, REPLY, EXCEPTION),
the method name routing needs, and the seqid the proxy rewrites to multiplex
upstream (and restores on the answer). The body passes through untouched. A framed
message's end is its length word; an unframed one has none, so its struct is
skipped field by field without a schema (thrift_wire.skip_*), never past the
listener's rpc.max_frame_size. A long unframed message arriving in many reads is not
walked again on each: a walk that runs out of bytes tells how far the message reaches
at least (a string's length, a collection's items at their least size), and until the
buffer, its seen bytes unchanged (CRC-32), reaches that far, the answer is "need more"
without a walk. A method name `Service:method` (Thrift's
TMultiplexedProtocol) routes as service and method.

Encoding, per message, as Envoy's thrift_proxy auto-detects it: a first byte 0x80 is
unframed strict binary, 0x82 unframed compact; otherwise the first four bytes are
a length and byte 4 tells a framed message (0x80, 0x82, or 0x00: a lax binary name
length) from an unframed lax binary one (byte 4 is then its name's first byte). A
listener's `thrift: {transport, protocol}` pins the encoding its callers must use
(a call in another is a framing error); responses are read in whatever encoding
they come, since each answers a call sent in the caller's own. The proxy does not
re-encode: a cluster's providers must speak what its callers send.

Invariants:
- Frame.meta is (framed, protocol, message type, name start, name end, seqid start,
  seqid end), offsets into Frame.raw; with_id rewrites only the seqid (and, for a
  compact varint that changes length, the frame's length word).
- A local reply is a TApplicationException (message type EXCEPTION) in the call's
  transport and protocol, under its method name and seqid; a one-way call gets none
  (the server never answers one). Thrift has no heartbeats.
"""
from __future__ import annotations

import struct
import zlib
from typing import Any, Mapping

from . import thrift_wire as w
from .codec import (CODEC_ERROR, NO_ROUTE, ONEWAY, REQUEST, RESPONSE, METHOD, SERVICE, Codec, Frame,
                    FrameError, register)
from .thrift_wire import BINARY, BINARY_LAX, COMPACT, NeedMore

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")

# an unframed message this long that is still incomplete is remembered (see _waiting)
_REMEMBER = 64 * 1024
_WAITING_MAX = 4096
_KIND = {w.CALL: REQUEST, w.ONEWAY: ONEWAY, w.REPLY: RESPONSE, w.EXCEPTION: RESPONSE}

# TApplicationException type per local-reply reason (as Envoy's thrift_proxy answers:
# no route is an unknown method, the proxy's own failures an internal error)
_REASON_TYPE = {NO_ROUTE: w.APP_UNKNOWN_METHOD, CODEC_ERROR: w.APP_PROTOCOL_ERROR}


def _header(buf: bytes | bytearray, m: int, end: int) -> tuple[int, int, int, int, int, int, int]:
    """(protocol, type, name start, name end, seqid start, seqid end, body start) of the
    message header at buf[m]; NeedMore or FrameError as thrift_wire's readers."""
    need = w._need
    b0 = buf[m]
    if b0 == 0x80:
        need(buf, m + 8, end)
        (version,) = _U32.unpack_from(buf, m)
        if version & 0xFFFF0000 != w.STRICT_VERSION:
            raise FrameError(f"thrift: binary protocol version {version >> 16:#06x} is not 0x8001")
        mtype = version & 0xFF
        (n,) = _I32.unpack_from(buf, m + 4)
        if n < 0:
            raise FrameError("thrift: a negative method name length")
        ns = m + 8
        ne = ns + n
        need(buf, ne + 4, end)
        proto, ss, se = BINARY, ne, ne + 4
    elif b0 == w.COMPACT_ID:
        need(buf, m + 2, end)
        b1 = buf[m + 1]
        if b1 & 0x1F != w.COMPACT_VERSION:
            raise FrameError(f"thrift: compact protocol version {b1 & 0x1F} is not 1")
        mtype = b1 >> 5
        ss = m + 2
        seqid, se = w.read_varint(buf, ss, end, 5)
        if seqid > 0xFFFFFFFF:
            raise FrameError("thrift: a seqid above 32 bits")
        n, ns = w.read_varint(buf, se, end, 5)
        ne = ns + n
        need(buf, ne, end)
        proto = COMPACT
        return proto, _type(mtype), ns, ne, ss, se, ne
    else:
        need(buf, m + 4, end)
        (n,) = _I32.unpack_from(buf, m)
        if n < 0:
            raise FrameError(f"thrift: first byte {b0:#04x} starts no Thrift message")
        ns = m + 4
        ne = ns + n
        need(buf, ne + 5, end)
        mtype = buf[ne]
        proto, ss, se = BINARY_LAX, ne + 1, ne + 5
    return proto, _type(mtype), ns, ne, ss, se, se


def _still_short(buf: bytes | bytearray, pos: int, waiting: tuple[int, int, int, int]) -> bool:
    """Whether the buffer is the one remembered (same start, same bytes as far as seen)
    and still ends before the offset its message was found to reach at least."""
    wpos, seen, crc, at_least = waiting
    if wpos != pos or not pos + seen <= len(buf) < at_least:
        return False
    with memoryview(buf) as view, view[pos:pos + seen] as part:
        return zlib.crc32(part) == crc


def _type(mtype: int) -> int:
    if mtype not in _KIND:
        raise FrameError(f"thrift: unknown message type {mtype}")
    return mtype


class ThriftCodec(Codec):
    name = "thrift"
    max_id = 2 ** 31 - 1

    def __init__(self, transport: str = "auto", protocol: str = "auto"):
        self.transport = transport
        self.protocol = protocol
        # id(buffer) -> (pos, bytes seen, their CRC-32, offset the message reaches at least):
        # an unframed message still too short is not walked again until it can be whole
        self._waiting: dict[int, tuple[int, int, int, int]] = {}

    def _remember(self, buf: bytes | bytearray, pos: int, n: int, at_least: int) -> None:
        if len(self._waiting) >= _WAITING_MAX:
            self._waiting.clear()       # buffers of connections gone: forgetting costs one walk
        with memoryview(buf) as view, view[pos:pos + n] as seen:
            self._waiting[id(buf)] = (pos, n, zlib.crc32(seen), at_least)

    def for_listener(self, options: Mapping[str, Any]) -> "ThriftCodec":
        opts = options.get("thrift")
        if opts is None:
            return self
        key = (opts.transport, opts.protocol)
        codec = _PINNED.get(key)
        if codec is None:
            codec = _PINNED[key] = ThriftCodec(*key)
        return codec

    def decode(self, buf: bytes | bytearray, pos: int, limit: int) -> Frame | None:
        n = len(buf) - pos
        if n < 1:
            return None
        b0 = buf[pos]
        try:
            if b0 == 0x80 or b0 == w.COMPACT_ID:
                framed = False
            elif b0 & 0x80:
                raise FrameError(f"thrift: first byte {b0:#04x} starts no Thrift message")
            elif n < 5:
                return None
            else:
                framed = buf[pos + 4] in (0x80, w.COMPACT_ID, 0)
            if framed:
                (length,) = _I32.unpack_from(buf, pos)
                total = 4 + length
                if length < 1:
                    raise FrameError(f"thrift: a frame length of {length}")
                if total > limit:
                    raise FrameError(f"thrift: a frame of {total} bytes is above the limit of {limit}")
                if n < total:
                    return None
                proto, mtype, ns, ne, ss, se, _ = _header(buf, pos + 4, pos + total)
                self._check_pinned(framed, proto, mtype)
            else:
                waiting = self._waiting.get(id(buf))
                if waiting is not None and _still_short(buf, pos, waiting):
                    return None
                end = pos + limit
                proto, mtype, ns, ne, ss, se, body = _header(buf, pos, end)
                self._check_pinned(framed, proto, mtype)      # before a walk, not after
                if proto == COMPACT:
                    stop = w.skip_compact_struct(buf, body, end)
                else:
                    stop = w.skip_binary_struct(buf, body, end)
                total = stop - pos
                if waiting is not None:
                    del self._waiting[id(buf)]
        except NeedMore as e:
            if not framed and n >= _REMEMBER:
                self._remember(buf, pos, n, e.at_least)
            return None
        except (struct.error, IndexError):      # a reader's bounds check missed: still only a FrameError
            self._waiting.pop(id(buf), None)
            raise FrameError("thrift: a message ends inside a value") from None
        except FrameError:
            self._waiting.pop(id(buf), None)
            raise
        kind = _KIND[mtype]
        raw = bytes(buf[pos:pos + total])
        if proto == COMPACT:
            seqid, _ = w.read_varint(raw, ss - pos, se - pos, 5)
            if seqid >= 2 ** 31:
                seqid -= 2 ** 32
        else:
            (seqid,) = _I32.unpack_from(raw, ss - pos)
        return Frame(self, kind, seqid, raw, mtype, (framed, proto, mtype, ns - pos, ne - pos, ss - pos, se - pos))

    def _check_pinned(self, framed: bool, proto: int, mtype: int) -> None:
        """A call in another encoding than the listener's pinned one is refused (a
        response is read as it comes: it answers a call sent in the caller's own)."""
        if (self.transport == "auto" and self.protocol == "auto") or mtype == w.REPLY or mtype == w.EXCEPTION:
            return
        t = "framed" if framed else "unframed"
        p = w.PROTOCOL_NAMES[proto]
        if self.transport not in ("auto", t) or self.protocol not in ("auto", p):
            raise FrameError(f"thrift: a {t} {p} call on a listener of thrift: "
                             f"{{transport: {self.transport}, protocol: {self.protocol}}}")

    def header_map(self, frame: Frame) -> dict[str, str]:
        _, _, _, ns, ne, _, _ = frame.meta
        try:
            name = frame.raw[ns:ne].decode()
        except UnicodeDecodeError:
            raise FrameError("thrift: the method name is not UTF-8") from None
        service, sep, method = name.rpartition(":")
        if sep:
            return {SERVICE: service, METHOD: method}
        return {METHOD: name}

    def with_id(self, frame: Frame, request_id: int) -> bytes:
        framed, proto, _, _, _, ss, se = frame.meta
        raw = frame.raw
        if proto != COMPACT:
            return raw[:ss] + _I32.pack(request_id) + raw[se:]
        out = raw[:ss] + w.varint(request_id & 0xFFFFFFFF) + raw[se:]
        if framed and len(out) != len(raw):
            out = _I32.pack(len(out) - 4) + out[4:]
        return out

    def is_success(self, frame: Frame) -> bool:
        # a REPLY carries the result or a declared (business) exception; EXCEPTION is
        # a TApplicationException: the call failed in the server or on the way
        return frame.status == w.REPLY

    def local_reply(self, request: Frame, reason: str, message: str) -> bytes:
        framed, proto, _, ns, ne, _, _ = request.meta
        body = (w.message_header(proto, request.raw[ns:ne], w.EXCEPTION, request.request_id)
                + w.app_exception(proto, message, _REASON_TYPE.get(reason, w.APP_INTERNAL_ERROR)))
        return _I32.pack(len(body)) + body if framed else body

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        raise FrameError("thrift: the protocol has no heartbeats")


_PINNED: dict[tuple[str, str], ThriftCodec] = {}


def encode_message(name: str, mtype: int, seqid: int, body: bytes, *, protocol: int = BINARY,
                   framed: bool = True) -> bytes:
    """A whole message (tests and tools): header, the struct `body` as given, the frame."""
    msg = w.message_header(protocol, name.encode(), mtype, seqid) + body
    return _I32.pack(len(msg)) + msg if framed else msg


CODEC = ThriftCodec()
register(CODEC)
_PINNED["auto", "auto"] = CODEC
