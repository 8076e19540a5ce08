"""rpc blocks: parsed, checked (rpc.* fields, what an RPC route may say, the
cross-kind rejections P503/P504 with their positions), and compiled to an RpcRouter
over a call's header map."""
from __future__ import annotations

from mosnx.dsl import ast as A
from mosnx.dsl.fmt import format_text
from mosnx.dsl.parse import parse
from mosnx.dsl.rpc import RpcRouter
from mosnx.dsl.rules import analyze
from mosnx.runtime.actions import LocalReply
from mosnx.runtime.routes import RouteAction

BLOCK = '''
const billing = rpc.service == "com.example.Billing"
rpc calls {
  route pinned when billing and rpc.headers["zone"] == "gz" { to billing-gz timeout 2s retry 1 per_try 500ms }
  route billing when billing { to billing }
  route reads when rpc.method prefix "get" and rpc.version in {"1.0", "1.1"} { split { greeters: 90, canary: 10 } }
  route grouped when lower(rpc.group) == "blue" and exists(rpc.headers["tenant"]) { to blue }
  route retired when rpc.method == "legacy" { respond 404 "method retired" }
  route rest { to greeters }
}
'''


def test_parse_block_and_routes():
    f = parse(BLOCK, "t.mdsl")
    assert isinstance(f, A.File), f.render()
    blk = f.items[1]
    assert isinstance(blk, A.RpcDecl) and blk.name == "calls" and (blk.name_span.line, blk.name_span.column) == (3, 5)
    assert [r.name for r in blk.routes] == ["pinned", "billing", "reads", "grouped", "retired", "rest"]
    assert blk.routes[0].cond.right.left == A.Ref(blk.routes[0].cond.right.left.span, "rpc.headers", "zone")


def test_rpc_block_holds_only_routes():
    d = parse("rpc calls { on request { } }", "t.mdsl")
    assert not isinstance(d, A.File) and d.code == "E001"


def test_rpc_is_a_name_elsewhere():
    f = parse('clusters rpc\nroute rpc { to rpc }', "t.mdsl")
    assert isinstance(f, A.File) and f.items[1].name == "rpc"


def test_formatted_canonically():
    src = 'rpc calls {  # calls\nroute a when rpc.method=="x" { to c }\n\n  route b { respond 503 "busy" }}\n'
    assert format_text(src) == ('rpc calls {  # calls\n  route a when rpc.method == "x" { to c }\n\n'
                                '  route b { respond 503 "busy" }\n}\n')


def test_clean_block_checks(rules):
    assert rules.lines(BLOCK) == []


def test_P503_http_field_in_an_rpc_rule(rules):
    assert rules.lines('rpc calls {\n  route a when request.path prefix "/x" { to c }\n}') == [
        '2:16: P503 request.path is an HTTP field; an RPC rule reads rpc.service, rpc.method, rpc.version, '
        'rpc.group and rpc.headers["name"]']
    assert rules.lines('rpc calls { route a when request.headers["zone"] == "gz" and rpc.method == "m" { to c } }') == [
        '1:26: P503 request.headers is an HTTP field; an RPC rule reads rpc.service, rpc.method, rpc.version, '
        'rpc.group and rpc.headers["name"]']


def test_P503_rpc_field_in_an_http_rule(rules):
    assert rules.lines('route a when rpc.service == "x" { to c }') == [
        "1:14: P503 rpc.service is a field of RPC calls; it is read only in an rpc block's routes"]
    assert rules.lines('on request { set request.headers["s"] = rpc.method }\nroute a { to c }') == [
        "1:41: P503 rpc.method is a field of RPC calls; it is read only in an rpc block's routes"]
    assert rules.lines('vhost v { route a when exists(rpc.headers["k"]) { to c } }') == [
        "1:31: P503 rpc.headers is a field of RPC calls; it is read only in an rpc block's routes"]


def test_P503_through_a_const_is_reported_where_it_is_used(rules):
    assert rules.lines('const api = request.path prefix "/api"\nrpc calls { route a when api { to c } }') == [
        '2:26: P503 const "api" reads request.path, which an RPC rule cannot read']
    assert rules.lines('const b = rpc.service == "x"\nconst c = b and true\nroute a when c { to c }') == [
        '3:14: P503 const "c" reads rpc.service, which an HTTP rule cannot read']


def test_unknown_rpc_field_and_keys(rules):
    assert rules.lines('rpc calls { route a when rpc.methd == "x" { to c } }') == [
        '1:26: E002 unknown field "rpc.methd" (did you mean "rpc.method"?)']
    assert rules.lines('rpc calls { route a when rpc.headers == "x" { to c } }') == [
        '1:26: E002 rpc.headers needs a key, as rpc.headers["name"]']
    assert rules.lines('rpc calls { route a when rpc.service["x"] == "x" { to c } }') == [
        '1:26: E002 rpc.service takes no key']
    assert rules.lines('rpc calls { route a when rpc.service == 3 { to c } }') == [
        '1:26: T101 type mismatch: rpc.service is a string but 3 is an int (write "3")']


def test_what_an_rpc_route_may_say(rules):
    assert rules.lines('rpc calls { route a { to c  mirror d } }') == [
        '1:29: P501 "mirror" is not allowed in an RPC route; it takes to, split or respond, with timeout and retry']
    assert rules.lines('rpc calls { route a { redirect 301 path "/" } }') == [
        '1:23: P501 "redirect" is not allowed in an RPC route; it takes to, split or respond, with timeout and retry']
    assert rules.lines('rpc calls { route a { timeout 1s } }') == [
        '1:19: R205 route "a" has no action: add to, split or respond']
    assert rules.lines('rpc calls { route a { to c  retry 2 on 5xx } }') == [
        '1:40: P501 an RPC retry takes no conditions: a call is retried on a reset, a connect failure or a '
        'per-try timeout, and only for a method in rpc.idempotent_methods']
    assert rules.lines('rpc calls { route a { respond 418 "x" } }') == [
        "1:31: T104 an RPC reply's status picks the protocol's error: 400 codec error, 404 no route, "
        "429 rate limited, 502 unavailable, 503 busy, 504 timeout; not 418"]
    assert rules.lines('rpc calls { route a { respond 404 header a = "b" } }') == [
        "1:23: P501 an RPC reply carries no headers: it is the protocol's error response"]
    assert rules.lines('rpc calls { route a { respond 404  timeout 1s } }') == [
        '1:36: P501 "timeout" applies only to a route that forwards (to or split)']
    assert rules.lines('rpc calls { route a { to c  to d } }') == [
        '1:29: R206 route "a" already has an action ("to" at line 1); a route has exactly one']


def test_routing_lints_and_names(rules):
    assert rules.lines('rpc calls { route a { to c } route b when rpc.method == "m" { to d } }') == [
        '1:36: R201 route "b" is unreachable: route "a" (line 1) matches every request first']
    assert rules.lines('rpc calls { route a when rpc.service == "s" { to c } '
                       'route b when rpc.service == "s" and rpc.method == "m" { to d } }') == [
        '1:60: R202 route "b" is shadowed by route "a" (line 1), which matches all its requests first']
    (dup,) = rules.lines('rpc a { route r { to c } }\nrpc a { route s { to c } }')
    assert dup.startswith('2:5: D401 duplicate rpc block name "a" (first at ') and dup.endswith("rules.mdsl:1:1)")
    assert rules.lines('clusters c\nrpc a { route r { to d } }') == ['2:19: U301 unknown cluster "d"']


def test_P504_rules_of_the_other_kind_for_the_listener(rules):
    path = rules.write('rpc calls { route a { to c } }\nroute web { to c }\non request { }')
    assert analyze([path])[1] == []
    http = [(d.code, d.span.line, d.span.column, d.message) for d in analyze([path], rpc=False)[1]]
    assert http == [("P504", 1, 5, 'rpc block "calls" in rules of an HTTP listener: rpc blocks route the calls '
                                   "of a protocol: bolt or dubbo listener")]
    rpc = [(d.code, d.span.line, d.span.column) for d in analyze([path], rpc=True)[1]]
    assert rpc == [("P504", 2, 7), ("P504", 3, 1)]


def router(rules, src: str = BLOCK) -> RpcRouter:
    c = rules.compile(src)
    assert isinstance(c.rpc, RpcRouter) and c.routes.vhosts == ()
    return c.rpc


def call(service: str = "", method: str = "", **more: str) -> dict[str, str]:
    h = {":service": service, ":method": method}
    for k, v in more.items():
        h[k if not k in ("version", "group") else ":" + k] = v
    return h


def test_router_first_match_in_order(rules):
    r = router(rules)
    assert r.names == ("pinned", "billing", "reads", "grouped", "retired", "rest")
    d = r(call("com.example.Billing", "pay", zone="gz"))
    assert isinstance(d, RouteAction) and (d.cluster, d.timeout) == ("billing-gz", 2.0)
    assert d.retry.num_retries == 1 and d.retry.per_try_timeout == 0.5
    assert r(call("com.example.Billing", "pay", zone="sh")).cluster == "billing"
    assert r(call("Greeter", "getName", version="1.1")).weighted_clusters == (("greeters", 90), ("canary", 10))
    assert r(call("Greeter", "getName", version="2.0")).cluster == "greeters"
    assert r(call("Greeter", "x", group="BLUE", tenant="t1")).cluster == "blue"
    assert r(call("Greeter", "x", group="BLUE")).cluster == "greeters"
    reply = r(call("Greeter", "legacy"))
    assert isinstance(reply, LocalReply) and (reply.status, reply.detail) == (404, "method retired")
    assert r({}).cluster == "greeters"           # a call that names nothing: fields read ""
    assert r.clusters() == {"billing-gz", "billing", "greeters", "canary", "blue"}


def test_router_without_a_catch_all_leaves_the_call_to_the_default_route(rules):
    r = router(rules, 'rpc a { route x when rpc.method ~ "get[A-Z].*" { to c } }\n'
                      'rpc b { route y when not rpc.headers["k"] in {"1", "2"} { to d } }')
    assert r(call("s", "getUser", k="1")).cluster == "c"
    assert r(call("s", "put", k="3")).cluster == "d"
    assert r(call("s", "put", k="2")) is None


def test_http_parts_of_the_same_rules_compile_as_before(rules):
    c = rules.compile('rpc a { route x { to c } }\nroute web when request.path prefix "/x" { to w }')
    assert [vh.name for vh in c.routes.vhosts] == ["default"]
    assert rules.run(c, rules.request(path="/x/1")).route.name == "web"
