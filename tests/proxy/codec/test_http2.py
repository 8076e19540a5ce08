"""proxy/codec/http2.py: request and response blocks validated and mapped, gRPC statuses
and timeouts."""
from __future__ import annotations

import pytest

from mosnx.proxy.codec.http2 import (H2HeadError, grpc_local_reply, grpc_status_for, parse_grpc_timeout,
                                     request_block, request_from_block, request_parts, response_block,
                                     response_fields, response_from_block, trailers_from_block)
from mosnx.runtime.actions import LocalReply
from mosnx.runtime.headers import Headers

BASE = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"api.test"), (b":path", b"/a?b=1")]


def test_request_block_maps_pseudo_headers_and_adds_host():
    f = request_from_block(BASE + [(b"x-a", b"1"), (b"cookie", b"a=1"), (b"cookie", b"b=2")])
    assert (f.method, f.path, f.scheme, f.authority) == ("GET", "/a?b=1", "http", "api.test")
    assert f.headers.items == [(b"host", b"api.test"), (b"x-a", b"1"), (b"cookie", b"a=1; b=2")]
    assert f.content_length is None and not f.te_trailers


def test_request_block_keeps_content_length_and_te_trailers():
    f = request_from_block(BASE + [(b"content-length", b"12"), (b"te", b"trailers")])
    assert f.content_length == 12 and f.te_trailers
    assert not f.headers.has(b"te")


@pytest.mark.parametrize("block,detail", [
    ([(b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")], "missing_method"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")], "missing_path"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")], "missing_authority"),
    ([(b":method", b"GET")] + BASE, "duplicate_pseudo_header"),
    ([(b"x-a", b"1")] + BASE, "pseudo_header_after_regular"),
    (BASE + [(b":status", b"200")], "unknown_pseudo_header"),
    (BASE + [(b"X-Upper", b"1")], "invalid_header_name"),
    (BASE + [(b"x-a", b"evil\r\nInjected: 1")], "invalid_header_value"),
    (BASE + [(b"x-a", b"nul\x00")], "invalid_header_value"),
    (BASE + [(b"connection", b"close")], "connection_specific_header"),
    (BASE + [(b"transfer-encoding", b"chunked")], "connection_specific_header"),
    (BASE + [(b"te", b"gzip")], "invalid_te"),
    (BASE + [(b"content-length", b"x")], "invalid_content_length"),
    ([(b":method", b"CONNECT"), (b":authority", b"a:443")], "connect_not_supported"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"no-slash")], "invalid_path"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"")], "invalid_path"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"*")], "invalid_path"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"u@a.test"), (b":path", b"/")],
     "invalid_authority"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.test/private"), (b":path", b"/")],
     "invalid_authority"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.test:80x"), (b":path", b"/")],
     "invalid_authority"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b""), (b":path", b"/")], "invalid_authority"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"u@a.test")], "invalid_authority"),
    ([(b":method", b"G(T"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")], "invalid_method"),
    ([(b":method", b"GET"), (b":scheme", b"1http"), (b":authority", b"a"), (b":path", b"/")], "invalid_scheme"),
    (BASE + [(b"host", b"other.test")], "host_authority_mismatch"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"a"), (b"host", b"b")],
     "duplicate_host"),
    (BASE + [(b"content-length", b"1"), (b"content-length", b"2")], "invalid_content_length"),
])
def test_malformed_request_blocks_are_refused(block, detail):
    with pytest.raises(H2HeadError) as e:
        request_from_block(block)
    assert e.value.detail == detail


@pytest.mark.parametrize("authority", [b"a.test", b"a.test:8080", b"[::1]:443", b"10.0.0.1", b"xn--bcher-kva.test"])
def test_valid_authorities_pass(authority):
    f = request_from_block([(b":method", b"OPTIONS"), (b":scheme", b"https"), (b":authority", authority),
                            (b":path", b"*"), (b"host", authority.upper())])
    assert f.authority == authority.decode() and f.path == "*"


def test_a_repeated_request_block_gives_each_request_its_own_headers():
    block = tuple(BASE + [(b"x-a", b"1")])       # the decoder hands a repeated block back as one tuple
    first = request_from_block(block)
    first.headers.items.append((b"x-added", b"1"))
    second = request_from_block(block)
    assert second.headers.items == [(b"host", b"api.test"), (b"x-a", b"1")]
    assert request_parts(block) is request_parts(block)


def test_a_repeated_malformed_block_is_refused_every_time():
    block = tuple(BASE + [(b"x-a", b"evil\r\nInjected: 1")])
    for _ in range(3):
        with pytest.raises(H2HeadError):
            request_from_block(block)


def test_trailers_are_validated_when_asked():
    assert trailers_from_block([(b"grpc-status", b"0")], validate=True).items == [(b"grpc-status", b"0")]
    with pytest.raises(H2HeadError):
        trailers_from_block([(b":path", b"/")], validate=True)
    with pytest.raises(H2HeadError):
        trailers_from_block([(b"x-a", b"a\nb")], validate=True)


def test_response_block_drops_connection_headers_and_sets_length():
    block = response_block(200, Headers([(b"connection", b"keep-alive"), (b"content-length", b"9"),
                                         (b"x-a", b"1")]), 5)
    assert block == [(b":status", b"200"), (b"x-a", b"1"), (b"content-length", b"5")]
    assert response_block(204, Headers(), 0) == [(b":status", b"204")]


def test_request_block_from_an_http1_head():
    block = request_block("POST", "/svc/M", Headers([(b"host", b"h:1"), (b"connection", b"x"),
                                                     (b"content-type", b"application/grpc")]), "https", True)
    assert block == [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"h:1"),
                     (b":path", b"/svc/M"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]


@pytest.mark.parametrize("status,code", [(404, 12), (503, 14), (504, 4), (429, 8), (502, 14), (500, 13),
                                         (401, 16), (403, 7), (418, 2), (200, 0)])
def test_grpc_status_for_http_status(status, code):
    assert grpc_status_for(status) == code


def test_grpc_local_reply_is_trailers_only():
    r = grpc_local_reply(LocalReply(503, b"upstream unavailable\n", (("x-keep", "1"),), "no_healthy_upstream"))
    assert r.status == 200 and r.body == b"" and r.detail == "no_healthy_upstream"
    h = dict(r.headers)
    assert h["grpc-status"] == "14" and h["grpc-message"] == "no_healthy_upstream"
    assert h["content-type"] == "application/grpc" and h["x-keep"] == "1"
    r = grpc_local_reply(LocalReply(429, "too many, 100%", (), ""))
    assert dict(r.headers)["grpc-message"] == "too many, 100%25"


@pytest.mark.parametrize("value,seconds", [(b"1S", 1.0), (b"250m", 0.25), (b"2M", 120.0), (b"1H", 3600.0),
                                           (b"500u", 0.0005), (b"7n", 7e-9), (b"", None), (b"S", None),
                                           (b"12x", None), (b"123456789S", None), (None, None)])
def test_grpc_timeout_parsing(value, seconds):
    got = parse_grpc_timeout(value)
    assert got == seconds if seconds is None else got == pytest.approx(seconds)


def test_a_repeated_response_head_shares_its_fields_and_callers_get_their_own_block():
    h = Headers([(b"server", b"x"), (b"content-length", b"9"), (b"connection", b"keep-alive")])
    block = response_block(200, h, 5)
    block.append((b"x-b", b"2"))
    assert response_block(200, h, 5) == [(b":status", b"200"), (b"server", b"x"), (b"content-length", b"5")]
    assert response_fields(200, h.items, 5) is response_fields(200, list(h.items), 5)
    assert response_fields(200, h.items, 6)[-1] == (b"content-length", b"6")
    assert response_fields(304, h.items, 6) == ((b":status", b"304"), (b"server", b"x"))


def test_a_repeated_response_block_gives_each_response_its_own_headers():
    block = ((b":status", b"200"), (b"content-type", b"application/grpc"), (b"content-length", b"7"))
    status, headers, body = response_from_block(block)
    headers.items.append((b"x-added", b"1"))
    assert response_from_block(block)[0:3:2] == (200, 7)
    assert response_from_block(block)[1].items == [(b"content-type", b"application/grpc"), (b"content-length", b"7")]
    for _ in range(2):
        with pytest.raises(H2HeadError):
            response_from_block(((b":status", b"20x"),))
