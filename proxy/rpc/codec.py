"""The codec contract of multiplexed request/response RPC protocols (MOSN's X-Protocol).

A codec is sans-I/O and stateless: bytes in, Frames out; bytes out from a Frame
or from the few fields of a local reply. The proxy core (server.py, pool.py) never
looks inside a body: it reads a frame's kind, request id and, only when a route or
a balancer asks, its header map. A new protocol is one module that subclasses Codec
and calls register(); nothing in the core changes.

Invariants every codec keeps (tests/proxy/rpc check them for each registered one):
- decode(buf, pos, limit) returns a Frame for the whole frame starting at buf[pos],
  or None when more bytes are needed; anything it cannot frame (bad magic, a length below the
  header, a frame above `limit`) raises FrameError, never another exception.
- Frame.raw is the frame's bytes exactly as received; with_id() returns them with
  only the request id changed, so bodies pass through untouched.
- headers() is computed once, on first use, and may raise FrameError on a body
  it cannot read; the core then answers with a codec error.
- local_reply() answers a request in the protocol's own error format, so a client
  sees "no route" or "timeout" as an RPC error, never a dropped connection.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

# Frame kinds
REQUEST = 1          # a call that expects a response
ONEWAY = 2           # a call without a response
RESPONSE = 3
HEARTBEAT = 4        # a heartbeat request: answered by whoever receives it
HEARTBEAT_ACK = 5    # the answer to one

# Why the proxy answers a request itself; each codec maps these to its own statuses.
NO_ROUTE = "no_route"
TIMEOUT = "timeout"
OVERFLOW = "overflow"              # a circuit breaker refused the request
UNAVAILABLE = "unavailable"        # no healthy endpoint, or the connection could not be made
RESET = "reset"                    # the upstream connection closed with the request in flight
RATE_LIMITED = "rate_limited"
CODEC_ERROR = "codec_error"        # the request could not be read
ERRORS = (NO_ROUTE, TIMEOUT, OVERFLOW, UNAVAILABLE, RESET, RATE_LIMITED, CODEC_ERROR)

# The HTTP status each reason stands for, where governance shared with HTTP needs one
# (outlier detection, the cluster's upstream_rq_<class> counters, access logs).
HTTP_STATUS = {NO_ROUTE: 404, TIMEOUT: 504, OVERFLOW: 503, UNAVAILABLE: 503, RESET: 503,
               RATE_LIMITED: 429, CODEC_ERROR: 400}


# Pseudo-keys of a request's header map: what a call is, whatever protocol carries it.
SERVICE = ":service"
METHOD = ":method"
VERSION = ":version"
GROUP = ":group"


class FrameError(ValueError):
    """Bytes that are not a frame of this protocol (the connection cannot go on)."""


class Frame:
    """One decoded frame. `raw` is the whole frame; the header map is read lazily."""

    __slots__ = ("codec", "kind", "request_id", "raw", "status", "_headers", "meta")

    def __init__(self, codec: "Codec", kind: int, request_id: int, raw: bytes, status: int = 0,
                 meta: tuple = ()):
        self.codec = codec
        self.kind = kind
        self.request_id = request_id
        self.raw = raw
        self.status = status            # a response's status, in the protocol's own numbers
        self._headers: dict[str, str] | None = None
        self.meta = meta                # what the codec keeps from the fixed header (offsets, flags)

    @property
    def headers(self) -> dict[str, str]:
        """The protocol's attachments by name, and what routing knows a call by under
        the pseudo-keys SERVICE, METHOD, VERSION and GROUP (those the frame carries)."""
        h = self._headers
        if h is None:
            h = self._headers = self.codec.header_map(self)
        return h

    def __repr__(self) -> str:
        return f"Frame({self.codec.name}, kind={self.kind}, id={self.request_id}, {len(self.raw)} bytes)"


class Codec:
    """A protocol's framing. Subclasses set the class attributes and the methods."""

    name: ClassVar[str] = ""
    max_id: ClassVar[int] = 2 ** 31 - 1       # request ids the proxy assigns upstream: 1..max_id

    def for_listener(self, options: Mapping[str, Any]) -> "Codec":
        """The codec a listener with these settings (its config's options) decodes calls
        with: this one, or a stricter one (Thrift's pinned encoding). Upstream pools use
        whichever a listener gave them, so a variant may differ only on calls."""
        return self

    def decode(self, buf: bytes | bytearray, pos: int, limit: int) -> Frame | None:
        raise NotImplementedError

    def header_map(self, frame: Frame) -> dict[str, str]:
        raise NotImplementedError

    def with_id(self, frame: Frame, request_id: int) -> bytes:
        raise NotImplementedError

    def is_success(self, frame: Frame) -> bool:
        """A response the provider answered normally (a business exception included)."""
        raise NotImplementedError

    def http_status(self, frame: Frame) -> int:
        """A response's status as the HTTP status governance counts it by."""
        return 200 if self.is_success(frame) else 500

    def local_reply(self, request: Frame, reason: str, message: str) -> bytes:
        """A response to `request` in this protocol's error format; reason is one of ERRORS."""
        raise NotImplementedError

    def heartbeat_reply(self, heartbeat: Frame) -> bytes:
        raise NotImplementedError

    def with_headers(self, frame: Frame, extra: dict[str, str]) -> Frame | None:
        """The request with `extra` set in its attachments (trace context for the upstream),
        or None when the protocol carries none the proxy can add to."""
        return None


CODECS: dict[str, Codec] = {}


def register(codec: Codec) -> Codec:
    """Make `codec` the one for listeners and clusters of `protocol: <codec.name>`."""
    if not codec.name:
        raise ValueError("a codec needs a name")
    CODECS[codec.name] = codec
    return codec


def get(name: str) -> Codec | None:
    return CODECS.get(name)
