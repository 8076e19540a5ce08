"""grammar/mdsl.tmLanguage.json, the TextMate grammar editors highlight .mdsl
with, read by a TextMate engine (textmate-grammar-python, a port of VS Code's
vscode-textmate): every example rule file and docs/mdsl.md snippet — text
dsl.parse reads — is tokenized with every character that is not a blank under
a scope of its own, and none under invalid.illegal.mdsl, the grammar's last
rule, which takes any character no other rule does.
"""
from __future__ import annotations

import json
import logging
import os

import pytest
from textmate_grammar.parsers.base import LanguageParser

from .test_parse_equivalence import sources

GRAMMAR = os.path.join(os.path.dirname(__file__), "..", "..", "grammar", "mdsl.tmLanguage.json")
logging.getLogger("textmate_grammar").setLevel(logging.ERROR)   # it logs each unscoped string part


@pytest.fixture(scope="module")
def engine() -> LanguageParser:
    with open(GRAMMAR, encoding="utf-8") as f:
        return LanguageParser(json.load(f))


def tokens(engine: LanguageParser, text: str) -> list[tuple[tuple[int, int], str, list[str]]]:
    return engine.parse_string(text).flatten()


def problems(engine: LanguageParser, text: str) -> list[str]:
    out = []
    for (line, col), content, scopes in tokens(engine, text):
        if "invalid.illegal.mdsl" in scopes:
            out.append(f"{line + 1}:{col + 1}: {content!r} is invalid")
        elif content.strip() and scopes == ["source.mdsl"]:
            out.append(f"{line + 1}:{col + 1}: {content!r} has no scope")
    return out


def covered(engine: LanguageParser, text: str) -> int:
    """How many non-blank characters the tokens hold."""
    return sum(len("".join(c.split())) for _, c, _ in tokens(engine, text))


@pytest.mark.parametrize("name,src", sources(), ids=lambda x: x if len(x) < 60 else None)
def test_examples_and_doc_snippets_tokenize_cleanly(engine, name, src):
    assert problems(engine, src) == []
    assert covered(engine, src) == len("".join(src.split()))


def test_scopes_of_a_route(engine):
    src = 'route api when request.path prefix "/a\\n" and n in {10.0.0.0/8} { to web timeout 2s }  # c\n'
    got = {c: s[-1] for _, c, s in tokens(engine, src) if c.strip()}
    assert got["route"] == "keyword.control.declaration.mdsl"
    assert got["api"] == "entity.name.section.mdsl"
    assert got["request.path"] == "variable.other.attribute.mdsl"
    assert got["prefix"] == got["and"] == got["in"] == "keyword.operator.word.mdsl"
    assert got["\\n"] == "constant.character.escape.mdsl"
    assert got["10.0.0.0/8"] == "constant.other.ip.mdsl"
    assert got["web"] == "entity.name.type.cluster.mdsl"
    assert got["2s"] == "constant.numeric.duration.mdsl"
    assert got["# c"] == "comment.line.number-sign.mdsl"


def test_a_character_the_language_has_not_is_invalid(engine):
    assert problems(engine, "route r { to c } $\n") == ["1:18: '$' is invalid"]


def test_scopes_of_an_rpc_block_and_trace_statements(engine):
    src = ('rpc calls { route a when rpc.headers["zone"] == "gz" { to billing } }\n'
           'route r { trace tag "tenant" = request.headers["x-t"] trace sample 0.5% to web }\n')
    assert problems(engine, src) == []
    got = {c: s[-1] for _, c, s in tokens(engine, src) if c.strip()}
    assert got["rpc"] == "keyword.control.declaration.mdsl" and got["calls"] == "entity.name.section.mdsl"
    assert got["rpc.headers"] == "variable.other.attribute.mdsl"
    assert got["trace"] == got["tag"] == got["sample"] == "keyword.other.statement.mdsl"
    assert got["0.5%"] == "constant.numeric.percent.mdsl"
