"""The grammar and the tree it builds: every construct, with its source span,
and syntax errors as positioned E001 diagnostics."""
from __future__ import annotations

import pytest

from mosnx.dsl import ast as A
from mosnx.dsl.parse import parse
from mosnx.runtime.diagnostics import Diagnostic


def items(src: str):
    f = parse(src, "t.mdsl")
    assert isinstance(f, A.File), f.render()
    return f.items


def route_body(src: str):
    (r,) = items("route r { " + src + " }")
    return r.body


def cond(src: str) -> A.Expr:
    (r,) = items(f"route r when {src} {{ to c }}")
    return r.cond


def test_top_level_declarations():
    imp, const, clusters = items('import "common.mdsl"\nconst lan = {10.0.0.0/8}\nclusters a, b-c')
    assert imp == A.Import(imp.span, "common.mdsl")
    assert (const.name, type(const.value)) == ("lan", A.SetLit)
    assert const.value.items[0].text == "10.0.0.0/8"
    assert clusters.names == ("a", "b-c")
    assert (const.span.line, const.span.column) == (2, 1)


def test_vhost_with_domains_blocks_and_routes():
    (vh,) = items('vhost shop domains "shop.example.com", "*.shop.example.com" {\n'
                  '  on request { remove request.headers["x"] }\n'
                  '  route a when request.path == "/" { to web }\n'
                  '  on response { }\n  on log { }\n}')
    assert vh.name == "shop"
    assert [d.name for d in vh.domains] == ["shop.example.com", "*.shop.example.com"]
    assert [type(i).__name__ for i in vh.items] == ["OnBlock", "RouteDecl", "OnBlock", "OnBlock"]
    assert [i.phase for i in vh.items if isinstance(i, A.OnBlock)] == ["request", "response", "log"]
    assert (vh.items[1].name_span.line, vh.items[1].name_span.column) == (3, 9)


def test_vhost_without_domains_and_top_level_route():
    vh, r = items("vhost any { }\nroute fallback { to web }")
    assert vh.domains == () and r.cond is None and r.body == (A.To(r.body[0].span, "web"),)


def test_hyphenated_names_and_keywords_as_names():
    (r,) = items("route old-docs { to status }")
    assert r.name == "old-docs" and r.body[0].cluster == "status"
    (r,) = items("route timeout { to c }")
    assert r.name == "timeout"


def test_forwarding_statements():
    body = route_body('to a split { a: 90, b: 10 } timeout 800ms '
                      'retry 3 on 5xx, reset, connect-failure, status {409, 429} per_try 500ms '
                      'mirror shadow 5% host_rewrite "legacy.internal" '
                      'rewrite prefix "/api" => "" rewrite regex "^/v1/(.*)$" => "/\\\\1"')
    to, split, timeout, retry, mirror, host, rp, rr = body
    assert split.weights[1] == A.Weight(split.weights[1].span, "b", 10)
    assert timeout.duration.text == "800ms"
    assert retry.count == 3 and retry.per_try.text == "500ms"
    assert [(o.name, o.statuses) for o in retry.on] == [
        ("5xx", ()), ("reset", ()), ("connect-failure", ()), ("retriable-status-codes", (409, 429))]
    assert (mirror.cluster, mirror.percent.text) == ("shadow", "5%")
    assert host.host == "legacy.internal"
    assert (rp.old, rp.new) == ("/api", "")
    assert (rr.pattern.value, rr.substitution) == ("^/v1/(.*)$", "/\\1")


def test_retry_and_mirror_minimal_forms():
    retry, mirror = route_body("retry 2 mirror shadow")
    assert retry.on == () and retry.per_try is None and mirror.percent is None


def test_header_and_metadata_edits():
    s, a, r = route_body('set request.headers["X-Env"] = "prod" add response.headers["via"] = request.host '
                         'remove metadata["k"]')
    assert (s.mode, s.target.name, s.target.key, s.value.value) == ("set", "request.headers", "X-Env", "prod")
    assert (a.mode, a.value.name) == ("add", "request.host")
    assert (r.target.name, r.target.key) == ("metadata", "k")


def test_fault_and_limit():
    f1, f2, lim, lim2 = route_body('fault delay 2s 1%, abort 503 0.1% fault abort 500 '
                                   'limit rate 100/s burst 200 key request.headers["x-api-key"] else 429 '
                                   'limit rate 5/m queue')
    assert (f1.delay.duration.text, f1.delay.percent.text, f1.abort.status.value, f1.abort.percent.text) == (
        "2s", "1%", 503, "0.1%")
    assert f2.delay is None and f2.abort.percent is None
    assert (lim.rate, lim.burst, lim.key.key, lim.status.value, lim.queue) == ("100/s", 200, "x-api-key", 429, False)
    assert (lim2.rate, lim2.burst, lim2.key, lim2.status, lim2.queue) == ("5/m", None, None, None, True)


def test_respond_redirect_wasm_emit():
    body = route_body('respond 200 "ok\\n" header content-type = "text/plain" header "X-A" = "1" '
                      'redirect 308 scheme "https" host "new.example.com" path "/x" strip_query '
                      'redirect 301 prefix "/v2/" wasm "authz"')
    resp, red, red2, wasm = body
    assert (resp.status.value, resp.body, resp.headers) == (200, "ok\n", (("content-type", "text/plain"), ("x-a", "1")))
    assert (red.status.value, red.scheme, red.host, red.path, red.strip_query) == (308, "https", "new.example.com", "/x", True)
    assert red2.prefix == "/v2/" and not red2.strip_query
    assert wasm.name == "authz"
    (blk,) = items("on log { emit access { path: request.path, status: response.code, } }")
    (emit,) = blk.body
    assert emit.stream == "access" and [f.name for f in emit.fields] == ["path", "status"]


def test_when_else_nesting():
    (blk,) = items('on request { when request.method == "GET" { when true { respond 204 } } '
                   'else { respond 405 } }')
    (w,) = blk.body
    assert isinstance(w.body[0], A.When) and isinstance(w.orelse[0], A.Respond)


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">=", "~", "prefix", "suffix", "contains",
                                "segment_prefix"])
def test_every_comparison_operator(op):
    e = cond(f'request.path {op} "x"')
    assert isinstance(e, A.Compare) and e.op == op and e.left.name == "request.path"


def test_literals():
    e = cond('x in {"a", 1, 10.0.0.1, 10.0.0.0/8, ::1/128, 2001:db8::/32, true}')
    kinds = [type(i).__name__ for i in e.right.items]
    assert kinds == ["Str", "Int", "Ip", "Ip", "Ip", "Ip", "Bool"]
    e = cond("a == 2s or b == 5%")
    assert e.left.right.text == "2s" and e.right.right.text == "5%"


def test_precedence_not_and_or_parentheses():
    e = cond('not a in b and c == "1" or d == "2"')
    assert isinstance(e, A.Or) and isinstance(e.left, A.And)
    assert isinstance(e.left.left, A.Not) and isinstance(e.left.left.operand, A.In)
    e = cond('a == "1" and (b == "2" or c == "3")')
    assert isinstance(e, A.And) and isinstance(e.right, A.Or)


def test_calls_and_keyed_refs():
    e = cond('exists(request.headers["x-a"]) and lower(request.cookies["c"]) == "y"')
    assert e.left == A.Call(e.left.span, "exists", (A.Ref(e.left.args[0].span, "request.headers", "x-a"),))
    assert e.right.left.name == "lower"


def test_string_escapes_keep_regex_backslashes():
    e = cond(r'request.path ~ "^\d+\"\n$"')
    assert e.right.value == '^\\d+"\n$'


def test_spans_are_one_based_and_cover_the_node():
    e = cond('request.path == "/x"')
    assert (e.span.line, e.span.column, e.span.end_column) == (1, 14, 34)
    assert (e.right.span.column, e.right.span.end_column) == (30, 34)


def test_comments_and_free_layout():
    (r,) = items("# a comment\nroute r # trailing\n  when true\n{ to c\n}")
    assert r.cond.value is True


# ---- syntax errors ----
def error(src: str) -> Diagnostic:
    d = parse(src, "t.mdsl")
    assert isinstance(d, Diagnostic)
    assert d.code == "E001"
    return d


def test_syntax_error_has_position_expected_tokens_and_caret():
    d = error("route a { foo b }")
    assert str(d).startswith('t.mdsl:1:11: E001 syntax error: unexpected "foo"; expected ')
    assert '"to"' in d.message and '"respond"' in d.message
    assert d.render().splitlines()[1:] == ["  route a { foo b }", "            ^^^"]


@pytest.mark.parametrize("src, line, col, hint", [
    ('route a when request.path = "/" { to b }', 1, 27, 'use "==" to compare'),
    ('route a when request.path == "/" to b', 1, 34, "a route body goes in braces"),
    ('vhost v {\n  route a request.path == "/" { to b }\n}', 2, 11, 'a condition needs "when"'),
    ("route a when request.path == '/' { to b }", 1, 30, "strings use double quotes"),
    ('route a when request.path == "/" && request.method == "GET" { to b }', 1, 34, 'use "and", "or" and "not"'),
    ("vhost v {\n  route a { to b }\n", 2, 19, 'a "}" is missing'),
])
def test_friendly_messages_for_common_mistakes(src, line, col, hint):
    d = error(src)
    assert (d.span.line, d.span.column) == (line, col)
    assert hint in d.message


def test_expected_duration():
    d = error("route a { timeout 3 }")
    assert d.message == 'syntax error: unexpected "3"; expected a duration (800ms, 2s)'


def test_parse_never_raises_on_garbage():
    for src in ["{{{", "route", "vhost v { on nope { } }", "\x00", 'route a when x ~ { to b }', "const = 1"]:
        assert isinstance(parse(src, "g.mdsl"), Diagnostic)


# ---- nesting is bounded: E005 at the first node too deep, never a RecursionError ----
from mosnx.dsl.parse import MAX_NESTING  # noqa: E402


@pytest.mark.parametrize("what, src, line, col", [
    ("not", "route r when " + "not " * 3000 + 'request.path == "/" { to c }', 1, 14 + 4 * (MAX_NESTING - 1)),
    ("parentheses", "route r when " + "(" * 3000 + "true" + ")" * 3000 + " { to c }", 1, 14 + MAX_NESTING - 1),
    ("and chain", "route r when " + " and ".join(['request.path == "/"'] * 5000) + " { to c }", 1, 14),
    ("when blocks", "route r {" + "when true {" * 2000 + "respond 200" + "}" * 2000 + "}", 1, 10 + 11 * (MAX_NESTING - 2) + 5),
    ("calls", "route r when " + "lower(" * 2000 + "request.path" + ")" * 2000 + ' == "x" { to c }', 1, 14 + 6 * (MAX_NESTING - 2)),
])
def test_nesting_too_deep_is_E005_where_it_crosses_the_bound(what, src, line, col):
    d = parse(src, "t.mdsl")
    assert isinstance(d, Diagnostic), what
    assert (d.code, d.span.line) == ("E005", line), d
    assert d.span.column == col, (what, d.span.column)
    assert "nested more than 64 levels deep" in d.message


def test_nesting_up_to_the_bound_parses():
    assert isinstance(parse("route r when " + "not " * (MAX_NESTING - 3) + "true { to c }", "t.mdsl"), A.File)
