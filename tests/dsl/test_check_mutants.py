"""Generated mutants of every example rule file (and of every docs/mdsl.md snippet)
go through the entry point `mosnx check` uses: each is clean or has positioned
diagnostics, and nothing else ever escapes.

The mutator (tests/dsl/mutants.py) deletes, duplicates and misspells tokens,
swaps operators, renames fields, consts, clusters and keywords, corrupts
literals, wraps conditions in `not` (once, twice, or 300 deep) and truncates at token boundaries. A fixed
seed and an even sample keep the run deterministic and to a few seconds; a
failure names the mutant, which replays with mutants(src, seed).
"""
from __future__ import annotations

import os
import shutil

import pytest

from mosnx.__main__ import check_paths
from mosnx.dsl import ast as A
from mosnx.dsl.parse import parse

from .mutants import mutants, sample, tokens
from .test_parse_docs import WRAPPERS, snippets

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
EXAMPLES = os.path.join(ROOT, "examples")
SEED = 20261206
PER_FILE = 400           # mutants checked per example file (all of them when fewer)
PER_SNIPPET = 25


def example_rule_files() -> list[str]:
    out = []
    for d, _, names in os.walk(EXAMPLES):
        out += [os.path.join(d, n) for n in names if n.endswith(".mdsl")]
    return sorted(out)


def doc_sources() -> list[str]:
    """Each docs snippet of some size, as the smallest file it parses in."""
    out = []
    for block in snippets():
        for w in WRAPPERS:
            src = w.format(block)
            if isinstance(parse(src, "doc.mdsl"), A.File):
                if len(tokens(src)) >= 12:
                    out.append(src)
                break
    return out


def assert_only_diagnostics(paths: list[str], what: str) -> None:
    diags = check_paths(paths)   # a Bug (anything but diagnostics) fails the test with its traceback
    for d in diags:
        assert d.span is not None and d.span.line >= 1 and d.span.column >= 1, f"{what}: unpositioned {d}"
        assert d.code[:1] in "ETRUDPC" and d.code[1:].isdigit(), f"{what}: {d}"


def test_the_mutator_covers_every_example():
    files = example_rule_files()
    assert {os.path.basename(f) for f in files} >= {"shop.mdsl", "common.mdsl", "bookinfo.mdsl"}
    for f in files:
        src = open(f, encoding="utf-8").read()
        kinds = {name.split()[0] for name, _ in mutants(src, SEED)}
        assert kinds >= {"delete", "duplicate", "misspell", "rename", "keyword", "field", "truncate"}, f
    shop = open(os.path.join(EXAMPLES, "shop", "rules", "shop.mdsl"), encoding="utf-8").read()
    kinds = {name.split()[0] for name, _ in mutants(shop, SEED)}
    assert kinds >= {"swap", "corrupt", "retype", "not", "wrap", "deep"}


@pytest.mark.parametrize("example", example_rule_files(), ids=os.path.basename)
def test_mutants_of_example_rules(tmp_path, example):
    """The mutant replaces its file inside a copy of its folder, which is checked
    as `mosnx check rules/` would (imports and cross-file findings included)."""
    folder = tmp_path / "rules"
    shutil.copytree(os.path.dirname(example), folder)
    target = folder / os.path.basename(example)
    src = open(example, encoding="utf-8").read()
    chosen = sample(mutants(src, SEED), PER_FILE, SEED)
    for i, (name, text) in enumerate(chosen):
        target.write_text(text, encoding="utf-8")
        assert_only_diagnostics([str(folder)], f"{os.path.basename(example)}: {name}")
        if i % 4 == 0:   # and now and then on its own, its imports unloaded as roots
            assert_only_diagnostics([str(target)], f"{os.path.basename(example)} alone: {name}")


def test_mutants_of_doc_snippets(tmp_path):
    sources = doc_sources()
    assert len(sources) >= 10
    path = tmp_path / "doc.mdsl"
    for i, src in enumerate(sources):
        for name, text in sample(mutants(src, SEED + i), PER_SNIPPET, SEED + i):
            path.write_text(text, encoding="utf-8")
            assert_only_diagnostics([str(path)], f"docs snippet {i}: {name}")


CONFIGS = ["quickstart/mosnx.yaml", "bookinfo/mosnx.yaml"]   # the others load WASM modules: slow per mutant
PER_CONFIG = 250


@pytest.mark.parametrize("config", CONFIGS)
def test_mutants_of_example_configs(tmp_path, config):
    """The same mutator over a YAML config (its rules beside it), built as `mosnx check
    CONFIG` builds it: C-coded findings with positions, or a clean build."""
    folder = tmp_path / "ex"
    shutil.copytree(os.path.join(EXAMPLES, os.path.dirname(config)), folder)
    target = folder / os.path.basename(config)
    src = target.read_text(encoding="utf-8")
    for name, text in sample(mutants(src, SEED), PER_CONFIG, SEED):
        target.write_text(text, encoding="utf-8")
        for d in check_paths([str(target)]):
            assert d.code[:1] in "CETRUDP" and d.code[1:].isdigit(), f"{config}: {name}: {d}"
            assert d.span is None or d.span.line >= 1, f"{config}: {name}: {d}"
