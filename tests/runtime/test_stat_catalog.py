"""docs/metrics.md covers every stat the source makes, and lists none it does not.

The source is read, not run: every call that makes a stat (`.counter(name)`,
`.gauge(name)`, `.histogram(name)`, `.gauge_reading(name, ...)`) has its name
worked out as far as the code spells it (string pieces kept, anything computed
read as "some text"), and each must match a line of runtime/stat_catalog.py. A
name computed entirely at run time is allowed only where a declared list says
what it can be (DECLARED) or the catalogue names the family it stands for (DYNAMIC).
"""
import ast
import importlib
import pathlib
import re

import pytest

from mosnx.reference.metrics import REGENERATE, render
from mosnx.runtime.stat_catalog import COUNTER, GAUGE, HISTOGRAM, SECTIONS, STATS

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "metrics.md"
SOURCES = ("runtime", "dsl", "proxy", "wasm", "mosnx")
MAKERS = {"counter", "gauge", "histogram", "gauge_reading", "counter_reading"}
# the makers of a family, by its prefix (Store.responses: `prefix + <status>` and `<class>`)
PREFIX_MAKERS = {"responses"}
HOW = "add one Stat line for it in runtime/stat_catalog.py, then run `mosnx docs metrics > docs/metrics.md`"

# file -> (module, list attribute, prefix): the names the file makes from a declared list
DECLARED = {
    "proxy/upstream/cluster.py": ("mosnx.proxy.upstream.cluster", "CLUSTER_STATS", "cluster.<cluster>."),
    "proxy/upstream/outlier.py": ("mosnx.proxy.upstream.outlier", "STATS", "cluster.<cluster>.outlier_detection."),
    "proxy/upstream/health.py": ("mosnx.proxy.upstream.health", "STATS", "cluster.<cluster>.health_check."),
    "runtime/filters/breaker.py": ("mosnx.runtime.filters.breaker", "STATS", "<success_rate_breaker>."),
    "runtime/filters/system_guard.py": ("mosnx.runtime.filters.system_guard", "STATS", "<system_guard>."),
    "runtime/filters/fault.py": ("mosnx.runtime.filters.fault", "STATS", "<fault>."),
    "runtime/filters/ratelimit.py": ("mosnx.runtime.filters.ratelimit", "STATS", "<rate_limit>."),
    "runtime/filters/adaptive.py": ("mosnx.runtime.filters.adaptive", "STATS", "<adaptive_concurrency>."),
    "runtime/filters/peer_metadata.py": ("mosnx.runtime.filters.peer_metadata", "STATS", "<peer_metadata>."),
    "runtime/filters/istio_stats.py": ("mosnx.runtime.filters.istio_stats", "STATS", "<istio_stats>."),
    "wasm/filter.py": ("mosnx.wasm.filter", "STATS", "wasm.<plugin>."),
    "proxy/http2/server.py": ("mosnx.proxy.http2.server", "HTTP2_STATS", "http.<listener>.http2."),
}
# file -> the catalogue family its run-time names belong to (None: makes no stat of its own)
DYNAMIC = {
    "wasm/metrics.py": "wasm.<plugin>.<metric>",           # names the plugin defines
    "proxy/http1/server.py": "http.<listener>.downstream_rq_failed_path_normalization",  # ParseError.stat
    "runtime/stats.py": None,                               # Store.inc(name): the store's own helper
}
ANY = object()
# the per-endpoint numbers /clusters shows: Host.describe()'s keys, less the ones that are no stat
ENDPOINT = ("proxy/upstream/cluster.py", "Host", "describe", "<cluster>::<address>::")
NOT_ENDPOINT_STATS = {"address", "weight", "health"}


def endpoint_stats() -> list[str]:
    path, cls, method, prefix = ENDPOINT
    tree = ast.parse((ROOT / path).read_text())
    c = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    fn = next(n for n in c.body if isinstance(n, ast.FunctionDef) and n.name == method)
    keys = [k.value for n in ast.walk(fn) if isinstance(n, ast.Dict) for k in n.keys
            if isinstance(k, ast.Constant)]
    keys += [n.slice.value for n in ast.walk(fn) if isinstance(n, ast.Subscript)
             and isinstance(n.ctx, ast.Store) and isinstance(n.slice, ast.Constant)]
    return [prefix + k for k in keys if k not in NOT_ENDPOINT_STATS]


def _pieces(node, names: dict) -> list:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value if isinstance(v, ast.Constant) else ANY for v in node.values]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _pieces(node.left, names) + _pieces(node.right, names)
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    return [ANY]


def _assignments(fn) -> dict:
    """Local names bound once to string expressions, as pieces (prefix = f"http.{x}.")."""
    found: dict = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            v = node.value
            if isinstance(v, (ast.JoinedStr, ast.BinOp)) or (isinstance(v, ast.Constant) and isinstance(v.value, str)):
                found[node.targets[0].id] = _pieces(v, {})
    return found


def stat_sites() -> list[tuple[str, int, list]]:
    """(file, line, name pieces) for every call that makes a stat."""
    sites = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            tree = ast.parse(path.read_text(), rel)
            scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            seen = set()
            for fn in scopes + [tree]:
                names = _assignments(fn) if fn is not tree else {}
                for node in ast.walk(fn):
                    if not (isinstance(node, ast.Call) and node.args) or id(node) in seen:
                        continue
                    f = node.func
                    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
                    if name in MAKERS or name in PREFIX_MAKERS:
                        seen.add(id(node))
                        pieces = _pieces(node.args[0], names)
                        sites.append((rel, node.lineno, pieces + [ANY] if name in PREFIX_MAKERS else pieces))
    return sites


def _site_regex(pieces: list) -> re.Pattern:
    return re.compile("".join(".+" if p is ANY else re.escape(p) for p in pieces))


def _sample(name: str) -> str:
    return re.sub(r"<[^>]+>", "x", name)


def _family(name: str) -> re.Pattern:
    """A catalogue name as a pattern: each <placeholder> stands for one word."""
    return re.compile("".join(r"\w+" if part.startswith("<") else re.escape(part)
                              for part in re.split(r"(<[^>]+>)", name) if part))


def _documented(name: str) -> bool:
    sample = _sample(name)
    return any(_family(s.name).fullmatch(sample) for s in STATS)


def _literal(pieces: list) -> bool:
    return any(p is not ANY and re.search(r"[a-z]", p) for p in pieces)


SITES = stat_sites()


def test_the_source_is_read():
    # the reader finds the stats it must (a guard against a reader that silently sees nothing)
    files = {f for f, _, _ in SITES}
    assert {"proxy/stream/timeouts.py", "proxy/upstream/cluster.py", "proxy/http2/server.py", "proxy/tcp/proxy.py",
            "proxy/listeners.py", "wasm/vm.py"} <= files
    assert len(SITES) > 50


def test_every_stat_the_source_makes_is_documented():
    missing = []
    for f, line, pieces in SITES:
        if not _literal(pieces):
            continue
        rx = _site_regex(pieces)
        sample = "".join("x" if p is ANY else p for p in pieces)
        if not any(rx.fullmatch(_sample(s.name)) or _family(s.name).fullmatch(sample) for s in STATS):
            missing.append(f"{f}:{line}: {''.join('<…>' if p is ANY else p for p in pieces)}")
    assert not missing, f"stats with no line in the catalogue ({HOW}):\n" + "\n".join(missing)


def test_names_made_at_run_time_come_from_a_declared_list():
    loose = [f"{f}:{line}" for f, line, pieces in SITES
             if not _literal(pieces) and f not in DECLARED and f not in DYNAMIC]
    assert not loose, ("stat names computed entirely at run time; spell the name in the call, or declare "
                       "its list in DECLARED of this test: " + ", ".join(loose))


@pytest.mark.parametrize("file", sorted(DECLARED))
def test_every_name_of_a_declared_list_is_documented(file):
    module, attr, prefix = DECLARED[file]
    names = getattr(importlib.import_module(module), attr)
    missing = [prefix + n for n in names if not _documented(prefix + n)]
    assert not missing, f"{module}.{attr}: {missing} ({HOW})"


def test_every_endpoint_number_of_the_admin_is_documented():
    names = endpoint_stats()
    assert "<cluster>::<address>::rq_total" in names
    missing = [n for n in names if not _documented(n)]
    assert not missing, f"/clusters shows {missing} undocumented ({HOW})"


def test_every_documented_stat_is_made_somewhere():
    made = [_site_regex(p) for _, _, p in SITES if _literal(p)]
    declared = [_sample(prefix + n) for module, attr, prefix in DECLARED.values()
                for n in getattr(importlib.import_module(module), attr)]
    declared += [_sample(n) for n in endpoint_stats()]
    families = {v for v in DYNAMIC.values() if v}
    stale = []
    for s in STATS:
        sample = _sample(s.name)
        fam = _family(s.name)
        if s.name in families or any(rx.fullmatch(sample) for rx in made) \
                or any(fam.fullmatch(d) for d in declared):
            continue
        stale.append(s.name)
    assert not stale, f"runtime/stat_catalog.py documents stats nothing makes: {stale}"


def test_each_stat_is_listed_once_with_a_type_and_a_meaning():
    names = [s.name for s in STATS]
    assert len(names) == len(set(names))
    for s in STATS:
        assert s.type in (COUNTER, GAUGE, HISTOGRAM) or s.name == "wasm.<plugin>.<metric>", s
        assert len(s.meaning.split()) >= 2, s
    assert all(sec.stats for sec in SECTIONS)


def test_the_committed_reference_is_what_the_catalogue_renders():
    assert DOC.read_text() == render(), f"docs/metrics.md is out of date: run `{REGENERATE}` to regenerate"
