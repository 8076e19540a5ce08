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
"""
from __future__ import annotations

import asyncio

from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers

from ..codec.http2 import H2HeadError, request_parts, response_fields, trailer_block, trailers_from_block
from ..codec.http2_connection import (INITIAL_WINDOW_SIZE, INTERNAL_ERROR, MAX_CONCURRENT_STREAMS,
                                      MAX_HEADER_LIST_SIZE, NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM,
                                      H2Connection, H2ConnectionError, StreamGone)
from ..codec.path import PathError, PathNormalizer
from ..express import ExpressStream
from ..stream import HttpStream
from ..sockets import set_nodelay

_NO_ERROR = NO_ERROR
_REFUSED = REFUSED_STREAM
_INTERNAL = INTERNAL_ERROR
_PROTOCOL = PROTOCOL_ERROR

DEFAULT_MAX_STREAMS = 100
DEFAULT_STREAM_WINDOW = 65535
DEFAULT_CONNECTION_WINDOW = 4 * 1024 * 1024


class H2Down:
    """The Downstream of one HTTP/2 stream (see proxy.stream.Downstream)."""

    __slots__ = ("conn", "h2", "sid", "http", "pending", "end_pending", "trailers_pending",
                 "sent_end", "closed", "unacked", "body_paused", "head", "req_ended", "finished",
                 "held", "tail")

    def __init__(self, conn: "Http2Server", sid: int, head: bool, req_ended: bool):
        self.conn = conn
        self.h2 = conn.h2
        self.sid = sid
        self.http: HttpStream | None = None
        self.pending: list[bytes] = []        # response DATA beyond the client's window
        self.end_pending = False
        self.trailers_pending = None
        self.sent_end = False
        self.closed = False                   # reset, either way
        self.unacked = 0                      # request bytes taken while paused, not yet acknowledged
        self.body_paused = False
        self.head = head
        self.req_ended = req_ended
        self.finished = False
        self.held = None                      # a bodiless response's HEADERS, until its end
        self.tail = None                      # the newest DATA chunk, until the write or the end

    # -- Downstream --
    # the codec refuses frames for a stream the client has just closed in ways its
    # calls have not told us yet; such a stream is over, whatever was being sent.
    def send_head(self, stream, status: int, headers: Headers, body_len, end: bool) -> None:
        if self.closed or self.sent_end:
            return
        if status == 101:
            return self.abort(stream)
        if self.head:
            block = response_fields(status, headers.items, None)
            cl = headers.getb(b"content-length")
            if cl is not None:
                block += ((b"content-length", cl),)
            end = True
        else:
            block = response_fields(status, headers.items, body_len)
            if body_len == 0 and not end:
                # held until the end arrives, so an empty response (gRPC's trailers-only
                # answer in particular) stays one HEADERS frame with END_STREAM
                self.held = block
                return
        try:
            self.h2.send_headers(self.sid, block, end)
        except StreamGone:
            return self._broken()
        if end:
            self.sent_end = True

    def _broken(self) -> None:
        http = self.http
        self._reset(_INTERNAL)
        if http is not None:
            http.reset()
        self.conn.flush()

    def _release_held(self) -> None:
        block, self.held = self.held, None
        self.h2.send_headers(self.sid, block)

    def send_data(self, stream, data: bytes) -> None:
        if self.sent_end or self.closed or not data:
            return
        try:
            if self.held is not None:
                self._release_held()
            if self.pending:
                if self.tail is not None:
                    self.pending.append(self.tail)
                    self.tail = None
                self.pending.append(data)
                return
            # the newest chunk waits for the write: if the end comes first, they share a frame
            tail = self.tail
            self.tail = data
            if tail is None:
                self.conn.tails.append(self)
            else:
                self._push(tail)
        except StreamGone:
            self._broken()

    def release_tail(self) -> None:
        tail, self.tail = self.tail, None
        if tail is not None and not self.closed and not self.sent_end:
            if self.pending:
                self.pending.append(tail)
                return
            try:
                self._push(tail)
            except StreamGone:
                self._broken()

    def _push(self, data: bytes, end: bool = False) -> bool:
        """Send what the windows allow; keep the rest. True when all of it went."""
        sent = self.h2.send_data(self.sid, data, end)
        if sent == len(data):
            return True
        self.pending.append(data[sent:] if sent else data)
        return False

    def send_end(self, stream, trailers) -> None:
        if self.closed or self.sent_end:
            self.conn.flush()
            return
        try:
            tail = self.tail
            if tail is not None:
                self.tail = None
                if not self.pending and not trailers and self.held is None:
                    # the usual end: the last chunk carries END_STREAM
                    sent = self.h2.send_data(self.sid, tail, True)
                    if sent == len(tail):
                        self.sent_end = True
                        if self.finished:
                            self._maybe_done()
                        self.conn.flush()
                        return
                    self.pending.append(tail[sent:] if sent else tail)
                elif self.pending:
                    self.pending.append(tail)
                else:
                    self._push(tail)
            if self.pending:
                self.end_pending = True
                self.trailers_pending = trailers
                self.conn.flush()
                return
            self._end(trailers)
        except StreamGone:
            return self._broken()
        self.conn.flush()

    def send_whole(self, stream, status: int, headers: Headers, body_len: int, body: bytes,
                   memo: list | None = None) -> None:
        self.send_head(stream, status, headers, body_len, False)
        self.send_data(stream, body)
        self.send_end(stream, None)

    def _end(self, trailers) -> None:
        self.sent_end = True
        if self.held is not None:
            block, self.held = self.held, None
            if trailers:
                block += tuple(trailer_block(trailers))
            self.h2.send_headers(self.sid, block, True)
        elif trailers:
            self.h2.send_headers(self.sid, trailer_block(trailers), True)
        else:
            self.h2.end_stream(self.sid)
        self._maybe_done()

    def flush(self) -> None:
        if self.held is not None and not self.closed:
            try:
                self._release_held()
            except StreamGone:
                return self._broken()
        self.conn.flush()

    def send_continue(self, stream) -> None:
        if not self.closed and not self.sent_end:
            try:
                self.h2.send_headers(self.sid, [(b":status", b"100")])
            except StreamGone:
                return self._broken()
            self.conn.flush()

    def abort(self, stream) -> None:
        self._reset(_INTERNAL)
        self.conn.flush()

    def pause_body(self, stream) -> None:
        self.body_paused = True

    def resume_body(self, stream) -> None:
        self.body_paused = False
        n = self.unacked
        if n and not self.closed:
            self.unacked = 0
            self.h2.ack(self.sid, n)
            self.conn.flush()

    def writable(self) -> bool:
        return not self.pending and not self.conn.write_paused

    def start_tunnel(self, stream) -> None:
        self.abort(stream)       # Upgrade has no meaning inside an HTTP/2 stream

    def send_raw(self, stream, data: bytes) -> None:
        pass

    def stream_finished(self, stream) -> None:
        self.finished = True
        self._maybe_done()

    # -- connection side --
    def drain_pending(self) -> None:
        """The client opened its window: send what waited, then let the upstream go on."""
        if self.closed or not self.pending:
            return
        try:
            self._drain_pending()
        except StreamGone:
            self._broken()

    def _drain_pending(self) -> None:
        pend = self.pending
        self.pending = []
        for i, data in enumerate(pend):
            if not self._push(data):
                self.pending.extend(pend[i + 1:])
                return
        if self.end_pending:
            self.end_pending = False
            self._end(self.trailers_pending)
            return
        if self.http is not None and not self.conn.write_paused:
            self.http.on_downstream_drain()

    def _maybe_done(self) -> None:
        if not (self.sent_end and self.finished):
            return
        if not self.req_ended and not self.closed:
            # the response is complete; tell the client to stop sending (RFC 9113 §8.1)
            self._reset(_NO_ERROR)
            return
        self.conn.stream_closed(self)

    def _reset(self, code) -> None:
        if self.closed:
            return
        self.closed = True
        self.pending = []
        self.tail = None
        self.h2.reset_stream(self.sid, code)     # nothing is sent for a stream already closed
        self.conn.stream_closed(self)


class Http2Server(asyncio.Protocol):
    """HTTP/2 on one client connection (h2c prior knowledge, h2c upgrade, or h2 by ALPN).
    It is the codec's sink: the codec calls on_headers, on_data, ... from feed()."""

    def __init__(self, worker, listener_name: str, tls=None):
        self.worker = worker
        self.listener_name = listener_name
        self.listener = None
        self.lstats = None
        self.transport = None
        self.h2 = None
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

    # ---------------------------------------------------------------- connection
    def connection_made(self, transport, upgrade=None) -> None:
        """`upgrade`: (HTTP2-Settings value, request fields, body?) of an h2c Upgrade request."""
        self.transport = transport
        self.write_soon = False
        w = self.worker
        listener = w.snapshot.listeners[self.listener_name]
        self.listener = listener
        self.lstats = w.listener_stats(self.listener_name)
        self.lstats.cx_total.value += 1
        self.lstats.cx_active.value += 1
        w.stats.counter(f"http.{self.listener_name}.downstream_cx_http2_total").value += 1
        cfg = listener.config
        opts = cfg.options.get("http2")
        self.max_streams = opts.max_concurrent_streams if opts else DEFAULT_MAX_STREAMS
        stream_window = opts.initial_stream_window_size if opts else DEFAULT_STREAM_WINDOW
        conn_window = opts.initial_connection_window_size if opts else DEFAULT_CONNECTION_WINDOW
        transport.set_write_buffer_limits(cfg.limits.write_high_water, cfg.limits.write_low_water)
        set_nodelay(transport)
        self.peer = (transport.get_extra_info("peername") or ("", 0))[:2]
        self.local = (transport.get_extra_info("sockname") or ("", 0))[:2]
        self.h2 = c = H2Connection(self, False, {MAX_CONCURRENT_STREAMS: self.max_streams,
                                                 MAX_HEADER_LIST_SIZE: cfg.limits.request_headers,
                                                 INITIAL_WINDOW_SIZE: stream_window}, conn_window)
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
        self.write_soon = True          # what the codec's calls queue goes out below, at once
        try:
            self.h2.feed(data)
        except H2ConnectionError:
            self._protocol_error()
            return
        finally:
            self.write_soon = False
        if self.h2.out or self.tails:
            self._write_now()

    def _protocol_error(self) -> None:
        self.worker.stats.counter(f"http.{self.listener_name}.downstream_cx_protocol_error").value += 1
        # the codec queued its GOAWAY; it goes out before the close
        self._close_after_flush(None)

    def eof_received(self):
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
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
        out = self.h2.data_to_send()
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
            self.h2.reset_stream(sid, _PROTOCOL)
            return
        if not end and parts[5] is not None:
            self.h2.expect_length(sid, parts[5])
        self._start_stream(sid, parts, end)

    def on_header_list_too_large(self, sid: int) -> None:
        # answered here, before any stream exists: what an HTTP/1.1 client gets for the same
        self.worker.stats.counter(f"http.{self.listener_name}.downstream_rq_malformed.header_list_too_large").value += 1
        self.lstats.refused(431, "request_headers_too_large")
        h2c = self.h2
        try:
            h2c.send_headers(sid, [(b":status", b"431"), (b"content-length", b"0"),
                                   (b"x-mosnx-error", b"request_headers_too_large")], True)
        except StreamGone:
            return
        h2c.reset_stream(sid, _NO_ERROR)    # no-op unless the client is still sending

    def _refuse_path(self, sid: int, e: PathError) -> None:
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
        w.access_log_error(self.listener_name, self.peer, e.status, e.detail)
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
        try:        # the one canonical path every later stage sees (codec.path)
            path = PathNormalizer.of(listener.config.path_normalization).path(method, path)
        except PathError as e:
            return self._refuse_path(sid, e)
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
        body = 0 if ended else content_length
        d = H2Down(self, sid, method == "HEAD", ended)
        # a request with no body and no step on its listener may take the short path
        cls = ExpressStream if ended and not listener.pipeline.request else HttpStream
        http = cls(d, w, listener, self.lstats, ctx, body, True, False, False)
        d.http = http
        self.streams[sid] = d
        self.deadline = 0.0
        http.start()

    def on_data(self, sid: int, data: bytes, n: int, end: bool) -> None:
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
        d = self.streams.pop(sid, None)
        if d is None:
            return
        d.closed = True
        d.pending = []
        http = d.http
        if http is not None:
            d.http = None
            http.reset()
        if not self.streams:
            self._after_close()

    def on_window(self, sid: int) -> None:
        if sid:
            d = self.streams.get(sid)
            if d is not None and d.pending:
                d.drain_pending()
            return
        for d in list(self.streams.values()):
            if d.pending:
                d.drain_pending()

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
        if self.streams and not self.closing:
            for d in list(self.streams.values()):
                if d.http is not None:
                    d.http.check_timeouts(now)
        if not self.deadline or now < self.deadline or self.closing or self.streams:
            return
        self.deadline = 0.0
        self._goaway()
        self._close_after_flush(None)

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

    def _close_after_flush(self, code) -> None:
        if self.closing:
            return
        # what is queued (a final response, or the codec's GOAWAY after a connection error) goes first
        self._write_now()
        self.closing = True
        self.transport.close()
