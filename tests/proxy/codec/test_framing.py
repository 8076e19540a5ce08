"""The one Content-Length parser: what RFC 9110 §8.6 and RFC 9112 §6.3 let frame a
message, and everything Python's int() would take that they do not."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mosnx.proxy.codec.framing import MAX_CONTENT_LENGTH, ContentLengthError, content_length, content_length_of
from mosnx.proxy.codec.http1 import ParseError, ResponseDecoder
from mosnx.proxy.codec.http2 import H2HeadError, request_parts, response_from_block

ACCEPTED = [
    (b"0", 0),
    (b"5", 5),
    (b"007", 7),                          # leading zeros are still 1*DIGIT
    (b"9223372036854775807", MAX_CONTENT_LENGTH),
    (b"42,42", 42),                       # a list of one value repeated is that value
    (b"42, 42", 42),
    (b"42 ,\t42, 42", 42),                # OWS around list members only
]

REFUSED = [
    b"",
    b" ",
    b"+5",                                # int() takes a sign
    b"-0",
    b"-5",
    b" 5",                                # int() strips white space
    b"5 ",
    b"5\t",
    b"1_000",                             # int() takes digit separators
    b"0x10",
    b"1e3",
    b"5.0",
    "\u0665".encode(),                    # an Arabic-Indic five: a digit to str.isdigit, not here
    b"9223372036854775808",               # one past the largest
    b"99999999999999999999999",
    b"42, 43",                            # list members that differ
    b"42,",                               # an empty member
    b",42",
    b"42,,42",
    b"42, +42",
    b"4 2",
]


@pytest.mark.parametrize("value,n", ACCEPTED)
def test_accepted_values(value, n):
    assert content_length(value) == n


@pytest.mark.parametrize("value", REFUSED)
def test_refused_values(value):
    with pytest.raises(ContentLengthError):
        content_length(value)


def test_the_error_is_a_value_error():
    assert issubclass(ContentLengthError, ValueError)


def test_field_lines_are_one_list():
    assert content_length_of([]) is None
    assert content_length_of([b"3"]) == 3
    assert content_length_of([b"3", b"03", b"3, 3"]) == 3
    with pytest.raises(ContentLengthError):
        content_length_of([b"3", b"4"])
    with pytest.raises(ContentLengthError):
        content_length_of([b"3", b"x"])


@given(st.integers(min_value=0, max_value=MAX_CONTENT_LENGTH))
def test_every_decimal_round_trips(n):
    assert content_length(b"%d" % n) == n


@given(st.binary(max_size=24))
def test_any_bytes_give_a_length_or_its_own_error(value):
    try:
        n = content_length(value)
    except ContentLengthError:
        return
    members = [m.strip(b" \t") for m in value.split(b",")]
    assert all(m.isdigit() and int(m) == n for m in members)


# -- every codec frames by it --
BASE = [(b":method", b"POST"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"a")]


@pytest.mark.parametrize("value", [b"+5", b"-1", b"1_0", b"5, 6"])
def test_http2_request_refuses_what_the_parser_refuses(value):
    with pytest.raises(H2HeadError) as e:
        request_parts(BASE + [(b"content-length", value)])
    assert e.value.detail == "invalid_content_length"


def test_http2_request_forwards_an_agreeing_list_as_one_value():
    parts = request_parts(BASE + [(b"content-length", b"5, 5"), (b"content-length", b"5")])
    assert parts[5] == 5
    assert [kv for kv in parts[4] if kv[0] == b"content-length"] == [(b"content-length", b"5")]


@pytest.mark.parametrize("lines", [[b"+5"], [b"5", b"6"], [b"1_0"]])
def test_http2_response_refuses_what_the_parser_refuses(lines):
    block = [(b":status", b"200")] + [(b"content-length", v) for v in lines]
    with pytest.raises(H2HeadError):
        response_from_block(block)


def test_http2_response_length_comes_from_the_parser():
    assert response_from_block([(b":status", b"200"), (b"content-length", b"5, 5")])[2] == 5


class _Sink:
    def __init__(self):
        self.body = "unset"

    def on_response(self, status, reason, version, headers, keep_alive, body):
        self.body = body

    def on_response_body(self, data):
        pass

    def on_response_end(self, trailers):
        pass


def test_http1_response_length_comes_from_the_parser():
    sink = _Sink()
    ResponseDecoder(sink).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0007\r\n\r\n")
    assert sink.body == 7


def test_http1_response_too_long_to_frame_is_a_protocol_error():
    sink = _Sink()
    with pytest.raises(ParseError) as e:
        ResponseDecoder(sink).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n")
    assert e.value.status == 502
