"""Circuit breakers through a real mosnx, as Istio's circuit-breaking task reads them:
overflow answers 503 at once with a detail header, and Envoy's stat names count it."""
from __future__ import annotations

import threading

WAIT = 15.0


def held(upstream):
    """An upstream that holds every request until `release` is set."""
    release = threading.Event()

    def answer(conn, req):
        release.wait(WAIT)
        conn.respond(200, b"done")
    return upstream(on_request=answer), release


def in_background(proxy, results, key, **kw):
    def go():
        try:
            results[key] = proxy.request("GET", f"/{key}", timeout=WAIT, **kw)
        except Exception as e:  # noqa: BLE001  (the test asserts on it)
            results[key] = e
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_max_connections_and_pending_requests_overflow(upstream, mosnx):
    up, release = held(upstream)
    proxy = mosnx([up], cluster={"circuit_breakers": {"max_connections": 1, "max_pending_requests": 1}})
    results = {}
    try:
        t1 = in_background(proxy, results, "first")
        up.wait_requests(1)
        t2 = in_background(proxy, results, "second")
        proxy.wait_stat("cluster.web.upstream_rq_pending_total", 1)
        r = proxy.request("GET", "/third")
        assert r.status == 503, r
        assert r.header("x-mosnx-error") == "upstream_overflow"
        assert r.header("x-envoy-overloaded") == "true"
        assert proxy.stat("cluster.web.upstream_rq_pending_overflow") == 1
        assert proxy.stat("cluster.web.upstream_cx_overflow") >= 2
    finally:
        release.set()
    t1.join(WAIT)
    t2.join(WAIT)
    assert results["first"].status == 200 and results["second"].status == 200, results
    assert up.accepted == 1, "the queued request waited for the one connection"


def test_max_requests_overflow(upstream, mosnx):
    up, release = held(upstream)
    proxy = mosnx([up], cluster={"circuit_breakers": {"max_requests": 1}})
    results = {}
    try:
        t1 = in_background(proxy, results, "first")
        up.wait_requests(1)
        r = proxy.request("GET", "/second")
        assert r.status == 503 and r.header("x-mosnx-error") == "upstream_rq_overflow", r
        assert r.header("x-envoy-overloaded") == "true"
        assert proxy.stat("cluster.web.upstream_rq_pending_overflow") == 1
    finally:
        release.set()
    t1.join(WAIT)
    assert results["first"].status == 200
    # the breaker lets requests through again once the first one is done
    assert proxy.request("GET", "/third").status == 200


def test_max_retries_overflow_passes_the_upstream_answer_through(upstream, mosnx):
    up = upstream(on_request=lambda conn, req: conn.respond(503, b"busy"))
    proxy = mosnx([up], cluster={"circuit_breakers": {"max_retries": 0}},
                  route={"retry": {"retry_on": "5xx", "num_retries": 2}})
    r = proxy.request("GET", "/")
    assert r.status == 503 and r.body == b"busy"
    assert len(up.requests) == 1
    assert proxy.stat("cluster.web.upstream_rq_retry_overflow") == 1
    assert proxy.stat("cluster.web.upstream_rq_retry") == 0


def test_retries_in_flight_are_bounded_across_requests(upstream, mosnx):
    # each first attempt fails slowly enough that retries overlap; max_retries 1 lets
    # one retry be in flight, the concurrent others overflow
    gate = threading.Event()
    count = {"n": 0}
    lock = threading.Lock()

    def answer(conn, req):
        with lock:
            count["n"] += 1
            n = count["n"]
        if n <= 3:
            conn.respond(503, b"first")
        else:
            gate.wait(WAIT)              # the retry: held until every first attempt failed
            conn.respond(200, b"retried")
    up = upstream(on_request=answer)
    proxy = mosnx([up], cluster={"circuit_breakers": {"max_retries": 1}},
                  route={"retry": {"retry_on": "5xx", "num_retries": 1}})
    results = {}
    ts = [in_background(proxy, results, f"r{i}") for i in range(3)]
    try:
        proxy.wait_stat("cluster.web.upstream_rq_retry_overflow", 2)
    finally:
        gate.set()
    for t in ts:
        t.join(WAIT)
    statuses = sorted(r.status for r in results.values())
    assert statuses == [200, 503, 503], results
    assert proxy.stat("cluster.web.upstream_rq_retry") == 1


def test_an_endpoint_without_connections_gets_one_at_the_connection_limit(upstream, mosnx):
    # max_connections counts the whole cluster; an idle pooled connection to one endpoint
    # must not leave requests for the other waiting forever (Envoy opens one anyway)
    a = upstream(on_request=lambda conn, req: conn.respond(200, b"a"))
    b = upstream(on_request=lambda conn, req: conn.respond(200, b"b"))
    proxy = mosnx([a, b], route={"timeout": "3s"}, cluster={"circuit_breakers": {"max_connections": 1}})
    got = [proxy.request("GET", f"/{i}").body for i in range(4)]
    assert sorted(got) == [b"a", b"a", b"b", b"b"]
    assert a.accepted == 1 and b.accepted == 1, "each endpoint's one connection is reused"
    assert proxy.stat("cluster.web.upstream_cx_overflow") >= 1
