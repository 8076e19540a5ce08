"""Route shadowing (R201/R202) through ShadowIndex gives exactly what the full scan gave.

The reference below is the original quadratic check, kept verbatim in spirit: every
route against every earlier one, in order. Seeded generated route sets (exact, prefix,
segment_prefix, suffix, contains, regex, header, method-set, const, or/not conditions)
and every example's rules must give the same findings, codes, positions and messages.
"""
from __future__ import annotations

import glob
import os
import random

import pytest

from mosnx.dsl import ast as A
from mosnx.dsl import shadow
from mosnx.dsl.load import load
from mosnx.dsl.rules import analyze
from mosnx.dsl.shadow import ShadowIndex, implies, inline, is_catch_all

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINT_CODES = ("R201", "R202")


# ---- the reference: the quadratic scan the index replaces ----
def scan_lint(routes: list[A.RouteDecl], conds: list) -> list[tuple]:
    out = []
    catch_all = None
    for j, r in enumerate(routes):
        if catch_all is not None:
            out.append((r.name_span, "R201", f'route "{r.name}" is unreachable: route "{catch_all.name}" '
                                             f'(line {catch_all.span.line}) matches every request first'))
            continue
        if is_catch_all(conds[j]):
            catch_all = r
            continue
        for i in range(j):
            if conds[i] is not None and implies(conds[j], conds[i]):
                out.append((r.name_span, "R202", f'route "{r.name}" is shadowed by route "{routes[i].name}" '
                                                 f'(line {routes[i].span.line}), which matches all its requests first'))
                break
    return out


def reference(paths: list[str]) -> list[str]:
    """R201/R202 as the full scan finds them, walking the program as the checker does."""
    prog = load(tuple(paths))
    found = []
    default: list[tuple[A.RouteDecl, dict]] = []

    def lint(pairs):
        routes = [r for r, _ in pairs]
        conds = [inline(r.cond, s, prog.scopes) if r.cond is not None else None for r, s in pairs]
        found.extend(scan_lint(routes, conds))

    for f in prog.roots:
        scope = prog.scopes.get(f.path, {})
        for it in f.items:
            if isinstance(it, A.RouteDecl):
                default.append((it, scope))
            elif isinstance(it, A.VHostDecl):
                lint([(r, scope) for r in it.items if isinstance(r, A.RouteDecl)])
    lint(default)
    return sorted(f"{s.path}:{s.line}:{s.column}: {code} {msg}" for s, code, msg in found)


def indexed(paths: list[str]) -> list[str]:
    """R201/R202 as the checker (with ShadowIndex) reports them."""
    _, diags = analyze(paths)
    return sorted(f"{d.span.path}:{d.span.line}:{d.span.column}: {d.code} {d.message}"
                  for d in diags if d.code in LINT_CODES)


# ---- generated route sets ----
PATHS = ["/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "/ab/c", "/b", "/b/a", "/a/b.json", "/x?y"]
FIELDS = ["request.path", "request.url_path"]
METHODS = ['"GET"', '"POST"', '"HEAD"']


def atom(rnd: random.Random, consts: list[str]) -> str:
    k = rnd.randrange(14)
    f = rnd.choice(FIELDS)
    p = rnd.choice(PATHS)
    if k <= 2:
        return f'{f} == "{p}"'
    if k <= 4:
        return f'{f} prefix "{p}"'
    if k == 5:
        return f'{f} segment_prefix "{p}"'
    if k == 6:
        return f'{f} suffix "{rnd.choice(["c", "/c", ".json", "b/c"])}"'
    if k == 7:
        return f'{f} contains "{rnd.choice(["a", "b/", "/a/b"])}"'
    if k == 8:
        return f'request.url_path ~ "^{p}[0-9]*$"'
    if k == 9:
        return f'request.headers["x-{rnd.choice("ab")}"] == "{rnd.randrange(2)}"'
    if k == 10:
        return f'request.method == {rnd.choice(METHODS)}'
    if k == 11:
        items = rnd.sample(METHODS, rnd.randrange(4))
        return f'request.method in {{{", ".join(items)}}}'
    if k == 12 and consts:
        return rnd.choice(consts)
    return rnd.choice([f'not {f} == "{p}"', f'({f} == "{p}" or request.method == "GET")', "true",
                       f'request.headers["x-a"] != "1"'])


def program(rnd: random.Random, n_routes: int) -> str:
    consts = ["api", "get_or_post", "deep"]
    lines = ['const api = request.path prefix "/a"',
             'const get_or_post = request.method in {"GET", "POST"}',
             'const deep = request.path segment_prefix "/a/b" and request.method == "GET"']
    vhosts = rnd.randrange(1, 4)
    for v in range(vhosts + 1):
        body = []
        for r in range(rnd.randrange(n_routes // 2, n_routes + 1)):
            if rnd.random() < 0.02:
                body.append(f"route r{r} {{ to web }}")
                continue
            cond = " and ".join(atom(rnd, consts) for _ in range(rnd.choice((1, 1, 2, 2, 3))))
            body.append(f"route r{r} when {cond} {{ to web }}")
        if v < vhosts:
            lines.append(f'vhost v{v} domains "v{v}.example.com" {{')
            lines += ["  " + b for b in body]
            lines.append("}")
        else:       # routes outside any vhost: the default vhost's
            lines += body
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(60))
def test_index_matches_full_scan_on_generated_routes(rules, seed):
    rnd = random.Random(seed)
    path = rules.write(program(rnd, rnd.choice((6, 20, 60))))
    want = reference([path])
    assert indexed([path]) == want


def test_generated_sets_do_exercise_the_lints(rules):
    """The generator is worth something only if it makes both findings, often."""
    codes = {"R201": 0, "R202": 0}
    for seed in range(20):
        rnd = random.Random(seed)
        for line in reference([rules.write(program(rnd, 20), f"g{seed}.mdsl")]):
            codes[line.split(": ")[1].split()[0]] += 1
    assert codes["R201"] > 3 and codes["R202"] > 50


def test_index_matches_full_scan_on_a_large_mixed_set(rules):
    rnd = random.Random(7)
    path = rules.write(program(rnd, 400))
    assert indexed([path]) == reference([path])


EXAMPLE_RULES = sorted({os.path.dirname(p) if os.path.basename(os.path.dirname(p)) == "rules" else p
                        for p in glob.glob(os.path.join(ROOT, "examples", "**", "*.mdsl"), recursive=True)})


@pytest.mark.parametrize("path", EXAMPLE_RULES, ids=lambda p: os.path.relpath(p, ROOT))
def test_index_matches_full_scan_on_examples(path):
    assert indexed([path]) == reference([path])


def test_examples_found():
    assert len(EXAMPLE_RULES) >= 2


# ---- the index itself ----
def _conds(rules, src: str) -> list:
    prog = load((rules.write(src),))
    f = prog.roots[0]
    return [inline(it.cond, prog.scopes[f.path], prog.scopes) for it in f.items if isinstance(it, A.RouteDecl)]


def test_first_implied_is_the_earliest_shadowing_route(rules):
    conds = _conds(rules, '\n'.join([
        'route a when request.path prefix "/api/v2" { to web }',
        'route b when request.path prefix "/api" { to web }',
        'route c when request.headers["x"] == "1" { to web }',
        'route d when request.path == "/api/v2/x" and request.headers["x"] == "1" { to web }',
        'route e when request.path == "/other" { to web }',
    ]))
    idx = ShadowIndex()
    for i, c in enumerate(conds[:3]):
        idx.add(i, c)
    assert idx.first_implied(conds[3]) == 0
    assert idx.first_implied(conds[4]) is None


def test_a_set_test_is_implied_by_one_member_or_a_subset(rules):
    conds = _conds(rules, '\n'.join([
        'route a when request.method in {"GET", "HEAD"} { to web }',
        'route b when request.method == "HEAD" { to web }',
        'route c when request.method in {"HEAD"} { to web }',
        'route d when request.method in {} { to web }',
        'route e when request.method in {"GET", "PUT"} { to web }',
    ]))
    idx = ShadowIndex()
    idx.add(0, conds[0])
    assert [idx.first_implied(c) for c in conds[1:]] == [0, 0, 0, None]


def test_each_route_is_compared_with_few_earlier_routes(rules, monkeypatch):
    """5,000 routes of exact paths, prefixes, header guards and regexes: the index
    confirms a handful of candidates per route, not every earlier route."""
    lines = []
    for i in range(5000):
        k = i % 4
        cond = [f'request.path == "/s{i}/items"', f'request.path prefix "/p{i}/"',
                f'request.path prefix "/api/" and request.headers["x-t"] == "{i}"',
                f'request.url_path ~ "^/r{i}/[0-9]+$"'][k]
        lines.append(f"route r{i} when {cond} {{ to web }}")
    conds = _conds(rules, "\n".join(lines))
    calls = 0
    real = shadow.implies

    def counting(b, a):
        nonlocal calls
        calls += 1
        return real(b, a)
    monkeypatch.setattr(shadow, "implies", counting)
    idx = ShadowIndex()
    for i, c in enumerate(conds):
        assert idx.first_implied(c) is None
        idx.add(i, c)
    assert calls < 2 * len(conds)
