"""Envoy's header-map view (pseudo-headers) over mosnx's request and response heads."""
from __future__ import annotations

from mosnx.runtime import Headers, RequestHead, ResponseHead, StreamContext
from mosnx.wasm import abi
from mosnx.wasm.header_maps import HeaderMap, Unavailable, resolve

import pytest


def ctx(path="/a?b=1", authority=None):
    c = StreamContext(RequestHead("GET", path, Headers.from_pairs([("host", "example.com"), ("x-a", "1")]),
                                  authority=authority))
    c.response = ResponseHead(200, Headers.from_pairs([("content-type", "text/plain")]))
    return c


def test_request_pairs_start_with_pseudo_headers_and_fold_host():
    m = resolve(abi.MAP_REQUEST_HEADERS, ctx())
    assert m.pairs() == [(b":authority", b"example.com"), (b":path", b"/a?b=1"), (b":method", b"GET"),
                         (b":scheme", b"http"), (b"x-a", b"1")]


def test_path_rewrite_goes_to_the_request_head():
    c = ctx()
    m = resolve(abi.MAP_REQUEST_HEADERS, c)
    assert c.url_path == "/a"
    m.replace(b":path", b"/new?q=2")
    assert c.request.path == "/new?q=2" and c.url_path == "/new" and c.query == {"q": "2"}


def test_authority_is_the_host_header_on_http1_and_the_field_on_http2():
    c1 = ctx()
    resolve(abi.MAP_REQUEST_HEADERS, c1).replace(b":authority", b"other")
    assert c1.request.headers.get("host") == "other"
    c2 = ctx(authority="h2.example")
    resolve(abi.MAP_REQUEST_HEADERS, c2).replace(b":authority", b"other")
    assert c2.request.authority == "other"


def test_set_all_keeps_host_unless_a_new_authority_is_given():
    c = ctx()
    resolve(abi.MAP_REQUEST_HEADERS, c).set_all([(b":path", b"/z"), (b"X-B", b"2")])
    assert c.request.headers.pairs() == [("x-b", "2"), ("host", "example.com")]
    assert c.request.path == "/z"


def test_add_keeps_existing_values_replace_leaves_one():
    c = ctx()
    m = resolve(abi.MAP_REQUEST_HEADERS, c)
    m.add(b"x-a", b"2")
    assert c.request.headers.get_all("x-a") == ["1", "2"]
    m.replace(b"x-a", b"3")
    assert c.request.headers.get_all("x-a") == ["3"]
    m.remove(b"x-a")
    assert m.get(b"x-a") is None
    m.remove(b":path")          # pseudo-headers stay
    assert m.get(b":path") == b"/a?b=1"


def test_response_status_pseudo_header():
    c = ctx()
    m = resolve(abi.MAP_RESPONSE_HEADERS, c)
    assert m.pairs()[0] == (b":status", b"200")
    m.replace(b":status", b"418")
    assert c.response.status == 418
    with pytest.raises(ValueError):
        m.replace(b":status", b"abc")


def test_maps_not_available_yet():
    c = ctx()
    c.response = None
    with pytest.raises(Unavailable):
        resolve(abi.MAP_RESPONSE_HEADERS, c)
    with pytest.raises(Unavailable):
        resolve(abi.MAP_REQUEST_HEADERS, None)
    with pytest.raises(Unavailable):
        resolve(abi.MAP_CALL_RESPONSE_HEADERS, c)


def test_trailers_map_created_on_demand():
    c = ctx()
    m = resolve(abi.MAP_REQUEST_TRAILERS, c)
    m.add(b"grpc-status", b"0")
    assert c.request.trailers.get("grpc-status") == "0"


def test_http_call_response_map_is_read_only_data():
    m = resolve(abi.MAP_CALL_RESPONSE_HEADERS, None, ([(b":status", b"200")], b"", []))
    assert isinstance(m, HeaderMap) and m.get(b":status") == b"200" and m.fixed is not None
