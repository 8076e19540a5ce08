"""Filters built with the AssemblyScript SDK (examples/wasm), driven through the wasm filter."""
from __future__ import annotations

import asyncio

import pytest

from mosnx.runtime import Pause, Store

from .conftest import arun, make, run


def test_add_header_adds_request_and_response_headers():
    f = make("ah", "add_header.wasm", root_id="add_header", config={"value": "hi"})
    r = run(f)
    assert r.upstream_headers.get("x-wasm-request") == "hi"
    assert r.headers.get("x-wasm-response") == "hi"
    assert r.status == 200 and r.body == b"hello"


def test_add_header_keeps_client_value_as_a_repeated_header():
    f = make("ah", "add_header.wasm", root_id="add_header")
    r = run(f, headers=[("x-wasm-request", "client")])
    assert r.upstream_headers.get_all("x-wasm-request") == ["client", "mosnx"]


def test_deny_without_token_is_a_local_403_with_body():
    f = make("deny", "deny.wasm", root_id="deny")
    r = run(f)
    assert not r.upstream_called
    assert r.status == 403
    assert r.body == b"forbidden: missing token\n"
    assert r.headers.get("x-denied-by") == "wasm"
    assert r.headers.get("content-type") == "text/plain"
    assert r.detail == "missing_token"


def test_deny_lets_a_request_with_token_through():
    f = make("deny", "deny.wasm", root_id="deny")
    r = run(f, headers=[("authorization", "Bearer x")])
    assert r.upstream_called and r.status == 200


def test_deny_header_comes_from_plugin_config():
    f = make("deny", "deny.wasm", root_id="deny", config={"header": "x-api-key"})
    assert run(f, headers=[("authorization", "Bearer x")]).status == 403
    assert run(f, headers=[("x-api-key", "k")]).status == 200


def test_rewrite_path_from_config_keeps_the_query():
    f = make("rw", "rewrite_path.wasm", root_id="rewrite_path", config={"from": "/old/", "to": "/new/"})
    r = run(f, path="/old/a/b?x=1")
    assert r.upstream_path == "/new/a/b?x=1"
    assert r.upstream_headers.get("x-original-path") == "/old/a/b?x=1"
    assert r.ctx.url_path == "/new/a/b"
    assert run(f, path="/other").upstream_path == "/other"


def test_rewrite_path_rejected_config_is_a_load_error():
    with pytest.raises(ValueError, match="proxy_on_configure returned false"):
        make("rw", "rewrite_path.wasm", root_id="rewrite_path", config={"to": "/x"})


def test_missing_root_context_is_a_load_error():
    with pytest.raises(ValueError, match="rewrite_path.wasm"):
        make("rw", "rewrite_path.wasm", root_id="nope", config={"from": "/"})


def test_count_metric_in_the_stats_store():
    stats = Store()
    f = make("counter", "count.wasm", stats=stats, root_id="count")
    seen = [run(f).headers.get("x-request-count") for _ in range(3)]
    assert seen == ["1", "2", "3"]
    assert stats.counters["wasm.counter.requests"].value == 3


def test_append_body_buffers_and_appends():
    f = make("ap", "append_body.wasm", root_id="append_body", config={"suffix": "!!"})
    r = run(f, upstream=(200, (), [b"hel", b"lo", b""]))
    assert r.body == b"hello!!"
    assert "content-length" not in r.headers


def test_append_body_single_chunk():
    f = make("ap", "append_body.wasm", root_id="append_body")
    r = run(f)
    assert r.body == b"hello\nappended by wasm\n"


def test_properties_and_shared_data():
    f = make("props", "props.wasm", root_id="props", vm_id="v1")
    r = run(f, method="POST", path="/p/q?x=1", body=b"data", upstream=(201, (), b""))
    h = r.headers
    assert h.get("x-prop-path") == "/p/q?x=1"
    assert h.get("x-prop-method") == "POST"
    assert h.get("x-prop-source") == "10.1.2.3:40000"
    assert h.get("x-prop-plugin") == "props"
    assert h.get("x-prop-root-id") == "props"
    assert h.get("x-prop-status") == "201"
    assert h.get("x-prop-missing") == "not-found"
    assert h.get("x-shared-hits") == "1"
    assert run(f).headers.get("x-shared-hits") == "2"


def test_shared_data_is_shared_by_vm_id():
    a = make("a", "props.wasm", root_id="props", vm_id="same")
    b = make("b", "props.wasm", root_id="props", vm_id="same")
    c = make("c", "props.wasm", root_id="props", vm_id="other")
    assert run(a).headers.get("x-shared-hits") == "1"
    assert run(b).headers.get("x-shared-hits") == "2"
    assert run(c).headers.get("x-shared-hits") == "1"


class FakeAuth:
    def __init__(self, status=200, user="alice", delay=0.0, fail=False):
        self.status, self.user, self.delay, self.fail = status, user, delay, fail
        self.calls = []

    async def __call__(self, cluster, headers, body, timeout):
        self.calls.append((cluster, headers, body, timeout))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionRefusedError("refused")
        return self.status, [("x-user", self.user)], b"ok"


def test_http_call_allows_and_continues_the_paused_request():
    f = make("auth", "auth_call.wasm", root_id="auth_call", clusters={"auth"},
             config={"cluster": "auth", "path": "/check"})
    fake = FakeAuth()
    f.http_call = fake
    r = run(f, headers=[("authorization", "Bearer t")])
    assert r.status == 200 and r.upstream_called
    assert r.upstream_headers.get("x-auth-user") == "alice"
    (cluster, headers, body, timeout), = fake.calls
    assert cluster == "auth"
    assert ("authorization", "Bearer t") in headers
    assert (":path", "/check") in headers and (":method", "GET") in headers
    assert timeout == 2.0


def test_http_call_denial_is_a_local_reply_after_the_pause():
    f = make("auth", "auth_call.wasm", root_id="auth_call", clusters={"auth"})
    f.http_call = FakeAuth(status=401)
    r = run(f)
    assert r.status == 403 and not r.upstream_called
    assert r.body == b"forbidden: auth service said 401\n"
    assert r.detail == "denied_by_auth_service"


def test_http_call_failure_reaches_the_filter_as_no_response():
    f = make("auth", "auth_call.wasm", root_id="auth_call", clusters={"auth"})
    f.http_call = FakeAuth(fail=True)
    r = run(f)
    assert r.status == 403 and r.body == b"forbidden: auth service unavailable\n"


def test_http_call_to_unknown_cluster_is_refused_at_dispatch():
    f = make("auth", "auth_call.wasm", root_id="auth_call", clusters={"other"})
    f.http_call = FakeAuth()
    r = run(f)
    assert r.status == 403 and r.body == b"forbidden: auth service not reachable\n"
    assert f.http_call.calls == []


def test_pause_holds_the_stream_until_the_call_returns():
    f = make("auth", "auth_call.wasm", root_id="auth_call", clusters={"auth"})
    f.http_call = FakeAuth(delay=0.05)

    async def go():
        from mosnx.runtime import Headers, RequestHead, StreamContext
        ctx = StreamContext(RequestHead("GET", "/", Headers.from_pairs([("host", "h")])))
        action = f.on_request(ctx)
        assert isinstance(action, Pause)
        await asyncio.sleep(0.01)
        assert not action.awaitable.done()
        assert await asyncio.wait_for(action.awaitable, 2) is None
        assert ctx.request.headers.get("x-auth-user") == "alice"
        f.on_log(ctx)
    asyncio.run(go())


def test_concurrent_paused_streams_resume_independently():
    f = make("auth", "auth_call.wasm", root_id="auth_call", clusters={"auth"})
    f.http_call = FakeAuth(delay=0.02)

    async def go():
        return await asyncio.gather(*[arun(f, headers=[("authorization", str(i))]) for i in range(5)])
    results = asyncio.run(go())
    assert [r.status for r in results] == [200] * 5
    assert len(f.vm.contexts) == 0


def test_plugin_logs_reach_the_mosnx_log_when_enabled(caplog):
    import logging
    with caplog.at_level(logging.DEBUG, logger="mosnx.wasm"):
        f = make("ah", "add_header.wasm", root_id="add_header")
        run(f)
    assert any("wasm log ah add_header: context id: 2" in r.getMessage() for r in caplog.records)
    caplog.clear()
    f = make("quiet", "add_header.wasm", root_id="add_header")
    run(f)
    assert not [r for r in caplog.records if r.name == "mosnx.wasm"]


def test_sdk_vm_restarts_after_a_failure():
    stats = Store()
    f = make("ah", "add_header.wasm", stats=stats, root_id="add_header")
    f.vm.fail(RuntimeError("simulated"), "test")
    r = run(f)
    assert r.headers.get("x-wasm-response") == "mosnx"
    assert stats.counters["wasm.ah.vm_starts"].value == 2


def test_request_body_buffered_and_appended():
    f = make("ap", "append_body.wasm", root_id="append_body", config={"request_suffix": "+req"})
    r = run(f, method="POST", chunks=[b"hel", b"lo", b""])
    assert r.upstream_body == b"hello+req"
    assert "content-length" not in r.upstream_headers


def test_http_call_answer_after_the_stream_ended_is_dropped(caplog):
    import logging
    stats = Store()
    f = make("auth", "auth_call.wasm", stats=stats, root_id="auth_call", clusters={"auth"})
    f.http_call = FakeAuth(delay=0.03)

    async def go():
        from mosnx.runtime import Headers, RequestHead, StreamContext
        ctx = StreamContext(RequestHead("GET", "/", Headers.from_pairs([("host", "h")])))
        assert isinstance(f.on_request(ctx), Pause)
        f.on_log(ctx)                   # the client went away while the call was out
        await asyncio.sleep(0.06)
        return await arun(f)
    with caplog.at_level(logging.WARNING, logger="mosnx.wasm"):
        assert asyncio.run(go()).status == 200
    assert stats.counters["wasm.auth.failures"].value == 0
    # the plugin never saw an answer for a context that is gone
    assert not any("effective context" in r.getMessage() for r in caplog.records)
