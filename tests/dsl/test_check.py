"""The checker: each code, from a broken script, with its exact position and message."""
from __future__ import annotations

import pytest


def test_clean_script_has_no_findings(rules):
    assert rules.lines('vhost v { route a when request.path prefix "/x" { to web } route b { to web } }') == []


def test_E001_syntax_error(rules):
    assert rules.lines('route a when request.path == "/" to web') == [
        '1:34: E001 syntax error: unexpected "to": a route body goes in braces: route NAME when CONDITION { ... }']


def test_E002_unknown_field_with_did_you_mean(rules):
    assert rules.lines('route a when request.pth == "/" { to web }') == [
        '1:14: E002 unknown field "request.pth" (did you mean "request.path"?)']


def test_E002_unknown_function(rules):
    assert rules.lines('route a when lowr(request.host) == "x" { to web }') == [
        '1:14: E002 unknown function "lowr" (did you mean "lower"?)']


def test_E002_header_without_key_and_dotted_header(rules):
    assert rules.lines('route a when request.headers == "x" { to web }') == [
        '1:14: E002 request.headers needs a key, as request.headers["name"]']
    assert rules.lines('route a when request.headers.x-a == "x" { to web }') == [
        '1:14: E002 unknown field "request.headers.x-a": read request.headers with a key, as request.headers["x-a"]']


def test_E002_unknown_retry_condition_and_emit_stream(rules):
    assert rules.lines("route a { to web retry 2 on gateway-eror }") == [
        '1:29: E002 unknown retry condition "gateway-eror" (did you mean "gateway-error"?)']
    assert rules.lines("on log { emit acces { a: request.path } }") == [
        '1:10: E002 unknown emit stream "acces" (did you mean "access"?)']


def test_E003_missing_import(rules):
    assert rules.lines('import "nope.mdsl"\nroute a { to web }') == [
        f'1:1: E003 cannot read "{rules.tmp}/nope.mdsl": No such file or directory']


def test_E003_import_cycle(rules):
    rules.write('import "rules.mdsl"\nconst x = 1', "other.mdsl")
    assert rules.lines('import "other.mdsl"\nroute a { to web }') == [
        '1:1: E003 import cycle: "rules.mdsl" imports this file back']


def test_E004_const_refers_to_itself(rules):
    out = rules.lines('const a = b == "x"\nconst b = a\nroute r when a { to web }')
    assert '1:11: E004 const "b" refers to itself' in out or '2:11: E004 const "a" refers to itself' in out


def test_T101_type_mismatch(rules):
    assert rules.lines('route a when request.method == 5 { to web }') == [
        '1:14: T101 type mismatch: request.method is a string but 5 is an int (write "5")']
    assert rules.lines('route a when response.code > "500" { to web }', ) [-1].startswith("1:14: T101")


def test_T101_condition_must_be_bool(rules):
    assert rules.lines('route a when request.host { to web }') == [
        '1:14: T101 a condition must be true or false, not a string (compare it: == "…", or test it with exists(…))']


def test_T101_in_needs_matching_set(rules):
    assert rules.lines('route a when request.method in {1, 2} { to web }') == [
        '1:14: T101 type mismatch: request.method is a string but the set holds int values']
    assert rules.lines('route a when source.address in {"10.0.0.1"} { to web }') == [
        '1:14: T101 type mismatch: source.address is an ip but the set holds string values']


def test_T101_mixed_set(rules):
    assert rules.lines('const s = {"a", 1}') == ["1:11: T101 a set holds one kind of value; this one mixes int and string"]


def test_T102_invalid_regex(rules):
    assert rules.lines('route a when request.path ~ "([a-z" { to web }') == [
        '1:29: T102 invalid regex: unterminated character set at position 1']
    assert rules.lines('route a { to web rewrite regex "(" => "" }') == [
        '1:32: T102 invalid regex: missing ), unterminated subpattern at position 0']


def test_T103_bad_cidr_duration_percent_rate(rules):
    assert rules.lines("const lan = {10.0.0.0/33}") == ['1:14: T103 bad IP address or CIDR "10.0.0.0/33"']
    assert rules.lines("route a { to web timeout 3x }") == [
        '1:26: T103 bad duration "3x": units are ms, s, m, h (800ms, 2s)']
    assert rules.lines("route a { to web mirror m 150% }") == ["1:27: T103 percentage 150% is over 100%"]
    assert rules.lines("on request { limit rate 10/d }") == [
        '1:25: T103 bad rate "10/d": write a count per s, m or h (100/s)']


def test_T104_bad_status(rules):
    assert rules.lines("route a { respond 99 }") == ["1:19: T104 status 99 is outside 100..599"]
    assert rules.lines("route a { redirect 200 path \"/\" }") == [
        "1:20: T104 redirect status must be one of 301, 302, 303, 307, 308, not 200"]


def test_T105_cannot_assign(rules):
    assert rules.lines('on request { set request.method = "GET" }') == [
        '1:18: T105 cannot set request.method: only request.headers["…"], response.headers["…"], '
        'metadata["…"] and request.path can change (did you mean "request.path"?)']


def test_R201_unreachable_after_catch_all(rules):
    assert rules.lines("vhost v {\n  route all { to web }\n  route late when request.path == \"/x\" { to web }\n}") == [
        '3:9: R201 route "late" is unreachable: route "all" (line 2) matches every request first']


@pytest.mark.parametrize("first, second", [
    ('request.path prefix "/api"', 'request.path prefix "/api/v1"'),
    ('request.path prefix "/api"', 'request.path == "/api/x" and request.method == "GET"'),
    ('request.path segment_prefix "/api"', 'request.path segment_prefix "/api/v2"'),
    ('request.method in {"GET", "HEAD"}', 'request.method == "GET"'),
    ('request.headers["x"] == "1"', 'request.headers["x"] == "1" and request.path == "/"'),
])
def test_R202_shadowed_routes(rules, first, second):
    src = f"vhost v {{\n  route a when {first} {{ to web }}\n  route b when {second} {{ to web }}\n}}"
    assert rules.lines(src) == [
        '3:9: R202 route "b" is shadowed by route "a" (line 2), which matches all its requests first']


@pytest.mark.parametrize("first, second", [
    ('request.path prefix "/api/v1"', 'request.path prefix "/api"'),
    ('request.path segment_prefix "/api"', 'request.path prefix "/apix"'),
    ('request.path == "/a" and request.method == "GET"', 'request.path == "/a"'),
    ('request.headers["x"] == "1" or request.path == "/"', 'request.path == "/"'),
])
def test_no_R202_when_not_provable(rules, first, second):
    src = f"vhost v {{\n  route a when {first} {{ to web }}\n  route b when {second} {{ to web }}\n}}"
    assert rules.lines(src) == []


def test_R202_through_named_condition(rules):
    src = 'const api = request.path prefix "/api"\nroute a when api { to web }\nroute b when request.path prefix "/api/x" { to web }'
    assert rules.lines(src) == ['3:7: R202 route "b" is shadowed by route "a" (line 2), which matches all its requests first']


def test_R203_duplicate_domain(rules):
    assert rules.lines('vhost a domains "x.com" { route r { to web } }\nvhost b domains "X.com", "y.com" { route r { to web } }') == [
        '2:17: R203 domain "X.com" is already served by vhost "a"; this vhost never sees it']


def test_R204_split_weights(rules):
    assert rules.lines("route a { split { x: 50, y: 40 } }") == ["1:11: R204 split weights add up to 90, not 100"]
    assert rules.diagnose("route a { split { x: 50, y: 40 } }")[0].severity == "warning"


def test_R205_R206_route_actions(rules):
    assert rules.lines("route a { timeout 1s }") == [
        '1:7: R205 route "a" has no action: add to, split, respond or redirect']
    assert rules.lines("route a { to web respond 200 }") == [
        '1:18: R206 route "a" already has an action ("to" at line 1); a route has exactly one']


def test_R207_redirect_prefix_needs_path_prefix(rules):
    assert rules.lines('route a when request.method == "GET" { redirect 301 prefix "/v2/" }') == [
        '1:40: R207 redirect prefix needs the route\'s condition to test a path prefix (request.path prefix "/old/")']


def test_U301_unknown_cluster_declared_or_given(rules):
    assert rules.lines("clusters web, api\nroute a { to wbe }") == ['2:11: U301 unknown cluster "wbe" (did you mean "web"?)']
    assert rules.lines("route a { split { web: 50, apx: 50 } }", clusters={"web", "api"}) == [
        '1:28: U301 unknown cluster "apx" (did you mean "api"?)']
    assert rules.lines("route a { to web mirror shadw }", clusters={"web", "shadow"}) == [
        '1:18: U301 unknown cluster "shadw" (did you mean "shadow"?)']


def test_U302_unknown_wasm_filter(rules):
    assert rules.lines('route a { to web wasm "authx" }', filters={"authz"}) == [
        '1:18: U302 unknown wasm filter "authx" (did you mean "authz"?)']
    assert rules.lines('route a { to web wasm "x" }', filters=set()) == [
        "1:18: U302 unknown wasm filter \"x\" (declare it in the listener's filters)"]


def test_D401_duplicate_names(rules):
    assert rules.lines('route a when true == exists(request.headers["x"]) { to web }\n'
                       'route a { to web }') == ['2:7: D401 duplicate route name "a" (first at line 1)']
    out = rules.lines('vhost v domains "a" { route r { to web } }\nvhost v domains "b" { route r { to web } }')
    assert out == [f'2:7: D401 duplicate vhost name "v" (first at {rules.tmp}/rules.mdsl:1:1)']


def test_D402_duplicate_const(rules):
    assert rules.lines("const a = 1\nconst a = 2") == ['2:1: D402 const "a" is already defined above (line 1)']


def test_D402_same_const_from_two_imports(rules):
    rules.write("const a = 1", "one.mdsl")
    rules.write("const a = 2", "two.mdsl")
    assert rules.lines('import "one.mdsl"\nimport "two.mdsl"') == [
        f'2:1: D402 const "a" is defined both in {rules.tmp}/one.mdsl and {rules.tmp}/two.mdsl']


def test_D403_duplicate_setting(rules):
    assert rules.lines("route a { to web timeout 1s timeout 2s }") == [
        '1:29: D403 "timeout" is already set for this route (line 1)']


@pytest.mark.parametrize("src, expected", [
    ("on response { to web }", '1:15: P501 "to" is not allowed in "on response"; it belongs in a route'),
    ('on request { set response.headers["x"] = "1" }',
     '1:18: P501 response.headers cannot change in "on request": there is no response yet'),
    ('on response { set request.headers["x"] = "1" }',
     '1:19: P501 request.headers cannot change in "on response": the request has already been sent'),
    ('on log { respond 200 }',
     '1:10: P501 "respond" is not allowed in "on log"; it belongs in "on request" or a route or a "when" inside a route'),
    ('route a { to web when true { to other } }',
     '1:30: P501 "to" is not allowed in a "when" inside a route; it belongs in a route'),
    ('route a { respond 200 timeout 1s }', '1:23: P501 "timeout" applies only to a route that forwards (to or split)'),
    ('on request { emit access { a: request.path } }',
     '1:14: P501 "emit" is not allowed in "on request"; it belongs in "on log"'),
])
def test_P501_action_in_wrong_phase(rules, src, expected):
    assert rules.lines(src) == [expected]


def test_P502_field_read_before_its_phase(rules):
    assert rules.lines("route a when response.code == 200 { to web }") == [
        "1:14: P502 response.code is not known yet in the request phase; it is set in the response phase"]
    assert rules.lines('on request { when cluster.name == "x" { respond 403 } }') == [
        "1:19: P502 cluster.name is not known yet in the request phase; it is set in the route phase"]
    assert rules.lines('route a { to web set request.headers["x-c"] = cluster.name }') == []
    assert rules.lines('on log { emit access { s: response.code, ms: duration_ms } }') == []


def test_P502_through_a_const(rules):
    assert rules.lines('const failed = response.code >= 500\nroute a when failed { to web }') == [
        '2:14: P502 const "failed" is not known yet in the request phase; it is set in the response phase']


def test_every_finding_carries_its_source_line(rules):
    (d,) = rules.diagnose('route a when request.pth == "/" { to web }')
    assert d.render().splitlines()[1:] == ['  route a when request.pth == "/" { to web }',
                                           "               ^^^^^^^^^^^"]


# ---- mistakes under `not` (the docs' own `A and not B`): a positioned finding, once ----
NOT_TAIL = 'route r when request.path segment_prefix "/admin" and not source.address in {} {{ to web }}'


@pytest.mark.parametrize("const, use, expected", [
    ("const internal = {10.0.0.0/33, 192.168.0.0/16}", "internal",
     '1:19: T103 bad IP address or CIDR "10.0.0.0/33"'),
    ("const internal = 10.0.0.0/33", "internal", '1:18: T103 bad IP address or CIDR "10.0.0.0/33"'),
    ("const internal = {10.0.0.0/8}", "intrnal", '2:77: E002 unknown field "intrnal" (did you mean "internal"?)'),
    ("const internal = {10.0.0.0/8}", "{10.0.0.0/33}", '2:78: T103 bad IP address or CIDR "10.0.0.0/33"'),
    ('const internal = {"a", "b"}', "internal",
     "2:59: T101 type mismatch: source.address is an ip but the set holds string values"),
    ("const internal = request.path", "internal", '2:77: T101 "in" needs a set ({"a", "b"}), not a string'),
])
def test_mistake_inside_and_not_is_reported_where_it_is(rules, const, use, expected):
    assert rules.lines(const + "\n" + NOT_TAIL.format(use)) == [expected]


@pytest.mark.parametrize("cond, expected", [
    ('not source.adress == 10.0.0.1', '1:18: E002 unknown field "source.adress" (did you mean "source.address"?)'),
    ('not request.path == 3', '1:18: T101 type mismatch: request.path is a string but 3 is an int (write "3")'),
    ('not not request.path', '1:22: T101 "not" combines conditions, not a string'),
    ('request.path == "/" or not 10.0.0.0/33 == source.address',
     '1:41: T103 bad IP address or CIDR "10.0.0.0/33"'),
    ('not (request.path == "/" and not 5x == 1s)', '1:47: T103 bad duration "5x": units are ms, s, m, h (800ms, 2s)'),
])
def test_mistake_under_not_in_any_position(rules, cond, expected):
    assert rules.lines(f"route r when {cond} {{ to web }}") == [expected]


def test_not_of_a_good_condition_still_checks_clean(rules):
    assert rules.lines('const internal = {10.0.0.0/8}\n' + NOT_TAIL.format("internal")) == []
    assert rules.lines('route r when not not request.path == "/" { to web }') == []
