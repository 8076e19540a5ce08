"""Forwarding rules, the same for HTTP/1.1 and HTTP/2: hop-by-hop fields (and those
Connection names) never cross, X-Forwarded-For gains the client, X-Forwarded-Proto
says the scheme the client used."""
from __future__ import annotations

from mosnx.proxy.forwarding import end_to_end, kept_end_to_end, request_fields, upstream_fields
from mosnx.runtime.context import RequestHead
from mosnx.runtime.headers import Headers


def test_request_hop_by_hop_and_named_fields_stay_behind():
    items = [(b"host", b"h"), (b"connection", b"keep-alive, x-hop"), (b"x-hop", b"1"), (b"te", b"trailers"),
             (b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2"), (b"accept", b"*/*")]
    out, xff, tokens = request_fields(items)
    assert out == [(b"host", b"h"), (b"accept", b"*/*")]
    assert xff == b"1.1.1.1, 2.2.2.2" and tokens == {b"keep-alive", b"x-hop"}


def test_upstream_fields_append_the_forwarding_headers():
    req = RequestHead("GET", "/", Headers([(b"host", b"h"), (b"x-forwarded-proto", b"https")]), "1.1",
                      "http")
    assert upstream_fields(req, "10.0.0.1") == [(b"host", b"h"), (b"x-forwarded-for", b"10.0.0.1"),
                                                (b"x-forwarded-proto", b"http")]


def test_extra_fields_go_upstream_as_if_the_request_held_them():
    req = RequestHead("GET", "/", Headers([(b"host", b"h"), (b"connection", b"b3")]), "1.1", "http")
    extra = [(b"traceparent", b"00-t-s-00"), (b"b3", b"t-s-0")]
    assert upstream_fields(req, "10.0.0.1", extra) == [(b"host", b"h"), (b"traceparent", b"00-t-s-00"),
                                                       (b"x-forwarded-for", b"10.0.0.1"),
                                                       (b"x-forwarded-proto", b"http")]
    assert req.headers.items == [(b"host", b"h"), (b"connection", b"b3")]      # untouched


def test_response_fields_end_to_end():
    items = [(b"connection", b"close, x-private"), (b"x-private", b"1"), (b"keep-alive", b"5"),
             (b"transfer-encoding", b"chunked"), (b"content-length", b"3"), (b"server", b"s")]
    assert end_to_end(items) == ((b"content-length", b"3"), (b"server", b"s"))
    # remembered or not, the same
    assert kept_end_to_end(items) == kept_end_to_end(list(items)) == end_to_end(items)
    # "Connection: keep-alive" names nothing that must go
    assert end_to_end([(b"connection", b"keep-alive"), (b"keep-alive", b"1"), (b"a", b"b")]) == ((b"a", b"b"),)
