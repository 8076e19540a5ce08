"""dsl/expr.py: checked expressions compile to closures over a StreamContext; each
operator answers as the language says, `and`/`or` short-circuit, and consts are
compiled once per scope."""
from __future__ import annotations

import pytest

from mosnx.dsl import ast as A
from mosnx.dsl.expr import ExprCompiler, text
from mosnx.dsl.parse import parse
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers


def compiled(cond: str, consts: str = ""):
    f = parse(f'{consts}\nroute a when {cond} {{ to web }}', "r.mdsl")
    assert isinstance(f, A.File), f
    scope = {i.name: (i, "r.mdsl") for i in f.items if isinstance(i, A.Const)}
    route = next(i for i in f.items if isinstance(i, A.RouteDecl))
    return ExprCompiler(scope, {"r.mdsl": scope}).pred(route.cond)


def ctx(path="/api/v1/items", method="GET", source="10.1.2.3", **headers):
    h = Headers.from_pairs([("host", "shop.example.com")] + [(k.replace("_", "-"), v) for k, v in headers.items()])
    return StreamContext(RequestHead(method, path, h), source=(source, 4000), destination=("127.0.0.1", 80))


@pytest.mark.parametrize("cond,yes,no", [
    ('request.path == "/api/v1/items"', ctx(), ctx("/other")),
    ('request.url_path prefix "/api/"', ctx(), ctx("/apix")),
    ('request.url_path segment_prefix "/api"', ctx(), ctx("/apix/v1")),
    ('request.url_path suffix "/items"', ctx(), ctx("/api/v1/item")),
    ('request.url_path contains "/v1/"', ctx(), ctx("/api/v2/items")),
    ('request.url_path ~ "/api/v[0-9]+/.*"', ctx(), ctx("/api/vx/")),
    ('request.url_path ~ "/api/v[0-9]+/"', ctx("/api/v2/"), ctx()),    # the whole path matches, as Envoy's
    ('request.method in {"GET", "HEAD"}', ctx(), ctx(method="POST")),
    ('source.address in {10.0.0.0/8, 192.168.1.1}', ctx(), ctx(source="172.16.0.1")),
    ('lower(request.headers["x-user"]) == "ann"', ctx(x_user="ANN"), ctx(x_user="bob")),
    ('exists(request.headers["x-user"])', ctx(x_user="a"), ctx()),
    ('not request.method == "GET"', ctx(method="PUT"), ctx()),
    ('request.method == "GET" and request.url_path prefix "/api"', ctx(), ctx("/x")),
    ('request.method == "PUT" or request.url_path prefix "/api"', ctx(), ctx("/x")),
])
def test_operators(cond, yes, no):
    p = compiled(cond)
    assert p(yes) is True and p(no) is False


def test_and_or_short_circuit():
    reads = []

    class Probe(StreamContext):
        __slots__ = ()

        @property
        def url_path(self):
            reads.append(1)
            return "/api"
    c = Probe(RequestHead("GET", "/api", Headers.from_pairs([("host", "h")])))
    assert compiled('request.method == "POST" and request.url_path prefix "/api"')(c) is False
    assert compiled('request.method == "GET" or request.url_path prefix "/api"')(c) is True
    assert reads == []


def test_consts_are_folded_into_the_closure():
    p = compiled("request.method in methods", 'const methods = {"GET", "HEAD"}')
    assert p(ctx()) and not p(ctx(method="DELETE"))
    p = compiled("source.address in office", "const office = {10.0.0.0/8}")
    assert p(ctx()) and not p(ctx(source="11.0.0.1"))


def test_values_render_as_text():
    assert text(3) == "3" and text("a") == "a" and text(True) == "true"
