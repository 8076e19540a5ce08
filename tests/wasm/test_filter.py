"""Which stream callbacks the filter makes, and with what end_of_stream, for requests
and responses with and without a body: as Envoy, a side whose headers ended the
stream gets no body callback."""
from __future__ import annotations

import pytest

from mosnx.runtime import Headers, RequestHead, ResponseHead, StreamContext

from .conftest import make


def recording(f):
    """The filter's body and response-headers callbacks, recorded as (name, args)."""
    calls = []
    vm = f.vm

    def wrap(name, fn):
        def rec(*args):
            calls.append((name, args[1:]))
            return fn(*args)
        return rec
    vm.cb["proxy_on_request_body"] = wrap("request_body", vm.cb["proxy_on_request_body"])
    vm.on_response_headers = wrap("response_headers", vm.on_response_headers)
    vm.on_response_body = wrap("response_body", vm.on_response_body)
    return calls


def stream(f, method="GET", req_body=None, status=200, resp_headers=(), resp_body=b""):
    hdrs = [("host", "example.com")]
    if req_body is not None:
        hdrs.append(("content-length", str(len(req_body))))
    ctx = StreamContext(RequestHead(method, "/", Headers.from_pairs(hdrs)))
    ctx.request_bodyless = req_body is None
    assert f.on_request(ctx) is None
    f.on_request_body(ctx, req_body or b"", True)
    ctx.response = ResponseHead(status, Headers.from_pairs(list(resp_headers)))
    assert f.on_response(ctx) is None
    f.on_response_body(ctx, resp_body, True)
    f.on_log(ctx)


def test_a_request_and_response_with_bodies_get_one_body_callback_each():
    f = make("noop", "noop.wasm", root_id="noop")
    calls = recording(f)
    stream(f, "POST", req_body=b"abc", resp_headers=[("content-length", "5")], resp_body=b"hello")
    assert calls == [("request_body", (3, 1)), ("response_headers", (2, False)),
                     ("response_body", (5, True))]


@pytest.mark.parametrize("method,status,resp_headers", [
    ("GET", 204, []),
    ("GET", 304, []),
    ("GET", 200, [("content-length", "0")]),
    ("HEAD", 200, [("content-length", "5")]),
])
def test_a_bodyless_response_ends_the_stream_at_its_headers(method, status, resp_headers):
    f = make("noop", "noop.wasm", root_id="noop")
    calls = recording(f)
    stream(f, method, status=status, resp_headers=resp_headers)
    assert calls == [("response_headers", (len(resp_headers) + 1, True))]


def test_a_filter_that_edits_headers_still_sees_them_on_a_bodyless_response():
    f = make("add_header", "add_header.wasm", root_id="add_header", config={"value": "v"})
    hdrs = Headers.from_pairs([("host", "example.com")])
    ctx = StreamContext(RequestHead("GET", "/", hdrs))
    ctx.request_bodyless = True
    f.on_request(ctx)
    ctx.response = ResponseHead(204, Headers())
    f.on_response(ctx)
    f.on_response_body(ctx, b"", True)
    f.on_log(ctx)
    assert ctx.response.headers.get("x-wasm-response") == "v"
