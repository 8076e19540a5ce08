"""Dubbo 2 over Hessian 2: the 16-byte header, and the body's leading strings read lazily.

    magic 0xdabb:2 | flag | status | request id:8 | body length:4 | body

flag: 0x80 request, 0x40 two-way, 0x20 event (a heartbeat), low 5 bits the
serialization (2: Hessian 2). status is a response's (20 OK). A request body is
the dubbo version, service path, service version and method name as Hessian
strings, then the parameter types, the arguments and the attachments (a map).
Routing reads those four strings on first use, from the frame's own bytes; the
attachments only when something asks for a key the strings do not give (`:group`,
an attachment by name, the whole map): the parameter types tell how many
arguments to step over (hessian.Skipper, which builds none of them), then the
map's string entries are read. So a route on service, version or method never
pays for the arguments, and the body passes through untouched unless the proxy
adds attachments (trace context): then the new entries go in just before the
map's end and the body length is rewritten, nothing else moves.

A heartbeat request is answered here, with a heartbeat response of status OK. A
local reply is a response with Dubbo's status for the reason (SERVER_TIMEOUT,
SERVICE_NOT_FOUND, SERVER_THREADPOOL_EXHAUSTED_ERROR, ...) and the message as a
Hessian string body, which is how a Dubbo provider reports an error status.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Iterator

from .codec import (CODEC_ERROR, GROUP, HEARTBEAT, HEARTBEAT_ACK, METHOD, NO_ROUTE, ONEWAY, OVERFLOW,
                    RATE_LIMITED, REQUEST, RESET, RESPONSE, SERVICE, TIMEOUT, UNAVAILABLE, VERSION, Codec,
                    Frame, FrameError, register)
from .hessian import HessianError, Skipper, arg_count, read_string, write_string

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values

MAGIC = b"\xda\xbb"
HEADER = 16
FLAG_REQUEST = 0x80
FLAG_TWOWAY = 0x40
FLAG_EVENT = 0x20
SERIALIZATION_MASK = 0x1F
HESSIAN2 = 2

# Dubbo's response statuses (org.apache.dubbo.remoting.exchange.Response)
OK = 20
CLIENT_TIMEOUT = 30
SERVER_TIMEOUT = 31
CHANNEL_INACTIVE = 35
BAD_REQUEST = 40
BAD_RESPONSE = 50
SERVICE_NOT_FOUND = 60
SERVICE_ERROR = 70
SERVER_ERROR = 80
CLIENT_ERROR = 90
SERVER_THREADPOOL_EXHAUSTED_ERROR = 100

_REASON_STATUS = {NO_ROUTE: SERVICE_NOT_FOUND, TIMEOUT: SERVER_TIMEOUT,
                  OVERFLOW: SERVER_THREADPOOL_EXHAUSTED_ERROR, UNAVAILABLE: CHANNEL_INACTIVE,
                  RESET: CHANNEL_INACTIVE, RATE_LIMITED: SERVER_THREADPOOL_EXHAUSTED_ERROR,
                  CODEC_ERROR: BAD_REQUEST}
_STATUS_HTTP = {OK: 200, CLIENT_TIMEOUT: 504, SERVER_TIMEOUT: 504, CHANNEL_INACTIVE: 503, BAD_REQUEST: 400,
                SERVICE_NOT_FOUND: 404, SERVER_THREADPOOL_EXHAUSTED_ERROR: 503}

_HEAD = struct.Struct(">2sBBqI")
_ID = struct.Struct(">q")


class DubboCodec(Codec):
    name = "dubbo"
    max_id = 2 ** 63 - 1

    def decode(self, buf: bytes | bytearray, pos: int, limit: int) -> Frame | None:
        n = len(buf) - pos
        if n < 2:
            if n > 0 and buf[pos] != 0xDA:
                raise FrameError("dubbo: bad magic")
            return None
        if buf[pos] != 0xDA or buf[pos + 1] != 0xBB:
            raise FrameError("dubbo: bad magic")
        if n < HEADER:
            return None
        _, flag, status, rid, blen = _HEAD.unpack_from(buf, pos)
        total = HEADER + blen
        if total > limit:
            raise FrameError(f"dubbo: a frame of {total} bytes is above the limit of {limit}")
        if n < total:
            return None
        if rid < 0:
            raise FrameError("dubbo: a negative request id")
        if flag & FLAG_REQUEST:
            if flag & FLAG_EVENT:
                kind = HEARTBEAT
            else:
                kind = REQUEST if flag & FLAG_TWOWAY else ONEWAY
        else:
            kind = HEARTBEAT_ACK if flag & FLAG_EVENT else RESPONSE
        return Frame(self, kind, rid, bytes(buf[pos:pos + total]), status, (flag,))

    def header_map(self, frame: Frame) -> dict[str, str]:
        if frame.kind not in (REQUEST, ONEWAY):
            return {}
        if frame.meta[0] & SERIALIZATION_MASK != HESSIAN2:
            raise FrameError(f"dubbo: serialization {frame.meta[0] & SERIALIZATION_MASK} is not Hessian 2")
        raw = frame.raw
        h = DubboHeaders(raw)
        try:
            pos = HEADER
            dubbo_version, pos = read_string(raw, pos)
            path, pos = read_string(raw, pos)
            version, pos = read_string(raw, pos)
            method, pos = read_string(raw, pos)
        except HessianError as e:
            raise FrameError(f"dubbo: request body: {e}") from None
        if dubbo_version:
            h.put("dubbo", dubbo_version)
        if path:
            h.put(SERVICE, path)
            h.put("path", path)
        if version and version != "0.0.0":
            h.put(VERSION, version)
        if method:
            h.put(METHOD, method)
        h.rest = pos
        return h

    def with_headers(self, frame: Frame, extra: dict[str, str]) -> Frame:
        """The request with `extra` added to its attachments (a later entry wins over an
        earlier one of the same key, in Dubbo's HashMap as in any reader)."""
        h = frame.headers
        if not isinstance(h, DubboHeaders):
            raise FrameError("dubbo: only a request carries attachments")
        h.load()
        raw = frame.raw
        entries = b"".join(write_string(k) + write_string(v) for k, v in extra.items())
        at = h.map_end
        if raw[at] == 0x4E:                     # a null map becomes one
            body = raw[HEADER:at] + b"H" + entries + b"Z" + raw[at + 1:]
        else:
            body = raw[HEADER:at] + entries + raw[at:]
        out = Frame(self, frame.kind, frame.request_id, raw[:12] + len(body).to_bytes(4, "big") + body,
                    frame.status, frame.meta)
        merged = DubboHeaders(out.raw)
        merged.update(h)
        merged.update(extra)
        merged.loaded = True
        out._headers = merged
        return out

    def with_id(self, frame: Frame, request_id: int) -> bytes:
        raw = frame.raw
        return raw[:4] + _ID.pack(request_id) + raw[12:]

    def is_success(self, frame: Frame) -> bool:
        return frame.status == OK

    def http_status(self, frame: Frame) -> int:
        return _STATUS_HTTP.get(frame.status, 500)

    def local_reply(self, request: Frame, reason: str, message: str) -> bytes:
        serialization = request.meta[0] & SERIALIZATION_MASK if request.meta else HESSIAN2
        return encode(request.request_id, serialization, _REASON_STATUS.get(reason, SERVER_ERROR),
                      write_string(message))

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        return encode(heartbeat.request_id, FLAG_EVENT | (heartbeat.meta[0] & SERIALIZATION_MASK), OK, b"N")


class DubboHeaders(dict[str, str]):
    """A request's header map: the leading strings at once, the attachments on the first
    look-up of a key the strings did not give (or on a look at the whole map)."""

    __slots__ = ("raw", "rest", "loaded", "map_end", "error")

    def __init__(self, raw: bytes):
        super().__init__()
        self.raw = raw
        self.rest = HEADER          # where the parameter types start
        self.loaded = False
        self.map_end = 0            # the attachments' closing 'Z' (or their 'N'), once loaded
        self.error = ""             # why the attachments could not be read: every later look fails too

    put = dict.__setitem__

    def load(self) -> None:
        if self.loaded:
            if self.error:
                raise FrameError(self.error)
            return
        self.loaded = True
        raw = self.raw
        try:
            desc, pos = read_string(raw, self.rest)
            sk = Skipper(raw)
            for _ in range(arg_count(desc or "")):
                pos = sk.skip(pos)
            attachments, self.map_end, _ = sk.string_map(pos)
        except HessianError as e:
            self.error = f"dubbo: request attachments: {e}"
            raise FrameError(self.error) from None
        for k, v in attachments.items():
            dict.setdefault(self, k, v)
        if GROUP not in self and attachments.get("group"):
            dict.__setitem__(self, GROUP, attachments["group"])
        if VERSION not in self and attachments.get("version") not in (None, "", "0.0.0"):
            dict.__setitem__(self, VERSION, attachments["version"])

    def get(self, key: str, default: Any = None) -> Any:
        if not dict.__contains__(self, key):
            self.load()
        return dict.get(self, key, default)

    def __getitem__(self, key: str) -> str:
        if not dict.__contains__(self, key):
            self.load()
        return dict.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        if not dict.__contains__(self, key):
            self.load()
        return dict.__contains__(self, key)

    def items(self) -> dict_items[str, str]:
        self.load()
        return dict.items(self)

    def keys(self) -> dict_keys[str, str]:
        self.load()
        return dict.keys(self)

    def values(self) -> dict_values[str, str]:
        self.load()
        return dict.values(self)

    def __iter__(self) -> Iterator[str]:
        self.load()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.load()
        return dict.__len__(self)

    def __eq__(self, other: object) -> bool:
        self.load()
        if isinstance(other, DubboHeaders):
            other.load()
        return dict.__eq__(self, other)

    def copy(self) -> dict[str, str]:
        self.load()
        return dict(dict.items(self))


def encode(request_id: int, flag: int, status: int, body: bytes) -> bytes:
    return _HEAD.pack(MAGIC, flag, status, request_id, len(body)) + body


def request_body(service: str, method: str, version: str = "0.0.0", args: bytes = b"", param_types: str = "",
                 attachments: bytes = b"H\x5a", dubbo_version: str = "2.0.2") -> bytes:
    """A request body: the leading strings, then what the caller encoded (arguments, attachments)."""
    return (write_string(dubbo_version) + write_string(service) + write_string(version) + write_string(method)
            + write_string(param_types) + args + attachments)


def encode_request(request_id: int, body: bytes, *, oneway: bool = False) -> bytes:
    return encode(request_id, FLAG_REQUEST | (0 if oneway else FLAG_TWOWAY) | HESSIAN2, 0, body)


def encode_heartbeat(request_id: int) -> bytes:
    return encode(request_id, FLAG_REQUEST | FLAG_TWOWAY | FLAG_EVENT | HESSIAN2, 0, b"N")


CODEC = register(DubboCodec())
