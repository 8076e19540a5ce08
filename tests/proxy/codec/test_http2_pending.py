"""The way held-back DATA goes out when an HTTP/2 window grows, shared by the server's
and the upstream's streams (proxy/codec/http2_pending.py)."""
from __future__ import annotations

from mosnx.proxy.codec.http2_connection import StreamGone
from mosnx.proxy.codec.http2_pending import WindowedStream, WindowedStreams
from mosnx.proxy.http2.downstream import H2Down
from mosnx.proxy.http2.server import Http2Server
from mosnx.proxy.upstream.http2 import H2UpStream, H2UpstreamConnection


class Stream(WindowedStream):
    __slots__ = ("closed", "pending", "sent", "broken", "gone")

    def __init__(self, pending=(), closed=False, gone=False):
        self.closed = closed
        self.pending = list(pending)
        self.sent = []
        self.broken = False
        self.gone = gone

    def _drain_pending(self):
        if self.gone:
            raise StreamGone()
        self.sent += self.pending
        self.pending = []

    def _broken(self):
        self.broken = True


class Conn(WindowedStreams):
    def __init__(self, streams):
        self.streams = streams


def test_a_stream_window_drains_that_stream_only():
    a, b = Stream([b"x"]), Stream([b"y"])
    Conn({1: a, 3: b}).on_window(3)
    assert (a.sent, b.sent) == ([], [b"y"])


def test_the_connection_window_drains_every_stream_that_waits():
    a, b, idle = Stream([b"x"]), Stream([b"y", b"z"]), Stream()
    Conn({1: a, 3: b, 5: idle}).on_window(0)
    assert (a.sent, b.sent, idle.sent) == ([b"x"], [b"y", b"z"], [])


def test_an_unknown_stream_is_ignored():
    Conn({}).on_window(7)


def test_a_closed_stream_sends_nothing():
    s = Stream([b"x"], closed=True)
    s.drain_pending()
    assert s.sent == [] and s.pending == [b"x"]


def test_a_stream_the_peer_closed_under_us_is_broken():
    s = Stream([b"x"], gone=True)
    Conn({1: s}).on_window(1)
    assert s.broken


def test_both_ends_use_it():
    assert Http2Server.on_window is WindowedStreams.on_window
    assert H2UpstreamConnection.on_window is WindowedStreams.on_window
    assert H2Down.drain_pending is WindowedStream.drain_pending
    assert H2UpStream.drain_pending is WindowedStream.drain_pending
