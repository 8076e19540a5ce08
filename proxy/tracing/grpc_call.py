"""gRPC calls to a collector on the proxy's own HTTP/2 codec: what the OTLP and
SkyWalking exporters send their batches with.

One connection per exporter, opened by the first call and kept while the collector
keeps it (a call after it closed, or after a GOAWAY, opens another). A call is one
stream: HEADERS (POST, the method's path, application/grpc, te: trailers), every
message length-prefixed in DATA, so SkyWalking's client stream of segments is one
call like OTLP's unary Export; flow control holds back what the windows do not take
yet. The answer's HTTP status and grpc-status (headers, or trailers) say whether the
call succeeded; its messages are read and dropped. Everything runs on the worker's
loop: no thread of its own, nothing woken between calls.
"""
from __future__ import annotations

import asyncio
import struct
from typing import Sequence

from mosnx.runtime.config.units import parse_address

from ..codec.http2_connection import CANCEL, H2Connection, H2ConnectionError, StreamGone

_PREFIX = struct.Struct(">BI").pack      # uncompressed, length


class GrpcError(Exception):
    """The call failed; the text says where and why."""


class _Call:
    __slots__ = ("body", "sent", "status", "grpc_status", "message", "done")

    def __init__(self, body: bytes, done: asyncio.Future[None]) -> None:
        self.body = body
        self.sent = 0
        self.status = 0
        self.grpc_status: bytes | None = None
        self.message = b""
        self.done = done


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection to the collector; the codec's sink."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.h2 = H2Connection(self, client=True)
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, _Call] = {}
        self.usable = True

    # -- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport      # type: ignore[assignment]
        self.h2.initiate()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            self.h2.feed(data)
        except H2ConnectionError as e:
            self._flush()
            self._fail_all(f"HTTP/2 connection error: {e}")
            if self.transport is not None:
                self.transport.close()
            return
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._fail_all(f"connection closed{': ' + str(exc) if exc else ''}")

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.h2.written()

    # -- calls
    def start(self, path: bytes, authority: bytes, body: bytes, done: asyncio.Future[None]) -> int:
        sid = self.h2.next_stream_id()
        self.h2.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                                   (b":authority", authority), (b"content-type", b"application/grpc"),
                                   (b"te", b"trailers"), (b"user-agent", b"mosnx")])
        call = self.calls[sid] = _Call(body, done)
        self._pump(sid, call)
        self._flush()
        return sid

    def cancel(self, sid: int) -> None:
        if self.calls.pop(sid, None) is not None:
            self.h2.reset_stream(sid, CANCEL)
            self._flush()

    def _pump(self, sid: int, call: _Call) -> None:
        body = call.body
        if call.sent >= len(body):
            return
        try:
            call.sent += self.h2.send_data(sid, body[call.sent:] if call.sent else body, True)
        except StreamGone:
            self._finish(sid, "the collector closed the stream before the request was sent")

    def _finish(self, sid: int, error: str | None = None) -> None:
        call = self.calls.pop(sid, None)
        if call is None or call.done.done():
            return
        if error is None:
            if call.status != 200:
                error = f"answered HTTP {call.status or 'nothing'}"
            elif call.grpc_status is None:
                error = "answered without a grpc-status"
            elif call.grpc_status != b"0":
                error = f"grpc-status {call.grpc_status.decode('latin-1')}" + (
                    f": {call.message.decode('latin-1')}" if call.message else "")
        if error is None:
            call.done.set_result(None)
        else:
            call.done.set_exception(GrpcError(f"{self.where}: {error}"))

    def _fail_all(self, error: str) -> None:
        for sid in list(self.calls):
            self._finish(sid, error)

    # -- the codec's sink
    def _read(self, call: _Call, fields: Sequence[tuple[bytes, bytes]]) -> None:
        for k, v in fields:
            if k == b":status":
                call.status = int(v) if v.isdigit() else 0
            elif k == b"grpc-status":
                call.grpc_status = v
            elif k == b"grpc-message":
                call.message = v

    def on_headers(self, sid: int, fields: Sequence[tuple[bytes, bytes]], end_stream: bool) -> None:
        call = self.calls.get(sid)
        if call is not None:
            self._read(call, fields)
            if end_stream:          # trailers-only: the status came with the head
                self._finish(sid)

    def on_trailers(self, sid: int, fields: Sequence[tuple[bytes, bytes]]) -> None:
        call = self.calls.get(sid)
        if call is not None:
            self._read(call, fields)
            self._finish(sid)

    def on_data(self, sid: int, data: bytes, flow_len: int, end_stream: bool) -> None:
        self.h2.ack(sid, flow_len)
        if end_stream:
            self._finish(sid)

    def on_reset(self, sid: int, code: int) -> None:
        self._finish(sid, f"stream reset (error {code})")

    def on_window(self, sid: int) -> None:
        for s, call in list(self.calls.items()):
            if not sid or s == sid:
                self._pump(s, call)

    def on_settings(self) -> None:
        pass

    def on_goaway(self, last_stream_id: int, code: int) -> None:
        self.usable = False             # the calls it accepted may still finish
        for sid in [s for s in self.calls if s > last_stream_id]:
            self._finish(sid, f"not accepted (GOAWAY, error {code})")

    def on_header_list_too_large(self, sid: int) -> None:
        self._finish(sid, "answer headers too large")


class GrpcChannel:
    """Calls to one host:port, one at a time or several at once, on a kept connection."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self.host, self.port = parse_address(endpoint)
        self.authority = endpoint.encode("ascii", "replace")
        self.timeout = timeout
        self.conn: _Connection | None = None

    async def call(self, method: str, messages: Sequence[bytes]) -> None:
        """One call of `method` ("/package.Service/Method") sending `messages`; GrpcError
        unless the collector answered grpc-status 0 within the timeout."""
        body = b"".join([_PREFIX(0, len(m)) + m for m in messages])
        try:
            await asyncio.wait_for(self._call(method.encode("ascii"), body), self.timeout)
        except asyncio.TimeoutError:
            raise GrpcError(f"{self.host}:{self.port}{method}: no answer within {self.timeout:g}s") from None
        except OSError as e:
            raise GrpcError(f"{self.host}:{self.port}: {type(e).__name__}: {e}") from None

    async def _call(self, path: bytes, body: bytes) -> None:
        conn = self.conn
        if conn is None or not conn.usable or conn.transport is None or conn.transport.is_closing():
            loop = asyncio.get_running_loop()
            conn = _Connection(f"{self.host}:{self.port}")
            await loop.create_connection(lambda: conn, self.host, self.port)
            self.conn = conn
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sid = conn.start(path, self.authority, body, done)
        try:
            await done
        except asyncio.CancelledError:
            conn.cancel(sid)
            raise

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()
