"""The seams of the executor, as typing.Protocols the type checker holds both sides
to: what a stream needs from its client side (Downstream: http1.server and
http2.downstream implement it), from the upstream side of one attempt (Upstream:
upstream.http1 and upstream.http2 implement it), and what those call on a stream
(Stream: HttpStream implements it); and an upgraded upstream (Tunnel).

tests/proxy/stream/test_contracts.py checks each implementation against its
Protocol at run time as well (method names and parameter counts), so drift shows
even where no type is declared.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers


class Downstream(Protocol):
    """The client side of one stream."""

    def send_head(self, stream: Any, status: int, headers: Headers, body_len: int | None,
                  end: bool) -> None: ...

    def send_data(self, stream: Any, data: bytes) -> None: ...

    def send_end(self, stream: Any, trailers: Headers | None) -> None: ...

    def send_whole(self, stream: Any, status: int, headers: Headers, body_len: int, body: bytes,
                   memo: list | None = None) -> None:
        """send_head, send_data and send_end at once, for a body of known length. With
        `memo` (a list whose slot 2 the downstream may fill), the same response head
        comes again: the downstream may keep what it made of it there."""

    def flush(self) -> None:
        """Write out what send_head/send_data gathered (called after each upstream read)."""

    def send_continue(self, stream: Any) -> None: ...

    def send_raw(self, stream: Any, data: bytes) -> None:
        """Tunnel bytes, after a 101."""

    def abort(self, stream: Any) -> None:
        """End the response short: the client must not take it as complete."""

    def pause_body(self, stream: Any) -> None: ...

    def resume_body(self, stream: Any) -> None: ...

    def writable(self) -> bool: ...

    def start_tunnel(self, stream: Any) -> None: ...

    def stream_finished(self, stream: Any) -> None:
        """Both the request and the response of `stream` are done."""


class Upstream(Protocol):
    """The upstream side of one attempt: a pooled HTTP/1.1 connection, or one stream
    of an HTTP/2 connection. It frames the request for its protocol."""

    stream: Any            # the stream it serves, None once let go
    pool: Any              # the pool it goes back to (release)
    paused: bool           # its reading is paused
    reused: bool           # the connection served requests before (a keep-alive race is possible)

    @property
    def tls(self) -> Any:
        """The connection's TlsInfo (what its handshake told), None in cleartext."""

    def send_request(self, req: RequestHead, source: str, body: int | None, upgrade: bool,
                     chunks: list[bytes] | None, ended: bool, trailers: Headers | None,
                     decoded: Any = None, wire: bytes | None = None, wire_n: int = 0) -> None:
        """The request so far: its head (`body`: the Content-Length, 0 for none, None
        for a length unknown), the body chunks read so far, and its end if it came.
        `decoded`: the decoder's memo entry the head came from, when nothing but the
        request id (and last, the trace context) was added since. `wire`: the trace
        context encoded as HTTP/1.1 fields, written last: the last `wire_n` fields of
        the head, or with 0, fields the head does not hold (an HTTP/1.1 upstream
        writes it as it is; others read the fields)."""

    def send_body(self, data: bytes) -> None: ...

    def send_end(self, trailers: Headers | None) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        """Give up on the attempt: the connection (HTTP/1.1) or stream (HTTP/2) ends."""


class Tunnel(Protocol):
    """An upstream after a 101 (HTTP/1.1 only: an Upgrade has no HTTP/2 form)."""

    def send(self, data: bytes) -> None:
        """Raw bytes."""

    def close(self) -> None: ...


class Stream(Protocol):
    """What servers, pools, upstream connections and mirrors call on a stream."""

    ctx: StreamContext
    down: Any
    req: Any               # state.Req

    @property
    def alive(self) -> bool: ...

    @property
    def request_done(self) -> bool: ...

    @property
    def response_started(self) -> bool:
        """The head went out, or the stream ended (nothing more will be sent either way)."""

    @property
    def response_done(self) -> bool: ...

    # from the server
    def start(self) -> None: ...
    def on_request_body(self, data: bytes) -> None: ...
    def on_request_end(self, trailers: Headers | None) -> None: ...
    def on_downstream_drain(self) -> None: ...
    def on_tunnel_downstream_data(self, data: bytes) -> None: ...
    def on_tunnel_closed(self) -> None: ...
    def reset(self) -> None: ...
    def check_timeouts(self, now: float) -> None: ...

    # from the pool
    def on_pool_ready(self, conn: Upstream) -> None: ...
    def on_pool_failure(self, detail: str, status: int) -> None: ...

    # from the upstream
    def on_upstream_head(self, status: int, headers: Headers, keep_alive: bool, body: int | None) -> None: ...
    def on_upstream_whole(self, conn: Upstream, status: int, headers: Headers, keep_alive: bool,
                          body_len: int, body: bytes, decoded: Any = None) -> bool: ...
    def on_upstream_data(self, data: bytes) -> None: ...
    def on_upstream_end(self, trailers: Headers | None) -> None: ...
    def on_upstream_reset(self, detail: str, status: int) -> None: ...
    def on_upstream_pressure(self, high: bool) -> None: ...
    def on_tunnel_upstream_data(self, data: bytes) -> None: ...


if TYPE_CHECKING:
    # The type checker holds each implementation to its Protocol here, whether or not
    # a call site happens to name the Protocol.
    from ..http1.server import Http1Server
    from ..http2.downstream import H2Down
    from ..upstream.http1 import UpstreamConnection
    from ..upstream.http2 import H2UpStream
    from .executor import HttpStream

    def _implementations(h1: Http1Server, h2: H2Down, up1: UpstreamConnection, up2: H2UpStream,
                         stream: HttpStream) -> tuple[Downstream, Downstream, Upstream, Upstream, Tunnel, Stream]:
        return h1, h2, up1, up2, up1, stream
