"""The head a bodiless request sends upstream comes from memory after the first
time (all but its request id and forwarding headers); it must be byte for byte what
the general encoding gives."""
import pytest

from mosnx.proxy.upstream import http1_head as heads
from mosnx.proxy.upstream.http1_head import bodiless_request_head, request_head
from mosnx.runtime.context import RequestHead
from mosnx.runtime.headers import Headers

CASES = [
    [(b"host", b"a"), (b"x-request-id", b"id-1")],
    [(b"host", b"a"), (b"accept", b"*/*"), (b"x-request-id", b"id-2")],
    [(b"x-request-id", b"client-id"), (b"host", b"a")],          # the client's own, not last
    [(b"host", b"a"), (b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-proto", b"https"),
     (b"x-request-id", b"id-3")],
    [(b"host", b"a"), (b"connection", b"keep-alive, x-secret"), (b"x-secret", b"1"),
     (b"te", b"trailers"), (b"x-request-id", b"id-4")],
    [(b"host", b"a"), (b"connection", b"x-request-id"), (b"x-request-id", b"id-5")],
    [(b"host", b"a"), (b"x-request-id", b"id-6"), (b"x-added", b"by a step")],   # a step's, after it
    [(b"host", b"a"), (b"connection", b"x-request-id"), (b"x-request-id", b"id-7"), (b"x-added", b"1")],
    [(b"host", b"a")],
    [],
    # the trace context a tracer wrote last, after the request id
    [(b"host", b"a"), (b"x-request-id", b"id-10"), (b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-00")],
    [(b"host", b"a"), (b"x-request-id", b"id-11"), (b"traceparent", b"t"), (b"b3", b"b"),
     (b"x-b3-traceid", b"t"), (b"x-b3-spanid", b"s"), (b"x-b3-sampled", b"0"), (b"sw8", b"w")],
    # ... that the client's Connection names: hop-by-hop, it stays behind
    [(b"host", b"a"), (b"connection", b"traceparent"), (b"x-request-id", b"id-12"), (b"traceparent", b"t")],
    # ... after a client's own request id, and with nothing else at all
    [(b"x-request-id", b"client-id"), (b"host", b"a"), (b"tracestate", b"k=v"), (b"traceparent", b"t")],
    [(b"traceparent", b"t")],
]


@pytest.mark.parametrize("items", CASES)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_remembered_head_is_the_general_one(items, scheme):
    heads._UPSTREAM_HEADS.clear()

    def req():
        return RequestHead("GET", "/p?q=1", Headers(list(items)), "1.1", scheme)
    want = request_head(req(), "127.0.0.9", False, False)
    assert bodiless_request_head(req(), "127.0.0.9") == want
    assert bodiless_request_head(req(), "127.0.0.9") == want     # from memory
    # another request id, another client: the same memory, their own lines
    other = [(k, b"id-9" if k == b"x-request-id" else v) for k, v in items]
    assert (bodiless_request_head(RequestHead("GET", "/p?q=1", Headers(other), "1.1", scheme), "10.1.1.1")
            == request_head(RequestHead("GET", "/p?q=1", Headers(list(other)), "1.1", scheme), "10.1.1.1",
                            False, False))


@pytest.mark.parametrize("items", CASES)
def test_the_head_remembered_by_the_codecs_memory_is_the_general_one(items):
    """What the codec decoded is `items` less a request id the proxy appended; the
    proxy appends one only when the client sent none."""
    heads._UPSTREAM_HEADS.clear()
    heads._BY_DECODED.clear()
    decoded = items[:-1] if items and items[-1][0] == b"x-request-id" else items
    entry = ("the decoder's memo entry of", tuple(decoded))
    for rid, source in ((b"id-7", "127.0.0.9"), (b"id-8", "10.1.1.1"), (b"id-9", "127.0.0.9")):
        fields = list(decoded)
        if not any(k == b"x-request-id" for k, _ in fields):
            fields.append((b"x-request-id", rid))
        want = request_head(RequestHead("GET", "/p", Headers(list(fields)), "1.1"), source, False, False)
        got = bodiless_request_head(RequestHead("GET", "/p", Headers(fields), "1.1"), source, entry)
        assert got == want
    assert list(heads._BY_DECODED.values())[0][0] is entry


def test_a_header_added_after_the_request_id_still_finds_the_head_in_memory():
    heads._UPSTREAM_HEADS.clear()
    for rid in (b"id-1", b"id-2", b"id-3"):
        fields = [(b"host", b"a"), (b"x-request-id", rid), (b"x-added", b"v")]
        want = request_head(RequestHead("GET", "/", Headers(list(fields)), "1.1"), "127.0.0.9", False, False)
        assert bodiless_request_head(RequestHead("GET", "/", Headers(fields), "1.1"), "127.0.0.9") == want
    assert len(heads._UPSTREAM_HEADS) == 1


def test_a_trace_context_is_not_remembered():
    heads._UPSTREAM_HEADS.clear()
    for span in (b"1" * 16, b"2" * 16, b"3" * 16):
        items = [(b"host", b"a"), (b"x-request-id", b"id"), (b"traceparent", b"00-" + b"a" * 32 + b"-" + span + b"-01")]
        got = bodiless_request_head(RequestHead("GET", "/", Headers(list(items)), "1.1"), "127.0.0.1")
        assert b"traceparent: 00-" + b"a" * 32 + b"-" + span + b"-01\r\n" in got
    assert len(heads._UPSTREAM_HEADS) == 1


WIRED = [
    [(b"host", b"a"), (b"x-request-id", b"id-20"), (b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-00")],
    [(b"host", b"a"), (b"x-request-id", b"id-21"), (b"traceparent", b"t"), (b"b3", b"b"),
     (b"x-b3-traceid", b"t"), (b"x-b3-spanid", b"s"), (b"x-b3-sampled", b"0")],
    # the client's Connection names it: hop-by-hop, it stays behind even when handed over encoded
    [(b"host", b"a"), (b"connection", b"traceparent"), (b"x-request-id", b"id-22"), (b"traceparent", b"t")],
    [(b"x-request-id", b"client-id"), (b"host", b"a"), (b"traceparent", b"t")],
    [(b"host", b"a"), (b"traceparent", b"t")],          # no request id at all
    [(b"traceparent", b"t")],
]


@pytest.mark.parametrize("items", WIRED)
@pytest.mark.parametrize("decoded", [False, True])
@pytest.mark.parametrize("held", [True, False])
def test_a_trace_context_handed_over_encoded_gives_the_general_head(items, decoded, held):
    """An unsampled trace hands its fields over encoded (`wire`): the last `wire_n`
    fields of the request, or (express, wire_n 0) fields the request does not hold.
    The head is byte for byte the general one of the request with them, from memory
    or not."""
    heads._UPSTREAM_HEADS.clear()
    heads._BY_DECODED.clear()
    n = sum(1 for k, _ in items if k in (b"traceparent", b"b3", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-sampled"))
    entry = ("the decoder's memo entry of", tuple(items[:-n]))
    for span in (b"3" * 16, b"4" * 16, b"5" * 16):
        fields = [(k, v + span if k == b"traceparent" else v) for k, v in items]
        wire = b"".join(k + b": " + v + b"\r\n" for k, v in fields[-n:])
        want = request_head(RequestHead("GET", "/p", Headers(list(fields)), "1.1"), "127.0.0.9", False, False)
        got = bodiless_request_head(RequestHead("GET", "/p", Headers(fields if held else fields[:-n]), "1.1"),
                                    "127.0.0.9", entry if decoded else None, wire, n if held else 0)
        assert got == want


def test_a_wire_count_without_a_wire_is_no_trace_context():
    """A trace whose attempt wrote no encoded context gives None with its count: the
    fields it wrote are the request's own, last."""
    heads._UPSTREAM_HEADS.clear()
    items = [(b"host", b"a"), (b"x-request-id", b"id"), (b"traceparent", b"00-" + b"a" * 32 + b"-" + b"1" * 16 + b"-01"),
             (b"b3", b"x")]
    want = request_head(RequestHead("GET", "/", Headers(list(items)), "1.1"), "127.0.0.1", False, False)
    assert bodiless_request_head(RequestHead("GET", "/", Headers(list(items)), "1.1"), "127.0.0.1", None, None, 2) == want
