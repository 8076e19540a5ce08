"""WASM filters built with the AssemblyScript SDK, through a real mosnx process.

One mosnx serves several listeners, each with one example filter
(examples/wasm/filters/*.wasm or a hand-written examples/wasm/wat module), in
front of a recording upstream; an auth upstream answers the http_call filter.
"""
from __future__ import annotations

import os
import time

import pytest

from .conftest import HOST, Client, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTERS = os.path.join(ROOT, "examples", "wasm", "filters")
WAT = os.path.join(ROOT, "examples", "wasm", "wat")


def wasm(name, module, **options):
    folder = WAT if module.endswith(".wat") else FILTERS
    return {"wasm": {"name": name, "module": os.path.join(folder, module), **options}}


LISTENERS = {
    "headers": [wasm("ah", "add_header.wasm", root_id="add_header", config={"value": "e2e"}),
                wasm("counter", "count.wasm", root_id="count"),
                wasm("props", "props.wasm", root_id="props")],
    "deny": [wasm("deny", "deny.wasm", root_id="deny")],
    "rewrite": [wasm("rw", "rewrite_path.wasm", root_id="rewrite_path",
                     config={"from": "/old/", "to": "/new/"})],
    "append": [wasm("ap", "append_body.wasm", root_id="append_body", config={"suffix": "+wasm"})],
    "append_req": [wasm("apreq", "append_body.wasm", root_id="append_body",
                        config={"suffix": "", "request_suffix": "+req"})],
    "auth": [wasm("authz", "auth_call.wasm", root_id="auth_call", config={"cluster": "auth"})],
    "body_auth": [wasm("bodyz", "body_auth.wasm", root_id="body_auth", config={"cluster": "auth"})],
    "trap": [wasm("trap", "trap.wat")],
    "loop": [wasm("loop", "loop.wat", timeout="20ms")],
    "open": [wasm("trap_open", "trap.wat", fail_open=True)],
}


def _auth(conn, req):
    if req.target == "/check-body":
        conn.respond(200 if req.body.startswith(b"ok") else 403, b"")
    elif req.header("authorization") == "Bearer good":
        conn.respond(200, b"", [("x-user", "alice")])
    else:
        conn.respond(401, b"")


@pytest.fixture(scope="module")
def env(module_mosnx, module_upstream):
    web = module_upstream()
    auth = module_upstream(on_request=_auth)
    config = {
        "listeners": [{"name": n, "address": f"{HOST}:{free_port()}",
                       "route": {"cluster": "web", "timeout": "5s"}, "filters": fs}
                      for n, fs in LISTENERS.items()],
        "clusters": [{"name": "web", "endpoints": [f"{HOST}:{web.port}"]},
                     {"name": "auth", "endpoints": [f"{HOST}:{auth.port}"]}],
    }
    m = module_mosnx(config=config)
    ports = {item["name"]: int(item["address"].rsplit(":", 1)[1]) for item in m.config["listeners"]}
    return m, web, ports


def send(env, listener, method="GET", target="/", headers=None, body=None):
    _, _, ports = env
    with Client(ports[listener]) as c:
        return c.request(method, target, headers or [], body)


def upstream_saw(env, before):
    _, web, _ = env
    return web.wait_requests(before + 1)[before]


def test_headers_added_both_ways(env):
    n = len(env[1].requests)
    r = send(env, "headers")
    assert r.status == 200
    assert r.header("x-wasm-response") == "e2e"
    assert upstream_saw(env, n).header("x-wasm-request") == "e2e"


def test_count_metric_and_stats(env):
    m = env[0]
    first = int(send(env, "headers").header("x-request-count"))
    second = int(send(env, "headers").header("x-request-count"))
    assert second == first + 1
    assert m.wait_stat("wasm.counter.requests", second) >= second


def test_properties_and_shared_data(env):
    r = send(env, "headers", "POST", "/p?x=1", body=b"abc")
    assert r.header("x-prop-path") == "/p?x=1"
    assert r.header("x-prop-method") == "POST"
    assert r.header("x-prop-source").startswith("127.0.0.1:")
    assert r.header("x-prop-plugin") == "props"
    assert r.header("x-prop-status") == "200"
    assert r.header("x-prop-missing") == "not-found"
    hits = int(r.header("x-shared-hits"))
    assert int(send(env, "headers").header("x-shared-hits")) == hits + 1


def test_deny_without_token(env):
    n = len(env[1].requests)
    r = send(env, "deny")
    assert r.status == 403
    assert r.body == b"forbidden: missing token\n"
    assert r.header("x-denied-by") == "wasm"
    ok = send(env, "deny", headers=[("authorization", "Bearer x")])
    assert ok.status == 200
    assert len(env[1].wait_requests(n + 1)) == n + 1    # only the allowed one went upstream


def test_path_rewrite_reaches_the_upstream(env):
    n = len(env[1].requests)
    assert send(env, "rewrite", target="/old/a?q=1").status == 200
    assert upstream_saw(env, n).target == "/new/a?q=1"


def test_response_body_append(env):
    r = send(env, "append")
    assert r.status == 200
    assert r.body == b"ok+wasm"


def test_request_body_edit_reaches_the_upstream(env):
    n = len(env[1].requests)
    r = send(env, "append_req", "POST", "/up", body=b"hello")
    assert r.status == 200
    seen = upstream_saw(env, n)
    assert seen.body == b"hello+req"


def test_http_call_to_auth_cluster(env):
    n = len(env[1].requests)
    r = send(env, "auth", headers=[("authorization", "Bearer good")])
    assert r.status == 200
    assert upstream_saw(env, n).header("x-auth-user") == "alice"
    denied = send(env, "auth", headers=[("authorization", "Bearer bad")])
    assert denied.status == 403
    assert denied.body == b"forbidden: auth service said 401\n"


def test_http_call_on_the_request_body_holds_the_request_until_the_answer(env):
    # the filter stops at the end of the body with its http_call out: the request
    # waits for the answer, then goes on unchanged or is refused
    n = len(env[1].requests)
    body = b"ok: " + b"x" * 50_000
    r = send(env, "body_auth", method="POST", body=body)
    assert r.status == 200
    assert upstream_saw(env, n).body == body
    denied = send(env, "body_auth", method="POST", body=b"evil payload")
    assert denied.status == 403
    assert denied.body == b"forbidden: auth service said 403\n"
    # the head may have gone ahead (as in Envoy, headers pass before the body's
    # verdict), the refused body never did
    assert not any(m.body == b"evil payload" for m in env[1].requests)


def test_http_call_on_the_request_body_over_http2(env):
    from .h2kit import H2Client
    _, web, ports = env
    n = len(web.requests)
    with H2Client(ports["body_auth"]) as c:
        assert c.request("POST", "/h2", body=b"ok from h2").status == 200
        assert c.request("POST", "/h2", body=b"nope").status == 403
    # looked up by body: the refused request's head (and an earlier test's) may be
    # recorded too, whenever its connection closes
    deadline = time.monotonic() + 5
    while not any(m.body == b"ok from h2" for m in web.requests[n:]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(m.body == b"ok from h2" for m in web.requests[n:])
    assert not any(m.body == b"nope" for m in web.requests)


def test_trap_fails_one_request_then_recovers(env):
    m = env[0]
    r = send(env, "trap", headers=[("x-crash", "1")])
    assert r.status == 500
    assert r.header("x-mosnx-error") == "wasm_failure"
    ok = send(env, "trap")
    assert ok.status == 200 and ok.header("x-wat") == "ok"
    assert m.wait_stat("wasm.trap.failures", 1) >= 1


def test_endless_loop_is_cut_off(env):
    t = time.monotonic()
    r = send(env, "loop", headers=[("x-loop", "1")])
    assert r.status == 500 and r.header("x-mosnx-error") == "wasm_failure"
    assert time.monotonic() - t < 5
    assert send(env, "loop").status == 200


def test_fail_open_passes_the_request(env):
    r = send(env, "open", headers=[("x-crash", "1")])
    assert r.status == 200


def test_filters_over_http2(env):
    from .h2kit import H2Client
    _, web, ports = env
    n = len(web.requests)
    with H2Client(ports["headers"]) as c:
        r = c.request("GET", "/h2?x=1", authority="example.com")
    assert r.status == 200
    assert r.header("x-wasm-response") == "e2e"
    assert r.header("x-prop-path") == "/h2?x=1"
    assert upstream_saw(env, n).header("x-wasm-request") == "e2e"
    with H2Client(ports["rewrite"]) as c:
        assert c.request("GET", "/old/z").status == 200
    assert upstream_saw(env, n + 1).target == "/new/z"


RULES = """
vhost all domains "*" {
  route secure when request.path prefix "/secure" {
    to web
    wasm "deny"
  }
  route open { to web }
}
"""


def test_mdsl_route_runs_a_disabled_wasm_filter_by_name(mosnx, upstream, tmp_path):
    web = upstream()
    (tmp_path / "routes.mdsl").write_text(RULES)
    deny = wasm("deny", "deny.wasm", root_id="deny")
    deny["wasm"]["disabled"] = True
    m = mosnx(config={
        "listeners": [{"name": "rules", "rules": ["routes.mdsl"], "filters": [deny]}],
        "clusters": [{"name": "web", "endpoints": [f"{HOST}:{web.port}"]}],
    })
    assert m.request("GET", "/open").status == 200
    r = m.request("GET", "/secure/x")
    assert r.status == 403 and r.body == b"forbidden: missing token\n"
    assert m.request("GET", "/secure/x", headers=[("authorization", "Bearer t")]).status == 200


def test_shared_data_is_shared_by_all_workers(mosnx, upstream):
    web = upstream()
    m = mosnx(config={
        "listeners": [{"name": "props", "route": {"cluster": "web"},
                       "filters": [wasm("props", "props.wasm", root_id="props")]}],
        "clusters": [{"name": "web", "endpoints": [f"{HOST}:{web.port}"]}],
    }, workers=2)
    hits = [int(m.request("GET", "/").header("x-shared-hits")) for _ in range(12)]
    assert hits == list(range(1, 13))
