"""HTTP/1.1 codec: strict request decoding, response decoding, and encoding.

Sans-I/O: decoders take bytes and call a sink; encoders return bytes. No sockets,
clocks or asyncio here. The request decoder is the smuggling boundary: anything
ambiguous about where a message ends (Content-Length with Transfer-Encoding,
differing Content-Lengths, codings other than a single final `chunked`, obs-fold,
whitespace before a colon, control characters, bad chunk sizes, oversize heads)
raises ParseError before a single byte of that request is handed on.
llhttp (via httptools) rejects most of these itself; the rest is checked here.
A request has at most `max_headers` header fields (and as many trailers), counted
as they arrive. Its target is normalised here (codec.path), once: what a sink gets,
and what the memo of heads below remembers, is the canonical origin-form target
(an absolute-form target's authority replacing Host), so no later stage ever sees
the target as sent. The memo is one per normaliser, so listeners with different
path settings never answer from each other's memory.
"""
from __future__ import annotations

import re
from typing import Protocol

import httptools

from mosnx.runtime.headers import Headers

from ..fastpath import memo
from ..fastpath.memo import remember
from .framing import ContentLengthError, content_length
from .path import PathError, PathNormalizer


class ParseError(Exception):
    """A message that must not be proxied; `status` is what the client gets."""

    def __init__(self, status: int, detail: str, location: str | None = None, stat: str | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.location = location      # a 307's Location (path normalisation's redirect)
        self.stat = stat              # a counter of its own, besides the per-detail one


class RequestSink(Protocol):
    """What a RequestDecoder calls; the server protocol implements it."""

    def on_request(self, method: str, target: str, version: str, headers: Headers,
                   keep_alive: bool, body: int | None, upgrade: bool) -> None:
        """Head complete. body: None = chunked, else the Content-Length (0 for none)."""

    def on_request_body(self, data: bytes) -> None: ...

    def on_request_end(self, trailers: Headers | None) -> None: ...

    def on_bodiless_request(self, method: str, target: str, version: str, headers: Headers,
                            keep_alive: bool, decoded: object = None) -> None:
        """A request that is its head alone (remembered heads only); a sink may take
        it in one step. `decoded`: the memo entry of that head, as for
        ResponseSink.on_whole_response."""
        self.on_request(method, target, version, headers, keep_alive, 0, False)
        self.on_request_end(None)


_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class RequestDecoder:
    """Feeds bytes to llhttp and calls `sink` once per message, in order."""

    __slots__ = ("sink", "max_head", "max_headers", "_check_at", "paths", "_memo", "_parser", "_url", "_headers",
                 "_head_bytes", "mid_head", "_trailers", "upgraded_offset", "expect_continue", "_idle",
                 "_keep", "_raw")

    def __init__(self, sink: RequestSink, max_head: int = 60 * 1024, max_headers: int = 100,
                 paths: PathNormalizer | None = None):
        self.sink = sink
        self.max_head = max_head
        self.max_headers = max_headers
        # every field counts at least 4 bytes (": ", CRLF) towards _head_bytes, so below
        # this many neither limit can have been passed: one comparison per field
        self._check_at = min(max_head, 4 * max_headers)
        self.paths = paths = paths or PathNormalizer.of(None)
        table = _MEMOS.get(paths)
        if table is None:
            table = _MEMOS[paths] = REQUEST_HEADS.table()
        self._memo = table
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self.mid_head = False         # a request head has started but not ended (header timeout)
        self._trailers: list[tuple[bytes, bytes]] | None = None
        self.upgraded_offset = -1     # set when an Upgrade request's head ended the parse
        # whether the request just handed to on_request asks for `100 Continue` (its
        # first Expect is 100-continue): noted while its headers are checked anyway
        self.expect_continue = False
        self._idle = True             # between messages: a read may start a new one
        self._keep = True             # the current message leaves the connection open
        self._raw: bytes | None = None  # this read, while it may be one whole head to remember

    def feed(self, data: bytes) -> None:
        """Parse `data`; raises ParseError. After an upgrade, bytes past
        `upgraded_offset` belong to the tunnel and are not parsed."""
        if self._idle and data[-4:] == b"\r\n\r\n" and len(data) <= _MEMO_HEAD:
            hit = self._memo.get(data)
            if hit is not None and len(data) <= self.max_head and len(hit[3]) <= self.max_headers:
                # exactly a head this process parsed and checked before, of a request
                # without a body: the same request again
                REQUEST_HEADS.hits += 1
                method, target, version, items, keep_alive = hit
                self.expect_continue = False
                self.sink.on_bodiless_request(method, target, version, Headers(list(items)), keep_alive, hit)
                return
            self._raw = data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgraded_offset = e.args[0] if e.args else len(data)
        except httptools.HttpParserInvalidMethodError as e:
            raise ParseError(400, "invalid_method") from e
        except httptools.HttpParserInvalidURLError as e:
            raise ParseError(400, "invalid_url") from e
        except httptools.HttpParserError as e:
            # a ParseError raised by one of our callbacks arrives wrapped by httptools
            if isinstance(e.__context__, ParseError):
                raise e.__context__ from None
            if self.mid_head and self._head_bytes > self.max_head:
                raise ParseError(431, "request_headers_too_large") from e
            raise ParseError(400, _detail(str(e))) from e
        finally:
            self._raw = None

    # -- llhttp callbacks --
    def on_message_begin(self) -> None:
        self._idle = False
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self.mid_head = True
        self._trailers = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self.max_head:
            raise ParseError(431, "request_headers_too_large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._check_at:
            self._check_limits()
        if not self.mid_head:
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name.lower(), value))
            return
        self._headers.append((name.lower(), value))

    def _check_limits(self) -> None:
        """Before a field is added: the head's size, then its count of fields (or of
        trailers), each against its limit."""
        if self._head_bytes > self.max_head:
            raise ParseError(431, "request_headers_too_large")
        fields = self._headers if self.mid_head else self._trailers
        if fields is not None and len(fields) >= self.max_headers:
            raise ParseError(431, "too_many_request_headers")

    def on_headers_complete(self) -> None:
        self.mid_head = False
        p = self._parser
        version = p.get_http_version()
        headers = self._headers
        te = cl = host = expect = None
        n_host = 0
        for k, v in headers:
            # llhttp already refuses CL+TE, duplicate CL, bad CL digits and obs-fold
            if k == b"transfer-encoding":
                if te is not None:
                    raise ParseError(400, "repeated_transfer_encoding")
                te = v
            elif k == b"content-length":
                cl = v
            elif k == b"host":
                host = v
                n_host += 1
            elif k == b"expect" and expect is None:
                expect = v
        if te is not None:
            if te.strip().lower() != b"chunked":
                raise ParseError(400, "unsupported_transfer_encoding")
            if version == "1.0":
                raise ParseError(400, "transfer_encoding_in_http10")
        if version == "1.1" and n_host != 1:
            raise ParseError(400, "missing_host" if n_host == 0 else "duplicate_host")
        if host is not None and _BAD_HOST.search(host) is not None:
            raise ParseError(400, "invalid_host")
        if te is not None:
            body = None
        elif cl is None:
            body = 0
        else:
            try:
                body = content_length(cl)
            except ContentLengthError:
                raise ParseError(400, "invalid_content_length") from None
        try:
            target = self._url.decode("ascii")
        except UnicodeDecodeError:
            raise ParseError(400, "invalid_url") from None
        method = p.get_method().decode("ascii")
        try:
            target, authority = self.paths.target(method, target)
        except PathError as e:
            raise ParseError(e.status, e.detail, e.location,
                             "downstream_rq_redirected_with_normalized_path" if e.location is not None
                             else "downstream_rq_failed_path_normalization") from None
        if authority is not None:
            _replace_host(headers, authority.encode("ascii"))
        self.expect_continue = expect is not None and expect.lower() == b"100-continue"
        keep_alive = p.should_keep_alive()
        upgrade = p.should_upgrade()
        raw = self._raw
        self._keep = keep_alive
        if raw is not None and body == 0 and keep_alive and not upgrade and expect is None \
                and raw.find(b"\r\n\r\n") == len(raw) - 4:
            # the read was this head and nothing else, and the connection stays open
            # after it (llhttp refuses what follows a closing request): it may come again
            remember(self._memo, REQUEST_HEADS, raw, (method, target, version, tuple(headers), keep_alive))
        self.sink.on_request(method, target, version, Headers(headers), keep_alive, body, upgrade)

    def on_body(self, body: bytes) -> None:
        self.sink.on_request_body(body)

    def on_message_complete(self) -> None:
        # between messages again, unless this one ended the connection: after it,
        # llhttp judges what follows
        self._idle = self._keep
        t = self._trailers
        self.sink.on_request_end(Headers(t) if t else None)


def _replace_host(headers: list, authority: bytes) -> None:
    """An absolute-form target's authority is the Host (RFC 9112 §3.2.2)."""
    for i, kv in enumerate(headers):
        if kv[0] == b"host":
            headers[i] = (b"host", authority)
            return
    headers.insert(0, (b"host", authority))


# Heads seen before, parsed and checked as the strict path would (llhttp and the
# checks above, which depend on the bytes and the decoder's path settings alone; the
# limits, which differ by listener, are checked again on a hit): a client repeating a request, or an
# upstream repeating a response (until its Date changes), costs a dict lookup. Only
# a read that is exactly one message is remembered or answered from here, and only
# messages with no body to frame (requests) or a Content-Length body (responses)
# that leave the connection open; bounded in entries and in bytes per head.
REQUEST_HEADS = memo.kind("http1.request_head", 128, "HTTP/1.1 request heads, decoded and checked, by their bytes (a table per path setting)")
RESPONSE_HEADS = memo.kind("http1.response_head", 128, "HTTP/1.1 response heads with a Content-Length body, decoded, by their bytes")
_REQUESTS: dict[bytes, tuple] = REQUEST_HEADS.table()     # for the default path settings
_MEMOS: dict[PathNormalizer, dict[bytes, tuple]] = {PathNormalizer.of(None): _REQUESTS}
_RESPONSES: dict[bytes, tuple] = RESPONSE_HEADS.table()
_MEMO_HEAD = 2048


# llhttp's reasons, as the detail a client and the stats see
_LLHTTP_DETAILS = (
    ("Content-Length can't be present with Transfer-Encoding", "content_length_with_transfer_encoding"),
    ("Transfer-Encoding can't be present with Content-Length", "content_length_with_transfer_encoding"),
    ("Duplicate Content-Length", "duplicate_content_length"),
    ("Content-Length", "invalid_content_length"),
    ("Transfer-Encoding", "invalid_transfer_encoding"),
    ("chunk", "invalid_chunk"),
    ("Chunk", "invalid_chunk"),
    ("header value", "invalid_header_value"),
    ("header token", "invalid_header_name"),
    ("header field", "invalid_header_name"),
    ("whitespace", "invalid_header_whitespace"),
)


def _detail(msg: str) -> str:
    for needle, detail in _LLHTTP_DETAILS:
        if needle in msg:
            return detail
    return "http1_codec_error"


# a Host with whitespace, '@' or '/' is a routing-confusion vector, never a real authority
_BAD_HOST = re.compile(rb"[ \t@/\\]")


class ResponseSink(Protocol):
    def on_response(self, status: int, reason: str, version: str, headers: Headers,
                    keep_alive: bool, body: int | None) -> None:
        """body: None = until close or chunked (see `chunked`), else the Content-Length."""

    def on_response_body(self, data: bytes) -> None: ...

    def on_response_end(self, trailers: Headers | None) -> None: ...

    def on_whole_response(self, status: int, version: str, headers: Headers, keep_alive: bool,
                          body_len: int, body: bytes, decoded: object = None) -> None:
        """A response whose head, whole Content-Length body and end came in one read
        (remembered heads only); a sink may take it in one step. `decoded` is the
        decoder's memo entry of that head: the same object each time the head comes
        again while remembered, so a sink may key memos of its own on it (by identity)."""
        self.on_response(status, "", version, headers, keep_alive, body_len)
        if body_len:
            self.on_response_body(body)
        self.on_response_end(None)


class ResponseDecoder:
    """Upstream responses. 1xx other than 101 are dropped (we answer Expect ourselves)."""

    __slots__ = ("sink", "_parser", "_headers", "_in_head", "_trailers", "_informational",
                 "head_only", "chunked", "upgraded_offset", "_skip", "_idle", "_raw")

    def __init__(self, sink: ResponseSink):
        self.sink = sink
        self._parser = httptools.HttpResponseParser(self)
        # what a response collects is reset when the previous one ends, not in an
        # on_message_begin llhttp would have to call back for every response
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = True
        self._trailers: list[tuple[bytes, bytes]] | None = None
        self._informational = False
        self.head_only = False       # the request was HEAD: the response has no body
        self.chunked = False
        self.upgraded_offset = -1
        self._skip = False
        self._idle = True             # between messages (see RequestDecoder)
        self._raw: bytes | None = None  # the head of this read, while it may be remembered

    def feed(self, data: bytes) -> None:
        if self._idle and not self.head_only:
            end = data.find(b"\r\n\r\n") + 4
            if 4 <= end <= _MEMO_HEAD:
                head = data[:end]
                hit = _RESPONSES.get(head)
                if hit is None:
                    self._raw = head
                elif len(data) - end == hit[4]:
                    # a head parsed before, and exactly its body: the same answer again
                    RESPONSE_HEADS.hits += 1
                    status, version, items, keep_alive, n = hit
                    self.chunked = False
                    self.sink.on_whole_response(status, version, Headers(list(items)), keep_alive, n,
                                                data[end:] if n else b"", hit)
                    return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            if not self._skip:
                self.upgraded_offset = e.args[0] if e.args else len(data)
        except httptools.HttpParserError as e:
            if not self._skip:
                raise ParseError(502, "upstream_protocol_error") from e
        finally:
            self._raw = None
        if self._skip:
            # llhttp cannot be told a HEAD answer has no body: the answer ended at its
            # head, and whatever the upstream sent after it in the same read (a body it
            # should not have sent, or anything else) is dropped unseen; the next read
            # starts the next response on a fresh parser
            self._skip = False
            self.head_only = False
            self._next_message()
            self._parser = httptools.HttpResponseParser(self)
            self._idle = True

    def on_message_begin(self) -> None:
        self._idle = False

    def _next_message(self) -> None:
        self._headers = []
        self._in_head = True
        self._trailers = None

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            self._headers.append((name.lower(), value))
        else:
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self._skip:
            return          # after a HEAD answer, in its read: dropped (see feed)
        self._in_head = False
        p = self._parser
        status = p.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._informational = True
            return
        self._informational = False
        cl = None
        chunked = False
        for k, v in self._headers:
            if k == b"content-length":
                cl = v
            elif k == b"transfer-encoding":
                chunked = True
        self.chunked = chunked
        if self.head_only or status in (204, 304):
            body: int | None = 0
        elif chunked:
            body = None
        elif cl is None:
            body = None
        else:
            try:
                body = content_length(cl)
            except ContentLengthError:
                raise ParseError(502, "upstream_protocol_error") from None
        version = p.get_http_version()
        keep_alive = p.should_keep_alive()
        raw = self._raw
        if raw is not None and body is not None and keep_alive and not self.head_only \
                and 200 <= status and status not in (204, 304):
            # a Content-Length answer read from the start of a read: it may come again
            remember(_RESPONSES, RESPONSE_HEADS, raw, (status, version, tuple(self._headers), keep_alive, body))
        self.sink.on_response(status, "", version, Headers(self._headers), keep_alive, body)
        if self.head_only:
            self._skip = True
            self.sink.on_response_end(None)

    def on_body(self, body: bytes) -> None:
        if self._skip:
            return          # after a HEAD answer, in its read: dropped (see feed)
        if self._informational:
            # a 1xx has no body (RFC 9112 §6.3): this connection can no longer be framed
            raise ParseError(502, "upstream_protocol_error")
        self.sink.on_response_body(body)

    def on_message_complete(self) -> None:
        self._idle = True
        t = self._trailers
        self._next_message()
        if self._informational:
            self._informational = False
            return
        if self._skip or self._parser.get_status_code() == 101:
            return      # HEAD already ended; a 101 hands the connection to a tunnel
        self.sink.on_response_end(Headers(t) if t else None)


# -- encoding --
_REASONS = {
    100: b"Continue", 101: b"Switching Protocols", 200: b"OK", 201: b"Created", 202: b"Accepted",
    204: b"No Content", 206: b"Partial Content", 301: b"Moved Permanently", 302: b"Found",
    303: b"See Other", 304: b"Not Modified", 307: b"Temporary Redirect", 308: b"Permanent Redirect",
    400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 409: b"Conflict", 413: b"Payload Too Large",
    414: b"URI Too Long", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 501: b"Not Implemented", 502: b"Bad Gateway",
    503: b"Service Unavailable", 504: b"Gateway Timeout",
}
# status lines are built once, not per response
STATUS_LINES = {s: b"HTTP/1.1 %d %s\r\n" % (s, r) for s, r in _REASONS.items()}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))
    return line


def encode_headers(headers: Headers) -> bytes:
    return b"".join([b"%s: %s\r\n" % kv for kv in headers.items])


def encode_request_head(method: str, target: str, items: list[tuple[bytes, bytes]]) -> bytes:
    # header lines are joined, not %-formatted: bytes formatting costs more
    lines = [b": ".join(kv) for kv in items]
    lines.append(b"")      # the empty line that ends the head
    return b"%s %s HTTP/1.1\r\n%s\r\n" % (method.encode("ascii"), target.encode("ascii"),
                                           b"\r\n".join(lines))


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def encode_last_chunk(trailers: Headers | None) -> bytes:
    if trailers:
        return b"0\r\n" + encode_headers(trailers) + b"\r\n"
    return b"0\r\n\r\n"
