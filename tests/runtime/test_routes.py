"""Route tables: domain selection, first-match order with indexes, redirects."""
import pytest

from mosnx.runtime import routes as routes_module
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.pipeline import HttpFilter, Pipeline
from mosnx.runtime.routes import (DirectResponse, MirrorPolicy, RedirectAction, RetryPolicy, Route,
                                  RouteAction, RouteTable, VirtualHost)


def ctx(path="/", host="example.com", headers=()):
    h = Headers.from_pairs([("host", host), *headers])
    return StreamContext(RequestHead("GET", path, h))


def fwd(c):
    return RouteAction(cluster=c)


def test_vhost_exact_then_suffix_then_prefix_then_default():
    table = RouteTable([
        VirtualHost("exact", ["shop.example.com"], [Route("a", fwd("a"))]),
        VirtualHost("suffix", ["*.example.com"], [Route("b", fwd("b"))]),
        VirtualHost("longer-suffix", ["*.api.example.com"], [Route("c", fwd("c"))]),
        VirtualHost("prefix", ["internal.*"], [Route("d", fwd("d"))]),
        VirtualHost("default", ["*"], [Route("e", fwd("e"))]),
    ])
    assert table.vhost_for("shop.example.com").name == "exact"
    assert table.vhost_for("SHOP.example.com:8080").name == "exact"
    assert table.vhost_for("x.example.com").name == "suffix"
    assert table.vhost_for("v1.api.example.com").name == "longer-suffix"
    assert table.vhost_for("internal.corp").name == "prefix"
    assert table.vhost_for("other.org").name == "default"
    # "*.example.com" does not match the bare domain
    assert table.vhost_for("example.com").name == "default"


def test_first_match_wins_across_index_kinds():
    # more than 8 routes: the indexed path (exact dict + prefixes + guards) is used
    routes = [Route(f"filler{i}", fwd("x"), path_exact=f"/f{i}") for i in range(8)]
    routes += [
        Route("guarded", fwd("g"), match=lambda c: c.request.headers.get("x-canary") == "1"),
        Route("api-prefix", fwd("p"), path_prefix="/api"),
        Route("api-exact", fwd("e"), path_exact="/api/items"),
        Route("catch-all", fwd("z")),
    ]
    vh = VirtualHost("v", ["*"], routes)
    assert vh.match(ctx("/api/items")).name == "api-prefix"           # declared before the exact one
    assert vh.match(ctx("/api/items", headers=[("x-canary", "1")])).name == "guarded"
    assert vh.match(ctx("/f3")).name == "filler3"
    assert vh.match(ctx("/nothing")).name == "catch-all"
    assert vh.match(ctx("/api/items?x=1")).name == "api-prefix"        # the query is not part of the path


def test_linear_and_indexed_matching_agree():
    def build(n_filler):
        rs = [Route(f"f{i}", fwd("x"), path_exact=f"/only{i}") for i in range(n_filler)]
        rs += [Route("p", fwd("p"), path_prefix="/a"), Route("e", fwd("e"), path_exact="/a/b"),
               Route("last", fwd("l"))]
        return VirtualHost("v", ["*"], rs)
    small, big = build(0), build(9)
    for path in ("/a/b", "/a", "/b", "/only1", "/"):
        assert small.match(ctx(path)).name == big.match(ctx(path)).name or path == "/only1"


def test_no_route_is_none():
    vh = VirtualHost("v", ["*"], [Route("only", fwd("a"), path_exact="/x")])
    assert vh.match(ctx("/y")) is None


def test_redirect_location():
    r = RedirectAction(301, prefix_rewrite=("/docs/v1/", "/docs/v2/"), strip_query=True)
    assert r.location(ctx("/docs/v1/intro?a=1", host="h")) == "http://h/docs/v2/intro"
    r = RedirectAction(302, scheme="https")
    assert r.location(ctx("/p?q=1", host="h")) == "https://h/p?q=1"


def test_finalize_nests_pipelines_listener_vhost_route():
    order = []

    class F(HttpFilter):
        def __init__(self, n):
            self.n = n

        def on_request(self, c):
            order.append(("req", self.n))

        def on_response(self, c):
            order.append(("resp", self.n))

    route = Route("r", fwd("a"), pipeline=Pipeline.of([F("route")]))
    vh = VirtualHost("v", ["*"], [route], pipeline=Pipeline.of([F("vhost")]))
    RouteTable([vh]).finalize(Pipeline.of([F("listener")]))
    c = ctx()
    for s in route.chain.request:
        s(c)
    for s in route.chain.response:
        s(c)
    assert order == [("req", "listener"), ("req", "vhost"), ("req", "route"),
                     ("resp", "route"), ("resp", "vhost"), ("resp", "listener")]


def test_clusters_lists_every_reference():
    from mosnx.runtime.routes import MirrorPolicy
    table = RouteTable([VirtualHost("v", ["*"], [
        Route("a", RouteAction(weighted_clusters=(("v1", 90), ("v2", 10)), mirrors=(MirrorPolicy("shadow"),))),
        Route("b", DirectResponse(200, b"ok")),
    ])])
    assert table.clusters() == {"v1", "v2", "shadow"}


@pytest.mark.parametrize("merge_above", [64, 0], ids=["merged-at-build", "merged-at-match"])
def test_indexed_matching_agrees_with_a_plain_first_match_scan(monkeypatch, merge_above):
    """Also with the unconditional routes merged in at match time, as a vhost with
    many of them does (no entry copies them all)."""
    import random
    monkeypatch.setattr(routes_module, "_MERGE_ABOVE", merge_above)
    rnd = random.Random(7)
    paths = ["/", "/a", "/a/b", "/a/bc", "/b", "/b/c/d", "/c"]
    for _ in range(300):
        routes = []
        for i in range(rnd.randint(9, 20)):       # above the linear-scan size
            kind = rnd.choice(["exact", "prefix", "guard", "always"])
            p = rnd.choice(paths)
            want = rnd.choice(["0", "1"])
            guard = (lambda w: lambda c: c.request.headers.get("x-g") == w)(want)
            routes.append(Route(f"r{i}", fwd("x"),
                                match=guard if kind == "guard" or rnd.random() < 0.3 else None,
                                path_exact=p if kind == "exact" else None,
                                path_prefix=p if kind == "prefix" else None))
        vh = VirtualHost("v", ["*"], routes)
        for path in paths + ["/zz", "/a/b/c"]:
            for g in ("0", "1"):
                c = ctx(path, headers=[("x-g", g)])
                expect = next((r for r in routes
                               if (r.path_exact is None or c.url_path == r.path_exact)
                               and (r.path_prefix is None or c.url_path.startswith(r.path_prefix))
                               and (r.match is None or r.match(c))), None)
                assert vh.match(c) is expect


def test_finalize_marks_the_routes_that_only_forward():
    class OnlyResponse(HttpFilter):
        def on_response(self, c):
            return None

    plain = fwd("a")
    routes = [Route("plain", plain),
              Route("retry", RouteAction(cluster="a", retry=RetryPolicy())),
              Route("mirror", RouteAction(cluster="a", mirrors=(MirrorPolicy("b"),))),
              Route("rewrite", RouteAction(cluster="a", prefix_rewrite=("/a", "/b"))),
              Route("host", RouteAction(cluster="a", host_rewrite="h")),
              Route("steps", fwd("a"), pipeline=Pipeline.of([OnlyResponse()])),
              Route("direct", DirectResponse(200))]
    RouteTable([VirtualHost("v", ["*"], routes)]).finalize(Pipeline())
    assert [r.name for r in routes if r.plain is not None] == ["plain"]
    assert routes[0].plain is plain
    # a listener step, in any phase, reaches every route's chain
    again = Route("plain", fwd("a"))
    RouteTable([VirtualHost("v", ["*"], [again])]).finalize(Pipeline.of([OnlyResponse()]))
    assert again.plain is None
