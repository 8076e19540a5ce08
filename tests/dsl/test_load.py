"""Loading rule files: a chain of consts nests as deep as their values together,
and is bounded like nesting in one file (E005), without recursion over the chain."""
from __future__ import annotations

from mosnx.dsl.load import load
from mosnx.dsl.parse import MAX_NESTING


def test_a_long_const_chain_is_E005_once_where_it_crosses_the_bound(rules):
    n = 3000
    src = "".join(f"const c{i} = c{i + 1}\n" for i in range(n)) + f'const c{n} = request.path == "/"\n'
    path = rules.write(src + "route r when c0 { to web }\n")
    found = [str(d) for d in load([path]).diagnostics]
    # c{n} has depth 2 (a compare of two leaves); each alias adds one
    crossing = n - (MAX_NESTING - 1)
    assert found == [f"{path}:{crossing + 1}:1: E005 " + found[0].split(" E005 ", 1)[1]]
    assert rules.lines(src + "route r when c0 { to web }\n")[0].startswith(f"{crossing + 1}:1: E005 nested more than")


def test_consts_across_imports_count_where_used(rules):
    # `not aN` is two levels: the not, and the const it names
    rules.write("".join(f"const a{i} = not a{i + 1}\n" for i in range(20)) + "const a20 = true\n", "lib.mdsl")
    assert rules.lines('import "lib.mdsl"\nroute r when a0 { to web }\n') == []          # a0: 41 deep
    src = 'import "lib.mdsl"\n' + "".join(f"const b{i} = not b{i + 1}\n" for i in range(15)) + "const b15 = a0\n"
    diags = rules.diagnose(src + "route r when b0 { to web }\n")
    # b15 is 42 deep, b3 the first past 64
    assert [(d.code, d.span.path.rsplit("/", 1)[1], d.span.line) for d in diags] == [("E005", "rules.mdsl", 5)]


def test_const_chains_within_the_bound_and_cycles_load(rules):
    src = "".join(f"const c{i} = not c{i + 1}\n" for i in range(30)) + "const c30 = true\n"   # 61 deep
    assert rules.lines(src + "route r when c0 { to web }\n") == []
    assert rules.lines("const a = b\nconst b = a\nroute r when a { to web }\n") == [
        '2:11: E004 const "a" refers to itself']
