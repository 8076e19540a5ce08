"""dsl/explain.py: what a compiled snapshot does with one request, told without sockets.

The shop example is explained request by request (the route, why the earlier ones
did not match, each step's effect, the action); the explanation's verdict on every
route tried is held equal to the compiled guard's over generated corpora.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosnx import tooling
from mosnx.dsl.explain import Explainer, Reached, RequestError, UpstreamResponse, parse_request, render_text
from mosnx.runtime.snapshot import build_snapshot

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop" / "mosnx.yaml"
ENVOY = ROOT / "examples" / "envoy" / "envoy.yaml"
HOST = "http://shop.example.com"


@pytest.fixture(scope="module")
def shop() -> Explainer:
    return Explainer(build_snapshot(str(SHOP)), tooling.core())


def explain(ex: Explainer, line: str, headers=(), source=None, **kw):
    return ex.explain(parse_request(line, headers, source), **kw)


# ---- the shop, explained ----
def test_api_route_every_part(shop):
    ex = explain(shop, "GET https://shop.example.com/api/items?id=3", ["x-user: a", "x-debug: 1"], "10.1.2.3")
    assert (ex.listener, ex.vhost, ex.route, ex.action) == ("shop", "shop", "api", "forward")
    assert ex.route_where.endswith("rules/shop.mdsl:30:3")
    assert [t.route for t in ex.tried] == ["health", "old-docs", "items", "beta", "api"]
    why = {t.route: " ".join(t.why) for t in ex.tried}
    assert 'request.path == "/healthz" is false' in why["health"]
    assert "request.url_path is '/api/items'" in why["items"]
    assert 'request.headers["x-canary"] == "1" is false' in why["beta"]
    assert 'request.cookies["beta"] == "yes" is false' in why["beta"]
    assert ex.split == [("shop-v1", 0.9), ("shop-v2", 0.1)]
    assert ex.path == "/items?id=3"                      # the core's prefix rewrite
    assert ("x-env", "prod") in ex.request_headers
    assert "x-debug" not in dict(ex.request_headers)
    assert ex.timeout == 3.0 and ex.retry is not None and ex.retry["num_retries"] == 3
    assert ex.retry["retriable_status_codes"] == [409]
    assert ex.mirrors == [("shadow-sink", 5.0)]
    assert ex.filters == ["authz", "authz"]              # its request and response hooks
    assert ex.rate_limit_keys == [""]
    effects = {s.what: s.effect for s in ex.steps}
    assert effects['set request.headers["x-env"] = "prod"'] == ["request header x-env: prod"]
    assert effects['remove request.headers["x-debug"]'] == ["request header x-debug removed"]
    assert not ex.mismatch
    # no response given: the response phase is shown, not run
    resp = [s for s in ex.steps if s.phase == "response"]
    assert resp and all(s.conditional for s in resp)
    assert ex.response_headers is None


def test_response_phase_runs_with_a_response(shop):
    ex = explain(shop, f"POST {HOST}/api/cart", response=UpstreamResponse(502, [("server", "x")]), pick="shop-v2")
    assert ex.cluster == "shop-v2"
    assert dict(ex.response_headers or []) == {"x-upstream-failed": "shop-v2"}


def test_local_replies_and_redirects(shop):
    ex = explain(shop, f"GET {HOST}/admin/users", source="127.0.0.1")
    assert (ex.route, ex.status, ex.action) == (None, 403, "respond")
    assert ex.tried == []                                # answered before routing
    ex = explain(shop, f"GET {HOST}/admin/users", source="10.9.9.9")
    assert ex.route == "default" and ex.upstream_host == "legacy.internal"
    ex = explain(shop, f"GET {HOST}/docs/v1/intro?x=1")
    assert (ex.route, ex.status, ex.location) == ("old-docs", 301, "http://shop.example.com/docs/v2/intro")
    ex = explain(shop, f"GET {HOST}/healthz")
    assert (ex.status, dict(ex.response_headers or [])) == (200, {"content-type": "text/plain"})


def test_no_vhost_and_normalised_path(shop):
    ex = explain(shop, "GET http://other.example/x")
    assert ex.vhost is None and ex.status == 404 and ex.action == "reject"
    ex = explain(shop, f"GET {HOST}/x/../%61dmin/users", source="127.0.0.1")
    assert ex.status == 403                              # normalised to /admin/users first
    with pytest.raises(RequestError, match="400"):
        explain(shop, f"GET {HOST}/x/..;/admin")


def test_listener_choice():
    ex = Explainer(build_snapshot(str(SHOP)), tooling.core())
    with pytest.raises(RequestError, match="no HTTP listener"):
        explain(ex, f"GET {HOST}/", listener="nope")


def test_envoy_route_table_without_ast():
    ex = Explainer(build_snapshot(str(ENVOY)), tooling.core())
    got = explain(ex, "GET http://api.example.com/api/users", ["x-canary: false"], response=UpstreamResponse(200))
    assert got.route == "api" and got.path == "/v1/users"
    why = {t.route: " ".join(t.why) for t in got.tried}
    assert why["health"] == "path '/api/users' is not '/health'"
    assert "other conditions" in why["canary"]
    assert ("x-route", "api") in got.request_headers     # the route config's header edits ran
    assert ("x-edge", "mosnx") in (got.response_headers or [])
    assert not got.mismatch
    got = explain(ex, "GET http://api.example.com/api/users", ["x-canary: true"])
    assert got.route == "canary" and got.cluster == "api-v2"


# ---- the explanation agrees with the compiled guards ----
PATHS = ["/healthz", "/docs/v1/a", "/docs/v2/a", "/v1/items/42", "/v2/items/x", "/api", "/api/cart", "/apix",
         "/admin", "/admin/u", "/administrator", "/", "/v1/items/42?debug=1", "/api?q=1"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), method=st.sampled_from(["GET", "POST", "DELETE", "HEAD"]),
       canary=st.sampled_from([None, "1", "0"]), cookie=st.sampled_from([None, "beta=yes", "beta=no"]),
       source=st.sampled_from(["127.0.0.1", "10.1.2.3", "192.168.7.7", "8.8.8.8"]),
       host=st.sampled_from(["shop.example.com", "a.shop.example.com", "shop.example.com:8080"]))
def test_corpus_explanation_equals_core(shop, path, method, canary, cookie, source, host):
    hs = [f"x-canary: {canary}"] if canary else []
    hs += [f"cookie: {cookie}"] if cookie else []
    req = parse_request(f"{method} http://{host}{path}", hs, source)
    ex = shop.explain(req, reached=Reached())
    assert not ex.mismatch
    lst = shop.snapshot.listeners["shop"]
    ctx = shop.context(lst, req)
    vh = lst.routes.vhost_of(ctx.request)
    core = vh.match(ctx) if vh is not None else None
    if ex.status != 403 or ex.route is not None:
        assert ex.route == (core.name if core is not None else None)


def test_envoy_corpus_has_no_mismatch():
    ex = Explainer(build_snapshot(str(ENVOY)), tooling.core())
    for host in ["api.example.com", "www.example.com"]:
        for path in ["/health", "/api/x", "/flaky", "/old/a", "/search?debug=1", "/search", "/users/12", "/"]:
            for method in ["GET", "POST"]:
                for hs in ([], ["x-canary: true"]):
                    got = ex.explain(parse_request(f"{method} http://{host}{path}", hs))
                    assert not got.mismatch


def test_copy_of_example_explains_from_its_own_folder(tmp_path):
    shutil.copytree(SHOP.parent, tmp_path / "shop", ignore=shutil.ignore_patterns("*.log"))
    shutil.copytree(ROOT / "examples" / "wasm" / "filters", tmp_path / "wasm" / "filters")
    ex = Explainer(build_snapshot(str(tmp_path / "shop" / "mosnx.yaml")), tooling.core())
    got = explain(ex, f"GET {HOST}/api/cart", ["x-canary: 1"])
    assert got.route == "beta" and got.cluster == "shop-v2" and got.path == "/api/cart"


def test_hash_key_of_a_hashing_cluster(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("""listeners:
  - name: l
    address: 127.0.0.1:1
    route: {cluster: c, hash_key: 'request.headers["x-user"]'}
clusters:
  - {name: c, endpoints: ["127.0.0.1:2", "127.0.0.1:3"], lb: ring_hash}
  - {name: d, endpoints: ["127.0.0.1:2"], hash_key: 'request.headers["x-user"]'}
""")
    ex = Explainer(build_snapshot(str(cfg)), tooling.core())
    got = explain(ex, "GET http://any/x", ["x-user: alice"])
    assert got.cluster == "c" and got.hash_key == ('request.headers["x-user"]', "alice")
    assert "hash key  request.headers[\"x-user\"] = 'alice'" in render_text(got)


def test_http2_request_takes_its_vhost_from_the_authority(shop):
    got = shop.explain(parse_request(f"GET {HOST}/v1/items/42", [], None, http2=True))
    assert got.route == "items" and "host" not in dict(got.request_headers)
    assert "(HTTP/2," in render_text(got)
