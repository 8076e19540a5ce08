"""dsl/syntax_errors.py: a syntax error is one E001 diagnostic at the offending token,
with a caret as wide as it, the expected tokens, or a friendly message for a
common mistake; never an exception."""
from __future__ import annotations

import pytest

from mosnx.dsl.parse import parse
from mosnx.runtime.diagnostics import Diagnostic


def error(text: str) -> Diagnostic:
    d = parse(text, "r.mdsl")
    assert isinstance(d, Diagnostic) and d.code == "E001", d
    return d


@pytest.mark.parametrize("text,friendly", [
    ('route a when request.path = "/" { to b }', 'use "==" to compare'),
    ('route a when request.path == "/" to b', "a route body goes in braces"),
    ('route a request.path == "/" { to b }', 'a condition needs "when"'),
    ('vhost v { route a when request.path = "/" { to b } }', 'use "==" to compare'),
])
def test_common_mistakes_get_a_friendly_message(text, friendly):
    assert friendly in error(text).message


def test_the_caret_spans_the_unexpected_token():
    d = error('route a when request.path == "/" to web')
    assert (d.span.line, d.span.column) == (1, 34)
    assert d.render().splitlines()[1:] == ['  route a when request.path == "/" to web', "  " + " " * 33 + "^^"]


def test_otherwise_the_expected_tokens_are_named():
    d = error("route a when { to web }")
    assert d.message.startswith("syntax error") and "expected" in d.message


def test_an_unknown_character_and_an_early_end_are_positioned():
    d = error('route a when request.path == "/" { to web } $')
    assert (d.span.line, d.span.column) == (1, 45)
    d = error('route a when request.path == "/" {\n  to web\n')
    assert d.span.line >= 2 and "syntax error" in d.message
