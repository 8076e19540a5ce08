"""runtime/config/reader.py: the document as position-carrying nodes; what YAML itself
refuses (syntax, control characters, python tags, self-containing aliases, repeated
keys) is a positioned finding, never a traceback."""
from __future__ import annotations

import pytest

from mosnx.runtime.config.reader import Reader, dotted


def read(text: str):
    r = Reader(text, "m.yaml")
    root = r.compose()
    return r, root, [(d.code, d.span.line, d.span.column, d.message) for d in r.findings()]


@pytest.mark.parametrize("text,finding", [
    ("a: [1\n", ("C001", 2, 1, "YAML syntax: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)")),
    ("a: \x01\n", ("C001", 1, 4, "YAML syntax: unacceptable character #x0001: special characters are not allowed")),
    ("a: !!python/object:os.system x\n",
     ("C001", 1, 4, "YAML syntax: could not determine a constructor for the tag "
                    "'tag:yaml.org,2002:python/object:os.system'")),
    ("a: &x [*x]\n", ("C001", 1, 4, "YAML: an alias inside its own anchor makes this node contain itself")),
])
def test_what_yaml_refuses_is_one_positioned_finding(text, finding):
    r, root, found = read(text)
    assert root is None and found == [finding]


def test_a_repeated_key_is_reported_at_the_repeat():
    r, root, found = read("a: 1\nb: {c: 1, c: 2}\na: 2\n")
    assert root is not None and found == [("C006", 2, 11, 'duplicate key "c"'), ("C006", 3, 1, 'duplicate key "a"')]


def test_merge_keys_are_resolved_and_a_written_key_wins():
    r, root, found = read("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n")
    assert found == []
    m = {k: v for k, _, v in r.entries(root)}["m"]
    assert [(k, r.data(v)) for k, _, v in r.entries(m)] == [("x", 1), ("y", 3)]


def test_data_is_never_shared_between_calls():
    r, root, _ = read("a: {b: [1]}\n")
    node = {k: v for k, _, v in r.entries(root)}["a"]
    first = r.data(node)
    first["b"].append(2)
    assert r.data(node) == {"b": [1]}


def test_spans_and_the_nearest_recorded_ancestor():
    r, root, _ = read("a:\n  b: 1\n")
    b = {k: v for k, _, v in r.entries({k: v for k, _, v in r.entries(root)}["a"])}["b"]
    assert (r.span(b).line, r.span(b).column) == (2, 6)
    r.positions[("a",)] = r.span(root)
    assert r.at(("a", "b", 0)) is r.positions[("a",)] and r.at(("z",)) is None
    assert dotted(("listeners", 0, "route", "retry")) == "listeners[0].route.retry"


def test_references_resolve_after_the_whole_document():
    r, root, _ = read("x: 1\n")
    r.refer("cluster", "web", root)
    r.declare("cluster", "web", ("clusters", 0, "name"))
    assert r.declare("cluster", "web", ("clusters", 1, "name")) == ("clusters", 0, "name")
    r.refer("cluster", "wbe", root)
    r.check_references()
    assert [(d.code, d.message, d.fix) for d in r.findings()] == [
        ("C101", 'unknown cluster "wbe" (did you mean "web"?)', "web")]
