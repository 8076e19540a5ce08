"""Every kind of bad literal, in every place a literal can stand, is a diagnostic
with its code at the literal's own line and column: never an internal error.

The literal kinds are the grammar's (grammar/mdsl.lark): IP/CIDR, duration,
percentage, rate, int (a status), and the string that a `~` or `rewrite regex`
compiles as a regex. There is no size literal in the language. Checked through
the same entry point `mosnx check` uses.
"""
from __future__ import annotations

import pytest

from mosnx.__main__ import check_paths

# kind -> (code, bad values); each value lexes as its kind, so the checker must judge it
BAD = {
    "ip": ("T103", ["10.0.0.0/33", "300.1.1.1", "1.2.3.4/99", "::1/129", "1::2::3", "999.1.1.1/8"]),
    "duration": ("T103", ["5x", "3d", "10sec"]),
    "percent": ("T103", ["150%", "100.5%"]),
    "rate": ("T103", ["0/s", "5/y", "10/sec"]),
    "status": ("T104", ["99", "600", "99999"]),
    "regex": ("T102", ['"["', '"(a"', '"a{2,1}"', '"*"']),
}

# Where a literal of a value kind can stand; "@" is the bad literal.
VALUE_PLACES = {
    "const": "const c = @\nroute r when source.address == c { to web }",
    "const in a set": "const c = {@}\nroute r when source.address in c { to web }",
    "const used under and-not": "const c = {@}\nroute r when request.path == \"/\" and not source.address in c { to web }",
    "right operand": "route r when source.address == @ { to web }",
    "left operand": "route r when @ == source.address { to web }",
    "inside not": "route r when not source.address == @ { to web }",
    "inside not not": "route r when not not (source.address == @) { to web }",
    "inside and": "route r when request.path == \"/\" and source.address == @ { to web }",
    "inside or": "route r when source.address == @ or request.path == \"/\" { to web }",
    "inside and not": "route r when request.path == \"/\" and not source.address in {@} { to web }",
    "set literal": "route r when source.address in {10.0.0.0/8, @} { to web }",
    "function argument": "route r when lower(@) == \"x\" { to web }",
    "when in on request": "on request { when not (source.address == @) { respond 403 } }",
    "set value": "on request { set request.headers[\"x\"] = @ }",
    "emit field": "on log { emit access { a: @ } }",
    "limit key": "on request { limit rate 1/s key @ }",
}
ACTION_PLACES = {
    "duration": ["route r { to web timeout @ }", "route r { to web retry 2 on 5xx per_try @ }",
                 "route r { fault delay @ to web }"],
    "percent": ["route r { to web mirror web @ }", "route r { fault delay 1s @ to web }",
                "route r { fault abort 503 @ to web }"],
    "rate": ["on request { limit rate @ }", "route r { limit rate @ burst 2 to web }"],
    "status": ["route r { respond @ }", "route r { respond @ \"x\" header a = \"b\" }",
               "route r { fault abort @ to web }", "on request { limit rate 1/s else @ }",
               # a retry status has no span of its own: the finding is at its `status {…}`
               ("route r { to web retry 2 on status {@} }", "status"), "route r { redirect @ path \"/x\" }"],
    "regex": ["route r when request.path ~ @ { to web }", "route r when not request.path ~ @ { to web }",
              "route r when request.method == \"GET\" and request.path ~ @ { to web }",
              "const c = @\nroute r when request.url_path ~ c { to web }",
              "route r { rewrite regex @ => \"/\" to web }"],
}


def cases():
    for kind, (code, values) in BAD.items():
        places = list(ACTION_PLACES.get(kind, []))
        if kind in ("ip", "duration", "percent"):
            places += VALUE_PLACES.values()
        for place in places:
            place, anchor = place if isinstance(place, tuple) else (place, "@")
            for v in values:
                yield pytest.param(place, v, anchor, code, id=f"{kind}:{v}:{place[:40]}")


@pytest.mark.parametrize("place, bad, anchor, code", list(cases()))
def test_bad_literal_is_a_positioned_diagnostic(rules, place, bad, anchor, code):
    text = "clusters web\n" + place
    offset = text.index(anchor)            # where the finding belongs: the literal itself
    text = text.replace("@", bad)
    path = rules.write(text)
    diags = check_paths([path])            # raises only on a bug, naming the file
    line = text.count("\n", 0, offset) + 1
    col = offset - text.rfind("\n", 0, offset)
    assert all(d.span is not None and d.span.path == path and d.span.line >= 1 and d.span.column >= 1
               for d in diags), [str(d) for d in diags]
    found = [f"{d.span.line}:{d.span.column}: {d.code}" for d in diags]
    assert f"{line}:{col}: {code}" in found, (text, [str(d) for d in diags])


def test_every_kind_and_place_is_covered():
    kinds = {c.id.split(":")[0] for c in cases()}
    assert kinds == set(BAD)
    assert sum(1 for _ in cases()) > 200
