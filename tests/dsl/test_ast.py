"""dsl/ast.py: AST nodes are frozen, compare by value (spans included), and refuse
an operator, phase or assignment mode the language does not have."""
from __future__ import annotations

import dataclasses

import pytest

from mosnx.dsl import ast as A
from mosnx.dsl.parse import parse
from mosnx.runtime.diagnostics import Span

AT = Span("r.mdsl", 1, 1)


def test_constructors_refuse_what_the_language_lacks():
    ref, lit = A.Ref(AT, "request.path"), A.Str(AT, "/")
    assert A.Compare(AT, "==", ref, lit).op == "=="
    with pytest.raises(ValueError, match="unknown operator '==='"):
        A.Compare(AT, "===", ref, lit)
    with pytest.raises(ValueError, match="unknown phase 'upstream'"):
        A.OnBlock(AT, "upstream", ())
    with pytest.raises(ValueError, match="unknown assignment 'append'"):
        A.Assign(AT, "append", ref, lit)


def test_nodes_are_frozen_and_compare_by_value():
    a = parse('route a when request.path == "/" { to web }', "r.mdsl")
    b = parse('route a when request.path == "/" { to web }', "r.mdsl")
    assert isinstance(a, A.File) and a == b
    route = a.items[0]
    assert isinstance(route, A.RouteDecl) and route.name == "a" and isinstance(route.cond, A.Compare)
    with pytest.raises(dataclasses.FrozenInstanceError):
        route.name = "b"
    # the same rules one column further: equal shapes, different spans, different nodes
    assert parse(' route a when request.path == "/" { to web }', "r.mdsl") != a
