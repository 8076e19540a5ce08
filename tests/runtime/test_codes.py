"""docs/diagnostics.md: every code the source can emit is in runtime.codes, and each
example in the generator really makes `mosnx check` report its code."""
import ast
import pathlib
import re

import pytest

from mosnx import plugins
from mosnx.reference.diagnostics import EXAMPLES, REGENERATE, render, run
from mosnx.runtime.codes import BY_CODE, CODES

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "diagnostics.md"
SOURCES = ("runtime", "dsl", "proxy", "wasm", "mosnx")
CODE = re.compile(r"[CETRUDPX][0-9]{3}")


def emitted_codes() -> dict[str, str]:
    """Every string literal in the source that is a diagnostic code, with where it is."""
    found: dict[str, str] = {}
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "codes.py" and path.parent.name == "runtime":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
                    found.setdefault(node.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@pytest.fixture(scope="module", autouse=True)
def _plugins():
    plugins.load()


def test_every_code_the_source_emits_is_in_the_table():
    missing = {c: where for c, where in emitted_codes().items() if c not in BY_CODE}
    assert not missing, f"codes without a line in runtime/codes.py: {missing}"


def test_every_code_in_the_table_is_still_emitted():
    stale = set(BY_CODE) - set(emitted_codes())
    assert not stale, f"runtime/codes.py lists codes nothing emits: {sorted(stale)}"


def test_each_reachable_code_has_an_example_and_only_those():
    assert {c.code for c in CODES if c.reachable} == set(EXAMPLES)


@pytest.mark.parametrize("code", sorted(EXAMPLES))
def test_each_example_makes_mosnx_report_its_code(code):
    diags, text = run(EXAMPLES[code])
    assert {d.code for d in diags} == {code}, text
    assert {d.severity for d in diags} == {BY_CODE[code].severity}
    assert f" {code} " in text


def test_the_committed_reference_is_what_the_examples_print():
    assert DOC.read_text() == render(), f"docs/diagnostics.md is out of date: run `{REGENERATE}` to regenerate"
