"""Generated rule files with rpc blocks and trace statements, well-formed and not:
whatever the listener kind and tracing, loading and checking them gives positioned
diagnostics and nothing else; a clean one compiles, its router answers any header
map with a RouteAction, a LocalReply or None, and `mosnx fmt` keeps its meaning."""
from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosnx.dsl import ast as A
from mosnx.dsl.compile import compile_program
from mosnx.dsl.fmt import format_text, strip
from mosnx.dsl.parse import parse
from mosnx.dsl.rules import analyze
from mosnx.runtime.actions import LocalReply
from mosnx.runtime.routes import RouteAction

RPC_FIELDS = ["rpc.service", "rpc.method", "rpc.version", "rpc.group", 'rpc.headers["zone"]',
              'rpc.headers["k-1"]', "rpc.headers", 'rpc.method["x"]', "rpc.servic"]
HTTP_FIELDS = ["request.path", 'request.headers["x-t"]', "request.method", "response.code", "duration_ms",
               "source.address"]
WORDS = ["rpc", "trace", "tag", "sample", "route", "to", "split", "respond", "timeout", "retry", "when",
         "on", "request", "{", "}", "(", ")", "=", "==", "and", "or", "not", "in", '"x"', "100%", "0%",
         "101%", "3", "2s", "calls", "web", "per_try", "mirror", ",", ":"]

ident = st.sampled_from(["a", "b", "calls", "web", "billing", "trace", "rpc", "sample"])
string = st.sampled_from(['"com.example.Billing"', '"pay"', '""', '"gz"', '"get[A-Z].*"', '"1.0"', '"("'])
field = st.sampled_from(RPC_FIELDS + HTTP_FIELDS)


@st.composite
def condition(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.integers(0, 5 if depth < 3 else 2))
    f = draw(field)
    if kind == 0:
        return f"{f} {draw(st.sampled_from(['==', '!=', 'prefix', 'suffix', 'contains', '~']))} {draw(string)}"
    if kind == 1:
        return f'{f} in {{{draw(string)}, {draw(string)}}}'
    if kind == 2:
        return draw(st.sampled_from([f"exists({f})", f"lower({f}) == {draw(string)}", f"{f} == 3", "true"]))
    op = draw(st.sampled_from(["and", "or"]))
    if kind == 5:
        return f"not ({draw(condition(depth + 1))})"
    return f"{draw(condition(depth + 1))} {op} {draw(condition(depth + 1))}"


percent = st.sampled_from(["100%", "0%", "0.5%", "25%", "101%", "50"])


@st.composite
def statement(draw: st.DrawFn) -> str:
    return draw(st.sampled_from([
        f"to {draw(ident)}",
        f"split {{ {draw(ident)}: {draw(st.integers(0, 100))}, c2: {draw(st.integers(0, 100))} }}",
        f"respond {draw(st.sampled_from([200, 400, 404, 418, 429, 503, 504, 999]))} {draw(string)}",
        f"respond 404 header a = {draw(string)}",
        f"timeout {draw(st.sampled_from(['1s', '300ms', '3x']))}",
        f"retry {draw(st.integers(0, 3))}" + draw(st.sampled_from(["", " per_try 1s", " on 5xx"])),
        f"mirror {draw(ident)} 5%",
        f"trace tag {draw(string)} = {draw(st.sampled_from(RPC_FIELDS + HTTP_FIELDS + ['3', '10.0.0.1']))}",
        f"trace sample {draw(percent)}",
        f"when {draw(condition())} {{ trace sample {draw(percent)} }}",
        'set request.headers["x"] = "1"',
    ]))


@st.composite
def route(draw: st.DrawFn) -> str:
    cond = draw(st.one_of(st.none(), condition()))
    body = " ".join(draw(st.lists(statement(), max_size=4)))
    return f"route {draw(ident)} " + (f"when {cond} " if cond else "") + f"{{ {body} }}"


@st.composite
def rules_file(draw: st.DrawFn) -> str:
    items = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from([0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4]))
        if kind == 0:
            items.append(f"rpc {draw(ident)} {{ " + " ".join(draw(st.lists(route(), max_size=4))) + " }")
        elif kind == 1:
            items.append(draw(route()))
        elif kind == 2:
            items.append(f"on {draw(st.sampled_from(['request', 'response', 'log']))} {{ "
                         + " ".join(draw(st.lists(statement(), max_size=3))) + " }")
        elif kind == 3:
            items.append(f"const {draw(ident)} = {draw(condition())}")
        else:   # a few raw tokens: most of these do not parse
            items.append(" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8))))
    return "\n".join(items) + "\n"


_DIR = tempfile.mkdtemp(prefix="mosnx-rpc-generated-")
HEADER_MAPS = [{}, {":service": "com.example.Billing", ":method": "pay", "zone": "gz"},
               {":method": "getX", ":version": "1.0", ":group": "G", "k-1": "("}]


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(src=rules_file(), tracing=st.sampled_from([None, True, False]), rpc=st.sampled_from([None, True, False]))
def test_generated_rules_give_only_diagnostics(src, tracing, rpc):
    path = os.path.join(_DIR, "rules.mdsl")
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)
    prog, diags = analyze([path], tracing=tracing, rpc=rpc)
    for d in diags:
        assert d.span is not None and d.span.line >= 1 and d.span.column >= 1, (src, d)
        assert d.code[:1] in "ETRUDP" and d.code[1:].isdigit(), (src, d)
    if any(d.severity == "error" for d in diags):
        return
    result = compile_program(prog)
    if result.rpc is not None:
        for h in HEADER_MAPS:
            assert result.rpc(h) is None or isinstance(result.rpc(h), (RouteAction, LocalReply))
    tree = parse(src, path)
    assert isinstance(tree, A.File)
    out = format_text(src, path)
    assert isinstance(out, str) and strip(parse(out, path)) == strip(tree)


# ---- well-formed files: rpc blocks on rpc.* fields, HTTP routes with trace statements ----
rpc_field = st.sampled_from(["rpc.service", "rpc.method", "rpc.version", "rpc.group", 'rpc.headers["zone"]'])
value = st.sampled_from(["com.example.Billing", "pay", "getX", "1.0", "G", "gz", ""])


@st.composite
def rpc_condition(draw: st.DrawFn, depth: int = 0) -> tuple[str, object]:
    """A condition, and the same test as a Python function of the header map."""
    kind = draw(st.integers(0, 4 if depth < 3 else 1))
    f = draw(rpc_field)
    key = {"rpc.service": ":service", "rpc.method": ":method", "rpc.version": ":version",
           "rpc.group": ":group"}.get(f, "zone")
    if kind == 0:
        v = draw(value)
        return f'{f} == "{v}"', lambda h: h.get(key, "") == v
    if kind == 1:
        v = draw(value)
        return f'{f} prefix "{v}"', lambda h: h.get(key, "").startswith(v)
    a, fa = draw(rpc_condition(depth + 1))
    if kind == 2:
        return f"not ({a})", lambda h: not fa(h)
    b, fb = draw(rpc_condition(depth + 1))
    if kind == 3:
        return f"({a}) and ({b})", lambda h: fa(h) and fb(h)
    return f"({a}) or ({b})", lambda h: fa(h) or fb(h)


@st.composite
def rpc_rules(draw: st.DrawFn) -> tuple[str, list]:
    routes, model = [], []
    for i in range(draw(st.integers(1, 6))):
        cond, fn = draw(rpc_condition())
        if draw(st.booleans()):
            status = draw(st.sampled_from([400, 404, 429, 502, 503, 504]))
            routes.append(f'route r{i} when {cond} {{ respond {status} "m{i}" }}')
            model.append((fn, ("reply", status)))
        else:
            extra = draw(st.sampled_from(["", " timeout 2s", " retry 1 per_try 500ms"]))
            routes.append(f"route r{i} when {cond} {{ to c{i}{extra} }}")
            model.append((fn, ("to", f"c{i}")))
    return "rpc calls {\n  " + "\n  ".join(routes) + "\n}\n", model


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rpc_rules(), calls=st.lists(st.fixed_dictionaries({
    ":service": value, ":method": value, ":version": value, ":group": value, "zone": value}), min_size=1, max_size=5))
def test_well_formed_rpc_rules_route_as_their_conditions_say(rules, calls):
    src, model = rules
    path = os.path.join(_DIR, "rpc.mdsl")
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)
    prog, diags = analyze([path], rpc=True)
    assert not [d for d in diags if d.severity == "error"], (src, diags)
    router = compile_program(prog).rpc
    for h in calls:
        want = next((m for fn, m in model if fn(h)), None)
        got = router(h)
        if want is None:
            assert got is None, (src, h)
        elif want[0] == "reply":
            assert isinstance(got, LocalReply) and got.status == want[1], (src, h, got)
        else:
            assert isinstance(got, RouteAction) and got.cluster == want[1], (src, h, got)
    out = format_text(src, path)
    assert isinstance(out, str) and strip(parse(out, path)) == strip(parse(src, path))
