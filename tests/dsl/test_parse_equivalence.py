"""dsl.parse builds the AST while Lark reduces, without a parse tree; the path it
replaced (tests/dsl/legacy_parse.py: a tree with propagate_positions, the E005
walk over it, then a Transformer) must give the same result on every input:
equal ASTs (dataclass equality, spans included) or equal diagnostics.

Inputs: the example rule files and docs snippets, a sample of their mutants
(tests/dsl/mutants.py: syntax errors, truncations, 300-deep nesting, bad
literals), generated route tables of every shape bench/check_scale.py writes,
nesting right at and past the bound, and a literal a node constructor rejects.
"""
from __future__ import annotations

import pytest

from mosnx.dsl.parse import MAX_NESTING, parse

from . import legacy_parse
from .mutants import mutants, sample
from .test_check_mutants import SEED, doc_sources, example_rule_files

PER_FILE = 150


def same(src: str, path: str = "t.mdsl") -> None:
    new, old = parse(src, path), legacy_parse.parse(src, path)
    assert new == old, f"new: {new!r}\nold: {old!r}"


def sources() -> list[tuple[str, str]]:
    out = []
    for f in example_rule_files():
        with open(f, encoding="utf-8") as fh:
            out.append((f, fh.read()))
    out += [(f"docs snippet {i}", s) for i, s in enumerate(doc_sources())]
    return out


@pytest.mark.parametrize("name,src", sources(), ids=lambda x: x if len(x) < 60 else None)
def test_sources_parse_the_same(name, src):
    same(src, name)


@pytest.mark.parametrize("f", example_rule_files())
def test_mutants_parse_the_same(f):
    with open(f, encoding="utf-8") as fh:
        src = fh.read()
    picked = sample(mutants(src, SEED), PER_FILE, SEED)
    kinds = set()
    for what, text in picked:
        new, old = parse(text, f), legacy_parse.parse(text, f)
        assert new == old, f"{what}:\nnew: {new!r}\nold: {old!r}"
        kinds.add(getattr(new, "code", "AST"))
    assert {"AST", "E001"} <= kinds, kinds


def _routes(n: int) -> str:
    conds = ('request.path == "/svc{i}/items"',
             'request.path prefix "/p{i}/"',
             'request.path prefix "/h{i}/" and request.headers["x-tier"] == "gold"',
             'request.url_path ~ "^/r{i}/[0-9]+$"',
             'not (request.method in {{"GET", "HEAD",}} or source.address in {{10.0.0.0/8, ::1/128}})',
             'f(request.path, 3, 5%, 2s) and g() == true or request.host suffix ".x"')
    lines = ['import "common.mdsl"', "const tiers = {\"gold\", \"silver\"}", "clusters up, down",
             'vhost api domains "*", "a.example" {']
    for i in range(n):
        lines.append(f"  route r{i} when {conds[i % len(conds)].format(i=i)} {{\n"
                     f"    to up timeout 2s retry 3 on 5xx, status {{502, 503}} per_try 1s\n"
                     f'    set request.headers["x-r"] = "v{i}" when request.path ~ "\\\\d" {{ respond 403 "no" '
                     f'header x-a = "b" }} else {{ redirect 301 prefix "/n" strip_query }}\n  }}')
    lines += ["}", 'on request { limit rate 10/s burst 5 key request.headers["k"] else 429 queue '
              'fault delay 1s 5%, abort 503 10% emit e { a: 1, b: request.path, } }']
    return "\n".join(lines) + "\n"


def test_generated_route_tables_parse_the_same():
    same(_routes(120))


@pytest.mark.parametrize("depth", [MAX_NESTING - 2, MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1, 300])
@pytest.mark.parametrize("shape", ["not {}", "({})", "f({})", "a or ({})", "({}) and a"])
def test_nesting_at_the_bound_parses_the_same(depth, shape):
    cond = 'request.path == "/"'
    for _ in range(depth):
        cond = shape.format(cond)
    same(f"route a when {cond} {{ to b }}\n")
    body = "to b"
    for _ in range(depth):
        body = f"when request.path == \"/\" {{ {body} }}"
    same(f"vhost v {{\n  route a {{ {body} }}\n}}\n")


@pytest.mark.parametrize("src", [
    "route a when f(" + "9" * 5000 + ") { to b }\n",              # int() refuses: the constructor's error
    "route a when f(" + "9" * 5000 + ") { to b ",                 # ... but a syntax error comes first
    "route a when " + "not " * 80 + "f(" + "9" * 5000 + ") { to b }\n",   # ... and so does E005
    "", "# only a comment\n", "route", "vhost v { route a { } }", "on log { }",
])
def test_error_order_is_the_same(src):
    same(src)


def test_lark_s_own_loop_gives_the_same_result(monkeypatch):
    """Where the fast loop cannot read Lark's tables (another Lark version), Lark's
    parser loop runs the same callbacks: same ASTs and diagnostics."""
    import mosnx.dsl.parse as P
    P.parser()
    monkeypatch.setattr(P, "_tables", None)
    texts = [src for _, src in sources()] + [_routes(30), "route a when " + "not " * 70 + "x { to b }\n",
                                             "route a when f(" + "9" * 5000 + ") { to b }\n", "route { to b }"]
    for src in texts:
        same(src)


def test_mutants_of_a_generated_table_parse_the_same():
    src = _routes(6)
    for what, text in sample(mutants(src, SEED), PER_FILE, SEED):
        new, old = parse(text, "g.mdsl"), legacy_parse.parse(text, "g.mdsl")
        assert new == old, f"{what}:\nnew: {new!r}\nold: {old!r}"
