"""SOFA Bolt v1, the RPC protocol of SOFARPC (and MOSN's home protocol).

A request's fixed header is 22 bytes, a response's 20 (all big-endian):

    request:  proto=1 | type | cmdcode:2 | ver2 | id:4 | codec | timeout:4 | classLen:2 | headerLen:2 | contentLen:4
    response: proto=1 | type | cmdcode:2 | ver2 | id:4 | codec | status:2  | classLen:2 | headerLen:2 | contentLen:4

then the class name, the header map and the content. type: 0 response, 1 request,
2 one-way; cmdcode: 0 heartbeat, 1 request, 2 response. The header map is SOFA's
SimpleMapSerializer: (int32 key length, key, int32 value length, value)*, a value
length of -1 meaning null. SOFARPC puts the service's unique name there as
`service` ("interface:version[:uniqueId]"), and the Java client the method as
`sofa_head_method_name`; the content (the Hessian SofaRequest) passes through
undecoded. A client that leaves the method out of the header (the Node one) is
read only as far as the SofaRequest's first field, when that field is methodName
(as the Node client writes it); otherwise the call has no method for routing.

A local reply is a response with Bolt's status for the reason (TIMEOUT,
SERVER_THREADPOOL_BUSY, NO_PROCESSOR, ...) and no content, as MOSN answers: a
SOFARPC client turns the status into the call's error (the class of exception a
Java client raises is chosen by it), and needs no serialized exception object.
"""
from __future__ import annotations

import struct
from typing import Mapping

from .hessian import HessianError, read_class_def, read_string
from .codec import (CODEC_ERROR, HEARTBEAT, HEARTBEAT_ACK, NO_ROUTE, ONEWAY, OVERFLOW, RATE_LIMITED, REQUEST,
                    RESET, RESPONSE, TIMEOUT, UNAVAILABLE, Codec, Frame, FrameError, register)

PROTO_V1 = 0x01
TYPE_RESPONSE, TYPE_REQUEST, TYPE_ONEWAY = 0, 1, 2
CMD_HEARTBEAT, CMD_REQUEST, CMD_RESPONSE = 0, 1, 2
REQUEST_HEADER = 22
RESPONSE_HEADER = 20

# Bolt's response statuses (com.alipay.remoting.ResponseStatus)
SUCCESS = 0x0000
ERROR = 0x0001
SERVER_EXCEPTION = 0x0002
UNKNOWN = 0x0003
SERVER_THREADPOOL_BUSY = 0x0004
ERROR_COMM = 0x0005
NO_PROCESSOR = 0x0006
STATUS_TIMEOUT = 0x0007
CLIENT_SEND_ERROR = 0x0008
CODEC_EXCEPTION = 0x0009
CONNECTION_CLOSED = 0x0010

_REASON_STATUS = {NO_ROUTE: NO_PROCESSOR, TIMEOUT: STATUS_TIMEOUT, OVERFLOW: SERVER_THREADPOOL_BUSY,
                  UNAVAILABLE: CONNECTION_CLOSED, RESET: CONNECTION_CLOSED,
                  RATE_LIMITED: SERVER_THREADPOOL_BUSY, CODEC_ERROR: CODEC_EXCEPTION}
_STATUS_HTTP = {SUCCESS: 200, SERVER_THREADPOOL_BUSY: 503, STATUS_TIMEOUT: 504, NO_PROCESSOR: 404,
                CONNECTION_CLOSED: 503, CODEC_EXCEPTION: 400}
RESPONSE_CLASS = b"com.alipay.sofa.rpc.core.response.SofaResponse"
SOFA_REQUEST = "com.alipay.sofa.rpc.core.request.SofaRequest"
HESSIAN2 = 1                    # the codec byte of Hessian 2 content

_REQ = struct.Struct(">BBHBIBIHHI")
_RESP = struct.Struct(">BBHBIBHHHI")
_ID = struct.Struct(">I")
_I32 = struct.Struct(">i")


def header_bytes(headers: Mapping[str, str | None]) -> bytes:
    out = bytearray()
    for k, v in headers.items():
        kb = k.encode()
        out += _I32.pack(len(kb)) + kb
        if v is None:
            out += _I32.pack(-1)
        else:
            vb = v.encode()
            out += _I32.pack(len(vb)) + vb
    return bytes(out)


def parse_header_map(buf: bytes | bytearray, start: int, end: int) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = start
    try:
        while pos < end:
            (kl,) = _I32.unpack_from(buf, pos)
            pos += 4
            if kl < 0 or pos + kl > end:
                raise FrameError("bolt: a header key runs past the header map")
            k = bytes(buf[pos:pos + kl]).decode()
            pos += kl
            (vl,) = _I32.unpack_from(buf, pos)
            pos += 4
            if vl < -1 or pos + max(vl, 0) > end:
                raise FrameError("bolt: a header value runs past the header map")
            out[k] = bytes(buf[pos:pos + vl]).decode() if vl > 0 else ""
            pos += max(vl, 0)
    except struct.error:
        raise FrameError("bolt: the header map ends inside a length") from None
    except UnicodeDecodeError:
        raise FrameError("bolt: a header is not UTF-8") from None
    return out


def _first_field_method(raw: bytes, pos: int, codec: int) -> str | None:
    if codec != HESSIAN2 or pos >= len(raw):
        return None
    try:
        cls, fields, pos = read_class_def(raw, pos)
        if cls != SOFA_REQUEST or not fields or fields[0] != "methodName":
            return None
        method, _ = read_string(raw, pos)
    except HessianError:
        return None
    return method


class BoltCodec(Codec):
    name = "bolt"
    max_id = 2 ** 31 - 1

    def decode(self, buf: bytes | bytearray, pos: int, limit: int) -> Frame | None:
        n = len(buf) - pos
        if n < 2:
            if n > 0 and buf[pos] != PROTO_V1:
                raise FrameError(f"bolt: protocol code {buf[pos]} is not Bolt v1 (1)")
            return None
        if buf[pos] != PROTO_V1:
            raise FrameError(f"bolt: protocol code {buf[pos]} is not Bolt v1 (1)")
        typ = buf[pos + 1]
        if typ == TYPE_RESPONSE:
            if n < RESPONSE_HEADER:
                return None
            _, _, cmd, _, rid, _, status, cl, hl, bl = _RESP.unpack_from(buf, pos)
            head = RESPONSE_HEADER
        elif typ in (TYPE_REQUEST, TYPE_ONEWAY):
            if n < REQUEST_HEADER:
                return None
            _, _, cmd, _, rid, _, _timeout, cl, hl, bl = _REQ.unpack_from(buf, pos)
            status = 0
            head = REQUEST_HEADER
        else:
            raise FrameError(f"bolt: unknown command type {typ}")
        if cmd > CMD_RESPONSE:
            raise FrameError(f"bolt: unknown command code {cmd}")
        if cl >= 0x8000 or hl >= 0x8000 or bl >= 0x80000000:
            raise FrameError("bolt: a negative length")
        total = head + cl + hl + bl
        if total > limit:
            raise FrameError(f"bolt: a frame of {total} bytes is above the limit of {limit}")
        if n < total:
            return None
        if cmd == CMD_HEARTBEAT:
            kind = HEARTBEAT_ACK if typ == TYPE_RESPONSE else HEARTBEAT
        elif typ == TYPE_RESPONSE:
            kind = RESPONSE
        else:
            kind = ONEWAY if typ == TYPE_ONEWAY else REQUEST
        raw = bytes(buf[pos:pos + total])
        return Frame(self, kind, rid, raw, status, (head, cl, hl))

    def header_map(self, frame: Frame) -> dict[str, str]:
        head, cl, hl = frame.meta
        start = head + cl
        h = parse_header_map(frame.raw, start, start + hl)
        svc = h.get("service") or h.get("sofa_head_target_service")
        if svc:
            # SOFARPC's unique name: interface:version[:uniqueId]
            parts = svc.split(":")
            h[":service"] = parts[0]
            if len(parts) > 1:
                h[":version"] = parts[1]
            if len(parts) > 2:
                h[":group"] = parts[2]
        m = h.get("sofa_head_method_name") or _first_field_method(frame.raw, start + hl, frame.raw[9])
        if m:
            h[":method"] = m
        return h

    def with_id(self, frame: Frame, request_id: int) -> bytes:
        raw = frame.raw
        return raw[:5] + _ID.pack(request_id) + raw[9:]

    def with_headers(self, frame: Frame, extra: dict[str, str]) -> Frame:
        """The request with `extra` set in its header map (replacing entries of the same
        key); the class name and content are untouched."""
        head, cl, hl = frame.meta
        if head != REQUEST_HEADER:
            raise FrameError("bolt: only a request carries headers the proxy adds to")
        raw = frame.raw
        start = head + cl
        have = frame.headers
        if any(k in have for k in extra):
            # an entry replaced: the map written again from what was read (pseudo-keys left out)
            merged: dict[str, str | None] = {k: v for k, v in have.items() if k[:1] != ":"}
            merged.update(extra)
            hb = header_bytes(merged)
            new_hl = len(hb)
            out = raw[:16] + new_hl.to_bytes(2, "big") + raw[18:start] + hb + raw[start + hl:]
        else:
            # the usual case (no context came in): the new entries follow the old ones
            hb = header_bytes(extra)
            new_hl = hl + len(hb)
            out = raw[:16] + new_hl.to_bytes(2, "big") + raw[18:start + hl] + hb + raw[start + hl:]
        if new_hl >= 0x8000:
            raise FrameError("bolt: the header map would be above 32 KiB")
        return Frame(self, frame.kind, frame.request_id, out, frame.status, (head, cl, new_hl))

    def is_success(self, frame: Frame) -> bool:
        return frame.status == SUCCESS

    def http_status(self, frame: Frame) -> int:
        return _STATUS_HTTP.get(frame.status, 500)

    def local_reply(self, request: Frame, reason: str, message: str) -> bytes:
        return encode_response(request.request_id, _REASON_STATUS.get(reason, UNKNOWN), b"",
                               codec=request.raw[9], class_name=RESPONSE_CLASS)

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        return _RESP.pack(PROTO_V1, TYPE_RESPONSE, CMD_HEARTBEAT, 1, heartbeat.request_id,
                          heartbeat.raw[9], SUCCESS, 0, 0, 0)


def encode_request(request_id: int, headers: dict[str, str | None], content: bytes, *, oneway: bool = False,
                   timeout_ms: int = 3000, codec: int = 1,
                   class_name: bytes = b"com.alipay.sofa.rpc.core.request.SofaRequest") -> bytes:
    hb = header_bytes(headers)
    return _REQ.pack(PROTO_V1, TYPE_ONEWAY if oneway else TYPE_REQUEST, CMD_REQUEST, 1, request_id, codec,
                     timeout_ms, len(class_name), len(hb), len(content)) + class_name + hb + content


def encode_response(request_id: int, status: int, content: bytes, *, codec: int = 1,
                    class_name: bytes = RESPONSE_CLASS, headers: dict[str, str | None] | None = None) -> bytes:
    hb = header_bytes(headers) if headers else b""
    return _RESP.pack(PROTO_V1, TYPE_RESPONSE, CMD_RESPONSE, 1, request_id, codec, status,
                      len(class_name), len(hb), len(content)) + class_name + hb + content


def encode_heartbeat(request_id: int) -> bytes:
    return _REQ.pack(PROTO_V1, TYPE_REQUEST, CMD_HEARTBEAT, 1, request_id, 1, 0, 0, 0, 0)


CODEC = register(BoltCodec())
