"""Shared translations: string matchers, socket addresses and header edits as a
request and a response meet them."""
from __future__ import annotations

import pytest

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.envoy.common import header_edits, header_pipeline, socket_address, string_matcher
from mosnx.runtime.envoy.findings import Findings, Rejected
from mosnx.runtime.envoy.protos import ROUTE, address_pb2, base_pb2
from mosnx.runtime.headers import Headers
from envoy.type.matcher.v3 import string_pb2


@pytest.mark.parametrize("spec, yes, no", [
    ({"exact": "Abc"}, "Abc", "abc"),
    ({"exact": "Abc", "ignore_case": True}, "aBC", "abd"),
    ({"prefix": "/a"}, "/ab", "/b"),
    ({"suffix": ".js"}, "x.js", "x.css"),
    ({"contains": "mid"}, "amidst", "am"),
    ({"safe_regex": {"regex": "[0-9]+"}}, "123", "12a"),
])
def test_string_matchers(spec, yes, no):
    m = string_pb2.StringMatcher(**{k: v for k, v in spec.items() if k != "safe_regex"})
    if "safe_regex" in spec:
        m.safe_regex.regex = spec["safe_regex"]["regex"]
    test = string_matcher(m, Findings(ROUTE, "r"))
    assert test(yes) and not test(no)


def test_socket_address():
    a = address_pb2.Address()
    a.socket_address.address, a.socket_address.port_value = "::1", 8080
    assert socket_address(a, Findings(ROUTE, "r")) == ("::1", 8080)
    a.socket_address.protocol = address_pb2.SocketAddress.UDP
    with pytest.raises(Rejected) as e:
        socket_address(a, Findings(ROUTE, "r", "address"))
    assert e.value.rejection.field_path == "address.socket_address.protocol"


def _opt(key: str, value: str, action: int | None = None, append: bool | None = None) -> base_pb2.HeaderValueOption:
    o = base_pb2.HeaderValueOption()
    o.header.key, o.header.value = key, value
    if action is not None:
        o.append_action = action
    if append is not None:
        o.append.value = append
    return o


def test_header_edits_by_append_action():
    f = Findings(ROUTE, "r")
    req = header_edits([_opt("x-add", "2"), _opt("x-absent", "new", action=1), _opt("x-absent2", "new", action=1),
                        _opt("x-over", "new", append=False), _opt("x-if", "new", action=3),
                        _opt("x-if-none", "new", action=3)], ["x-gone"], f, "request_headers_to_add")
    resp = header_edits([_opt("x-served", "mosnx")], [], f, "response_headers_to_add")
    p = header_pipeline(req, resp)
    c = StreamContext(RequestHead("GET", "/", Headers.from_pairs([
        ("x-add", "1"), ("x-absent", "old"), ("x-over", "old"), ("x-over", "old2"), ("x-if", "old"), ("x-gone", "1")])))
    for step in p.upstream_request:
        step(c)
    h = c.request.headers
    assert h.get_all("x-add") == ["1", "2"] and h.get_all("x-absent") == ["old"] and h.get_all("x-absent2") == ["new"]
    assert h.get_all("x-over") == ["new"] and h.get_all("x-if") == ["new"] and h.get_all("x-if-none") == []
    assert h.get_all("x-gone") == []
    c.response = ResponseHead(200, Headers())
    for step in p.response:
        step(c)
    assert c.response.headers.get("x-served") == "mosnx"


def test_header_values_go_out_as_their_utf8_and_raw_values_as_given():
    f = Findings(ROUTE, "r")
    raw = base_pb2.HeaderValueOption()
    raw.header.key, raw.header.raw_value = "x-raw", b"\xff\x01ok"
    req = header_edits([_opt("x-jp", "日本"), raw], [], f, "request_headers_to_add")
    c = StreamContext(RequestHead("GET", "/", Headers()))
    for step in header_pipeline(req, []).upstream_request:
        step(c)
    assert c.request.headers.getb(b"x-jp") == "日本".encode() and c.request.headers.getb(b"x-raw") == b"\xff\x01ok"


@pytest.mark.parametrize("adds, removes, why", [
    ([("x k", "1")], [], "not a header name"),
    ([("\u0100", "1")], [], "not a header name"),
    ([("x-ok", "a\r\nx-injected: 1")], [], "CR, LF or NUL"),
    ([("x-ok", "a\0")], [], "CR, LF or NUL"),
    ([], ["x gone"], "not a header name"),
])
def test_a_header_edit_no_request_could_carry_is_rejected(adds, removes, why):
    with pytest.raises(Rejected) as e:
        header_edits([_opt(k, v) for k, v in adds], removes, Findings(ROUTE, "r"), "request_headers_to_add")
    assert why in e.value.rejection.message
