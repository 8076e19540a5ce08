"""Traffic-governance filters configured from YAML `filters:`, through a real mosnx:
fault injection, local rate limiting, adaptive concurrency and the success-rate breaker."""
from __future__ import annotations

import threading
import time

WAIT = 15.0


def with_filters(*filters):
    return {"filters": list(filters)}


# ------------------------------------------------------------------ fault injection
def test_fault_abort_by_percentage(upstream, mosnx):
    up = upstream()
    proxy = mosnx([up], listener=with_filters({"fault": {"abort": {"http_status": 503, "percentage": 100}}}))
    r = proxy.request("GET", "/")
    assert r.status == 503 and r.header("x-mosnx-error") == "fault_abort"
    assert up.requests == []
    assert proxy.stat("fault.aborts_injected") == 1


def test_fault_abort_sampled(upstream, mosnx):
    up = upstream()
    proxy = mosnx([up], listener=with_filters({"fault": {"abort": {"http_status": 500, "percentage": 50}}}))
    with proxy.connect() as c:
        statuses = [c.request("GET", f"/{i}").status for i in range(100)]
    aborted = statuses.count(500)
    assert 25 <= aborted <= 75, aborted
    assert statuses.count(200) == 100 - aborted == len(up.requests)


def test_header_controlled_faults(upstream, mosnx):
    up = upstream()
    proxy = mosnx([up], listener=with_filters({"fault": {"delay": {"header_delay": {}},
                                                         "abort": {"header_abort": {}}}}))
    assert proxy.request("GET", "/").status == 200, "no header: no fault"
    r = proxy.request("GET", "/", headers=[("Host", "t"), ("x-envoy-fault-abort-request", "418")])
    assert r.status == 418
    t0 = time.monotonic()
    r = proxy.request("GET", "/", headers=[("Host", "t"), ("x-envoy-fault-delay-request", "300")])
    assert r.status == 200 and time.monotonic() - t0 >= 0.3
    assert proxy.stat("fault.delays_injected") == 1


def test_fault_delay_meets_the_route_timeout(upstream, mosnx):
    # Istio's fault-injection task: a delay longer than the caller's timeout
    up = upstream()
    proxy = mosnx([up], listener=with_filters({"fault": {"delay": {"fixed_delay": "200ms", "percentage": 100}}}))
    t0 = time.monotonic()
    assert proxy.request("GET", "/").status == 200
    assert time.monotonic() - t0 >= 0.2


# ------------------------------------------------------------------ rate limiting
def test_token_bucket_rejects_over_the_burst(upstream, mosnx):
    up = upstream()
    proxy = mosnx([up], listener=with_filters({"rate_limit": {
        "token_bucket": {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "60s"}}}))
    with proxy.connect() as c:
        statuses = [c.request("GET", f"/{i}").status for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert proxy.stat("rate_limit.rate_limited") == 2


def test_token_bucket_keyed_by_header(upstream, mosnx):
    up = upstream()
    proxy = mosnx([up], listener=with_filters({"rate_limit": {
        "key": 'request.headers["x-api-key"]',
        "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "60s"}}}))
    with proxy.connect() as c:
        got = [c.request("GET", "/", headers=[("Host", "t"), ("x-api-key", k)]).status for k in "aabb"]
    assert got == [200, 429, 200, 429]


def test_leaky_bucket_queues_then_rejects(upstream, mosnx):
    up = upstream()
    proxy = mosnx([up], listener=with_filters({"rate_limit": {
        "algorithm": "leaky_bucket",
        "token_bucket": {"max_tokens": 3, "tokens_per_fill": 5, "fill_interval": "1s"}}}))
    results = {}

    def go(i):
        results[i] = proxy.request("GET", f"/{i}", timeout=WAIT).status
    ts = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(5)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WAIT)
    statuses = sorted(results.values())
    # a queue of three at 5/s: three pass (spaced 200ms apart), the rest find it full
    assert statuses.count(200) >= 3 and statuses.count(429) >= 1, statuses
    assert proxy.stat("rate_limit.delayed") >= 1


# ------------------------------------------------------------------ adaptive concurrency
def test_adaptive_concurrency_blocks_over_the_limit(upstream, mosnx):
    gate = threading.Event()

    def held(conn, req):
        gate.wait(WAIT)
        conn.respond(200, b"ok")
    up = upstream(on_request=held)
    proxy = mosnx([up], listener=with_filters({"adaptive_concurrency": {"gradient_controller_config": {
        "min_rtt_calc_params": {"min_concurrency": 2, "request_count": 10}}}}))
    results = {}

    def go(i):
        results[i] = proxy.request("GET", f"/{i}", timeout=WAIT)
    ts = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(2)]
    for t in ts:
        t.start()
    try:
        up.wait_requests(2)
        r = proxy.request("GET", "/third")
        assert r.status == 503 and r.header("x-mosnx-error") == "reached_concurrency_limit"
    finally:
        gate.set()
    for t in ts:
        t.join(WAIT)
    assert [results[i].status for i in range(2)] == [200, 200]
    assert proxy.stat("adaptive_concurrency.gradient_controller.rq_blocked") == 1


# ------------------------------------------------------------------ success-rate breaker
def test_success_rate_breaker_opens_and_recovers(upstream, mosnx):
    state = {"status": 500}
    up = upstream(on_request=lambda conn, req: conn.respond(state["status"], b"x"))
    proxy = mosnx([up], listener=with_filters({"success_rate_breaker": {
        "success_rate_threshold": 50, "min_request_amount": 4, "window": "10s",
        "break_duration": "500ms", "half_open_requests": 1}}))
    with proxy.connect() as c:
        first = [c.request("GET", f"/{i}") for i in range(6)]
    assert [r.status for r in first[:4]] == [500] * 4
    assert [r.header("x-mosnx-error") for r in first[4:]] == ["circuit_open", "circuit_open"]
    assert len(up.requests) == 4, "an open breaker sends nothing upstream"
    state["status"] = 200
    time.sleep(0.6)
    with proxy.connect() as c:
        assert [c.request("GET", "/").status for _ in range(5)] == [200] * 5
    assert proxy.stat("success_rate_breaker.opened") == 1
    assert proxy.stat("success_rate_breaker.closed") == 1


def test_bad_filter_settings_are_config_errors(tmp_path):
    import pytest
    import yaml

    import mosnx.runtime.filters as builtins   # importing registers the built-in filters
    from mosnx.runtime.diagnostics import ConfigError
    from mosnx.runtime.snapshot import build_snapshot
    cfg = {"listeners": [{"name": "l", "address": "127.0.0.1:1", "route": {"cluster": "web"},
                          "filters": [{"success_rate_breaker": {"cluster": "nope"}},
                                      {"adaptive_concurrency": {"gradient_controller_config": {"x": 1}}}]}],
           "clusters": [{"name": "web", "endpoints": ["127.0.0.1:2"]}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert builtins.adaptive and builtins.breaker
    with pytest.raises(ConfigError) as e:
        build_snapshot(str(path))
    text = str(e.value)
    assert 'unknown cluster "nope"' in text and "unknown option" in text, text


# ------------------------------------------------------------------ policies on the route
def test_fault_and_rate_limit_on_the_default_route(upstream, mosnx):
    up = upstream()
    proxy = mosnx([up], route={"fault": {"abort": {"http_status": 418, "percentage": 100}}})
    assert proxy.request("GET", "/").status == 418
    proxy2 = mosnx([up], route={"rate_limit": {"token_bucket": {"max_tokens": 1, "tokens_per_fill": 1,
                                                                 "fill_interval": "60s"}}})
    with proxy2.connect() as c:
        assert [c.request("GET", "/").status for _ in range(3)] == [200, 429, 429]


def test_the_documented_cluster_example_serves(upstream, mosnx):
    ups = [upstream() for _ in range(3)]
    proxy = mosnx(None, cluster={
        "endpoints": [ups[0].address, ups[1].address, {"address": ups[2].address, "weight": 2}],
        "lb": "least_request",
        "hash_key": 'request.headers["x-user"]',
        "health_check": {"http": {"path": "/health", "expected": [200]}, "interval": "2s", "timeout": "1s",
                         "unhealthy_threshold": 2, "healthy_threshold": 1},
        "outlier_detection": {"consecutive_5xx": 3, "consecutive_gateway_failure": 3, "interval": "1s",
                              "base_ejection_time": "30s", "max_ejection_percent": 50},
        "circuit_breakers": {"max_connections": 1024, "max_pending_requests": 1024, "max_requests": 1024,
                             "max_retries": 3}},
        route={"timeout": "3s", "retry": {"retry_on": ["5xx", "reset", "connect-failure"], "num_retries": 2,
                                          "per_try_timeout": "500ms"}})
    with proxy.connect() as c:
        assert all(c.request("GET", f"/{i}").status == 200 for i in range(8))


def test_system_guard_sheds_over_max_concurrency(upstream, mosnx):
    gate = threading.Event()

    def held(conn, req):
        gate.wait(WAIT)
        conn.respond(200, b"ok")
    up = upstream(on_request=held)
    proxy = mosnx([up], listener=with_filters({"system_guard": {"max_concurrency": 1, "max_load": 1000}}))
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("first", proxy.request("GET", "/", timeout=WAIT)),
                         daemon=True)
    t.start()
    try:
        up.wait_requests(1)
        r = proxy.request("GET", "/second")
        assert r.status == 503 and r.header("x-mosnx-error") == "system_overload"
    finally:
        gate.set()
    t.join(WAIT)
    assert results["first"].status == 200
    assert proxy.stat("system_guard.rejected_concurrency") == 1
