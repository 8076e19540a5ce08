"""dsl/request.py: curl-style requests, and bad ones answered with a positioned
RequestError and nothing else (generated input too)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosnx.dsl.request import RequestError, parse_request


def test_parse_request_forms():
    r = parse_request("GET https://shop.example.com/api/items?id=3", ["x-user: a"], "10.1.2.3")
    assert (r.method, r.scheme, r.host, r.target, r.headers, r.source) == \
        ("GET", "https", "shop.example.com", "/api/items?id=3", [("x-user", "a")], "10.1.2.3")
    r = parse_request("http://a.example:8080")
    assert (r.method, r.host, r.target) == ("GET", "a.example:8080", "/")
    r = parse_request("POST /x", ["Host: b.example"])
    assert (r.method, r.host, r.target, r.headers) == ("POST", "b.example", "/x", [])
    assert parse_request("GET /", ["host: h"], "[::1]:5555").source == "::1"
    assert parse_request("GET /", ["host: h"], "10.0.0.1:5555").source_port == 5555


@pytest.mark.parametrize("line, headers, source, col, words", [
    ("", [], None, 1, "empty request"),
    ("get http://h/", [], None, 1, "bad method"),
    ("GET http://h/ extra", [], None, 15, "METHOD URL"),
    ("GET ftp://h/", [], None, 5, "http or https"),
    ("GET h/x", [], None, 5, "scheme://host/path"),
    ("GET /x", [], None, 5, "no host"),
    ("GET http://h:99999/", [], None, 5, "bad URL"),
    ("GET http://h/#frag", [], None, 14, "fragment"),
    ("GET /x", ["no-colon"], None, 1, "name: value"),
    ("GET /x", ["host: h"], "not-an-ip", 1, "IP address"),
])
def test_parse_request_errors_have_a_column(line, headers, source, col, words):
    with pytest.raises(RequestError) as e:
        parse_request(line, headers, source)
    assert words in e.value.message
    assert e.value.column == col
    assert str(e.value).count(":") >= 2          # where:line:col: message


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.lists(st.text(max_size=30), max_size=3), st.one_of(st.none(), st.text(max_size=20)))
def test_parse_request_answers_only_request_error(line, headers, source):
    try:
        r = parse_request(line, headers, source)
    except RequestError as e:
        assert e.column >= 1 and e.message
        return
    assert r.method and r.host and r.target.startswith("/")
