"""Syntax errors as E001 diagnostics: position, caret width, expected tokens, and a
friendlier message for common mistakes.

A mistake is recognised as Lark's match_examples does, by replaying short broken
snippets and comparing the parser state they fail in, but stricter: the failing
token (or character) must be of the same kind too. Nothing here raises.
"""
from __future__ import annotations

from typing import Any, Iterable

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from mosnx.runtime.diagnostics import Diagnostic, Span

# Common mistakes, each shown by snippets that fail the same way. LALR states differ
# by what precedes the mistake, so each snippet is tried first, after an item, and
# inside a vhost (see _variants).
_MISTAKES = {
    'use "==" to compare; "=" only assigns in set/add': [
        'route a when request.path = "/" { to b }',
        'on request { when request.path = "/" { respond 403 } }',
    ],
    'a route body goes in braces: route NAME when CONDITION { ... }': [
        'route a when request.path == "/" to b',
        'route a to b',
    ],
    'a condition needs "when": route NAME when CONDITION { ... }': [
        'route a request.path == "/" { to b }',
    ],
    'a route needs a name: route NAME when CONDITION { ... }': [
        'route when request.path == "/" { to b }',
        'route { to b }',
    ],
    'strings use double quotes': [
        "route a when request.path == '/' { to b }",
        "vhost v domains 'a' { }",
    ],
    'use "and", "or" and "not" to combine conditions': [
        'route a when request.path == "/" && request.method == "GET" { to b }',
        'route a when request.path == "/" || request.method == "GET" { to b }',
        'route a when ! request.path == "/" { to b }',
    ],
    'a block is not closed: a "}" is missing': [
        'route a { to b',
        'vhost v {',
        'on request { when request.path == "/" { respond 403 }',
    ],
}


def _variants(snippet: str) -> list[str]:
    out = [snippet, "route z { to y }\n" + snippet]
    if not snippet.startswith("vhost"):
        for head in ("vhost v { ", "vhost v { route z { to y }\n"):
            out += [head + snippet + " }", head + snippet]
    return out


_FRIENDLY = {label: [v for s in snippets for v in _variants(s)] for label, snippets in _MISTAKES.items()}


def _friendly(e: UnexpectedInput, p: Lark) -> str | None:
    """The label of a mistake that fails in the same parser state on the same kind of
    token or character (Lark's match_examples also accepts a bare state match, which
    would put a hint on unrelated errors)."""
    state = getattr(e, "state", None)
    if state is None:
        return None
    for label, snippets in _FRIENDLY.items():
        for snippet in snippets:
            try:
                p.parse(snippet)
            except UnexpectedInput as ut:
                if type(ut) is not type(e) or getattr(ut, "state", None) != state:
                    continue
                # type(ut) is type(e), from here on
                if isinstance(e, UnexpectedToken) and ut.token.type != e.token.type:  # type: ignore[attr-defined]
                    continue
                if isinstance(e, UnexpectedCharacters) and ut.char != e.char:  # type: ignore[attr-defined]
                    continue
                return label
    return None

_TOKEN_NAMES = {
    "NAME": "a name", "STRING": "a string", "INT": "a number", "DURATION": "a duration (800ms, 2s)",
    "PERCENT": "a percentage (5%)", "RATE": "a rate (100/s)", "IPV4": "an IP address or CIDR",
    "IPV6": "an IPv6 address or CIDR", "PHASE": "request, response or log", "CMP_OP": "a comparison",
    "$END": "end of file",
}


def _describe_expected(p: Lark, expected: Iterable[str]) -> str:
    names = set()
    for t in expected:
        if t in _TOKEN_NAMES:
            names.add(_TOKEN_NAMES[t])
            continue
        try:
            pat = p.get_terminal(t).pattern
        except KeyError:
            names.add(t)
            continue
        if pat.type == "str":
            names.add(f'"{pat.value}"')
        else:
            names.add(t.lower())
    ordered = sorted(names)
    if len(ordered) > 24:
        ordered = ordered[:24] + ["…"]
    return ", ".join(ordered)


def _accepts(e: UnexpectedToken) -> set[str]:
    """The tokens that could really come next. `expected` lists the lookaheads of the
    state before LALR reductions, which for an operand is almost every keyword."""
    try:
        acc = set(e.accepts)
    except Exception:  # accepts replays the parser; fall back to the raw lookaheads
        return set(e.expected)
    return acc or set(e.expected)


def syntax_error(e: UnexpectedInput, p: Lark, text: str, path: str) -> Diagnostic:
    """The E001 diagnostic for a Lark parse error in `text`."""
    lines = text.splitlines()
    line, col = e.line, e.column
    width = 1
    if isinstance(e, UnexpectedEOF) or line is None or line < 1:
        line = max(len(lines), 1)
        col = len(lines[-1]) + 1 if lines else 1
        what = "unexpected end of file"
        # an error at no line need not be an EOF: UnexpectedCharacters has no `expected`
        expected: Any = getattr(e, "expected", set())
    elif isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            line = max(len(lines), 1)
            col = len(lines[-1]) + 1 if lines else 1
            what = "unexpected end of file"
        else:
            what = f'unexpected "{tok}"'
            width = max(len(str(tok)), 1)
        expected = _accepts(e)
    elif isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if 0 <= e.pos_in_stream < len(text) else ""  # type: ignore[index,operator]  # set by the lexer
        what = f'unexpected character "{ch}"' if ch != '"' else "unexpected character '\"'"
        expected = e.allowed or set()
    else:
        what, expected = "syntax error", set()
    label = _friendly(e, p)
    msg = f"syntax error: {what}"
    if label:
        msg += f": {label}"
    elif expected:
        msg += f"; expected {_describe_expected(p, expected)}"
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    span = Span(path, line, col, line, col + width)
    return Diagnostic(span, "E001", msg, source_line=src)
