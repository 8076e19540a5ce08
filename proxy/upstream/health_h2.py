"""HTTP/2 health checks: one request on a connection of its own, and the gRPC health protocol.

A check never borrows a pooled connection, so the pools' limits and state never see
it: it opens one, sends its request on stream 1, reads until it has what it judges
(the response head for an HTTP check, the trailers for gRPC), says GOAWAY and leaves
the closing to its caller, which also bounds it in time. The h2 library keeps the
protocol state; this module only drives it, off the hot path. The two gRPC messages
(grpc.health.v1 HealthCheckRequest and HealthCheckResponse) are one field each, so
they are encoded and parsed here by hand rather than with a protobuf runtime.
"""
from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events
import h2.exceptions

GRPC_HEALTH_PATH = b"/grpc.health.v1.Health/Check"
USER_AGENT = b"mosnx-health-check"
SERVING = 1               # HealthCheckResponse.ServingStatus.SERVING
_READ = 65536
_STREAM = 1               # the only stream a check opens


class Response:
    __slots__ = ("status", "headers", "body", "trailers", "ended", "reset")

    def __init__(self):
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.trailers: dict[bytes, bytes] | None = None
        self.ended = False
        self.reset: int | None = None         # RST_STREAM error code


def get_request(path: str, authority: str, scheme: bytes) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":scheme", scheme), (b":path", path.encode()),
            (b":authority", authority.encode()), (b"user-agent", USER_AGENT)]


def grpc_request(authority: str, scheme: bytes) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"POST"), (b":scheme", scheme), (b":path", GRPC_HEALTH_PATH),
            (b":authority", authority.encode()), (b"content-type", b"application/grpc"),
            (b"te", b"trailers"), (b"user-agent", USER_AGENT)]


class Exchange:
    """Sans-I/O: the bytes of one request out, the peer's bytes in, a Response kept."""

    def __init__(self, headers: list[tuple[bytes, bytes]], body: bytes = b""):
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.headers = headers
        self.body = body
        self.response = Response()

    def start(self) -> bytes:
        c = self.conn
        c.initiate_connection()
        c.send_headers(_STREAM, self.headers, end_stream=not self.body)
        if self.body:
            c.send_data(_STREAM, self.body, end_stream=True)
        return c.data_to_send()

    def feed(self, data: bytes) -> bytes:
        """The peer's bytes; what to send back (SETTINGS and PING acks, window updates).
        A broken peer is a ConnectionError, as a refused connect would be."""
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            raise ConnectionError(f"HTTP/2 protocol error: {e!r}") from None
        for ev in events:
            self._event(ev)
        return self.conn.data_to_send()

    def _event(self, ev: h2.events.Event) -> None:
        r = self.response
        if getattr(ev, "stream_id", _STREAM) != _STREAM:
            return
        if isinstance(ev, h2.events.ResponseReceived):
            r.headers = dict(ev.headers)
            r.status = int(r.headers.get(b":status", b"0"))
        elif isinstance(ev, h2.events.DataReceived):
            r.body += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, _STREAM)
        elif isinstance(ev, h2.events.TrailersReceived):
            r.trailers = dict(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            r.ended = True
        elif isinstance(ev, h2.events.StreamReset):
            r.reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated) and not self.done(False):
            # GOAWAY: unless it names our stream as processed, no answer is coming
            if ev.last_stream_id is None or ev.last_stream_id < _STREAM:
                raise ConnectionError(f"GOAWAY before the response (error {ev.error_code})")

    def done(self, whole: bool) -> bool:
        r = self.response
        return r.ended or r.reset is not None or (not whole and r.status != 0)

    def finish(self) -> bytes:
        try:
            self.conn.close_connection()
        except h2.exceptions.ProtocolError:
            return b""            # the peer closed first: nothing left to say
        return self.conn.data_to_send()


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: list[tuple[bytes, bytes]],
                   body: bytes = b"", whole: bool = True) -> Response:
    """Send one request and read its response: the head only unless `whole`.
    The caller bounds the time and closes the connection."""
    alpn = _alpn(writer)
    if alpn not in (None, "h2"):
        raise ConnectionError(f"the endpoint chose {alpn} by ALPN, not h2")
    x = Exchange(headers, body)
    writer.write(x.start())
    while not x.done(whole):
        data = await reader.read(_READ)
        if not data:
            raise ConnectionError("closed before the response")
        out = x.feed(data)
        if out:
            writer.write(out)
    writer.write(x.finish())
    return x.response


def _alpn(writer: asyncio.StreamWriter) -> str | None:
    obj = writer.get_extra_info("ssl_object")
    return obj.selected_alpn_protocol() if obj is not None else None


# -- grpc.health.v1 --

def _put_varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7


def health_check_request(service: str) -> bytes:
    """A gRPC message frame holding HealthCheckRequest{service}; an empty service is
    an empty message, as protobuf leaves default values out."""
    s = service.encode()
    msg = b"\x0a" + _put_varint(len(s)) + s if s else b""
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def serving_status(msg: bytes) -> int:
    """HealthCheckResponse.status (field 1); 0 (UNKNOWN) when absent. Other fields,
    which a newer server may send, are skipped by their wire type."""
    status = i = 0
    while i < len(msg):
        tag, i = _varint(msg, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            v, i = _varint(msg, i)
            if field == 1:
                status = v
        elif wire == 2:
            n, i = _varint(msg, i)
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if i > len(msg):
        raise ValueError("truncated field")
    return status


def grpc_serving(r: Response) -> bool:
    """HTTP 200, grpc-status 0 (in the trailers, or in the head of a trailers-only
    answer) and one uncompressed HealthCheckResponse saying SERVING."""
    meta = r.trailers if r.trailers is not None else r.headers
    if r.status != 200 or r.reset is not None or meta.get(b"grpc-status") != b"0":
        return False
    body = bytes(r.body)
    if len(body) < 5 or body[0] != 0:
        return False
    size = int.from_bytes(body[1:5], "big")
    if len(body) < 5 + size:
        return False
    try:
        return serving_status(body[5:5 + size]) == SERVING
    except ValueError:
        return False
