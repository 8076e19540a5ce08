"""`mosnx test`: rule unit tests in `*_test.yaml` files, run through dsl.explain.

A test file names a config (`config:`, beside the file; `mosnx.yaml` by default) and
lists cases: a request (curl-style, as `mosnx explain` takes it), optionally the
upstream's response, and what to expect: vhost, route, cluster or split, status,
location, the path and request headers sent upstream, and the response headers.
Each config is built once, with runtime.build_snapshot as `run` builds it, and
every case of every file naming it is explained against that one snapshot.

Invariants: a malformed file or case is a Diagnostic with file:line:col (codes
C601..C604), never an exception; a failed expectation names the line of the
expectation. Coverage counts only what the explanations evaluated: routes taken,
each operand of a condition seen true and seen false, each `when` seen to hold and
not to hold, each split arm a case pinned with `cluster:`.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from xml.etree import ElementTree as ET

import yaml

from mosnx.runtime.diagnostics import ConfigError, Diagnostic, Span
from mosnx.runtime.model import Snapshot
from mosnx.runtime.routes import RouteAction

from . import ast as A
from .explain import (Core, Explainer, Explanation, Reached, RequestError, Rules, UpstreamResponse, parse_header,
                      parse_request, route_key, where)
from .expr import _flatten

SUFFIX = "_test.yaml"
CASE_KEYS = frozenset({"name", "request", "headers", "source", "http2", "listener", "response", "expect"})
EXPECT_KEYS = frozenset({"vhost", "route", "cluster", "split", "status", "location", "path",
                         "request_headers", "response_headers"})
FILE_KEYS = frozenset({"config", "listener", "tests"})


# ---- YAML with positions ----
class _Map(dict):
    """A mapping that knows where its keys were written."""
    line = 1
    col = 1

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[Any, tuple[int, int]] = {}
        self.vat: dict[Any, tuple[int, int]] = {}      # where each value starts (inside its quote)


class _Seq(list):
    line = 1
    col = 1

    def __init__(self) -> None:
        super().__init__()
        self.at: list[tuple[int, int]] = []


class BadFile(Exception):
    def __init__(self, diag: Diagnostic):
        super().__init__(str(diag))
        self.diag = diag


class _Loader(yaml.SafeLoader):
    path = ""


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    d = _Map()
    d.line, d.col = _mark(node)
    for kn, vn in node.value:
        k = loader.construct_object(kn, deep=True)
        line, col = _mark(kn)
        try:
            hash(k)
        except TypeError:
            raise BadFile(Diagnostic(Span(loader.path, line, col), "C601", "a key must be a plain value")) from None
        if k in d:
            raise BadFile(Diagnostic(Span(loader.path, line, col), "C601", f"key {k!r} given twice"))
        d[k] = loader.construct_object(vn, deep=True)
        d.at[k] = (line, col)
        vl, vc = _mark(vn)
        d.vat[k] = (vl, vc + (1 if getattr(vn, "style", None) in ('"', "'") else 0))
    return d


def _seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    s = _Seq()
    s.line, s.col = _mark(node)
    for n in node.value:
        s.append(loader.construct_object(n, deep=True))
        s.at.append(_mark(n))
    return s


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)


def load_yaml(text: str, path: str) -> Any:
    loader = _Loader(text)
    loader.path = path
    try:
        return loader.get_single_data()
    except BadFile:
        raise
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        line, col = (m.line + 1, m.column + 1) if m is not None else (1, 1)
        raise BadFile(Diagnostic(Span(path, line, col), "C601", f"not YAML: {e.problem or e.context}")) from None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:
        raise BadFile(Diagnostic(Span(path, 1, 1), "C601", f"not YAML: {type(e).__name__}: {e}")) from None
    finally:
        loader.dispose()


# ---- the model ----
@dataclass
class Expect:
    key: str
    value: Any
    line: int


@dataclass
class Case:
    name: str
    path: str
    line: int
    request: str
    headers: list[str]
    source: str | None
    http2: bool
    listener: str | None
    response: UpstreamResponse | None
    expects: list[Expect]
    request_line: int


@dataclass
class TestFile:
    path: str
    config: str
    cases: list[Case]


def _err(path: str, at: tuple[int, int], msg: str, code: str = "C602") -> BadFile:
    return BadFile(Diagnostic(Span(path, at[0], at[1]), code, msg))


def _where_in(m: Any, key: Any) -> tuple[int, int]:
    if isinstance(m, _Map) and key in m.at:
        return m.at[key]
    return (getattr(m, "line", 1), getattr(m, "col", 1))


def _check_keys(m: _Map, allowed: frozenset, path: str, what: str) -> None:
    for k in m:
        if k not in allowed:
            raise _err(path, _where_in(m, k), f"unknown key {k!r} in {what}; known: {', '.join(sorted(allowed))}")


def _str(v: Any, path: str, at: tuple[int, int], what: str) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise _err(path, at, f"{what} must be text")
    return str(v)


def _header_list(v: Any, path: str, at: tuple[int, int], what: str) -> list[str]:
    if isinstance(v, dict):
        return [f"{_str(k, path, at, what + ' name')}: {_str(x, path, at, what)}" for k, x in v.items()]
    if isinstance(v, list):
        return [_str(x, path, at, what) for x in v]
    raise _err(path, at, f"{what} must be a mapping of name: value, or a list of 'name: value'")


def load_file(path: str) -> TestFile:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise BadFile(Diagnostic(Span(path, 1, 1), "C601", f"cannot read: {e}")) from None
    doc = load_yaml(text, path)
    if not isinstance(doc, _Map):
        raise _err(path, (1, 1), "a test file is a mapping with `tests:` (and `config:`)")
    _check_keys(doc, FILE_KEYS, path, "a test file")
    config = _str(doc.get("config", "mosnx.yaml"), path, _where_in(doc, "config"), "config")
    config = os.path.normpath(os.path.join(os.path.dirname(path), config))
    file_listener = doc.get("listener")
    if file_listener is not None:
        file_listener = _str(file_listener, path, _where_in(doc, "listener"), "listener")
    tests = doc.get("tests")
    if not isinstance(tests, _Seq) or not tests:
        raise _err(path, _where_in(doc, "tests"), "`tests:` must be a non-empty list of cases")
    cases = []
    names: set[str] = set()
    for i, c in enumerate(tests):
        at = tests.at[i]
        if not isinstance(c, _Map):
            raise _err(path, at, "a case is a mapping with `request:` and `expect:`")
        cases.append(_case(c, path, at, file_listener, names))
    return TestFile(path, config, cases)


def _case(c: _Map, path: str, at: tuple[int, int], file_listener: str | None, names: set[str]) -> Case:
    _check_keys(c, CASE_KEYS, path, "a case")
    if "request" not in c:
        raise _err(path, at, "a case needs `request:` (e.g. 'GET http://example.com/')")
    name = _str(c.get("name", f"line {at[0]}"), path, _where_in(c, "name"), "name")
    if name in names:
        raise _err(path, _where_in(c, "name"), f"a case named {name!r} is already in this file")
    names.add(name)
    request = _str(c["request"], path, _where_in(c, "request"), "request")
    headers = _header_list(c.get("headers", {}), path, _where_in(c, "headers"), "headers")
    source = c.get("source")
    if source is not None:
        source = _str(source, path, _where_in(c, "source"), "source")
    http2 = c.get("http2", False)
    if not isinstance(http2, bool):
        raise _err(path, _where_in(c, "http2"), "http2 must be true or false")
    listener = c.get("listener", file_listener)
    if listener is not None:
        listener = _str(listener, path, _where_in(c, "listener"), "listener")
    response = None
    if "response" in c:
        r = c["response"]
        rat = _where_in(c, "response")
        if not isinstance(r, _Map) or not isinstance(r.get("status"), int) or isinstance(r.get("status"), bool) \
                or not 100 <= r["status"] <= 599:
            raise _err(path, rat, "response must be {status: 100..599, headers: {...}}")
        _check_keys(r, frozenset({"status", "headers"}), path, "a response")
        hs = _header_list(r.get("headers", {}), path, _where_in(r, "headers"), "response headers")
        try:
            response = UpstreamResponse(r["status"], [parse_header(h, path, _where_in(r, "headers")[0]) for h in hs])
        except RequestError as e:
            raise _err(path, (e.line, 1), e.message, "C603") from None
    exp = c.get("expect")
    if not isinstance(exp, _Map) or not exp:
        raise _err(path, _where_in(c, "expect") if "expect" in c else at, "a case needs `expect:` with at least one "
                   "of " + ", ".join(sorted(EXPECT_KEYS)))
    _check_keys(exp, EXPECT_KEYS, path, "expect")
    expects = []
    for k, v in exp.items():
        kat = _where_in(exp, k)
        if k in ("request_headers", "response_headers"):
            if not isinstance(v, dict) or not all(isinstance(x, (str, int)) or x is None for x in v.values()):
                raise _err(path, kat, f"{k} must map header names to a value, or to null for 'absent'")
            v = {str(n).lower(): (None if x is None else str(x)) for n, x in v.items()}
        elif k == "split":
            if not isinstance(v, dict) or not v or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                           for x in v.values()):
                raise _err(path, kat, "split must map clusters to weights, e.g. {v1: 90, v2: 10}")
            v = {str(n): x for n, x in v.items()}
        elif k == "status":
            if not isinstance(v, int) or isinstance(v, bool) or not 100 <= v <= 599:
                raise _err(path, kat, "status must be 100..599")
        else:
            v = _str(v, path, kat, k)
        expects.append(Expect(k, v, kat[0]))
    # parse now, so a bad request is reported before any config is built
    for h in headers:
        try:
            parse_header(h, path, _where_in(c, "headers")[0])
        except RequestError as e:
            raise _err(path, _where_in(c, "headers"), e.message, "C603") from None
    vline, vcol = c.vat.get("request", _where_in(c, "request"))
    try:
        parse_request(request, headers, source, http2, path, vline)
    except RequestError as e:
        col = e.column + vcol - 1 if e.where == path and e.line == vline else 1
        raise _err(path, (e.line, col), e.message, "C603") from None
    return Case(name, path, at[0], request, headers, source, http2, listener, response, expects,
                _where_in(c, "request")[0])


# ---- running ----
@dataclass
class Outcome:
    case: Case
    failures: list[tuple[int, str]] = field(default_factory=list)     # (line, message)
    seconds: float = 0.0


@dataclass
class Coverage:
    routes: dict[str, str] = field(default_factory=dict)          # key -> description
    atoms: dict[str, str] = field(default_factory=dict)
    whens: dict[str, str] = field(default_factory=dict)
    arms: dict[tuple[str, str], str] = field(default_factory=dict)
    reached: Reached = field(default_factory=Reached)

    def missing(self) -> list[tuple[str, str]]:
        """(where, what) no test reached, sorted by place."""
        out: list[tuple[str, str]] = []
        for k, d in self.routes.items():
            if k not in self.reached.routes:
                out.append((d.split("  ")[0], f"route {d.split('  ', 1)[1]} never taken"))
        for kind, table, seen in (("condition", self.atoms, self.reached.atoms),
                                  ("when", self.whens, self.reached.whens)):
            for k, d in table.items():
                got = seen.get(k, set())
                for v in (True, False):
                    if v not in got:
                        w, src = k.split("  ", 1)
                        word = {("condition", True): "never true", ("condition", False): "never false",
                                ("when", True): "never holds", ("when", False): "never fails"}[(kind, v)]
                        out.append((w, f"{kind} {src.removeprefix('when ')} {word}"))
        for (rk, c), d in self.arms.items():
            if (rk, c) not in self.reached.arms:
                out.append((d, f"split arm {c} never picked (pin it in a case with `cluster: {c}`)"))
        return sorted(out, key=_place)

    def totals(self) -> dict[str, tuple[int, int]]:
        r = self.reached
        return {
            "routes": (len([k for k in self.routes if k in r.routes]), len(self.routes)),
            "condition outcomes": (sum(len(r.atoms.get(k, set())) for k in self.atoms), 2 * len(self.atoms)),
            "when branches": (sum(len(r.whens.get(k, set())) for k in self.whens), 2 * len(self.whens)),
            "split arms": (len([a for a in self.arms if a in r.arms]), len(self.arms)),
        }


def _place(item: tuple[str, str]) -> tuple:
    parts = item[0].rsplit(":", 2)
    try:
        return (parts[0], int(parts[1]), int(parts[2]), item[1])
    except (IndexError, ValueError):
        return (item[0], 0, 0, item[1])


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    coverage: dict[str, Coverage] = field(default_factory=dict)    # by config
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if not o.failures)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.failures)

    def uncovered(self) -> list[tuple[str, str]]:
        return [m for c in self.coverage.values() for m in c.missing()]


def find(paths: list[str]) -> tuple[list[str], list[Diagnostic]]:
    out: list[str] = []
    diags: list[Diagnostic] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("node_modules", "__pycache__"))
                out.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(SUFFIX))
        elif os.path.isfile(p):
            out.append(p)
        else:
            diags.append(Diagnostic(Span(p, 1, 1), "C601", "no such file or folder"))
    return out, diags


def check_file(path: str) -> list[Diagnostic]:
    """What `mosnx check` reports for a test file: its shape, its requests, and
    whether the config it names exists (the config is checked on its own)."""
    try:
        tf = load_file(path)
    except BadFile as e:
        return [e.diag]
    if not os.path.isfile(tf.config):
        return [Diagnostic(Span(path, 1, 1), "C604", f"config {tf.config} not found")]
    return []


def run_paths(paths: list[str], build: Callable[[str], Snapshot], core: Core) -> Run:
    start = time.perf_counter()
    run = Run()
    files, run.errors = find(paths)
    if not files and not run.errors:
        run.errors.append(Diagnostic(Span(paths[0] if paths else ".", 1, 1), "C601",
                                     f"no test files (*{SUFFIX}) found"))
    loaded: list[TestFile] = []
    for f in files:
        try:
            loaded.append(load_file(f))
        except BadFile as e:
            run.errors.append(e.diag)
    explainers: dict[str, Explainer | None] = {}
    for tf in loaded:
        if tf.config not in explainers:
            explainers[tf.config] = _explainer(tf, build, core, run)
        ex = explainers[tf.config]
        if ex is None:
            continue
        cov = run.coverage[tf.config]
        for case in tf.cases:
            run.outcomes.append(_run_case(case, ex, cov.reached, run))
    run.seconds = time.perf_counter() - start
    return run


def _explainer(tf: TestFile, build: Callable[[str], Snapshot], core: Core, run: Run) -> Explainer | None:
    if not os.path.isfile(tf.config):
        run.errors.append(Diagnostic(Span(tf.path, 1, 1), "C604", f"config {tf.config} not found"))
        return None
    try:
        snap = build(tf.config)
    except ConfigError as e:
        run.errors.extend(e.diagnostics)
        run.errors.append(Diagnostic(Span(tf.path, 1, 1), "C604", f"config {tf.config} does not build"))
        return None
    ex = Explainer(snap, core)
    run.coverage[tf.config] = universe(ex)
    return ex


def _run_case(case: Case, ex: Explainer, reached: Reached, run: Run) -> Outcome:
    t0 = time.perf_counter()
    out = Outcome(case)
    req = parse_request(case.request, case.headers, case.source, case.http2, case.path, case.request_line)
    pick = next((e.value for e in case.expects if e.key == "cluster"), None)
    mine = Reached()
    try:
        got = ex.explain(req, case.listener, case.response, pick, mine)
    except RequestError as err:
        run.errors.append(Diagnostic(Span(case.path, case.request_line, 1), "C604", f"{case.name}: {err.message}"))
        out.failures.append((case.request_line, err.message))
        return out
    reached.merge(mine)
    for e in case.expects:
        msg = _compare(e, got, case)
        if msg is not None:
            out.failures.append((e.line, f"{e.key}: {msg}"))
    for m in got.mismatch:
        out.failures.append((case.line, f"explain disagrees with the core: {m}"))
    out.seconds = time.perf_counter() - t0
    return out


def _compare(e: Expect, got: Explanation, case: Case) -> str | None:
    k, want = e.key, e.value
    if k == "vhost":
        return None if got.vhost == want else f"expected {want!r}, got {got.vhost!r}"
    if k == "route":
        return None if got.route == want else f"expected {want!r}, got {got.route!r}"
    if k == "cluster":
        if got.action != "forward":
            return f"expected {want!r}, but the request is not forwarded ({got.action} {got.status})"
        if got.split:
            arms = [c for c, p in got.split if p > 0]
            return None if want in arms else f"expected {want!r}, not an arm of the split {', '.join(arms)}"
        return None if got.cluster == want else f"expected {want!r}, got {got.cluster!r}"
    if k == "split":
        if not got.split:
            return f"expected a split, got {('cluster ' + repr(got.cluster)) if got.cluster else got.action}"
        total = sum(want.values()) or 1
        wanted = {c: w / total for c, w in want.items()}
        have = dict(got.split)
        if set(wanted) != set(have) or any(abs(wanted[c] - have[c]) > 1e-9 for c in wanted):
            return "expected " + _split(wanted) + ", got " + _split(have)
        return None
    if k == "status":
        status = got.response_status if got.response_status is not None else got.status
        if status is None:
            return "the request is forwarded: give the case a `response:` to expect a status"
        return None if status == want else f"expected {want}, got {status}"
    if k == "location":
        return None if got.location == want else f"expected {want!r}, got {got.location!r}"
    if k == "path":
        if got.action != "forward":
            return f"expected {want!r} upstream, but the request is not forwarded ({got.action} {got.status})"
        return None if got.path == want else f"expected {want!r}, got {got.path!r}"
    heads = got.request_headers if k == "request_headers" else got.response_headers
    if heads is None:
        return "no response: give the case a `response:` (or expect a local reply)"
    have2: dict[str, list[str]] = {}
    for n, v in heads:
        have2.setdefault(n, []).append(v)
    bad = []
    for n, v in want.items():
        vals = have2.get(n)
        if v is None and vals is not None:
            bad.append(f"{n} expected absent, got {', '.join(vals)!r}")
        elif v is not None and vals is None:
            bad.append(f"{n} expected {v!r}, absent")
        elif v is not None and vals is not None and ", ".join(vals) != v:
            bad.append(f"{n} expected {v!r}, got {', '.join(vals)!r}")
    return "; ".join(bad) or None


def _split(d: dict[str, float]) -> str:
    return "{" + ", ".join(f"{c}: {p:.0%}" for c, p in d.items()) + "}"


# ---- what could be reached ----
def universe(ex: Explainer) -> Coverage:
    cov = Coverage()
    for name in ex.listeners():
        lst = ex.snapshot.listeners[name]
        rules = ex.rules(lst)
        for vh in lst.routes.vhosts:
            for r in vh.routes:
                k = route_key(name, vh, r)
                cov.routes[k] = f"{where(r.span) or name + '/' + vh.name}  {r.name}"
                a = r.action
                if isinstance(a, RouteAction) and a.weighted_clusters:
                    for c, w in a.weighted_clusters:
                        if w > 0:
                            cov.arms[(k, c)] = where(r.span) or k
        if rules is None:
            continue
        for f in rules.prog.roots:
            for it in f.items:
                _items(it, f.path, rules, cov)
    return cov


def _items(it: Any, path: str, rules: Rules, cov: Coverage) -> None:
    if isinstance(it, A.VHostDecl):
        for sub in it.items:
            _items(sub, path, rules, cov)
    elif isinstance(it, A.RouteDecl):
        if it.cond is not None:
            _atoms(it.cond, path, rules, cov, set())
        _stmts(it.body, path, rules, cov)
    elif isinstance(it, A.OnBlock):
        _stmts(it.body, path, rules, cov)


def _stmts(body: tuple, path: str, rules: Rules, cov: Coverage) -> None:
    for s in body:
        if isinstance(s, A.When):
            cov.whens[f"{where(s.span)}  when {rules.source(s.cond.span)}"] = ""
            _atoms(s.cond, path, rules, cov, set())
            _stmts(s.body, path, rules, cov)
            _stmts(s.orelse, path, rules, cov)


def _atoms(e: A.Expr, path: str, rules: Rules, cov: Coverage, seen: set) -> None:
    """The operands CondTrace records: consts followed to their definition."""
    if isinstance(e, (A.And, A.Or)):
        for x in _flatten(e, type(e)):
            _atoms(x, path, rules, cov, seen)
        return
    if isinstance(e, A.Not):
        _atoms(e.operand, path, rules, cov, seen)
        return
    if isinstance(e, A.Ref) and e.key is None:
        scope = rules.prog.scopes.get(path, {})
        from mosnx.runtime.attributes import ATTRIBUTES
        if e.name not in ATTRIBUTES and e.name in scope:
            const, cpath = scope[e.name]
            if (cpath, e.name) not in seen:
                seen.add((cpath, e.name))
                _atoms(const.value, cpath, rules, cov, seen)
            return
    cov.atoms[f"{where(e.span)}  {rules.source(e.span)}"] = ""


# ---- output ----
def render(run: Run, fmt: str, coverage: bool) -> str:
    if fmt == "json":
        return json.dumps(_json(run, coverage), indent=2) + "\n"
    if fmt == "junit":
        return _junit(run)
    out: list[str] = []
    by_file: dict[str, list[Outcome]] = {}
    for o in run.outcomes:
        by_file.setdefault(o.case.path, []).append(o)
    for p, os_ in by_file.items():
        out.append(f"{_rel(p)} " + "".join("F" if o.failures else "." for o in os_))
    for d in run.errors:
        out.append(f"{_rel_diag(d)}")
    fails = [o for o in run.outcomes if o.failures]
    if fails:
        out.append("")
        for o in fails:
            for line, msg in o.failures:
                out.append(f"FAILED {_rel(o.case.path)}:{line}: {o.case.name}: {msg}")
    if coverage and run.coverage:
        out.append("")
        for cfg, cov in run.coverage.items():
            t = cov.totals()
            out.append(f"coverage of {_rel(cfg)}: " + ", ".join(f"{a}/{b} {k}" for k, (a, b) in t.items()))
            for w, what in cov.missing():
                out.append(f"{w}: {what}")
    summary = f"{run.passed} passed, {run.failed} failed"
    if run.errors:
        summary += f", {len(run.errors)} error{'s' if len(run.errors) != 1 else ''}"
    out.append(f"{summary} in {run.seconds:.2f}s")
    return "\n".join(out) + "\n"


def _rel(p: str) -> str:
    try:
        r = os.path.relpath(p)
        return r if not r.startswith("..") else p
    except ValueError:
        return p


def _rel_diag(d: Diagnostic) -> str:
    if d.span is None:
        return str(d)
    return f"{_rel(d.span.path)}:{d.span.line}:{d.span.column}: {d.code} {d.message}"


def _json(run: Run, coverage: bool) -> dict:
    doc: dict[str, Any] = {
        "passed": run.passed, "failed": run.failed,
        "errors": [{"file": _rel(d.span.path) if d.span else None, "line": d.span.line if d.span else None,
                    "column": d.span.column if d.span else None, "code": d.code, "message": d.message}
                   for d in run.errors],
        "cases": [{"name": o.case.name, "file": _rel(o.case.path), "line": o.case.line,
                   "outcome": "failed" if o.failures else "passed",
                   "failures": [{"line": ln, "message": m} for ln, m in o.failures]} for o in run.outcomes],
    }
    if coverage:
        doc["coverage"] = {_rel(cfg): {"totals": {k: {"reached": a, "total": b} for k, (a, b) in cov.totals().items()},
                                       "uncovered": [{"where": w, "what": what} for w, what in cov.missing()]}
                           for cfg, cov in run.coverage.items()}
    return doc


def _junit(run: Run) -> str:
    suite = ET.Element("testsuite", name="mosnx test", tests=str(len(run.outcomes)), failures=str(run.failed),
                       errors=str(len(run.errors)), time=f"{run.seconds:.3f}")
    for o in run.outcomes:
        tc = ET.SubElement(suite, "testcase", classname=_rel(o.case.path), name=o.case.name,
                           file=_rel(o.case.path), line=str(o.case.line), time=f"{o.seconds:.4f}")
        for line, msg in o.failures:
            f = ET.SubElement(tc, "failure", message=msg)
            f.text = f"{_rel(o.case.path)}:{line}: {msg}"
    for d in run.errors:
        tc = ET.SubElement(suite, "testcase", classname=_rel(d.span.path) if d.span else "mosnx", name=d.code)
        e = ET.SubElement(tc, "error", message=d.message)
        e.text = _rel_diag(d)
    return ET.tostring(suite, encoding="unicode") + "\n"
