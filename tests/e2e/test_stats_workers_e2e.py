"""/stats adds up the same with one worker as with two: the same traffic gives the same
counters, per-proxy gauges (cluster membership) are reported once, not once per
worker, mirrored copies are counted on the shadow cluster, and every local reply,
those the connection writes itself included, is counted under its cause."""
from __future__ import annotations

from .conftest import HOST
from .h2kit import H2Client

RULES = """
vhost app domains "*" {
  route mirrored when request.path == "/mirrored" { to web  mirror shadow }
  route api when request.path prefix "/api" { to web }
}
"""

REQUESTS = 24          # plain ones, each on its own connection: enough that both workers serve
MALFORMED = b"GET /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"

# Counters that count upstream connections a worker pools: each worker opens its own,
# so with two workers there are more of them for the same requests (Envoy's too).
POOLED = ("cluster.web.upstream_cx_total",)
PER_PROXY = ("cluster.web.membership_total", "cluster.web.membership_healthy",
             "cluster.shadow.membership_total", "cluster.shadow.membership_healthy")


def start(tmp_path, upstream, mosnx, workers: int):
    live = [upstream(), upstream()]
    shadow = upstream()
    rules = tmp_path / f"app{workers}.mdsl"
    rules.write_text(RULES)
    proxy = mosnx(config={
        "listeners": [{"name": "ingress", "rules": str(rules), "limits": {"request_headers": "4KiB"}}],
        "clusters": [{"name": "web", "endpoints": [u.address for u in live]},
                     {"name": "shadow", "endpoints": [shadow.address]}],
    }, workers=workers)
    return proxy, live, shadow


def traffic(proxy, shadow) -> dict[str, str]:
    """The same requests, each on a fresh connection; the cause of each refusal."""
    for i in range(REQUESTS):
        assert proxy.request("GET", f"/api/{i}").status == 200
    assert proxy.request("GET", "/mirrored").status == 200
    shadow.wait_requests(1)
    causes = {}
    r = proxy.request("GET", "/nowhere")
    assert r.status == 404
    causes["404"] = r.header("x-mosnx-error")
    with proxy.connect() as c:
        c.send(MALFORMED)
        r = c.read_response()
    assert r.status == 400
    causes["400"] = r.header("x-mosnx-error")
    r = proxy.request("GET", "/api/big", headers=[("x-big", "v" * 5000)])
    assert r.status == 431
    causes["431"] = r.header("x-mosnx-error")
    # the copy's answer is counted when it arrives, after the real request's
    proxy.wait_stat("cluster.shadow.upstream_rq_2xx", 1)
    return causes


def test_one_worker_and_two_report_the_same_stats(tmp_path, upstream, mosnx):
    results = []
    for workers in (1, 2):
        proxy, live, shadow = start(tmp_path, upstream, mosnx, workers)
        causes = traffic(proxy, shadow)
        # a listener's stats by its address name this run's port: one name for both runs
        by_address = f"listener.{HOST}_{proxy.port}."
        results.append(({k.replace(by_address, "listener.<address>."): v for k, v in proxy.stats().items()},
                        causes))
        if workers == 2:
            # each worker that served pools its own connections to the two endpoints;
            # one worker alone reuses its two
            assert sum(u.accepted for u in live) >= 3
        proxy.stop()
    (one, causes1), (two, causes2) = results
    assert causes1 == causes2 == {"404": "route_not_found", "400": causes1["400"],
                                  "431": "request_headers_too_large"}
    assert causes1["400"]

    # per-proxy gauges: two endpoints are two with any number of workers
    for name in PER_PROXY:
        assert one[name] == two[name], name
    assert two["cluster.web.membership_total"] == 2 and two["cluster.shadow.membership_total"] == 1

    # every counter is equal but those of pooled upstream connections; the gauges
    # left (*_active) are what is in flight at the moment, pooled connections included
    # and those of the fast path's memos and batched writes, which each process keeps
    # for itself (a second process meets each repeated head once more before it
    # remembers it; how writes fall into loop passes is timing)
    names = {n for n in (set(one) | set(two)) - set(POOLED) - set(PER_PROXY)
             if not n.startswith(("fastpath.memo.", "fastpath.write_batch."))}
    diff = {n: (one.get(n), two.get(n)) for n in names if not n.endswith("_active") and one.get(n) != two.get(n)}
    assert diff == {}
    assert len(names) > 50

    total = REQUESTS + 1 + 3
    for s in (one, two):
        assert s["http.ingress.downstream_rq_total"] == total
        assert s["http.ingress.downstream_rq_2xx"] == REQUESTS + 1
        assert s["http.ingress.downstream_rq_4xx"] == 3
        for cause in causes1.values():
            assert s[f"http.ingress.local_reply.{cause}"] == 1, cause
        # the copy, on the shadow cluster; the real request on its own
        assert s["cluster.shadow.upstream_rq_total"] == 1
        assert s["cluster.shadow.upstream_rq_2xx"] == 1
        assert s["cluster.shadow.upstream_cx_total"] == 1
        assert s["cluster.web.upstream_rq_total"] == REQUESTS + 1
        assert s["server.mirror_requests"] == 1


def test_http2_refusals_count_as_http1_ones(upstream, mosnx):
    proxy = mosnx(upstream(), listener={"limits": {"request_headers": "4KiB"},
                                        "path_normalization": {"escaped_slashes": "reject"}})
    big = [(f"x-h{i}", "v" * 200) for i in range(40)]
    r = proxy.request("GET", "/big", headers=big)
    assert (r.status, r.header("x-mosnx-error")) == (431, "request_headers_too_large")
    r = proxy.request("GET", "/a%2Fb")
    assert (r.status, r.header("x-mosnx-error")) == (400, "escaped_slash_in_path")
    h1 = proxy.stats()
    with H2Client(proxy.port) as c:
        c.wait(lambda: c.remote_settings_seen, what="server SETTINGS")
        r = c.request("GET", "/big", headers=big)
        assert (r.status, r.header("x-mosnx-error")) == (431, "request_headers_too_large")
        r = c.request("GET", "/a%2Fb")
        assert (r.status, r.header("x-mosnx-error")) == (400, "escaped_slash_in_path")
    h2 = proxy.stats()
    for name, each in (("downstream_rq_total", 2), ("downstream_rq_4xx", 2),
                       ("local_reply.request_headers_too_large", 1), ("local_reply.escaped_slash_in_path", 1)):
        name = "http.ingress." + name
        assert (h1[name], h2[name]) == (each, 2 * each), name
