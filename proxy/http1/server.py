"""The downstream HTTP/1.1 connection: decode requests, run streams in order, encode responses.

One asyncio.Protocol per client connection. Pipelined requests are queued and
answered strictly in order; reading pauses while one is queued behind the active
stream, so the queue never grows past what one read returned. Writes go out at
the end of the loop pass (proxy.write_batch); above the transport's high-water
mark the active stream's upstream is paused, and resumed on drain, so a slow
reader never makes the proxy buffer a whole response. A bodiless request on a
listener with no request step may take the express path (proxy.fastpath).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers

from ..codec.http1 import ParseError, RequestDecoder, encode_chunk, encode_headers, encode_last_chunk, status_line
from ..codec.path import PathNormalizer
from .. import write_batch
from ..fastpath import memo
from ..fastpath.memo import remember
from ..fastpath.eligibility import listener_express
from ..sockets import set_nodelay
from ..stream import HttpStream
from ..stream.detail import stream_class
from ..stream.state import PENDING

if TYPE_CHECKING:
    from mosnx.runtime.model import Listener
    from ..listener_stats import ListenerStats

_NO_BODY_STATUS = frozenset({204, 304})
_CLOSE = (b"connection", b"close")
# encoded response heads by (status, length, header fields), bounded
HEADS = memo.kind("http1.downstream_head", 64, "HTTP/1.1 response heads as sent to clients, by status, length and fields")
_HEADS: dict[tuple, bytes] = HEADS.table()
_HEADS_FIELDS = 18


# Why the connection is not read (paused_reasons, a bit each): reading resumes when
# none is left.
UPGRADING = 1       # an Upgrade request waits for the upstream's answer
PIPELINED = 2       # requests queue behind the one being answered
BODY_HELD = 4       # the stream holds the request body (a step's I/O, upstream pressure)
BROKEN = 8          # a request broke the protocol: nothing after it is read


class Http1Server(asyncio.Protocol):
    __slots__ = ("worker", "listener_name", "listener", "express_ok", "stream_cls", "lstats", "transport", "decoder", "peer", "local",
                 "addrs", "queue", "parsing", "deferred", "paused_reasons", "write_paused", "chunked",
                 "keep", "closing", "deadline", "deadline_kind", "tunnel", "error_after",
                 "scheme", "version", "head_method", "out")

    def __init__(self, worker, listener_name: str):
        self.worker = worker
        self.listener_name = listener_name
        # set in connection_made, before any other callback
        self.listener: Listener = None  # type: ignore[assignment]
        self.express_ok = False     # its requests may take the express path (fastpath.eligibility)
        self.stream_cls: type[HttpStream] = HttpStream    # with per-route/host stats or not (stream.detail)
        self.lstats: ListenerStats = None  # type: ignore[assignment]
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.decoder: RequestDecoder = None  # type: ignore[assignment]
        self.queue: list[HttpStream] = []       # active stream first, then pipelined ones
        self.parsing: HttpStream | None = None   # the stream whose request is being decoded
        self.deferred: dict[HttpStream, list] = {}
        self.paused_reasons = 0
        self.write_paused = False
        self.chunked = False
        self.keep = True
        self.closing = False
        # idle and header timeouts are checked by the worker's sweep (Worker.sweep),
        # so a request costs a float store, not a timer
        self.deadline = 0.0
        self.deadline_kind = ""
        self.out: list[bytes] | None = None     # response bytes gathered for one write
        self.tunnel: HttpStream | None = None
        self.error_after: tuple[int, str, str | None] | None = None
        self.scheme = "http"
        self.version = "1.1"
        self.head_method = False

    # ---------------------------------------------------------------- connection
    def connection_made(self, transport) -> None:
        self.transport = transport
        w = self.worker
        listener = w.snapshot.listeners[self.listener_name]
        self.listener = listener
        self.express_ok = listener_express(listener)
        self.lstats = w.listener_stats(self.listener_name)
        self.stream_cls = stream_class(listener, self.lstats)
        self.lstats.cx_total.value += 1
        self.lstats.cx_active.value += 1
        cfg = listener.config
        self.decoder = RequestDecoder(self, cfg.limits.request_headers, cfg.limits.request_headers_count,
                                      PathNormalizer.of(cfg.path_normalization))
        transport.set_write_buffer_limits(cfg.limits.write_high_water, cfg.limits.write_low_water)
        set_nodelay(transport)
        self.peer = transport.get_extra_info("peername") or ("", 0)
        self.local = transport.get_extra_info("sockname") or ("", 0)
        self.addrs = (self.peer[:2], self.local[:2])    # (source, destination) of every stream
        w.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.lstats.cx_active.value -= 1
        self.worker.connections.discard(self)
        for s in self.queue:
            s.reset()
        if self.parsing is not None and self.parsing not in self.queue:
            self.parsing.reset()
        self.queue = []
        self.deferred.clear()
        if self.tunnel is not None:
            t, self.tunnel = self.tunnel, None
            t.on_tunnel_closed()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.on_tunnel_downstream_data(data)
            return
        if self.error_after is not None or self.closing:
            return
        dec = self.decoder
        try:
            dec.feed(data)
        except ParseError as e:
            self._protocol_error(e.status, e.detail, e.location, e.stat)
            return
        q = self.queue
        if dec.upgraded_offset >= 0:
            rest = data[dec.upgraded_offset:]
            dec.upgraded_offset = -1
            self._pause(UPGRADING)       # nothing more is HTTP until the upstream answers the upgrade
            if rest and q:
                self.deferred.setdefault(q[-1], []).append(("raw", rest))
        # streams start only once the bytes that carried them parsed cleanly, so a
        # request whose body turns out malformed in the same read never reaches an upstream
        if q and q[0].req is PENDING:
            self._start(q[0])
        if dec.mid_head and self.deadline_kind != "header":
            t = self.listener.config.timeouts.request_headers
            self.deadline_kind = "header"
            self.deadline = self.worker.loop.time() + t if t else 0.0

    def eof_received(self):
        # a client that closes its side has gone away (as Envoy and nginx read it):
        # in-flight streams are reset and their upstream requests released
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.queue:
            self.queue[0].on_downstream_drain()
        elif self.tunnel is not None:
            self.tunnel.on_downstream_drain()

    # ---------------------------------------------------------------- requests
    def on_request(self, method, target, version, headers, keep_alive, body, upgrade) -> None:
        self.deadline = 0.0
        self.deadline_kind = ""
        w = self.worker
        listener = w.snapshot.listeners.get(self.listener_name, self.listener)
        if listener is not self.listener:
            self.listener = listener
            self.express_ok = listener_express(listener)
            self.stream_cls = stream_class(listener, self.lstats)
        req = RequestHead(method, target, headers, version, self.scheme)
        ctx = StreamContext(req, self.listener_name, "HTTP/1.0" if version == "1.0" else "HTTP/1.1",
                            self.addrs[0], self.addrs[1])
        is_upgrade = bool(upgrade) and headers.has(b"upgrade")
        if is_upgrade:
            # after an Upgrade request nothing more on this connection is HTTP/1.1:
            # a refused upgrade ends the connection with its response
            self.keep = False
        dec = self.decoder
        expect = dec.expect_continue
        # a request with no body on a listener with no request step may take the
        # express path (fastpath.eligibility)
        bodiless = body == 0 and not is_upgrade and not expect
        stream = self.stream_cls(self, w, listener, self.lstats, ctx, body, keep_alive, is_upgrade, expect,
                                 bodiless and self.express_ok)
        self.parsing = stream
        q = self.queue
        if q or not bodiless:
            self.deferred[stream] = []        # until data_received sees the read parse cleanly
        q.append(stream)
        if len(q) > 1:
            self._pause(PIPELINED)

    def on_bodiless_request(self, method, target, version, headers, keep_alive, decoded=None) -> None:
        self.on_request(method, target, version, headers, keep_alive, 0, False)
        self.parsing.decoded = decoded  # type: ignore[union-attr]  # on_request just set it
        self.on_request_end(None)

    def on_request_body(self, data: bytes) -> None:
        s = self.parsing
        if s is None:
            return
        if s.req is not PENDING:
            s.on_request_body(data)
        else:
            self.deferred[s].append(("body", data))

    def on_request_end(self, trailers) -> None:
        s = self.parsing
        self.parsing = None
        if s is None:
            return
        if s.req is not PENDING:
            s.on_request_end(trailers)
        elif s in self.deferred:
            self.deferred[s].append(("end", trailers))
        else:
            # a bodiless request first in line: its head was all of it, and it parsed
            # cleanly, so it starts now (with no body, its end has nothing to deliver)
            self._begin(s)

    def _start(self, stream: HttpStream) -> None:
        """Start the stream at the head of the queue and hand it what was decoded for it."""
        events = self.deferred.pop(stream, ())
        self._begin(stream)
        for kind, arg in events:
            if kind == "body":
                stream.on_request_body(arg)
            elif kind == "end":
                stream.on_request_end(arg)
            else:
                self.deferred.setdefault(stream, []).append((kind, arg))   # tunnel bytes

    def _begin(self, stream: HttpStream) -> None:
        req = stream.ctx.request
        self.version = req.version
        self.head_method = req.method == "HEAD"
        self.chunked = False
        stream.start()

    def stream_finished(self, stream: HttpStream) -> None:
        """Both the request and the response of the active stream are done."""
        q = self.queue
        if not q or q[0] is not stream:
            return
        q.pop(0)
        if not self.keep or self.closing or self.worker.draining:
            self._close()
            return
        if q:
            self._start(q[0])
            if len(q) == 1:
                self._resume(PIPELINED)
            return
        if self.error_after is not None:
            self._write_error(*self.error_after)
            return
        if self.paused_reasons:
            self._resume(PIPELINED)
        self._arm_idle()

    # ---------------------------------------------------------------- Downstream
    def send_head(self, stream, status: int, headers: Headers, body_len, end: bool,
                  memo: list | None = None) -> None:
        keep = self.keep and stream.client_keep_alive and not self.worker.draining
        # the usual head (keep-alive HTTP/1.1, a length, a body) is remembered: an
        # upstream repeats its heads until the Date changes. With a `memo` (see
        # Downstream.send_whole) it is kept there, else by its fields.
        usual = keep and body_len is not None and status >= 200 and not self.head_method \
            and status not in _NO_BODY_STATUS and self.version == "1.1"
        key = None
        if usual:
            if memo is not None:
                head = memo[2]
            else:
                try:
                    key = (status, body_len, *headers.items)
                    head = _HEADS.get(key)
                except TypeError:       # a step left something unhashable: no memo
                    key = head = None
            if head is not None:
                if key is not None:
                    HEADS.hits += 1
                self.chunked = False
                self.out = [head]
                return
        chunked = False
        # the framing header this response gets goes after the others, which lose any
        # Content-Length of their own (but for a HEAD answer's)
        framing = None
        strip_length = True
        if status == 101 or status in _NO_BODY_STATUS or status < 200:
            pass
        elif self.head_method:
            strip_length = False   # HEAD: the upstream's Content-Length describes the GET; keep it
        elif body_len is not None:
            framing = b"content-length: %d" % body_len
        elif self.version == "1.1":
            chunked = True
            framing = b"transfer-encoding: chunked"
        else:
            keep = False          # HTTP/1.0 client, unknown length: the close delimits the body
        # header lines are joined, not %-formatted: bytes formatting costs more
        if strip_length:
            lines = [b": ".join(kv) for kv in headers.items if kv[0] != b"content-length"]
        else:
            lines = [b": ".join(kv) for kv in headers.items]
        if framing is not None:
            lines.append(framing)
        if status != 101:
            if not keep:
                lines.append(b"connection: close")
            elif self.version == "1.0":
                lines.append(b"connection: keep-alive")
        self.keep = keep
        self.chunked = chunked
        lines.append(b"")      # the empty line that ends the head
        head = status_line(status) + b"\r\n".join(lines) + b"\r\n"
        if usual and memo is not None:
            memo[2] = head
        elif key is not None and len(key) <= _HEADS_FIELDS:
            remember(_HEADS, HEADS, key, head)
        if status == 101:
            write_batch.write(self.transport, head)
        else:
            self.out = [head]

    def send_data(self, stream, data: bytes) -> None:
        if not data or self.head_method:
            return
        if self.chunked:
            data = encode_chunk(data)
        if self.out is not None:
            self.out.append(data)
        else:
            write_batch.write(self.transport, data)

    def send_end(self, stream, trailers) -> None:
        if self.chunked:
            self.chunked = False
            if self.out is None:
                self.out = []
            self.out.append(encode_last_chunk(trailers))
        self.flush()

    def send_whole(self, stream, status: int, headers: Headers, body_len: int, body: bytes,
                   memo: list | None = None) -> None:
        self.send_head(stream, status, headers, body_len, False, memo)
        out = self.out
        if out is not None and len(out) == 1 and not self.chunked and not self.head_method:
            # the usual answer: the head just made, then the body, in one write
            self.out = None
            write_batch.write(self.transport, out[0] + body)
            return
        self.send_data(stream, body)
        self.send_end(stream, None)

    def flush(self) -> None:
        """Write what send_head/send_data gathered during one upstream read, in one write."""
        out = self.out
        if out is not None:
            self.out = None
            write_batch.write(self.transport, out[0] if len(out) == 1 else b"".join(out))

    def send_continue(self, stream) -> None:
        if self.version == "1.1":
            write_batch.write(self.transport, b"HTTP/1.1 100 Continue\r\n\r\n")

    def send_raw(self, stream, data: bytes) -> None:
        write_batch.write(self.transport, data)

    def abort(self, stream) -> None:
        # close, not reset: the client gets what was sent, then sees the body cut short
        self.keep = False
        self._close()

    def pause_body(self, stream) -> None:
        self._pause(BODY_HELD)

    def resume_body(self, stream) -> None:
        self._resume(BODY_HELD)

    def writable(self) -> bool:
        return not self.write_paused

    def start_tunnel(self, stream) -> None:
        self.tunnel = stream
        events = self.deferred.pop(stream, [])
        self._resume(UPGRADING | PIPELINED | BODY_HELD)
        for kind, arg in events:
            if kind == "raw":
                stream.on_tunnel_downstream_data(arg)

    # ---------------------------------------------------------------- helpers
    def _pause(self, reason: int) -> None:
        if not self.paused_reasons and not self.closing:
            self.transport.pause_reading()
        self.paused_reasons |= reason

    def _resume(self, reasons: int) -> None:
        if not self.paused_reasons:
            return
        self.paused_reasons &= ~reasons
        if not self.paused_reasons and not self.closing:
            self.transport.resume_reading()

    def _arm_idle(self) -> None:
        t = self.listener.config.timeouts.idle
        self.deadline_kind = "idle"
        self.deadline = self.worker.loop.time() + t if t else 0.0

    def check_deadline(self, now: float) -> None:
        """Called by the worker's sweep; enforces the idle and request-header timeouts, and the active stream's."""
        if self.queue and not self.closing:
            self.queue[0].check_timeouts(now)
        if not self.deadline or now < self.deadline or self.closing:
            return
        self.deadline = 0.0
        if self.deadline_kind == "idle":
            if not self.queue and not self.decoder.mid_head:
                self._close()
            return
        if self.queue:
            return
        self.worker.stats.counter(f"http.{self.listener_name}.downstream_rq_header_timeout").value += 1
        self._write_error(408, "request_header_timeout")

    def _protocol_error(self, status: int, detail: str, location: str | None = None,
                        stat: str | None = None) -> None:
        """A request that must not be proxied: answered after those before it, then
        the connection closes. A redirect (path normalisation's 307) is no protocol
        error, but its connection ends the same way: its body was never framed."""
        counter = self.worker.stats.counter
        prefix = f"http.{self.listener_name}."
        if stat is not None:
            counter(prefix + stat).value += 1
        if status >= 400:
            counter(prefix + "downstream_cx_protocol_error").value += 1
            counter(prefix + "downstream_rq_malformed." + detail).value += 1
        bad, self.parsing = self.parsing, None
        if bad is not None and bad in self.queue:
            self.queue.remove(bad)
            self.deferred.pop(bad, None)
            if bad.req is not PENDING:
                # started in an earlier read: its head went upstream, its body is broken;
                # the upstream request is abandoned (that connection is not reused)
                answered = bad.response_started
                bad.reset()
                if answered:
                    self._close()
                    return
        self._pause(BROKEN)
        q = self.queue
        if q:
            # requests decoded cleanly before the broken one are answered first
            self.error_after = (status, detail, location)
            if q[0].req is PENDING:
                self._start(q[0])
            return
        self._write_error(status, detail, location)

    def _write_error(self, status: int, detail: str, location: str | None = None) -> None:
        # a request answered, and a local reply under the cause its x-mosnx-error names
        self.lstats.refused(status, detail)
        body = {400: b"bad request\n", 408: b"request timeout\n", 431: b"request headers too large\n"}.get(status, b"")
        head = Headers([(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body)),
                        (b"x-mosnx-error", detail.encode()), _CLOSE])
        if location is not None:
            head.add(b"location", location.encode("ascii"))
        write_batch.write(self.transport, status_line(status) + encode_headers(head) + b"\r\n" + body)
        self.worker.access_log_error(self.listener_name, self.peer, status, detail, "HTTP/1.1")
        self._close()

    def _close(self, abort: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        write_batch.flush()
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    def drain(self) -> None:
        """Server drain: close now when idle; otherwise after the stream in flight."""
        self.keep = False
        if not self.queue:
            self._close()
