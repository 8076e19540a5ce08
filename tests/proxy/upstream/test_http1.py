"""An upstream HTTP/1.1 connection frames the request the stream hands it as fields
and chunks: a head alone, Content-Length, chunked with its last chunk and trailers,
an Upgrade; HEAD makes its answer bodiless; a whole answer the stream cannot take
in one step comes as three events. A fake transport, no sockets."""
from __future__ import annotations

from mosnx.proxy import write_batch
from mosnx.proxy.upstream.http1 import UpstreamConnection
from mosnx.runtime.context import RequestHead
from mosnx.runtime.headers import Headers


class Transport:
    def __init__(self):
        self.out = b""
        self.closed = False

    def write(self, data):
        self.out += data

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def get_extra_info(self, name, default=None):
        return default


def conn() -> tuple[UpstreamConnection, Transport]:
    c = UpstreamConnection(pool=None)
    t = Transport()
    c.connection_made(t)
    c.take()
    return c, t


def req(method="GET", headers=()) -> RequestHead:
    return RequestHead(method, "/p", Headers([(b"host", b"h"), *headers]), "1.1")


def sent(t: Transport) -> bytes:
    write_batch.flush()
    return t.out


def test_a_request_without_a_body_is_its_head():
    c, t = conn()
    c.send_request(req(headers=[(b"x-request-id", b"r1")]), "10.0.0.1", 0, False, None, True, None)
    assert sent(t) == (b"GET /p HTTP/1.1\r\nhost: h\r\nx-request-id: r1\r\n"
                       b"x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n")
    assert not c.reused


def test_a_known_length_body_goes_as_it_is_with_what_was_read_so_far():
    c, t = conn()
    c.send_request(req("POST", [(b"content-length", b"6")]), "1.1.1.1", 6, False, [b"abc"], False, None)
    c.send_body(b"def")
    c.send_end(None)
    out = sent(t)
    assert out.startswith(b"POST /p HTTP/1.1\r\n") and b"content-length: 6\r\n" in out
    assert out.endswith(b"\r\n\r\nabcdef") and b"transfer-encoding" not in out


def test_an_unknown_length_is_framed_chunked_with_its_trailers():
    c, t = conn()
    c.send_request(req("POST"), "1.1.1.1", None, False, [b"abc"], False, None)
    c.send_body(b"de")
    c.send_end(Headers([(b"x-sum", b"9")]))
    out = sent(t)
    assert b"transfer-encoding: chunked\r\n" in out
    assert out.endswith(b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nx-sum: 9\r\n\r\n")


def test_a_body_that_ended_before_the_connection_goes_in_one_write():
    c, t = conn()
    c.send_request(req("POST"), "1.1.1.1", None, False, [b"x"], True, None)
    assert sent(t).endswith(b"1\r\nx\r\n0\r\n\r\n")


def test_an_upgrade_keeps_its_connection_and_upgrade_fields():
    c, t = conn()
    r = req(headers=[(b"connection", b"upgrade"), (b"upgrade", b"websocket")])
    c.send_request(r, "1.1.1.1", 0, True, None, True, None)
    out = sent(t)
    assert b"connection: upgrade\r\n" in out and b"upgrade: websocket\r\n" in out


def test_head_makes_the_answer_bodiless_whatever_its_framing():
    c, t = conn()
    c.send_request(req("HEAD"), "1.1.1.1", 0, False, None, True, None)
    assert c.decoder.head_only


def test_the_second_request_on_a_connection_is_a_reused_one():
    c, t = conn()
    c.take()
    assert c.reused and c.requests == 2


class Stream:
    """What the connection calls; declines a whole answer."""

    def __init__(self):
        self.events = []
        self.down = self

    def flush(self):
        pass

    def on_upstream_whole(self, *args):
        return False

    def on_upstream_head(self, status, headers, keep_alive, body):
        self.events.append(("head", status, body))

    def on_upstream_data(self, data):
        self.events.append(("data", data))

    def on_upstream_end(self, trailers):
        self.events.append(("end",))


def test_a_whole_answer_the_stream_declines_comes_as_three_events():
    c, t = conn()
    s = Stream()
    c.stream = s
    c.on_whole_response(200, "1.1", Headers([(b"content-length", b"2")]), True, 2, b"ok", None)
    assert s.events == [("head", 200, 2), ("data", b"ok"), ("end",)] and c.stream is None
