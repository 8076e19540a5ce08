"""dsl/testing.py: rule tests in *_test.yaml, their failures by line, and coverage.

Malformed files answer with a positioned C60x diagnostic (generated input too),
failures name the line of the expectation that failed, and coverage lists exactly
what no case reached.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosnx import tooling
from mosnx.dsl import testing
from mosnx.runtime.snapshot import build_snapshot

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shop(tmp_path) -> Path:
    """A copy of examples/shop, its test file left out, the wasm filter beside it."""
    shutil.copytree(ROOT / "examples" / "shop", tmp_path / "shop",
                    ignore=shutil.ignore_patterns("*.log", "*_test.yaml"))
    shutil.copytree(ROOT / "examples" / "wasm" / "filters", tmp_path / "wasm" / "filters")
    return tmp_path / "shop"


def run(*paths: Path) -> testing.Run:
    return testing.run_paths([str(p) for p in paths], build_snapshot, tooling.core())


def test_the_shop_tests_pass_and_cover_everything():
    r = run(ROOT / "examples" / "shop")
    assert (r.passed, r.failed, r.errors) == (12, 0, [])
    assert r.uncovered() == []
    (cov,) = r.coverage.values()
    assert cov.totals() == {"routes": (6, 6), "condition outcomes": (24, 24), "when branches": (4, 4),
                            "split arms": (2, 2)}


def test_failures_name_the_expectation_line(shop):
    (shop / "a_test.yaml").write_text("""tests:
  - name: health
    request: GET http://shop.example.com/healthz
    expect:
      route: items
      status: 200
      response_headers: {content-type: text/html, server: null}
  - name: forwarded
    request: GET http://shop.example.com/x
    expect: {status: 200, cluster: legacy, path: /y}
""")
    r = run(shop)
    assert (r.passed, r.failed) == (0, 2)
    fails: dict = {}
    for o in r.outcomes:
        for line, msg in o.failures:
            fails.setdefault((o.case.name, line), []).append(msg)
    assert fails[("health", 5)] == ["route: expected 'items', got 'health'"]
    assert fails[("health", 7)] == ["response_headers: content-type expected 'text/html', got 'text/plain'"]
    status, path = fails[("forwarded", 10)]
    assert "give the case a `response:`" in status and path == "path: expected '/y', got '/x'"
    text = testing.render(r, "text", False)
    assert "FAILED a_test.yaml:5: health: route: expected 'items', got 'health'" in text.replace(str(shop) + "/", "")
    assert text.rstrip().splitlines()[-1].startswith("0 passed, 2 failed in ")


def test_coverage_lists_what_no_case_reached(shop):
    (shop / "b_test.yaml").write_text("""tests:
  - request: GET http://shop.example.com/api/cart
    expect: {route: api, cluster: shop-v2}
""")
    r = run(shop)
    assert r.passed == 1
    missing = [what for _, what in r.uncovered()]
    assert "route health never taken" in missing
    assert "split arm shop-v1 never picked (pin it in a case with `cluster: shop-v1`)" in missing
    assert "split arm shop-v2 never picked (pin it in a case with `cluster: shop-v2`)" not in missing
    assert 'condition request.path segment_prefix "/admin" never true' in missing
    assert 'condition request.path segment_prefix "/admin" never false' not in missing
    # the operand after a false `admin_area` is never evaluated: neither outcome is claimed
    assert "condition source.address in internal never true" in missing
    assert "condition source.address in internal never false" in missing
    # no response: the `when` of `on response` was never evaluated
    assert "when response.code >= 500 never holds" in missing


def test_json_and_junit(shop):
    (shop / "c_test.yaml").write_text("""tests:
  - name: ok
    request: GET http://shop.example.com/healthz
    expect: {status: 200}
  - name: bad
    request: GET http://shop.example.com/healthz
    expect: {status: 201}
""")
    r = run(shop)
    doc = json.loads(testing.render(r, "json", True))
    assert (doc["passed"], doc["failed"]) == (1, 1)
    assert doc["cases"][1]["failures"] == [{"line": 7, "message": "status: expected 201, got 200"}]
    assert doc["coverage"] and all("uncovered" in c for c in doc["coverage"].values())
    suite = ET.fromstring(testing.render(r, "junit", False))
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert [tc.get("name") for tc in suite.iter("testcase")] == ["ok", "bad"]


@pytest.mark.parametrize("text, line, col, words", [
    ("tests: [\n", 2, 1, "not YAML"),
    ("- 1\n", 1, 1, "a mapping with `tests:`"),
    ("tests: []\n", 1, 1, "non-empty list"),
    ("tets:\n  - {}\n", 1, 1, "unknown key 'tets'"),
    ("tests:\n  - {request: GET http://h/}\n", 2, 5, "needs `expect:`"),
    ("tests:\n  - {expect: {route: a}}\n", 2, 5, "needs `request:`"),
    ("tests:\n  - request: GET http://h/\n    expect: {rout: a}\n", 3, 14, "unknown key 'rout'"),
    ("tests:\n  - request: GET http://h/\n    expect: {status: 700}\n", 3, 14, "100..599"),
    ("tests:\n  - request: GET http://h/\n    expect: {split: {a: x}}\n", 3, 14, "split must map"),
    ("tests:\n  - request: GET http://h/ x\n    expect: {route: a}\n", 2, 28, "METHOD URL"),
    ("tests:\n  - request: GET http://h/\n    headers: [nocolon]\n    expect: {route: a}\n", 3, 5, "name: value"),
    ("tests:\n  - request: GET http://h/\n    response: {status: 99}\n    expect: {route: a}\n", 3, 5,
     "response must be"),
    ("tests:\n  - request: GET http://h/\n    expect: {route: a}\n    expect: {route: b}\n", 4, 5, "given twice"),
    ("tests:\n  - name: a\n    request: GET http://h/\n    expect: {route: a}\n"
     "  - name: a\n    request: GET http://h/\n    expect: {route: a}\n", 5, 5, "already in this file"),
])
def test_malformed_files_are_positioned(tmp_path, text, line, col, words):
    f = tmp_path / "x_test.yaml"
    f.write_text(text)
    r = run(f)
    (d,) = r.errors
    assert (d.span.path, d.span.line, d.span.column) == (str(f), line, col), d
    assert words in d.message and d.code.startswith("C60")


def test_missing_config_and_a_config_that_does_not_build(tmp_path):
    (tmp_path / "a_test.yaml").write_text("config: nope.yaml\ntests:\n  - {request: GET http://h/, expect: {route: a}}\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mosnx.yaml").write_text("listeners:\n  - {name: l, address: 127.0.0.1:1, route: {cluster: z}}\n")
    (tmp_path / "b" / "b_test.yaml").write_text("tests:\n  - {request: GET http://h/, expect: {route: a}}\n")
    r = run(tmp_path)
    codes = sorted(d.code for d in r.errors)
    assert "C604" in codes and "C101" in codes
    assert r.outcomes == []


def test_no_test_files(tmp_path):
    (d,) = run(tmp_path).errors
    assert d.code == "C601" and "no test files" in d.message


SHOP_TEST = (ROOT / "examples" / "shop" / "shop_test.yaml").read_text()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_test_files_answer_with_diagnostics(tmp_path_factory, data):
    """Bytes cut, inserted or replaced anywhere in the shop's test file: the loader
    answers with a TestFile or a positioned diagnostic, never an exception."""
    text = SHOP_TEST
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["cut", "insert", "replace"]))
        junk = data.draw(st.sampled_from([":", "- ", "{", "}", "[", "\n", "  ", "'", '"', "&a", "*a", "!!int", "? ",
                                          "null", "700", "GET", "\t", "x"]))
        if op == "cut":
            text = text[:i] + text[i + data.draw(st.integers(1, 20)):]
        elif op == "insert":
            text = text[:i] + junk + text[i:]
        else:
            text = text[:i] + junk + text[i + len(junk):]
    f = tmp_path_factory.mktemp("m") / "m_test.yaml"
    f.write_text(text)
    try:
        tf = testing.load_file(str(f))
    except testing.BadFile as e:
        assert e.diag.span is not None and e.diag.span.line >= 1 and e.diag.span.column >= 1
        assert e.diag.code.startswith("C60")
        return
    assert tf.cases


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                    max_leaves=12))
def test_generated_documents_answer_with_diagnostics(tmp_path_factory, doc):
    f = tmp_path_factory.mktemp("g") / "g_test.yaml"
    f.write_text(yaml.safe_dump({"tests": [doc]}) if not isinstance(doc, dict) else yaml.safe_dump(doc))
    try:
        testing.load_file(str(f))
    except testing.BadFile as e:
        assert e.diag.span is not None and e.diag.code.startswith("C60")
