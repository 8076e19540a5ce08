"""DATA a flow-control window held back, on either end of an HTTP/2 connection.

The server's streams (proxy.http2.downstream.H2Down) and the upstream's
(proxy.upstream.http2.H2UpStream) both keep what the peer's window did not take in
`pending`, and send it when the codec says a window grew (the sink's on_window).
What they do once it is sent differs (the server lets the upstream go on, the
upstream lifts the stream's back-pressure), so each keeps its own
_drain_pending(); the way there is the same and lives here, inherited, so the
per-frame path costs no extra call. Sans-I/O: these only call their owners.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .http2_connection import StreamGone


class WindowedStreams:
    """Mixin for a connection sink whose `streams` (by stream id) are WindowedStream."""

    __slots__ = ()
    streams: dict[int, Any]

    def on_window(self, sid: int) -> None:
        """A stream's send window grew, or the connection's (sid 0: every stream's)."""
        if sid:
            x = self.streams.get(sid)
            if x is not None and x.pending:
                x.drain_pending()
            return
        for x in list(self.streams.values()):
            if x.pending:
                x.drain_pending()


class WindowedStream:
    """Mixin for one stream with `closed`, `pending`, `_drain_pending()` (send what
    waited) and `_broken()` (the peer closed the stream under us)."""

    __slots__ = ()
    closed: bool
    pending: list[bytes]

    if TYPE_CHECKING:
        def _drain_pending(self) -> None: ...
        def _broken(self) -> None: ...

    def drain_pending(self) -> None:
        """The peer opened its window: send what waited."""
        if self.closed or not self.pending:
            return
        try:
            self._drain_pending()
        except StreamGone:
            self._broken()
