"""`mosnx fmt`: the canonical layout is a fixed point, means what the source meant,
keeps every comment in order, and is never written over a file that does not parse.

Inputs: the example rule files, every docs/mdsl.md snippet, generated route
tables, mutants of the examples (syntax errors among them), and programs
hypothesis builds from the grammar with random spacing, line breaks, redundant
parentheses and comments between tokens.
"""
from __future__ import annotations

import os
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosnx.__main__ import main as mosnx
from mosnx.dsl.fmt import format_text, quote, strip
from mosnx.dsl.parse import _unquote, parse
from mosnx.runtime.diagnostics import Diagnostic

from .mutants import mutants, sample
from .test_check_mutants import SEED
from .test_parse_equivalence import _routes, sources

COMMENT = re.compile(r'#[^\n]*')


def comments(text: str) -> list[str]:
    """The comments of a file that parses, in order (strings blanked first)."""
    blanked = re.sub(r'"(\\.|[^"\\\n])*"', '""', text)
    return [c.rstrip() for c in COMMENT.findall(blanked)]


def assert_canonical(src: str, path: str = "t.mdsl") -> str:
    out = format_text(src, path)
    assert isinstance(out, str), out
    assert format_text(out, path) == out, "formatting twice changed the text"
    assert strip(parse(out, path)) == strip(parse(src, path))
    assert comments(out) == comments(src)
    assert all((len(line) - len(line.lstrip(" "))) % 2 == 0 or line.lstrip().startswith(("and ", "or "))
               for line in out.splitlines())
    assert not any(line != line.rstrip() for line in out.splitlines()), "trailing blanks"
    return out


@pytest.mark.parametrize("name,src", sources(), ids=lambda x: x if len(x) < 60 else None)
def test_examples_and_doc_snippets(name, src):
    assert_canonical(src, "t.mdsl")


def test_generated_route_tables():
    assert_canonical(_routes(40))


def test_the_examples_but_one_are_already_canonical():
    # shop.mdsl keeps a two-statement route on one line on purpose (the canonical
    # form puts each statement on its own line)
    for name, src in sources():
        if name.endswith(".mdsl") and not name.endswith("shop.mdsl"):
            assert format_text(src, name) == src, name


MESSY = '''# head

import   "common.mdsl"   # why the import
const  x = ( request.path == "/a" )
const s={ "a","b" }
vhost   v domains "a.com" ,"b.com"{ # the vhost
# inside
    route r when a and   b or not c {   to c1
  timeout 3s    # t
  when request.path ~ "\\d+" { set request.headers["x"] = "y\\n" } else { remove request.headers["x"] }  # after else
  # before close
  }
  route r2 when request.path prefix "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" and request.headers["x-long"] == "value" or x { to c }
  on log { emit e { a: f(x, (y)), b: 1 } }
  route r4 { fault abort 503 10%, delay 1s  limit rate 10/s key request.headers["k"] else 429 queue burst 3 }
}



route d { to x } # end
# final
'''

CANONICAL = '''# head

import "common.mdsl"  # why the import
const x = (request.path == "/a")
const s = {"a", "b"}
vhost v domains "a.com", "b.com" {  # the vhost
  # inside
  route r when a and b or not c {
    to c1
    timeout 3s  # t
    when request.path ~ "\\d+" {
      set request.headers["x"] = "y\\n"
    } else {
      remove request.headers["x"]
    }  # after else
    # before close
  }
  route r2 when request.path prefix "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      and request.headers["x-long"] == "value"
      or x {
    to c
  }
  on log {
    emit e { a: f(x, (y)), b: 1 }
  }
  route r4 {
    fault abort 503 10%, delay 1s
    limit rate 10/s burst 3 key request.headers["k"] else 429 queue
  }
}

route d { to x }  # end
# final
'''


def test_layout_of_a_messy_file():
    assert assert_canonical(MESSY) == CANONICAL


@pytest.mark.parametrize("s", ["", "a", "\\d+", "\\", "a\\\\n", 'say "hi"', "\n\t\r", "\\n", "x\\"])
def test_quote_reads_back(s):
    assert _unquote(quote(s)) == s


def test_mutants_give_a_diagnostic_or_an_equal_program():
    for name, src in sources()[:3]:
        for _, m in sample(mutants(src), 60, SEED):
            out = format_text(m, "m.mdsl")
            if isinstance(out, Diagnostic):
                assert out.code.startswith("E") and out.span is not None
            else:
                assert strip(parse(out, "m.mdsl")) == strip(parse(m, "m.mdsl"))


# ---- generated programs: the grammar's shapes, spaced and commented at random ----
names = st.sampled_from(["a", "b", "svc-1", "x_y", "request.path", "request.method", "source.address"])
clusters = st.sampled_from(["c1", "c-2", "shop_v3"])
strings = st.sampled_from(['"/"', '"/api/"', '"a b"', '"\\d+"', '"q\\"uote"', '"x\\ny"', '""'])


GAPS = [" ", "  ", "\n", "\n    ", " # note\n", "\n# own line\n  "]


def spaced(item: str, rng: random.Random) -> str:
    """An item with random blanks where a space was: spaces, newlines, comments."""
    parts = re.split(r"(?<=[{},]) ", item)
    return "".join(p if i == 0 else rng.choice(GAPS) + p for i, p in enumerate(parts))


def operand() -> st.SearchStrategy[str]:
    ref = st.one_of(names, names.map(lambda n: f'request.headers["{n[-1]}"]'))
    lit = st.one_of(strings, st.integers(0, 999).map(str), st.sampled_from(["2s", "5%", "10.0.0.0/8", "true"]))
    return st.one_of(ref, lit, st.builds(lambda a: f"f({a})", ref))


def expr() -> st.SearchStrategy[str]:
    cmp_ = st.builds(lambda a, op, b: f"{a} {op} {b}", operand(),
                     st.sampled_from(["==", "!=", "<", "~", "prefix", "segment_prefix"]), operand())
    inn = st.builds(lambda a, b: f"{a} in {{{b}}}", names, strings)
    base = st.one_of(cmp_, inn, names)
    return st.recursive(base, lambda e: st.one_of(
        st.builds(lambda a, b: f"{a} and {b}", e, e), st.builds(lambda a, b: f"{a} or {b}", e, e),
        st.builds(lambda a: f"not ({a})", e), st.builds(lambda a: f"({a})", e)), max_leaves=6)


def stmt() -> st.SearchStrategy[str]:
    simple = st.one_of(
        st.builds(lambda c: f"to {c}", clusters),
        st.builds(lambda a, b: f"split {{ {a}: 50, {b}: 50 }}", clusters, clusters),
        st.just("timeout 3s"), st.just("retry 2 on 5xx, status {503} per_try 1s"),
        st.builds(lambda s: f"set request.headers[\"x\"] = {s}", strings),
        st.just('remove response.headers["server"]'), st.just("fault abort 503 1%, delay 2s"),
        st.just('limit rate 5/s key request.headers["k"] burst 3'), st.builds(lambda s: f"respond 200 {s}", strings),
        st.just('redirect 301 prefix "/b" strip_query'), st.just("emit e { a: request.path, }"))
    return st.recursive(simple, lambda s: st.builds(
        lambda c, body, orelse: f"when {c} {{ {' '.join(body)} }}" + (f" else {{ {orelse} }}" if orelse else ""),
        expr(), st.lists(s, max_size=3), st.one_of(st.none(), s)), max_leaves=5)


def program() -> st.SearchStrategy[str]:
    route = st.builds(lambda n, c, body: f"route {n} " + (f"when {c} " if c else "") + "{ " + " ".join(body) + " }",
                      st.sampled_from(["r1", "r-2"]), st.one_of(st.none(), expr()), st.lists(stmt(), max_size=3))
    on = st.builds(lambda ph, body: f"on {ph} {{ {' '.join(body)} }}",
                   st.sampled_from(["request", "response", "log"]), st.lists(stmt(), max_size=3))
    decl = st.one_of(st.builds(lambda e: f"const k = {e}", expr()), st.just('import "x.mdsl"'),
                     st.just("clusters c1, c-2"), st.just('const s = {"a", "b",}'))
    vhost = st.builds(lambda items: 'vhost v domains "a.com", "b" { ' + " ".join(items) + " }",
                      st.lists(st.one_of(route, on), max_size=3))
    return st.lists(st.one_of(decl, route, on, vhost), min_size=1, max_size=4)


PROGRAMS = program()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PROGRAMS, st.integers(0, 2**32))
def test_generated_programs(items, seed):
    rng = random.Random(seed)
    src = "\n".join(spaced(it, rng) for it in items) + "\n"
    assert not isinstance(parse(src, "g.mdsl"), Diagnostic), src
    assert_canonical(src, "g.mdsl")


# ---- the command ----
def write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_fmt_rewrites_and_check_reports(tmp_path, capsys):
    f = write(tmp_path, "a.mdsl", "route r {to c  timeout 1s}\n")
    assert mosnx(["fmt", "--check", f]) == 1
    assert "would reformat" in capsys.readouterr().err
    assert open(f).read() == "route r {to c  timeout 1s}\n"
    assert mosnx(["fmt", f]) == 0
    assert open(f).read() == "route r {\n  to c\n  timeout 1s\n}\n"
    assert mosnx(["fmt", "--check", str(tmp_path)]) == 0


def test_fmt_diff_prints_a_unified_diff_and_writes_nothing(tmp_path, capsys):
    f = write(tmp_path, "a.mdsl", "route r {to c}\n")
    assert mosnx(["fmt", "--diff", f]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [f"--- {f} (original)", f"+++ {f} (formatted)"]
    assert "-route r {to c}" in out and "+route r { to c }" in out
    assert open(f).read() == "route r {to c}\n"


def test_fmt_refuses_a_syntax_error_with_check_s_diagnostic(tmp_path, capsys):
    bad = "route r { to }\n"
    f = write(tmp_path, "bad.mdsl", bad)
    assert mosnx(["fmt", f]) == 2
    err = capsys.readouterr().err
    assert mosnx(["check", f]) == 1
    out = capsys.readouterr().out
    assert err.splitlines()[0] == out.splitlines()[0]
    assert re.match(rf"{re.escape(f)}:1:\d+: E001 ", err)
    assert "Traceback" not in err
    assert open(f).read() == bad


def test_fmt_on_a_missing_file_is_a_clear_error(tmp_path, capsys):
    assert mosnx(["fmt", str(tmp_path / "nope.mdsl")]) == 2
    assert "nope.mdsl" in capsys.readouterr().err


def test_fmt_reads_standard_input(monkeypatch, capsys):
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("route r {to c}"))
    assert mosnx(["fmt", "-"]) == 0
    assert capsys.readouterr().out == "route r { to c }\n"


def test_examples_folder_is_checked_in_place():
    here = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "bookinfo")
    assert mosnx(["fmt", "--check", here]) == 0
