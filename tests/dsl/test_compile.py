"""Compiled rules, run the way the proxy core runs them: vhost selection, first-match
routes, every operator, rewrites, redirects, replies, header edits in each phase,
fault and rate limit steps, and access-log records."""
from __future__ import annotations

import pytest

from mosnx.runtime.actions import LocalReply, Pause
from mosnx.runtime.pipeline import HttpFilter
from mosnx.runtime.routes import DirectResponse, RedirectAction, RouteAction


def route_name(rules, compiled, **req):
    out = rules.run(compiled, rules.request(**req))
    return out.route.name if out.route is not None else None


def test_vhost_selection_exact_wildcards_and_default(rules):
    c = rules.compile('''
        vhost exact domains "shop.example.com" { route r { respond 200 "exact" } }
        vhost suffix domains "*.example.com" { route r { respond 200 "suffix" } }
        vhost prefix domains "api.*" { route r { respond 200 "prefix" } }
        vhost any { route r { respond 200 "any" } }
    ''')
    def body(host):
        return rules.run(c, rules.request(host=host)).action.body
    assert body("shop.example.com") == b"exact"
    assert body("SHOP.example.com:8080") == b"exact"
    assert body("www.example.com") == b"suffix"
    assert body("api.other.org") == b"prefix"
    assert body("elsewhere.org") == b"any"


def test_top_level_routes_form_a_default_vhost(rules):
    c = rules.compile('route r { respond 204 }')
    assert [vh.domains for vh in c.routes.vhosts] == [("*",)]
    assert rules.run(c, rules.request(host="anything")).action.status == 204


def test_first_match_wins_in_declared_order(rules):
    c = rules.compile('''
        route exact when request.path == "/api/users" { to a }
        route api when request.path prefix "/api" { to b }
        route users when request.path prefix "/api/users" { to c }
        route rest { to d }
    ''')
    assert route_name(rules, c, path="/api/users") == "exact"
    assert route_name(rules, c, path="/api/users/1") == "api"
    assert route_name(rules, c, path="/other") == "rest"


def test_index_hints_and_large_tables_keep_first_match(rules):
    routes = "\n".join(f'route r{i} when request.path == "/p{i}" {{ to c }}' for i in range(20))
    c = rules.compile(routes + '\nroute pre when request.path prefix "/p1" { to c }\nroute last { to c }')
    vh = c.routes.vhosts[0]
    assert vh.routes[3].path_exact == "/p3" and vh.routes[20].path_prefix == "/p1"
    assert route_name(rules, c, path="/p13") == "r13"
    assert route_name(rules, c, path="/p13?x=1") == "pre"    # request.path includes the query
    assert route_name(rules, c, path="/p1x") == "pre"
    assert route_name(rules, c, path="/zzz") == "last"


def test_index_hints_come_with_the_full_guard(rules):
    c = rules.compile('route p when request.path prefix "/a" { to c }\n'
                      'route q when request.path == "/c" { to c }\n'
                      'route m when request.method == "GET" and request.url_path segment_prefix "/e" { to c }')
    p, q, m = c.routes.vhosts[0].routes
    assert p.path_prefix == "/a" and p.path_exact is None and p.match(rules.request(path="/a/x"))
    assert q.path_exact == "/c" and not q.match(rules.request(path="/c?x"))
    assert m.path_prefix == "/e" and not m.match(rules.request(path="/ex"))
    assert route_name(rules, c, path="/c?x") is None
    assert route_name(rules, c, path="/e/1") == "m"


def test_url_path_ignores_the_query(rules):
    c = rules.compile('route items when request.url_path ~ "^/v[0-9]+/items/[0-9]+$" and request.query["debug"] != "1" { to items }\nroute other { to x }')
    assert route_name(rules, c, path="/v1/items/42?debug=0") == "items"
    assert route_name(rules, c, path="/v1/items/42?debug=1") == "other"
    assert route_name(rules, c, path="/v1/items/4a") == "other"


@pytest.mark.parametrize("cond, yes, no", [
    ('request.path == "/a"', "/a", "/b"),
    ('request.path != "/a"', "/b", "/a"),
    ('request.path prefix "/a/"', "/a/b", "/ab"),
    ('request.path suffix ".png"', "/x.png", "/x.jpg"),
    ('request.path contains "admin"', "/x/admin/y", "/x/adm"),
    ('request.path segment_prefix "/api"', "/api/x", "/apix"),
    ('request.path segment_prefix "/api"', "/api", "/ap"),
    ('request.path segment_prefix "/api"', "/api?q=1", "/api-v2"),
    ('request.path ~ "/[a-z]+"', "/abc", "/abc/"),
    ('lower(request.path) == "/abc"', "/ABC", "/abd"),
    ('upper(request.path) == "/ABC"', "/abc", "/abd"),
    ('request.path in {"/a", "/b"}', "/b", "/c"),
    ('not request.path == "/a"', "/b", "/a"),
    ('request.path == "/a" or request.path == "/b"', "/b", "/c"),
    ('request.path prefix "/a" and request.path suffix "z"', "/a-z", "/a-y"),
    ('(request.path == "/x" or request.path == "/y") and not request.path == "/y"', "/x", "/y"),
])
def test_string_operators(rules, cond, yes, no):
    c = rules.compile(f"route hit when {cond} {{ to a }}\nroute miss {{ to b }}")
    assert route_name(rules, c, path=yes) == "hit"
    assert route_name(rules, c, path=no) == "miss"


@pytest.mark.parametrize("cond, yes, no", [
    ("source.port > 1024", 40000, 80),
    ("source.port >= 40000", 40000, 39999),
    ("source.port < 1024", 80, 40000),
    ("source.port <= 80", 80, 81),
    ("source.port == 80", 80, 81),
    ("source.port in {80, 443}", 443, 8443),
])
def test_int_operators(rules, cond, yes, no):
    c = rules.compile(f"route hit when {cond} {{ to a }}\nroute miss {{ to b }}")
    for port, want in ((yes, "hit"), (no, "miss")):
        ctx = rules.request()
        ctx.source_port = port
        assert rules.run(c, ctx).route.name == want


def test_ip_membership_and_equality(rules):
    c = rules.compile('''
        const lan = {10.0.0.0/8, 192.168.1.1, ::1/128}
        route lan when source.address in lan { to a }
        route one when source.address == 203.0.113.9 { to b }
        route other { to c }
    ''')
    assert route_name(rules, c, source="10.2.3.4") == "lan"
    assert route_name(rules, c, source="192.168.1.1") == "lan"
    assert route_name(rules, c, source="::1") == "lan"
    assert route_name(rules, c, source="203.0.113.9") == "one"
    assert route_name(rules, c, source="192.168.1.2") == "other"
    assert route_name(rules, c, source="") == "other"       # unknown peer: never "in"


def test_missing_header_reads_empty_and_exists(rules):
    c = rules.compile('''
        route empty when request.headers["x-a"] == "" and not exists(request.headers["x-a"]) { to a }
        route set when exists(request.headers["X-A"]) { to b }
    ''')
    assert route_name(rules, c) == "empty"
    assert route_name(rules, c, headers={"x-a": "1"}) == "set"


def test_headers_query_cookies_method(rules):
    c = rules.compile('''
        route canary when request.headers["x-canary"] == "1" or request.cookies["beta"] == "yes" { to v2 }
        route post when request.method in {"POST", "PUT"} and request.query["debug"] == "" { to v1 }
        route rest { to v0 }
    ''')
    assert route_name(rules, c, headers={"X-Canary": "1"}) == "canary"
    assert route_name(rules, c, headers={"cookie": "a=b; beta=yes"}) == "canary"
    assert route_name(rules, c, method="POST", path="/x") == "post"
    assert route_name(rules, c, method="POST", path="/x?debug=1") == "rest"


def test_named_conditions_and_imports(rules):
    rules.write('const internal = {10.0.0.0/8}\nconst admin = request.path segment_prefix "/admin"', "lib/common.mdsl")
    c = rules.compile('import "lib/common.mdsl"\nroute deny when admin and not source.address in internal { respond 403 }\nroute ok { to a }')
    assert route_name(rules, c, path="/admin/x") == "deny"
    assert route_name(rules, c, path="/admin/x", source="10.1.1.1") == "ok"


def test_forward_action_fields(rules):
    c = rules.compile('''
        route api when request.path segment_prefix "/api" {
            rewrite prefix "/api" => ""
            split { v1: 90, v2: 10 }
            retry 3 on 5xx, reset, connect-failure, status {409} per_try 500ms
            timeout 3s
            mirror shadow 5%
            mirror audit
            host_rewrite "api.internal"
        }
        route re { to legacy rewrite regex "^/old/(.*)$" => "/new/\\\\1" }
    ''')
    a = c.routes.vhosts[0].routes[0].action
    assert isinstance(a, RouteAction)
    assert a.weighted_clusters == (("v1", 90), ("v2", 10)) and a.cluster is None
    assert a.prefix_rewrite == ("/api", "") and a.host_rewrite == "api.internal"
    assert a.timeout == 3.0
    assert a.retry.num_retries == 3 and a.retry.per_try_timeout == 0.5
    assert a.retry.retry_on == {"5xx", "reset", "connect-failure", "retriable-status-codes"}
    assert a.retry.retriable_status_codes == {409}
    assert [(m.cluster, m.percent) for m in a.mirrors] == [("shadow", 5.0), ("audit", 100.0)]
    b = c.routes.vhosts[0].routes[1].action
    pattern, sub = b.regex_rewrite
    assert b.cluster == "legacy" and b.timeout == 15.0
    assert pattern.sub(sub, "/old/a/b") == "/new/a/b"


def test_retry_defaults_to_safe_conditions(rules):
    c = rules.compile("route r { to a retry 2 }")
    assert c.routes.vhosts[0].routes[0].action.retry.retry_on == {"connect-failure", "refused-stream"}


def test_respond_route_is_a_direct_response(rules):
    c = rules.compile('route health when request.path == "/healthz" { respond 200 "ok" header content-type = "text/plain" }')
    a = c.routes.vhosts[0].routes[0].action
    assert a == DirectResponse(200, b"ok", (("content-type", "text/plain"),))


def test_redirect_route(rules):
    c = rules.compile('''
        route docs when request.path prefix "/docs/v1/" { redirect 301 prefix "/docs/v2/" strip_query }
        route tls when request.scheme == "http" { redirect 308 scheme "https" }
    ''')
    docs = rules.run(c, rules.request(path="/docs/v1/intro?x=1"))
    assert isinstance(docs.action, RedirectAction)
    assert docs.action.location(rules.request(path="/docs/v1/intro?x=1")) == "http://shop.example.com/docs/v2/intro"
    tls = rules.run(c, rules.request(path="/a?b=1"))
    assert tls.action.location(rules.request(path="/a?b=1")) == "https://shop.example.com/a?b=1"


def test_on_request_respond_and_redirect_are_local_replies(rules):
    c = rules.compile('''
        vhost v {
          on request {
            when request.path prefix "/admin" and not source.address in {10.0.0.0/8} { respond 403 "forbidden\\n" }
            when request.path prefix "/old/" { redirect 302 prefix "/new/" }
          }
          route r { to a }
        }
    ''')
    out = rules.run(c, rules.request(path="/admin/x"))
    assert out.reply == LocalReply(403, b"forbidden\n") and out.phase == "vhost" and out.route is None
    out = rules.run(c, rules.request(path="/old/page?q=1"))
    assert out.reply.status == 302 and dict(out.reply.headers)["location"] == "http://shop.example.com/new/page?q=1"
    assert rules.run(c, rules.request(path="/admin/x", source="10.0.0.5")).route.name == "r"


def test_when_else(rules):
    c = rules.compile('on request { when request.method == "GET" { set request.headers["x-m"] = "read" } '
                      'else { set request.headers["x-m"] = "write" } }\nroute r { to a }')
    for method, want in (("GET", "read"), ("POST", "write")):
        ctx = rules.request(method=method)
        rules.run(c, ctx)
        assert ctx.request.headers.get("x-m") == want


def test_request_header_and_metadata_edits(rules):
    c = rules.compile('''
        on request { set metadata["tier"] = lower(request.headers["x-tier"]) }
        route r {
            to a
            set request.headers["X-Env"] = "prod"
            add request.headers["via"] = "mosnx"
            set request.headers["x-peer"] = source.address
            set request.headers["x-tier"] = metadata["tier"]
            set request.headers["x-cluster"] = cluster.name
            remove request.headers["x-debug"]
        }
    ''')
    ctx = rules.request(headers=[("x-debug", "1"), ("via", "edge"), ("x-tier", "GOLD"), ("x-env", "dev")])
    rules.run(c, ctx)
    h = ctx.request.headers
    assert h.get("x-env") == "prod" and h.get_all("x-env") == ["prod"]
    assert h.get_all("via") == ["edge", "mosnx"]
    assert h.get("x-peer") == "203.0.113.7"
    assert h.get("x-tier") == "gold" and ctx.metadata == {"tier": "gold"}
    assert h.get("x-cluster") == "a"
    assert "x-debug" not in h


def test_set_request_path_before_routing(rules):
    c = rules.compile('on request { when request.path prefix "/v0" { set request.path = "/legacy" } }\n'
                      'route legacy when request.path == "/legacy" { to a }\nroute r { to b }')
    assert route_name(rules, c, path="/v0/x") == "legacy"


def test_response_phase_edits(rules):
    c = rules.compile('''
        vhost v {
          route r { to shop set response.headers["x-route"] = route.name
                    when request.method == "HEAD" { remove response.headers["x-big"] } }
          on response {
            when response.code >= 500 { set response.headers["x-upstream-failed"] = cluster.name }
            remove response.headers["server"]
          }
        }
    ''')
    ctx = rules.request(method="HEAD")
    out = rules.run(c, ctx)
    rules.run_response(c, ctx, out, 503, {"server": "nginx", "x-big": "1"})
    h = ctx.response.headers
    assert h.get("x-upstream-failed") == "shop" and "server" not in h
    assert h.get("x-route") == "r" and "x-big" not in h
    ctx = rules.request()
    out = rules.run(c, ctx)
    rules.run_response(c, ctx, out, 200, {"x-big": "1"})
    assert "x-upstream-failed" not in ctx.response.headers and ctx.response.headers.get("x-big") == "1"


def test_fault_abort_and_delay(rules):
    c = rules.compile('route f { to a fault abort 503 100% }\n')
    out = rules.run(c, rules.request())
    assert out.reply.status == 503 and out.reply.detail == "fault_abort" and out.phase == "route"
    c = rules.compile('route f { to a fault delay 1ms, abort 418 }')
    out = rules.run(c, rules.request())
    assert isinstance(out.reply, Pause)
    assert rules.settle(out.reply).status == 418       # the abort comes after the delay
    c = rules.compile('route f { to a fault delay 1ms 0%, abort 500 0% }')
    assert rules.run(c, rules.request()).reply is None


def test_rate_limit_by_key(rules):
    c = rules.compile('on request { limit rate 2/m burst 2 key request.headers["x-api-key"] else 503 }\nroute r { to a }')
    codes = []
    for key in ["a", "a", "a", "b"]:
        out = rules.run(c, rules.request(headers={"x-api-key": key}))
        codes.append(out.reply.status if out.reply else 200)
    assert codes == [200, 200, 503, 200]
    reply = rules.run(c, rules.request(headers={"x-api-key": "a"})).reply
    assert reply.detail == "rate_limited" and dict(reply.headers)["retry-after"] == "30"


def test_wasm_names_a_listener_filter(rules):
    class Deny(HttpFilter):
        name = "authz"

        def on_request(self, ctx):
            return LocalReply(401, b"no", detail="authz") if not ctx.request.headers.get("authorization") else None

        def on_response(self, ctx):
            ctx.response.headers.set("x-authz", "seen")
    c = rules.compile('route r { to a wasm "authz" }', filters={"authz": Deny()})
    assert rules.run(c, rules.request()).reply.status == 401
    ctx = rules.request(headers={"authorization": "x"})
    out = rules.run(c, ctx)
    assert out.reply is None
    rules.run_response(c, ctx, out)
    assert ctx.response.headers.get("x-authz") == "seen"


def test_wasm_inside_when_guards_every_hook(rules):
    class Upper(HttpFilter):
        name = "upper"

        def on_request(self, ctx):
            ctx.request.headers.set("x-upper", "1")

        def on_response_body(self, ctx, data, end_stream):
            return data.upper()
    c = rules.compile('on request { when request.path prefix "/u" { wasm "upper" } }\nroute r { to a }',
                      filters={"upper": Upper()})
    (body_step,) = c.pipeline.response_body
    ctx = rules.request(path="/u/1")
    rules.run(c, ctx)
    assert ctx.request.headers.get("x-upper") == "1" and body_step(ctx, b"abc", False) == b"ABC"
    ctx = rules.request(path="/x")
    rules.run(c, ctx)
    assert "x-upper" not in ctx.request.headers and body_step(ctx, b"abc", False) is None


def test_listener_level_blocks(rules):
    c = rules.compile('on request { when request.method == "TRACE" { respond 405 } }\n'
                      'on response { set response.headers["x-proxy"] = "mosnx" }\n'
                      'vhost v { route r { to a } }')
    assert rules.run(c, rules.request(method="TRACE")).phase == "listener"
    ctx = rules.request()
    out = rules.run(c, ctx)
    rules.run_response(c, ctx, out)
    assert ctx.response.headers.get("x-proxy") == "mosnx"


def test_emit_access_record(rules):
    c = rules.compile('vhost v { route r { to web }\n on log { emit access { path: request.path, status: response.code, '
                      'cluster: cluster.name, ms: duration_ms, peer: source.address } } }')
    ctx = rules.request(path="/x?y=1")
    out = rules.run(c, ctx)
    rules.run_response(c, ctx, out, 201)
    rules.run_log(c, ctx, out)
    ((kind, rec),) = rules.emitted
    assert kind == "access"
    assert rec["path"] == "/x?y=1" and rec["status"] == 201 and rec["cluster"] == "web"
    assert isinstance(rec["ms"], int) and rec["peer"] == "203.0.113.7"


def test_no_route_when_nothing_matches(rules):
    c = rules.compile('vhost v domains "a.com" { route r when request.path == "/" { to a } }')
    assert rules.run(c, rules.request(host="a.com", path="/x")).route is None
    assert rules.run(c, rules.request(host="b.com")).vhost is None
