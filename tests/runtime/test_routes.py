"""Route tables: domain selection, first-match order with indexes, redirects, finalized
tables as new objects, and which routes are plain (may take the short path)."""
import pytest

from mosnx import plugins
from mosnx.runtime import build_snapshot, register_filter
from mosnx.runtime import routes as routes_module
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.pipeline import PHASES, HttpFilter, Pipeline
from mosnx.runtime.routes import (DirectResponse, MirrorPolicy, RedirectAction, Route,
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

    vh = VirtualHost("v", ["*"], [Route("r", fwd("a"), pipeline=Pipeline.of([F("route")]))],
                     pipeline=Pipeline.of([F("vhost")]))
    (route,) = RouteTable([vh]).finalize(Pipeline.of([F("listener")])).vhosts[0].routes
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


@pytest.mark.parametrize("scan_prefixes", [16, 0], ids=["prefixes-tested", "prefixes-by-length"])
@pytest.mark.parametrize("merge_above", [64, 0], ids=["merged-at-build", "merged-at-match"])
def test_indexed_matching_agrees_with_a_plain_first_match_scan(monkeypatch, merge_above, scan_prefixes):
    """Also with the unconditional routes merged in at match time, as a vhost with
    many of them does (no entry copies them all), and with the prefixes looked up by
    length, as a vhost with many of them does."""
    import random
    monkeypatch.setattr(routes_module, "_MERGE_ABOVE", merge_above)
    monkeypatch.setattr(routes_module, "_SCAN_PREFIXES", scan_prefixes)
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
        assert [r.name for r in vh.routes] == [r.name for r in routes]
        for path in paths + ["/zz", "/a/b/c"]:
            for g in ("0", "1"):
                c = ctx(path, headers=[("x-g", g)])
                expect = next((r for r in vh.routes
                               if (r.path_exact is None or c.url_path == r.path_exact)
                               and (r.path_prefix is None or c.url_path.startswith(r.path_prefix))
                               and (r.match is None or r.match(c))), None)
                assert vh.match(c) is expect


def test_thousands_of_prefixes_match_first_in_declared_order():
    routes = [Route(f"r{i}", fwd(f"c{i}"), path_prefix=f"/r{i}/") for i in range(3000)]
    routes[1500:1500] = [Route("deep", fwd("deep"), path_prefix="/r2000/deep/")]
    routes.append(Route("all", fwd("all"), path_prefix="/"))
    vh = VirtualHost("v", ["*"], routes)
    assert vh._by_len is not None
    assert vh.match(ctx("/r2999/x")).name == "r2999"
    assert vh.match(ctx("/r2000/deep/x")).name == "deep"      # declared before /r2000/
    assert vh.match(ctx("/r1000/deep/x")).name == "r1000"
    assert vh.match(ctx("/r30000/")).name == "all" and vh.match(ctx("/")).name == "all"


def test_finalize_returns_new_objects_and_leaves_the_declared_table_alone():
    class F(HttpFilter):
        def on_request(self, c):
            return None

    declared = RouteTable([VirtualHost("v", ["*"], [Route("a", fwd("a")), Route("b", fwd("b"))])])
    vh, (a, b) = declared.vhosts[0], declared.vhosts[0].routes
    listener = Pipeline.of([F()])
    final = declared.finalize(listener)
    assert final is not declared and final.vhosts[0] is not vh
    assert all(n is not o for n, o in zip(final.vhosts[0].routes, (a, b)))
    # the declaration is as it was: its own (empty) pipelines, nothing marked plain
    assert (vh.chain, a.chain, a.plain, b.plain) == (Pipeline(), Pipeline(), None, None)
    fa, fb = final.vhosts[0].routes
    assert fa.chain.request == listener.request and fa.plain is None
    assert (fa.name, fa.action, fa.index, fb.index) == ("a", a.action, 0, 1)
    assert final.only_vhost is final.vhosts[0]
    # a table without listener steps marks both; finalizing again starts from the declaration
    assert [r.plain for r in declared.finalize(Pipeline()).vhosts[0].routes] == [a.action, b.action]
    assert [r.plain for r in final.finalize(Pipeline()).vhosts[0].routes] == [a.action, b.action]


# ---------------------------------------------------------------------------------------
# Which routes take the short path (proxy.fastpath.express): `route.plain` is the action when
# the route only forwards and no step of any phase runs for it, else None. Built from
# real YAML and .mdsl through build_snapshot, as the proxy builds them.

def _only(phase: str) -> type:
    """A filter class with a no-op hook for `phase` and no other."""
    def hook(self, ctx, data=None, end_stream=None):
        return None
    return type(f"Only_{phase}", (HttpFilter,), {"name": f"only_{phase}", f"on_{phase}": hook})


for _phase in PHASES:
    register_filter(f"test_only_{_phase}", lambda name, cfg, bctx, cls=_only(_phase): cls())

RULES = '''
vhost shop domains "shop.test" {
  route forward when request.path == "/forward" { to web }
  route guarded when request.headers["x-canary"] == "1" { to web }
  route timed when request.path prefix "/timed" { to web timeout 2s }
  route split when request.path prefix "/split" { split { web: 90, api: 10 } }
  route retry when request.path prefix "/retry" { to web retry 2 }
  route mirror when request.path prefix "/mirror" { to web mirror api 10% }
  route rewrite_prefix when request.path prefix "/old" { to web rewrite prefix "/old" => "/new" }
  route rewrite_regex when request.path prefix "/re" { to web rewrite regex "^/re" => "/x" }
  route host_rewrite when request.path prefix "/host" { to web host_rewrite "internal" }
  route respond when request.path == "/ping" { respond 200 "pong" }
  route redirect when request.path == "/moved" { redirect 301 path "/forward" }
  route set_header when request.path prefix "/tag" { to web set request.headers["x-tag"] = "1" }
  route when_step when request.path prefix "/when" {
    to web
    when request.method == "POST" { set request.headers["x-post"] = "1" }
  }
  route fault when request.path prefix "/fault" { to web fault abort 503 1% }
  route limited when request.path prefix "/limited" { to web limit rate 100/s }
}
vhost edited domains "edited.test" {
  on response { set response.headers["x-edited"] = "1" }
  route edited_forward { to web }
}
route top_forward { to web }
'''

STEPPED_RULES = '''
on request { set request.headers["x-seen"] = "1" }
vhost quiet domains "quiet.test" { route quiet_forward { to web } }
route stepped_forward { to web }
'''

_PHASE_LISTENERS = "".join(f"""
  - name: only-{phase}
    address: 127.0.0.1:{18200 + i}
    route: {{cluster: web}}
    filters: [test_only_{phase}]""" for i, phase in enumerate(PHASES))

CONFIG = """
listeners:
  - name: y-cluster
    address: 127.0.0.1:18101
    route: {cluster: web}
  - name: y-timeouts
    address: 127.0.0.1:18102
    route: {cluster: web, timeout: 2s, idle_timeout: 30s, hash_key: 'request.headers["x-user"]'}
  - name: y-weighted
    address: 127.0.0.1:18103
    route: {weighted_clusters: {web: 90, api: 10}}
  - name: y-disabled-filter
    address: 127.0.0.1:18104
    route: {cluster: web}
    filters: [{fault: {name: chaos, disabled: true, abort: {http_status: 418}}}]
  - name: y-retry
    address: 127.0.0.1:18105
    route: {cluster: web, retry: {num_retries: 2}}
  - name: y-retry-zero
    address: 127.0.0.1:18106
    route: {cluster: web, retry: {num_retries: 0}}
  - name: y-mirror
    address: 127.0.0.1:18107
    route: {cluster: web, mirror: {cluster: api, percent: 5}}
  - name: y-prefix-rewrite
    address: 127.0.0.1:18108
    route: {cluster: web, prefix_rewrite: /v2/}
  - name: y-regex-rewrite
    address: 127.0.0.1:18109
    route: {cluster: web, regex_rewrite: {pattern: "^/a", substitution: /b}}
  - name: y-host-rewrite
    address: 127.0.0.1:18110
    route: {cluster: web, host_rewrite: internal}
  - name: y-route-fault
    address: 127.0.0.1:18111
    route: {cluster: web, fault: {abort: {http_status: 503, percentage: 1}}}
  - name: y-listener-filter
    address: 127.0.0.1:18112
    route: {cluster: web}
    filters: [{fault: {abort: {http_status: 503, percentage: 1}}}]
  - name: m-rules
    address: 127.0.0.1:18113
    rules: rules.mdsl
  - name: m-listener-step
    address: 127.0.0.1:18114
    rules: stepped.mdsl""" + _PHASE_LISTENERS + """
clusters:
  - {name: web, endpoints: ["127.0.0.1:9000"]}
  - {name: api, endpoints: ["127.0.0.1:9001"]}
"""

FORWARDS = "only forwards, and no step runs for it"
# (listener, vhost, route, plain?, why)
PLAIN_TABLE = [
    ("y-cluster", "default", "default", True, FORWARDS),
    ("y-timeouts", "default", "default", True,
     "timeouts and a hash key are read by the short path's shared code (timeout armed, idle timer, lb)"),
    ("y-weighted", "default", "default", True, "a weighted split is picked on the short path too"),
    ("y-disabled-filter", "default", "default", True,
     "a disabled filter runs only where a route names it, and this one names none"),
    ("y-retry", "default", "default", False, "a retry policy: the short path never replays"),
    ("y-retry-zero", "default", "default", False, "any retry policy, even of no retries, takes the full path"),
    ("y-mirror", "default", "default", False, "a mirror: the short path sends no shadow copy"),
    ("y-prefix-rewrite", "default", "default", False, "a path rewrite: the short path sends the head as decoded"),
    ("y-regex-rewrite", "default", "default", False, "a regex rewrite of the path"),
    ("y-host-rewrite", "default", "default", False, "a Host rewrite"),
    ("y-route-fault", "default", "default", False, "the route's fault policy is a request step"),
    ("y-listener-filter", "default", "default", False, "a listener filter's request step"),
    ("m-rules", "shop", "forward", True, FORWARDS),
    ("m-rules", "shop", "guarded", True, "a guard is evaluated by matching, before any step"),
    ("m-rules", "shop", "timed", True, "a timeout alone"),
    ("m-rules", "shop", "split", True, "a weighted split alone"),
    ("m-rules", "shop", "retry", False, "retry"),
    ("m-rules", "shop", "mirror", False, "mirror"),
    ("m-rules", "shop", "rewrite_prefix", False, "prefix rewrite"),
    ("m-rules", "shop", "rewrite_regex", False, "regex rewrite"),
    ("m-rules", "shop", "host_rewrite", False, "Host rewrite"),
    ("m-rules", "shop", "respond", False, "a direct response is a local reply, not a forward"),
    ("m-rules", "shop", "redirect", False, "a redirect is a local reply, not a forward"),
    ("m-rules", "shop", "set_header", False, "a header edit is a route step"),
    ("m-rules", "shop", "when_step", False, "a guarded edit is a route step even when it would not run"),
    ("m-rules", "shop", "fault", False, "a fault statement is a route step"),
    ("m-rules", "shop", "limited", False, "a rate limit is a route step"),
    ("m-rules", "edited", "edited_forward", False, "its vhost's `on response` step is in its chain"),
    ("m-rules", "default", "top_forward", True, "the other vhost's steps are not in its chain"),
    ("m-listener-step", "quiet", "quiet_forward", False, "the listener's `on request` step reaches every vhost"),
    ("m-listener-step", "default", "stepped_forward", False, "the listener's `on request` step"),
] + [(f"only-{phase}", "default", "default", False, f"a listener filter with a {phase} step and no other")
     for phase in PHASES]


@pytest.fixture(scope="module")
def plain_snapshot(tmp_path_factory):
    plugins.load()
    d = tmp_path_factory.mktemp("plain")
    (d / "rules.mdsl").write_text(RULES)
    (d / "stepped.mdsl").write_text(STEPPED_RULES)
    (d / "mosnx.yaml").write_text(CONFIG)
    return build_snapshot(str(d / "mosnx.yaml"))


@pytest.mark.parametrize("listener, vhost, route, plain, why", PLAIN_TABLE,
                         ids=[f"{row[0]}/{row[2]}" for row in PLAIN_TABLE])
def test_which_routes_are_plain(plain_snapshot, listener, vhost, route, plain, why):
    table = plain_snapshot.listeners[listener].routes
    (vh,) = [v for v in table.vhosts if v.name == vhost]
    (r,) = [x for x in vh.routes if x.name == route]
    if plain:
        assert r.plain is r.action and isinstance(r.action, RouteAction), why
        assert not r.chain, why
    else:
        assert r.plain is None, why


def test_the_plain_table_covers_every_route_built(plain_snapshot):
    built = {(name, vh.name, r.name) for name, lst in plain_snapshot.listeners.items()
             for vh in lst.routes.vhosts for r in vh.routes}
    assert built == {row[:3] for row in PLAIN_TABLE}
