"""The HTTP/1.1 codec, sans I/O: bytes in, sink calls out, ParseError for anything
that must not be proxied. The e2e suite sends the same vectors over sockets."""
from __future__ import annotations

import pytest

from mosnx.proxy.codec.http1 import (ParseError, RequestDecoder, RequestSink, ResponseDecoder, ResponseSink,
                                     encode_chunk, encode_last_chunk, encode_request_head, status_line)
from mosnx.runtime.headers import Headers


class Requests(RequestSink):
    """A RequestSink that records every call."""

    def __init__(self):
        self.events: list[tuple] = []

    def on_request(self, method, target, version, headers, keep_alive, body, upgrade):
        self.events.append(("head", method, target, version, list(headers.items), keep_alive, body, upgrade))

    def on_request_body(self, data):
        self.events.append(("body", bytes(data)))

    def on_request_end(self, trailers):
        self.events.append(("end", list(trailers.items) if trailers else None))

    def heads(self):
        return [e for e in self.events if e[0] == "head"]

    def body(self):
        return b"".join(e[1] for e in self.events if e[0] == "body")


class Responses(ResponseSink):
    def __init__(self):
        self.events: list[tuple] = []

    def on_response(self, status, reason, version, headers, keep_alive, body):
        self.events.append(("head", status, list(headers.items), keep_alive, body))

    def on_response_body(self, data):
        self.events.append(("body", bytes(data)))

    def on_response_end(self, trailers):
        self.events.append(("end", list(trailers.items) if trailers else None))


def decode(data: bytes, max_head: int = 60 * 1024, bytewise: bool = False) -> Requests:
    sink = Requests()
    dec = RequestDecoder(sink, max_head, 100)
    if bytewise:
        for i in range(len(data)):
            dec.feed(data[i:i + 1])
    else:
        dec.feed(data)
    return sink


# ---------------------------------------------------------------- good requests
@pytest.mark.parametrize("bytewise", [False, True])
def test_simple_get(bytewise):
    s = decode(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n", bytewise=bytewise)
    [head] = s.heads()
    assert head[1:4] == ("GET", "/a?b=1", "1.1")
    assert (b"host", b"x") in head[4] and (b"x-a", b"1") in head[4]
    assert head[5] is True and head[6] == 0
    assert s.events[-1] == ("end", None)


@pytest.mark.parametrize("bytewise", [False, True])
def test_chunked_body_and_trailers(bytewise):
    raw = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 9\r\n\r\n")
    s = decode(raw, bytewise=bytewise)
    assert s.heads()[0][6] is None        # chunked
    assert s.body() == b"hello world"
    assert s.events[-1] == ("end", [(b"x-sum", b"9")])


def test_content_length_body():
    s = decode(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert s.heads()[0][6] == 5 and s.body() == b"hello"


def test_pipelined_requests_in_order():
    raw = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    s = decode(raw)
    assert [h[2] for h in s.heads()] == [f"/{i}" for i in range(5)]
    assert [e[0] for e in s.events] == ["head", "end"] * 5


def test_http10_defaults_to_close_and_keep_alive_is_honoured():
    assert decode(b"GET / HTTP/1.0\r\n\r\n").heads()[0][5] is False
    assert decode(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").heads()[0][5] is True
    assert decode(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").heads()[0][5] is False


def test_upgrade_stops_parsing_at_the_head():
    sink = Requests()
    dec = RequestDecoder(sink)
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    dec.feed(head + b"\x81\x05tunnel")
    assert sink.heads()[0][7] is True
    assert dec.upgraded_offset == len(head)


def test_mid_head_while_the_head_is_incomplete():
    dec = RequestDecoder(Requests())
    assert not dec.mid_head
    dec.feed(b"GET / HTTP/1.1\r\nHo")
    assert dec.mid_head
    dec.feed(b"st: x\r\n\r\n")
    assert not dec.mid_head


# ---------------------------------------------------------------- rejected requests
BAD = {
    "cl_and_te": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te_and_cl": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    "differing_cl": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "cl_list": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
    "cl_junk": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5a\r\n\r\n",
    "unknown_te": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "te_twice": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te_chunked_chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    "te_gzip_chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "te_obs_fold": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n",
    "space_before_colon": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
    "ctl_in_value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "nul_in_value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "te_http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "missing_host": b"GET / HTTP/1.1\r\n\r\n",
    "duplicate_host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "host_with_space": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "host_with_userinfo": b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
}


@pytest.mark.parametrize("name", list(BAD))
def test_smuggling_vectors_fail_before_the_head_is_handed_on(name):
    sink = Requests()
    with pytest.raises(ParseError) as e:
        RequestDecoder(sink).feed(BAD[name] + b"0\r\n\r\n")
    assert e.value.status == 400
    assert e.value.detail
    assert sink.heads() == [], "a rejected head must never reach the sink"


@pytest.mark.parametrize("name", ["missing_host", "duplicate_host"])
def test_host_errors_are_named(name):
    with pytest.raises(ParseError) as e:
        RequestDecoder(Requests()).feed(BAD[name])
    assert e.value.detail == name


@pytest.mark.parametrize("size", [b"zz", b"-1", b"0x5", b"+5", b"5 5", b"10000000000000005"])
def test_bad_chunk_size(size):
    sink = Requests()
    with pytest.raises(ParseError) as e:
        RequestDecoder(sink).feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  + size + b"\r\nhello\r\n0\r\n\r\n")
    assert e.value.status == 400
    assert not any(ev[0] == "end" for ev in sink.events)


def test_chunk_data_overrun():
    with pytest.raises(ParseError):
        RequestDecoder(Requests()).feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                        b"3\r\nabcdef\r\n0\r\n\r\n")


def test_head_over_limit_is_431():
    with pytest.raises(ParseError) as e:
        RequestDecoder(Requests(), max_head=1024).feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    assert (e.value.status, e.value.detail) == (431, "request_headers_too_large")


def test_head_over_limit_is_431_when_fed_in_pieces():
    dec = RequestDecoder(Requests(), max_head=1024)
    dec.feed(b"GET / HTTP/1.1\r\nHost: x\r\n")
    with pytest.raises(ParseError) as e:
        for _ in range(100):
            dec.feed(b"X-Some: " + b"v" * 50 + b"\r\n")
    assert e.value.status == 431


def test_long_url_is_431():
    with pytest.raises(ParseError) as e:
        RequestDecoder(Requests(), max_head=1024).feed(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert e.value.status == 431


def test_trailers_count_towards_the_head_limit_only_per_message():
    # the limit is per message: many small pipelined requests never add up to a 431
    raw = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % (i, b"p" * 200) for i in range(20))
    assert len(decode(raw, max_head=1024).heads()) == 20


def _with_headers(n: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(n - 1)) + b"\r\n"


def test_header_count_limit_is_431_before_the_head_is_handed_on():
    assert len(decode(_with_headers(100)).heads()[0][4]) == 100
    sink = Requests()
    with pytest.raises(ParseError) as e:
        RequestDecoder(sink, max_headers=100).feed(_with_headers(101))
    assert (e.value.status, e.value.detail) == (431, "too_many_request_headers")
    assert sink.heads() == []
    with pytest.raises(ParseError):
        decode(_with_headers(10_000), bytewise=False)
    assert len(decode(_with_headers(5), max_head=1024).heads()) == 1


def test_header_count_limit_is_exact_for_the_smallest_fields():
    # one-letter names, empty values: the fewest bytes a field can take
    def head(n):
        return b"GET / HTTP/1.1\r\nhost:x\r\n" + b"a:\r\n" * (n - 1) + b"\r\n"
    for bytewise in (False, True):
        sink = Requests()
        dec = RequestDecoder(sink, max_headers=5)
        for b in ([head(5)] if not bytewise else [head(5)[i:i + 1] for i in range(len(head(5)))]):
            dec.feed(b)
        assert len(sink.heads()[0][4]) == 5
    with pytest.raises(ParseError) as e:
        RequestDecoder(Requests(), max_headers=5).feed(head(6))
    assert e.value.detail == "too_many_request_headers"


def test_header_count_limit_applies_to_trailers():
    raw = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
           + b"".join(b"T-%d: v\r\n" % i for i in range(4)) + b"\r\n")
    sink = Requests()
    with pytest.raises(ParseError) as e:
        RequestDecoder(sink, max_headers=3).feed(raw)
    assert e.value.detail == "too_many_request_headers"
    assert not any(ev[0] == "end" for ev in sink.events)


# ---------------------------------------------------------------- the request target
@pytest.mark.parametrize("target,expected", [
    (b"//private/x", "/private/x"), (b"/./private/x", "/private/x"), (b"/x/../private/x", "/private/x"),
    (b"/x/%2e%2e/private/x", "/private/x"), (b"/%70rivate/x?a=/../", "/private/x?a=/../"),
    (b"/a/b", "/a/b"),
])
def test_the_sink_gets_the_normalised_target(target, expected):
    for bytewise in (False, True):
        s = decode(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n", bytewise=bytewise)
        assert s.heads()[0][2] == expected


@pytest.mark.parametrize("target,detail", [
    (b"/x/..;/private", "dot_segment_with_parameters"), (b"/a%zz", "invalid_percent_encoding"),
    (b"/a#f", "path_with_fragment"), (b"http://u@h/", "userinfo_in_authority"), (b"ftp://h/a", "invalid_request_target"),
])
def test_a_target_that_cannot_be_normalised_is_400_before_the_sink(target, detail):
    sink = Requests()
    with pytest.raises(ParseError) as e:
        RequestDecoder(sink).feed(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (e.value.status, e.value.detail, e.value.stat) == (400, detail, "downstream_rq_failed_path_normalization")
    assert sink.heads() == []


def test_absolute_form_becomes_origin_form_and_its_authority_the_host():
    s = decode(b"GET http://real.example:8080/private/./x?q=1 HTTP/1.1\r\nHost: other\r\nX-A: 1\r\n\r\n")
    [head] = s.heads()
    assert head[2] == "/private/x?q=1"
    assert head[4] == [(b"host", b"real.example:8080"), (b"x-a", b"1")]
    s = decode(b"GET http://h/a HTTP/1.0\r\n\r\n")     # HTTP/1.0 may come without a Host
    assert s.heads()[0][2] == "/a" and s.heads()[0][4] == [(b"host", b"h")]


def test_unescape_and_redirect_is_a_307_with_the_location():
    from mosnx.proxy.codec.path import PathNormalizer
    sink = Requests()
    with pytest.raises(ParseError) as e:
        RequestDecoder(sink, paths=PathNormalizer(escaped_slashes="unescape_and_redirect")).feed(
            b"GET /a%2Fb?x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (e.value.status, e.value.location, e.value.stat) == (307, "/a/b?x", "downstream_rq_redirected_with_normalized_path")
    assert sink.heads() == []


# ---------------------------------------------------------------- responses
def test_response_content_length():
    sink = Responses()
    ResponseDecoder(sink).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert sink.events[0][1] == 200 and sink.events[0][4] == 3
    assert sink.events[1:] == [("body", b"abc"), ("end", None)]


def test_response_chunked_with_trailers():
    sink = Responses()
    dec = ResponseDecoder(sink)
    dec.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
    assert sink.events[0][4] is None and dec.chunked
    assert sink.events[-1] == ("end", [(b"x-t", b"1")])


def test_response_close_delimited_has_unknown_length():
    sink = Responses()
    dec = ResponseDecoder(sink)
    dec.feed(b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert sink.events[0][4] is None and not dec.chunked
    assert ("body", b"some") in sink.events


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_ends_at_the_head(status):
    sink = Responses()
    dec = ResponseDecoder(sink)
    dec.feed(b"HTTP/1.1 %d X\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" % status)
    assert [e[0] for e in sink.events] == ["head", "end", "head", "body", "end"]
    assert sink.events[0][4] == 0


def test_head_response_ends_at_the_head_despite_content_length():
    sink = Responses()
    dec = ResponseDecoder(sink)
    dec.head_only = True
    dec.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    assert [e[0] for e in sink.events] == ["head", "end"]
    dec.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert [e[0] for e in sink.events] == ["head", "end", "head", "body", "end"]


def test_a_body_sent_with_a_head_answer_in_its_read_is_dropped_not_handed_on():
    # the answer has ended at its head: nothing reaches the sink after its end
    sink = Responses()
    dec = ResponseDecoder(sink)
    dec.head_only = True
    dec.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert [e[0] for e in sink.events] == ["head", "end"]
    dec.feed(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert [e[0] for e in sink.events] == ["head", "end", "head", "end"]


def test_an_interim_response_with_a_body_is_502():
    sink = Responses()
    with pytest.raises(ParseError) as e:
        ResponseDecoder(sink).feed(b"HTTP/1.1 199 Odd\r\nContent-Length: 2\r\n\r\nok")
    assert (e.value.status, e.value.detail) == (502, "upstream_protocol_error")
    assert sink.events == []


def test_interim_responses_are_dropped():
    sink = Responses()
    ResponseDecoder(sink).feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
                               b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert [e[0] for e in sink.events] == ["head", "end"]
    assert sink.events[0][1] == 200


def test_switching_protocols_hands_over_the_rest():
    sink = Responses()
    dec = ResponseDecoder(sink)
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    dec.feed(head + b"frames")
    assert sink.events[0][1] == 101
    assert dec.upgraded_offset == len(head)


def test_garbage_response_is_502():
    with pytest.raises(ParseError) as e:
        ResponseDecoder(Responses()).feed(b"NOT HTTP AT ALL\r\n\r\n")
    assert e.value.status == 502


# ---------------------------------------------------------------- encoding
def test_encoders():
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(299).startswith(b"HTTP/1.1 299 ")
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_last_chunk(None) == b"0\r\n\r\n"
    assert encode_last_chunk(Headers([(b"x-t", b"1")])) == b"0\r\nx-t: 1\r\n\r\n"
    assert encode_request_head("GET", "/p", [(b"host", b"h")]) == b"GET /p HTTP/1.1\r\nhost: h\r\n\r\n"
