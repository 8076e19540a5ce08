"""The downstream HTTP/2 connection: one HTTP/2 codec, one HttpStream per HTTP/2 stream.

Invariants:
- Bytes leave in one transport.write per data_received, and one per loop turn for
  frames made outside it (upstream answers): streams gather frames in the codec's
  buffer and `flush` schedules the write. A stream's newest DATA chunk waits for that
  write, so when the end arrives first the two share one frame (DATA with END_STREAM).
- Received DATA is acknowledged to the client only once the stream has taken it
  (forwarded, or buffered under its limit); a stream whose upstream is congested
  holds its window, so a slow upstream stalls only that stream's sender.
- Response DATA is sent only within the client's window for that stream; what does
  not fit waits on that stream and pauses its upstream (writable() is per stream),
  so a slow reader stalls only its own stream.
- A GOAWAY we send leaves the connection open so streams in flight finish; new
  streams after it, and streams over the limit, are refused (REFUSED_STREAM).
- A client that does not read is not read either: while the transport's writes are
  paused, reading is paused, so what it sends (PINGs, SETTINGS, requests) cannot
  queue answers without bound; the codec's outbound frame limits close it when one
  read's worth already does.
- A read larger than _FEED_SLICE is parsed a slice per loop turn, reading paused
  until the rest is parsed, so one connection's read delays the others by a slice's
  work, not a read's.
- A stream is started (routed, sent upstream) once the read that opened it has been
  parsed, unless that same read reset it: a HEADERS + RST_STREAM pair costs no
  upstream work. Streams the client resets early (premature resets, as Envoy counts
  them) close the connection once they outnumber the others.
- A header block left unfinished (CONTINUATION pending) longer than the listener's
  `timeouts.request_headers` closes the connection.

What each stream's answer becomes on the wire (windows, held DATA, trailers) is
proxy.http2.downstream's H2Down; this module is the connection around them.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mosnx.runtime.config.protocols import Http2Options
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers

from ..codec.http2 import H2HeadError, grpc_message_escape, is_grpc_type, request_parts, trailers_from_block
from ..codec.http2_connection import (ENHANCE_YOUR_CALM, INITIAL_WINDOW_SIZE,
                                      MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE, NO_ERROR,
                                      PROTOCOL_ERROR, REFUSED_STREAM, H2Connection, H2ConnectionError,
                                      H2Limits, StreamGone)
from ..codec.http2_pending import WindowedStreams
from ..codec.path import PathError, PathNormalizer
from ..fastpath.eligibility import listener_express
from ..stream import HttpStream
from ..stream.detail import stream_class
from ..sockets import set_nodelay
from .downstream import H2Down

if TYPE_CHECKING:
    from mosnx.runtime.model import Listener
    from ..listener_stats import ListenerStats

_NO_ERROR = NO_ERROR
_REFUSED = REFUSED_STREAM
_PROTOCOL = PROTOCOL_ERROR

DEFAULT_MAX_STREAMS = 100
DEFAULT_STREAM_WINDOW = 65535
DEFAULT_CONNECTION_WINDOW = 4 * 1024 * 1024
_DEFAULT_OPTIONS = Http2Options()
# bytes parsed per loop turn: about one largest header block's decoding
_FEED_SLICE = 64 * 1024
# seconds a connection closed for an error gets to take its last frames (the GOAWAY)
_LINGER = 1.0


# the http.<listener>.http2.<name> counters (Envoy's names), each a limit or a
# protocol error a client met; docs/metrics.md lists them from here
HTTP2_STATS = ("rx_reset", "premature_resets", "header_overflow", "too_many_headers", "header_block_timeout",
               "outbound_flood", "outbound_control_flood", "inbound_empty_frames_flood",
               "inbound_priority_frames_flood", "inbound_window_update_frames_flood", "rx_messaging_error")


def _limits(opts: Http2Options, limits) -> H2Limits:
    fields = opts.max_headers_count
    return H2Limits(max_block=limits.request_headers,
                    max_fields=limits.request_headers_count if fields is None else fields,
                    max_outbound_frames=opts.max_outbound_frames,
                    max_outbound_control_frames=opts.max_outbound_control_frames,
                    max_empty_frames=opts.max_consecutive_inbound_frames_with_empty_payload,
                    max_priority_per_stream=opts.max_inbound_priority_frames_per_stream,
                    max_window_updates_per_data=opts.max_inbound_window_update_frames_per_data_frame_sent)


class Http2Server(WindowedStreams, asyncio.Protocol):
    """HTTP/2 on one client connection (h2c prior knowledge, h2c upgrade, or h2 by ALPN).
    It is the codec's sink: the codec calls on_headers, on_data, ... from feed()."""

    def __init__(self, worker, listener_name: str, tls=None):
        self.worker = worker
        self.listener_name = listener_name
        # set in connection_made, before any other callback
        self.listener: Listener = None  # type: ignore[assignment]
        self.paths: PathNormalizer = None  # type: ignore[assignment]  # the listener's, kept with it
        self.express_ok = False     # its requests may take the express path (fastpath.eligibility)
        self.stream_cls: type[HttpStream] = HttpStream    # with per-route/host stats or not (stream.detail)
        self.lstats: ListenerStats = None  # type: ignore[assignment]
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.h2: H2Connection = None  # type: ignore[assignment]
        self.streams: dict[int, H2Down] = {}
        # a write is coming (the one ending data_received, or one scheduled), or there is
        # no transport yet: a flush has nothing to do
        self.write_soon = True
        self.tails: list[H2Down] = []       # streams holding a last DATA chunk until the write
        self.write_paused = False
        self.closing = False
        self.goaway_sent = False
        self.goaway_received = False
        self.deadline = 0.0
        self.peer = ("", 0)
        self.local = ("", 0)
        self.tls = tls                 # TlsInfo or None
        self.scheme = "https" if tls is not None else "http"
        self.max_streams = DEFAULT_MAX_STREAMS
        self.opts = _DEFAULT_OPTIONS
        self.feeding = False           # inside h2.feed: streams wait in `starting`
        self.backlog = b""             # the part of a large read not parsed yet
        self.backlog_soon = False
        self.slicing = False           # data_received is given a slice of the backlog
        self.read_paused = False
        self.starting: list[H2Down] = []
        self.block_since = 0.0         # loop time an unfinished header block was first seen
        self.streams_done = 0          # streams closed or reset, for the premature-reset ratio
        self.premature = 0

    # ---------------------------------------------------------------- connection
    def connection_made(self, transport, upgrade=None) -> None:
        """`upgrade`: (HTTP2-Settings value, request fields, body?) of an h2c Upgrade request."""
        self.transport = transport
        self.write_soon = False
        w = self.worker
        listener = w.snapshot.listeners[self.listener_name]
        self.listener = listener
        self.paths = PathNormalizer.of(listener.config.path_normalization)
        self.express_ok = listener_express(listener)
        self.lstats = w.listener_stats(self.listener_name)
        self.stream_cls = stream_class(listener, self.lstats)
        self.lstats.cx_total.value += 1
        self.lstats.cx_active.value += 1
        w.stats.counter(f"http.{self.listener_name}.downstream_cx_http2_total").value += 1
        cfg = listener.config
        opts = self.opts = cfg.options.get("http2") or _DEFAULT_OPTIONS
        self.max_streams = opts.max_concurrent_streams
        stream_window = opts.initial_stream_window_size
        conn_window = opts.initial_connection_window_size
        transport.set_write_buffer_limits(cfg.limits.write_high_water, cfg.limits.write_low_water)
        set_nodelay(transport)
        self.peer = (transport.get_extra_info("peername") or ("", 0))[:2]
        self.local = (transport.get_extra_info("sockname") or ("", 0))[:2]
        self.h2 = c = H2Connection(self, False, {MAX_CONCURRENT_STREAMS: self.max_streams,
                                                 MAX_HEADER_LIST_SIZE: cfg.limits.request_headers,
                                                 INITIAL_WINDOW_SIZE: stream_window}, conn_window,
                                  _limits(opts, cfg.limits))
        w.connections.add(self)
        self._arm_idle()
        if upgrade is not None:
            try:
                c.initiate_upgrade(upgrade[0])
            except H2ConnectionError:
                self._protocol_error()
                return
            f = upgrade[1]
            self._start_stream(1, (f.method, f.path, f.scheme, f.authority, f.headers.items,
                                   f.content_length, f.te_trailers), True)
        else:
            c.initiate()
        self.flush()

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.lstats.cx_active.value -= 1
        self.worker.connections.discard(self)
        streams = list(self.streams.values())
        self.streams.clear()
        for d in streams:
            d.closed = True
            http = d.http
            if http is not None:
                d.http = None
                http.reset()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if (len(data) > _FEED_SLICE or self.backlog) and not self.slicing:
            self.backlog += data
            self._feed_backlog()
            return
        self.write_soon = True          # what the codec's calls queue goes out below, at once
        self.feeding = True
        h2 = self.h2
        try:
            h2.feed(data)
        except H2ConnectionError as e:
            if not self.closing:
                self._protocol_error(e.kind)
            return
        finally:
            self.write_soon = False
            self.feeding = False
        starting = self.starting
        if starting and not self.backlog:
            # (streams of a read split in slices start once all of it is parsed)
            if len(starting) == 1:
                d = starting.pop()
                if d.http is not None and not d.closed:
                    d.http.start()
            else:
                self._start_pending()
        if h2.block_sid:
            if not self.block_since:
                self.block_since = self.worker.loop.time()
        elif self.block_since:
            self.block_since = 0.0
        if h2.out or self.tails:
            self._write_now()

    def _feed_backlog(self) -> None:
        """A large read is parsed a slice per loop turn, reading paused meanwhile, so
        one client's read (of header blocks to decode, say) holds the worker for a
        slice's worth of work, not a read's. Stops while writes are paused."""
        self.backlog_soon = False
        data = self.backlog
        if self.closing or not data or self.write_paused:
            self._update_reading()
            return
        self.backlog = data[_FEED_SLICE:]
        self._update_reading()
        self.slicing = True
        try:
            self.data_received(data[:_FEED_SLICE])
        finally:
            self.slicing = False
        if self.backlog and not self.closing and not self.write_paused and not self.backlog_soon:
            self.backlog_soon = True
            self.worker.loop.call_soon(self._feed_backlog)

    def _update_reading(self) -> None:
        """Read while writes flow and no backlog waits."""
        if self.closing:
            return
        paused = self.write_paused or bool(self.backlog)
        if paused != self.read_paused:
            self.read_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def _protocol_error(self, kind: str | None = None) -> None:
        self.worker.stats.counter(f"http.{self.listener_name}.downstream_cx_protocol_error").value += 1
        if kind is not None:
            self._h2_stat(kind)
        # the codec queued its GOAWAY; it goes out before the close
        self._close_after_flush(None, True)

    def _h2_stat(self, name: str) -> None:
        self.worker.stats.counter(f"http.{self.listener_name}.http2.{name}").value += 1

    def _calm_down(self, kind: str) -> None:
        """A limit a client broke outside the codec: GOAWAY ENHANCE_YOUR_CALM, then close
        (cut off soon after, if it does not read: see _close_after_flush)."""
        self._h2_stat(kind)
        self.goaway_sent = True
        h2 = self.h2
        h2.goaway(ENHANCE_YOUR_CALM)
        h2.closed = True               # nothing more it sends is parsed
        self._close_after_flush(None, True)

    def eof_received(self):
        return False

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.closing:
            self.h2.written()
            if self.backlog:
                if not self.backlog_soon:
                    self.backlog_soon = True
                    self.worker.loop.call_soon(self._feed_backlog)
            else:
                self._update_reading()
        for d in list(self.streams.values()):
            if not d.pending and d.http is not None and not d.closed:
                d.http.on_downstream_drain()

    def flush(self) -> None:
        """Frames gathered outside data_received go out once per loop turn: the answers of
        many upstreams arriving together share one write."""
        if not self.write_soon:
            self.write_soon = True
            self.worker.loop.call_soon(self._write_now)

    def _write_now(self) -> None:
        self.write_soon = False
        if self.closing:
            return
        tails = self.tails
        if tails:
            for d in tails:
                if d.tail is not None:      # (most went out with their stream's end)
                    d.release_tail()
            tails.clear()
        h2 = self.h2
        if self.write_paused:
            # what the transport holds already: these frames queue behind it
            h2.held_frames += len(h2.out)
            kind = h2.flooded()
            if kind is not None and not h2.closed:
                self._calm_down(kind)
                return
        elif h2.control:
            h2.control = 0              # the transport took everything so far
        out = h2.data_to_send()
        if out:
            self.transport.write(out)

    # ---------------------------------------------------------------- codec calls
    def on_headers(self, sid: int, fields, end: bool) -> None:
        if self.goaway_sent or self.closing or len(self.streams) >= self.max_streams:
            self.worker.stats.counter(f"http.{self.listener_name}.downstream_rq_refused").value += 1
            self.h2.reset_stream(sid, _REFUSED)
            return
        try:
            parts = request_parts(fields)
        except H2HeadError as e:
            self.worker.stats.counter(f"http.{self.listener_name}.downstream_rq_malformed." + e.detail).value += 1
            self._h2_stat("rx_messaging_error")
            self.h2.reset_stream(sid, _PROTOCOL)
            return
        if not end and parts[5] is not None:
            self.h2.expect_length(sid, parts[5])
        self._start_stream(sid, parts, end)

    def on_header_list_too_large(self, sid: int) -> None:
        # answered here, before any stream exists: what an HTTP/1.1 client gets for the same
        self.worker.stats.counter(f"http.{self.listener_name}.downstream_rq_malformed.header_list_too_large").value += 1
        refusal = self.h2.refusal or "header_overflow"
        self._h2_stat(refusal)
        # the cause an HTTP/1.1 client gets for the same head
        cause = b"too_many_request_headers" if refusal == "too_many_headers" else b"request_headers_too_large"
        self.lstats.refused(431, cause.decode())
        h2c = self.h2
        try:
            h2c.send_headers(sid, [(b":status", b"431"), (b"content-length", b"0"),
                                   (b"x-mosnx-error", cause)], True)
        except StreamGone:
            return
        h2c.reset_stream(sid, _NO_ERROR)    # no-op unless the client is still sending

    def _refuse_path(self, sid: int, e: PathError, grpc: bool = False) -> None:
        # a path that cannot be normalised (codec.path) fails its stream alone: a 400
        # (or the 307 of escaped_slashes: unescape_and_redirect), as HTTP/1.1 answers it
        w, prefix = self.worker, f"http.{self.listener_name}."
        fields = [(b":status", b"%d" % e.status), (b"content-length", b"0"), (b"x-mosnx-error", e.detail.encode())]
        if e.location is None:
            w.stats.counter(prefix + "downstream_rq_failed_path_normalization").value += 1
            w.stats.counter(prefix + "downstream_rq_malformed." + e.detail).value += 1
        else:
            w.stats.counter(prefix + "downstream_rq_redirected_with_normalized_path").value += 1
            fields.append((b"location", e.location.encode("ascii")))
        if grpc:
            # a gRPC client follows no redirect and reads no 400: it gets a trailers-only
            # INTERNAL, as Envoy answers a gRPC call under UNESCAPE_AND_REDIRECT
            fields = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"13"),
                      (b"grpc-message", grpc_message_escape(e.detail)), (b"x-mosnx-error", e.detail.encode())]
        w.access_log_error(self.listener_name, self.peer, e.status, e.detail, "HTTP/2")
        self.lstats.refused(e.status, e.detail)
        try:
            self.h2.send_headers(sid, fields, True)
        except StreamGone:
            return
        self.h2.reset_stream(sid, _NO_ERROR)    # no-op unless the client is still sending

    def _start_stream(self, sid: int, parts: tuple, ended: bool) -> None:
        """`parts`: a request as codec.http2.request_parts gives it."""
        method, path, _, authority, items, content_length, te = parts
        w = self.worker
        listener = w.snapshot.listeners.get(self.listener_name, self.listener)
        if listener is not self.listener:
            self.listener = listener
            self.paths = PathNormalizer.of(listener.config.path_normalization)
            self.express_ok = listener_express(listener)
            self.stream_cls = stream_class(listener, self.lstats)
        try:        # the one canonical path every later stage sees (codec.path)
            path = self.paths.path(method, path)
        except PathError as e:
            ctype = next((v for k, v in items if k == b"content-type"), None)
            return self._refuse_path(sid, e, is_grpc_type(ctype))
        items = list(items)       # the stream's own: steps edit them
        if te:
            # kept for the upstream side: an HTTP/2 upstream re-sends `te: trailers`
            items.append((b"te", b"trailers"))
        # the connection, not the client, says whether this arrived over TLS
        req = RequestHead(method, path, Headers(items), "2", self.scheme, authority)
        ctx = StreamContext(req, self.listener_name, "HTTP/2", self.peer, self.local)
        tls = self.tls
        if tls is not None:
            ctx.connection_sni = tls.sni
            ctx.connection_mtls = tls.mtls
            ctx.peer_subject = tls.subject
            ctx.tls = tls
        body = 0 if ended else content_length
        d = H2Down(self, sid, method == "HEAD", ended)
        # a request with no body on a listener with no request step may take the
        # express path (fastpath.eligibility)
        http = self.stream_cls(d, w, listener, self.lstats, ctx, body, True, False, False, ended and self.express_ok)
        d.http = http
        self.streams[sid] = d
        self.deadline = 0.0
        d.born = w.loop.time()
        if self.feeding:
            self.starting.append(d)     # unless this read also resets it (see the module docstring)
        else:
            http.start()

    def _start_pending(self) -> None:
        """Start the streams the current read opened, in order, but those it reset."""
        pend = self.starting
        self.starting = []
        for d in pend:
            http = d.http
            if http is not None and not d.closed:
                http.start()

    def on_data(self, sid: int, data: bytes, n: int, end: bool) -> None:
        # the upstream's on_data acknowledges by the same rule, kept inline there too: it runs per frame
        if self.starting:
            self._start_pending()
        d = self.streams.get(sid)
        if d is None or d.closed or d.http is None or not data:
            # an empty DATA (END_STREAM alone) is no body chunk: to HTTP/1.1 it would be the last chunk
            if n:
                self.h2.ack(sid, n)
        else:
            d.http.on_request_body(data)
            if d.body_paused:
                d.unacked += n
            elif not d.closed:
                self.h2.ack(sid, n)
        if end and d is not None:
            self._request_ended(d, None)

    def on_trailers(self, sid: int, fields) -> None:
        if self.starting:
            self._start_pending()
        d = self.streams.get(sid)
        if d is None:
            return
        try:
            trailers = trailers_from_block(fields, validate=True)
        except H2HeadError:
            if d.http is not None:
                d.http.reset()
            d._reset(_PROTOCOL)
            return
        self._request_ended(d, trailers)

    def _request_ended(self, d: H2Down, trailers) -> None:
        if d.req_ended:
            return
        d.req_ended = True
        http = d.http
        if http is not None and http.request_body != 0 and not d.closed:
            http.on_request_end(trailers)
        d._maybe_done()

    def on_reset(self, sid: int, code: int) -> None:
        peer = self.h2.peer_reset
        if peer:
            self._h2_stat("rx_reset")
        d = self.streams.pop(sid, None)
        if d is None:
            return
        d.closed = True
        d.pending = []
        http = d.http
        if http is not None:
            d.http = None
            http.reset()
        self.streams_done += 1
        if peer and self.worker.loop.time() - d.born < self.opts.premature_reset_min_stream_lifetime:
            self.premature += 1
            if self._too_many_premature_resets():
                return
        if not self.streams:
            self._after_close()

    def _too_many_premature_resets(self) -> bool:
        """Envoy's rule: with `total` the configured stream count, close when premature
        resets reach half of it before that many streams were seen, or half of the
        streams seen after. A rapid-reset client is cut off after total/2 streams."""
        total = self.opts.premature_reset_total_stream_count
        bad = self.premature * 2
        if bad < total if self.streams_done < total else bad < self.streams_done:
            return False
        if not self.closing:
            self.worker.stats.counter(
                f"http.{self.listener_name}.downstream_rq_too_many_premature_resets").value += 1
            self._calm_down("premature_resets")
            raise H2ConnectionError(ENHANCE_YOUR_CALM, "too many premature resets")
        return True

    def on_settings(self) -> None:
        pass      # a larger initial window arrives as on_window(0)

    def on_goaway(self, last_stream_id: int, code: int) -> None:
        self.goaway_received = True
        if code:
            self._close_after_flush(None)
            return
        if not self.streams:
            self._close_after_flush(None)

    # ---------------------------------------------------------------- streams
    def stream_closed(self, d: H2Down) -> None:
        streams = self.streams
        if streams.get(d.sid) is d:
            del streams[d.sid]
            self.streams_done += 1
            # the stream and its Downstream refer to each other: without this they, and
            # all the stream holds, would wait for the cycle collector
            d.http = None
            if not streams:
                self._after_close()

    def _after_close(self) -> None:
        """The last stream closed."""
        if self.goaway_sent or self.goaway_received or self.worker.draining:
            self._write_now()
            self._close_after_flush(None)
        else:
            self._arm_idle()

    # ---------------------------------------------------------------- lifecycle
    def _arm_idle(self) -> None:
        t = self.listener.config.timeouts.idle
        self.deadline = self.worker.loop.time() + t if t else 0.0

    def check_deadline(self, now: float) -> None:
        """Called by the worker's sweep: each stream's timeouts, then the connection's."""
        if self.block_since and not self.closing:
            if now - self.block_since > self.listener.config.timeouts.request_headers:
                # a header block (CONTINUATION) left unfinished: the HPACK state waits on it
                self.worker.stats.counter(f"http.{self.listener_name}.downstream_rq_header_timeout").value += 1
                self._calm_down("header_block_timeout")
                return
        if self.streams and not self.closing:
            for d in list(self.streams.values()):
                if d.http is not None:
                    d.http.check_timeouts(now)
        if not self.deadline or now < self.deadline or self.closing or self.streams:
            return
        self.deadline = 0.0
        self._goaway()
        self._close_after_flush(None, True)

    def _goaway(self, code: int = 0) -> None:
        if self.goaway_sent or self.closing:
            return
        self.goaway_sent = True
        self.h2.goaway(code)
        self._write_now()

    def drain(self) -> None:
        """Server drain: GOAWAY now; close once the streams in flight are done."""
        self._goaway()
        if not self.streams:
            self._close_after_flush(None)

    def _close_after_flush(self, code, linger: bool = False) -> None:
        """Close once what is queued is written. `linger` (a connection closed for an
        error): send FIN after the GOAWAY and discard what the client still sends, so
        bytes left unread do not turn the close into an RST that destroys the GOAWAY
        before the client reads it (Envoy's delayed close); and cut it off after
        _LINGER either way, so a client that does not read cannot hold it open."""
        if self.closing:
            return
        # what is queued (a final response, or the codec's GOAWAY after a connection error) goes first
        self._write_now()
        if self.closing:
            return
        self.closing = True
        t = self.transport
        if not linger:
            t.close()
            return
        if t.can_write_eof():
            t.write_eof()
            if self.read_paused:
                self.read_paused = False
                t.resume_reading()          # data_received discards it: we are closing
        else:
            t.close()
        self.worker.loop.call_later(_LINGER, t.abort)
