"""`.mdsl` rules served by the real proxy: routing, rewrites, local replies, reload."""
import time



RULES = """
vhost shop domains "shop.example.com" {
  on request {
    when request.path prefix "/admin" { respond 403 "forbidden\\n" }
  }
  route health when request.path == "/healthz" { respond 200 "ok" header content-type = "text/plain" }
  route old-docs when request.path prefix "/docs/v1/" { redirect 301 prefix "/docs/v2/" strip_query }
  route beta when request.path segment_prefix "/api" and request.headers["x-canary"] == "1" {
    to v2
  }
  route api when request.path segment_prefix "/api" {
    rewrite prefix "/api" => ""
    set request.headers["x-env"] = "prod"
    remove request.headers["x-debug"]
    to v1
  }
  on response { set response.headers["x-shop"] = "1" }
}
"""


def served_by(upstream_v1, upstream_v2):
    return len(upstream_v1.requests), len(upstream_v2.requests)


def test_rules_route_rewrite_and_reply(tmp_path, upstream, mosnx):
    v1, v2 = upstream(), upstream()
    rules = tmp_path / "shop.mdsl"
    rules.write_text(RULES)
    m = mosnx(config={
        "listeners": [{"name": "ingress", "rules": str(rules)}],
        "clusters": [{"name": "v1", "endpoints": [v1.address]}, {"name": "v2", "endpoints": [v2.address]}],
    })
    host = [("Host", "shop.example.com")]
    r = m.request("GET", "/healthz", headers=host)
    assert (r.status, r.body, r.header("content-type")) == (200, b"ok", "text/plain")
    r = m.request("GET", "/docs/v1/intro?x=1", headers=host)
    assert r.status == 301 and r.header("location") == "http://shop.example.com/docs/v2/intro"
    r = m.request("GET", "/admin/users", headers=host)
    assert r.status == 403 and r.body == b"forbidden\n"
    assert served_by(v1, v2) == (0, 0)            # local replies never reach an upstream

    r = m.request("GET", "/api/items", headers=host + [("x-debug", "1")])
    assert r.status == 200 and r.header("x-shop") == "1"
    got = v1.requests[-1]
    assert got.target == "/items" and got.header("x-env") == "prod" and not got.has("x-debug")
    r = m.request("GET", "/api/items", headers=host + [("x-canary", "1")])
    assert r.status == 200 and len(v2.requests) == 1

    r = m.request("GET", "/api/items", headers=[("Host", "other.example.com")])
    assert r.status == 404 and r.header("x-mosnx-error") == "route_not_found"


def test_rule_edit_reloads_and_a_broken_edit_keeps_serving(tmp_path, upstream, mosnx):
    v1, v2 = upstream(), upstream()
    rules = tmp_path / "r.mdsl"
    rules.write_text('route all { to v1 }\n')
    m = mosnx(config={
        "listeners": [{"name": "ingress", "rules": str(rules)}],
        "clusters": [{"name": "v1", "endpoints": [v1.address]}, {"name": "v2", "endpoints": [v2.address]}],
    })
    assert m.request("GET", "/").status == 200 and len(v1.requests) == 1

    rules.write_text('route all { to v2 }\n')
    t0 = time.monotonic()

    def moved():
        m.request("GET", "/")
        return len(v2.requests) > 0
    m.wait_until(moved, 10, "the edited rule to serve")
    assert time.monotonic() - t0 < 10

    before = len(v2.requests)
    rules.write_text('route all { to v2 \n')          # unbalanced brace: fails to check
    m.wait_until(lambda: m.stat("server.supervisor_reload_failure") >= 1, 10, "the rejected reload")
    assert m.request("GET", "/").status == 200
    assert len(v2.requests) == before + 1             # still the last good version
    assert "r.mdsl:" in m.log()                       # the error names the file and position
