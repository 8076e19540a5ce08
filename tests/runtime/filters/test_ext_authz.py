"""runtime/filters/ext_authz.py: config, the HTTP service's check request, and every
outcome: OK with headers, denied, error, timeout, failure_mode_allow."""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mosnx.runtime.actions import LocalReply, Pause
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.filters.ext_authz import ExtAuthzConfig, ExtAuthzFilter
from mosnx.runtime.headers import Headers
from mosnx.runtime.stats import Store


def rq(path: str = "/api/x?q=1", headers: dict | None = None) -> StreamContext:
    h = {"host": "shop.example", "authorization": "Bearer t", "x-user": "alice", "cookie": "c=1"}
    h.update(headers or {})
    ctx = StreamContext(RequestHead("POST", path, Headers.from_pairs(list(h.items()))),
                        source=("10.0.0.7", 40000), destination=("10.0.0.1", 8080))
    ctx.request_id = "rid-1"
    return ctx


HTTP = {"http_service": {"server_uri": {"uri": "http://authz.example", "cluster": "authz", "timeout": "1s"},
                         "path_prefix": "/check",
                         "authorization_request": {"allowed_headers": {"patterns": [{"exact": "x-user"}]},
                                                   "headers_to_add": [{"key": "x-from", "value": "mosnx"}]},
                         "authorization_response": {"allowed_upstream_headers": {"patterns": [{"prefix": "x-auth-"}]},
                                                    "allowed_client_headers": {"patterns": [{"exact": "x-reason"}]}}}}


class FakeAuthz:
    def __init__(self, status=200, headers=(), body=b"", delay=0.0, fail=False):
        self.status, self.headers, self.body, self.delay, self.fail = status, list(headers), body, delay, fail
        self.calls: list = []

    async def __call__(self, cluster, headers, body, timeout):
        self.calls.append((cluster, headers, body, timeout))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise OSError("connection refused")
        return self.status, self.headers, self.body


def make(server, **over) -> tuple[ExtAuthzFilter, Store]:
    stats = Store()
    c = ExtAuthzConfig.from_dict({**HTTP, **over})
    return ExtAuthzFilter(c, "ext_authz", stats, server, None, "l"), stats


def run(f, ctx):
    a = f.on_request(ctx)
    assert isinstance(a, Pause)          # the check is always awaited, never made on the step

    async def wait():
        return await a.awaitable
    return asyncio.run(wait())


def count(stats, name):
    return stats.counter("http.l.ext_authz." + name).value


def test_http_check_request_shape():
    server = FakeAuthz()
    f, _ = make(server)
    assert run(f, rq()) is None
    cluster, headers, body, timeout = server.calls[0]
    assert (cluster, body, timeout) == ("authz", b"", 1.0)
    assert headers[:3] == [(":method", "POST"), (":path", "/check/api/x?q=1"), (":authority", "shop.example")]
    names = {k for k, _ in headers[3:]}
    assert names == {"authorization", "x-user", "x-from"}          # cookie is not allowed through


def test_http_ok_adds_only_the_allowed_upstream_headers():
    f, stats = make(FakeAuthz(200, [("x-auth-user", "alice"), ("x-other", "no"), ("content-length", "0")]))
    ctx = rq()
    assert run(f, ctx) is None
    assert ctx.request.headers.get("x-auth-user") == "alice"
    assert ctx.request.headers.get("x-other") is None
    assert count(stats, "ok") == 1


def test_http_denied_passes_status_body_and_allowed_client_headers():
    f, stats = make(FakeAuthz(401, [("x-reason", "expired"), ("x-secret", "s")], b"go away"))
    r = run(f, rq())
    assert isinstance(r, LocalReply)
    assert (r.status, r.body, r.headers, r.detail) == (401, b"go away", (("x-reason", "expired"),), "ext_authz_denied")
    assert count(stats, "denied") == 1


def test_http_denied_without_a_client_list_sends_every_header():
    cfg = {"http_service": {"server_uri": {"uri": "http://a", "cluster": "authz", "timeout": "1s"}}}
    f, _ = make(FakeAuthz(403, [("x-a", "1"), ("x-b", "2")]), **cfg)
    assert run(f, rq()).headers == (("x-a", "1"), ("x-b", "2"))


@pytest.mark.parametrize("server", [FakeAuthz(fail=True), FakeAuthz(delay=5.0)])
def test_error_or_timeout_is_status_on_error(server):
    f, stats = make(server, status_on_error=503)
    f.config = ExtAuthzConfig(**{**{k: getattr(f.config, k) for k in f.config.__dataclass_fields__}, "timeout": 0.05})
    r = run(f, rq())
    assert (r.status, r.detail) == (503, "ext_authz_error")
    assert count(stats, "error") == 1


def test_error_default_is_403():
    f, _ = make(FakeAuthz(fail=True))
    assert run(f, rq()).status == 403


def test_failure_mode_allow_continues_and_marks_the_request():
    f, stats = make(FakeAuthz(fail=True), failure_mode_allow=True, failure_mode_allow_header_add=True)
    ctx = rq()
    assert run(f, ctx) is None
    assert ctx.request.headers.get("x-envoy-auth-failure-mode-allowed") == "true"
    assert (count(stats, "error"), count(stats, "failure_mode_allowed")) == (1, 1)
    f, _ = make(FakeAuthz(fail=True), failure_mode_allow=True)
    ctx = rq()
    assert run(f, ctx) is None and ctx.request.headers.get("x-envoy-auth-failure-mode-allowed") is None


@pytest.mark.parametrize("c,msg", [
    ({}, "exactly one of grpc_service and http_service"),
    ({"grpc_service": {"envoy_grpc": {}}}, "cluster_name"),
    ({"http_service": {"server_uri": {"uri": "x", "cluster": "c"}}}, "http\\(s\\) URL"),
    ({**HTTP, "with_request_body": {"max_request_bytes": 10}}, "with_request_body is not supported"),
    ({**HTTP, "status_on_error": 99}, "status_on_error"),
    ({"http_service": {"server_uri": {"uri": "http://a", "cluster": "c"},
                       "authorization_request": {"headers_to_add": 5}}}, "headers_to_add: expected a list"),
    ({"http_service": {"server_uri": {"uri": "http://a", "cluster": "c"},
                       "authorization_request": {"allowed_headers": {"patterns": [{"regex": "x"}]}}}}, "unknown option"),
])
def test_bad_config_is_a_clear_error(c, msg):
    with pytest.raises(ValueError, match=msg):
        ExtAuthzConfig.from_dict(c)


def test_http_5xx_is_an_error_not_a_denial():
    f, stats = make(FakeAuthz(503, [("x-reason", "busy")], b"overloaded"))
    r = run(f, rq())
    assert (r.status, r.body, r.detail) == (403, b"", "ext_authz_error")
    assert (count(stats, "error"), count(stats, "denied")) == (1, 0)


def test_http_denial_always_passes_www_authenticate_and_location():
    f, _ = make(FakeAuthz(302, [("location", "https://login"), ("www-authenticate", "Basic"), ("x-other", "1")]))
    assert run(f, rq()).headers == (("location", "https://login"), ("www-authenticate", "Basic"))


_value = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                      lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=3),
                      max_leaves=10)
_keys = st.sampled_from(["grpc_service", "http_service", "failure_mode_allow", "status_on_error", "server_uri",
                         "envoy_grpc", "cluster_name", "uri", "cluster", "timeout", "authorization_request",
                         "allowed_headers", "patterns", "exact", "headers_to_add", "key", "context_extensions"])


@settings(max_examples=300, deadline=None)
@given(st.recursive(_value, lambda c: st.dictionaries(_keys, c, max_size=4), max_leaves=12).filter(
    lambda v: isinstance(v, dict)))
def test_any_config_is_accepted_or_a_value_error(cfg):
    try:
        ExtAuthzConfig.from_dict(cfg)
    except ValueError:
        pass
