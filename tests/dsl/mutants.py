"""A systematic mutator of .mdsl text, for the never-an-internal-error tests.

Works on tokens (a small lexer of its own, so it also cuts and splices where
the grammar would not): every mutant is a (name, text) pair, named for what was
done where, so a failure says which mutant to replay. Deterministic: the same
source and seed give the same mutants in the same order.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\\n])*")
  | (?P<ip>\d+\.\d+\.\d+\.\d+(?:/\d+)?|[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}(?:/\d+)?)
  | (?P<rate>\d+/[a-zA-Z]+)
  | (?P<percent>\d+(?:\.\d+)?%)
  | (?P<duration>\d+(?:\.\d+)?[a-zA-Z]+)
  | (?P<int>\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
  | (?P<op>==|!=|<=|>=|=>|[<>~=])
  | (?P<punct>[{}()\[\],.:])
  | (?P<space>\s+)
  | (?P<other>.)
""", re.X)

KEYWORDS = ("import", "const", "clusters", "vhost", "domains", "on", "route", "when", "else", "to", "split",
            "timeout", "retry", "mirror", "host_rewrite", "rewrite", "prefix", "regex", "set", "add", "remove",
            "fault", "delay", "abort", "limit", "rate", "burst", "key", "queue", "wasm", "respond", "header",
            "redirect", "path", "host", "scheme", "strip_query", "emit", "per_try", "status", "not", "and",
            "or", "in", "true", "false", "request", "response", "log")
FIELDS = ("request.path", "request.method", "request.host", "request.headers", "source.address",
          "response.code", "cluster.name", "duration_ms", "metadata", "connection.sni")
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "~", "and", "or", "in", "prefix", "suffix", "contains",
             "segment_prefix", "=", "=>", ",", ":")
# Bad (and edge) literals by kind: each lexes as its kind, so the checker must judge it.
BAD_LITERALS = {
    "ip": ("10.0.0.0/33", "300.1.1.1", "1.2.3.4/99", "::1/129", "1:2", "10.0.0.1/0", "999.999.999.999/8"),
    "duration": ("5x", "0ms", "1.5h", "99999999999999999999h", "3d"),
    "percent": ("150%", "0%", "100.5%", "99999999999999999999%"),
    "rate": ("0/s", "5/y", "99999999999999999999/s"),
    "int": ("0", "99999", "99999999999999999999", "600"),
    "string": ('"["', '""', '"(a"', '"*"', '"\\\\"', '"/"'),
}


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str
    start: int
    end: int


def tokens(src: str) -> list[Tok]:
    return [Tok(m.lastgroup, m.group(), m.start(), m.end()) for m in _TOKEN.finditer(src)
            if m.lastgroup not in ("space", "comment")]


def _splice(src: str, t: Tok, text: str) -> str:
    return src[:t.start] + text + src[t.end:]


def _misspell(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word + "x"
    i = rng.randrange(len(word))
    how = rng.randrange(3)
    if how == 0:
        return word[:i] + word[i + 1:]
    if how == 1:
        return word[:i] + word[i] + word[i:]
    j = min(i + 1, len(word) - 1)
    w = list(word)
    w[i], w[j] = w[j], w[i]
    return "".join(w) if "".join(w) != word else word + "s"


def mutants(src: str, seed: int = 0) -> list[tuple[str, str]]:
    """Every mutant of `src`: (what was done, the mutated text)."""
    rng = random.Random(seed)
    toks = tokens(src)
    names = sorted({t.text for t in toks if t.kind == "name"})
    out: list[tuple[str, str]] = []
    for i, t in enumerate(toks):
        at = f"token {i} {t.text!r}"
        out.append((f"delete {at}", _splice(src, t, "")))
        out.append((f"duplicate {at}", _splice(src, t, t.text + " " + t.text)))
        if t.kind == "op" or t.text in OPERATORS:
            for op in rng.sample(OPERATORS, 3):
                if op != t.text:
                    out.append((f"swap {at} for {op!r}", _splice(src, t, op)))
        if t.kind == "name":
            out.append((f"misspell {at}", _splice(src, t, _misspell(t.text, rng))))
            other = rng.choice([n for n in names if n != t.text] or ["x"])
            out.append((f"rename {at} to {other!r}", _splice(src, t, other)))
            out.append((f"keyword {at}", _splice(src, t, rng.choice(KEYWORDS))))
            out.append((f"field {at}", _splice(src, t, rng.choice(FIELDS))))
        if t.kind in BAD_LITERALS:
            for bad in BAD_LITERALS[t.kind]:
                out.append((f"corrupt {at} to {bad}", _splice(src, t, bad)))
            other_kind = rng.choice([k for k in BAD_LITERALS if k != t.kind])
            out.append((f"retype {at}", _splice(src, t, rng.choice(BAD_LITERALS[other_kind]))))
        if t.text in ("when", "and", "or", "not", "("):
            out.append((f"not after {at}", src[:t.end] + " not" + src[t.end:]))
            out.append((f"not not after {at}", src[:t.end] + " not not" + src[t.end:]))
            out.append((f"deep not after {at}", src[:t.end] + " not" * 300 + src[t.end:]))
            out.append((f"deep parentheses after {at}", src[:t.end] + " (" * 300 + src[t.end:]))
        if t.text == "when":
            close = next((u for u in toks[i + 1:] if u.text == "{" and toks[toks.index(u) - 1].text != "in"), None)
            if close is not None:
                out.append((f"wrap condition {at} in not(...)",
                            src[:t.end] + " not (" + src[t.end:close.start] + ") " + src[close.start:]))
        out.append((f"truncate before {at}", src[:t.start]))
    return out


def sample(items: list, n: int, seed: int = 0) -> list:
    """`n` of `items`, spread evenly and deterministically (all of them if fewer)."""
    if len(items) <= n:
        return list(items)
    return random.Random(seed).sample(items, n)
