"""Heads the codec has parsed before are answered from memory: the sink must get
exactly what the strict path gives, and the memory must never turn bytes that are
not a new message (a body, what follows a closing request) into one."""
from __future__ import annotations

import pytest

from mosnx.proxy.codec import http1
from mosnx.proxy.codec.http1 import ParseError, RequestDecoder, ResponseDecoder
from mosnx.proxy.codec.path import PathNormalizer
from mosnx.runtime.model import PathNormalization

from .codec.test_http1 import Requests, Responses

GET = b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
CLOSE = b"GET /c HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
OLD = b"GET / HTTP/1.0\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 5\r\n\r\nhello"


@pytest.fixture(autouse=True)
def empty_memos():
    for m in http1._MEMOS.values():
        m.clear()
    http1._RESPONSES.clear()
    yield
    for m in http1._MEMOS.values():
        m.clear()
    http1._RESPONSES.clear()


def events(decoder, sink, reads: list[bytes]) -> list:
    """What the sink got from `reads`, and the error that ended them, if one did."""
    try:
        for r in reads:
            decoder.feed(r)
    except ParseError as e:
        sink.events.append(("error", e.status, e.detail))
    return sink.events


def requests(reads: list[bytes], max_head: int = 60 * 1024, max_headers: int = 100, paths=None):
    sink = Requests()
    return events(RequestDecoder(sink, max_head, max_headers, paths), sink, reads)


def responses(reads: list[bytes], head_only: bool = False):
    sink = Responses()
    dec = ResponseDecoder(sink)
    dec.head_only = head_only
    return events(dec, sink, reads)


@pytest.mark.parametrize("reads", [
    [GET], [GET, GET], [OLD], [CLOSE],
    [b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"],
    [b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"],
    [b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"],
    [b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"],
    [GET + GET],
])
def test_requests_decode_the_same_from_memory(reads):
    first = requests(reads)
    assert requests(reads) == first        # (now from memory where it may be)
    assert requests(reads) == first


def test_a_repeated_head_is_served_from_memory():
    requests([GET])
    assert GET in http1._REQUESTS
    # pipelined, bodied or partial reads are never remembered
    requests([GET + GET, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n", GET[:10]])
    assert list(http1._REQUESTS) == [GET]


def test_a_body_that_looks_like_a_remembered_head_stays_body():
    requests([GET])
    post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(GET)
    events = requests([post, GET, GET])
    assert [e[0] for e in events] == ["head", "body", "end", "head", "end"]
    assert events[1] == ("body", GET)


def test_after_a_closing_request_the_strict_parser_judges_what_follows():
    requests([GET])
    without_memory = requests([CLOSE, GET])
    http1._REQUESTS.clear()
    requests([CLOSE])
    requests([GET])
    assert requests([CLOSE, GET]) == without_memory


def test_a_remembered_head_still_meets_a_smaller_limit():
    requests([GET])
    events = requests([GET], max_head=20)
    assert events[-1] == ("error", 431, "request_headers_too_large")


def test_a_remembered_head_still_meets_a_smaller_header_count_limit():
    requests([GET])
    assert requests([GET], max_headers=1)[-1] == ("error", 431, "too_many_request_headers")


def test_the_memory_holds_the_normalised_target_per_path_settings():
    raw = b"GET /x/%2e%2e/a%2Fb HTTP/1.1\r\nHost: example.com\r\n\r\n"
    keep = PathNormalizer.of(PathNormalization())
    forward = PathNormalizer.of(PathNormalization(escaped_slashes="unescape_and_forward"))
    reject = PathNormalizer.of(PathNormalization(escaped_slashes="reject"))
    for _ in range(2):       # the second time from memory, each settings' own
        assert requests([raw], paths=keep)[0][2] == "/a%2Fb"
        assert requests([raw], paths=forward)[0][2] == "/a/b"
        assert requests([raw], paths=reject)[-1] == ("error", 400, "escaped_slash_in_path")
    assert http1._REQUESTS[raw][1] == "/a%2Fb"
    assert http1._MEMOS[forward][raw][1] == "/a/b"
    assert raw not in http1._MEMOS[reject]


@pytest.mark.parametrize("reads,head_only", [
    ([OK], False), ([OK, OK], False), ([OK[:20], OK[20:]], False),
    ([OK[:-2], OK[-2:]], False),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"], True),
    ([b"HTTP/1.1 204 No Content\r\n\r\n"], False),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"], False),
    ([b"HTTP/1.1 100 Continue\r\n\r\n" + OK], False),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"], False),
])
def test_responses_decode_the_same_from_memory(reads, head_only):
    first = responses(reads, head_only)
    assert responses(reads, head_only) == first
    assert responses(reads, head_only) == first


def test_only_whole_length_framed_answers_are_remembered():
    responses([OK])
    assert list(http1._RESPONSES) == [OK[:-5]]
    responses([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"], head_only=True)
    responses([b"HTTP/1.1 204 No Content\r\n\r\n"])
    responses([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"])
    assert list(http1._RESPONSES) == [OK[:-5]]


def test_a_head_answer_is_never_taken_from_memory():
    responses([OK])
    events = responses([OK[:-5]], head_only=True)
    assert events == [("head", 200, [(b"server", b"up"), (b"content-length", b"5")], True, 0), ("end", None)]


def test_the_memory_is_bounded():
    for i in range(http1.REQUEST_HEADS.limit + 10):
        requests([b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i])
    assert len(http1._REQUESTS) <= http1.REQUEST_HEADS.limit
