"""Active health checks and outlier ejection through a real mosnx: endpoints leave
rotation and come back, /clusters shows why, and the stats use Envoy's names."""
from __future__ import annotations

import collections
import os
import sys
import threading
import time

import pytest

WAIT = 15.0


def health_flags(proxy, cluster: str = "web") -> dict[str, str]:
    """address -> Envoy health flags from /clusters (text), e.g. "/failed_active_hc"."""
    status, _, body = proxy.admin("/clusters")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and parts[2] == "health_flags":
            out[parts[1]] = parts[3]
    return out


def wait_for(pred, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def named(upstream, name: bytes, health_status: dict | None = None, status: dict | None = None):
    """An upstream answering its name; /health answers health_status["code"]; other paths status["code"]."""
    def answer(conn, req):
        if req.target == "/health":
            conn.respond(health_status["code"] if health_status else 200, b"")
        else:
            conn.respond(status["code"] if status else 200, name)
    return upstream(on_request=answer)


def bodies(proxy, n: int) -> collections.Counter:
    out = collections.Counter()
    with proxy.connect() as c:
        for i in range(n):
            r = c.request("GET", f"/{i}")
            out[(r.status, r.body.decode())] += 1
    return out


# ------------------------------------------------------------------ active health checks
def test_http_health_check_takes_an_endpoint_out_and_brings_it_back(upstream, mosnx):
    a_health = {"code": 200}
    a = named(upstream, b"a", a_health)
    b = named(upstream, b"b")
    proxy = mosnx([a, b], cluster={"health_check": {
        "http": {"path": "/health", "expected": [200]}, "interval": "100ms", "timeout": "1s",
        "unhealthy_threshold": 2, "healthy_threshold": 1}})
    wait_for(lambda: any(m.target == "/health" for m in a.requests), "a first check")
    assert health_flags(proxy) == {a.address: "healthy", b.address: "healthy"}
    a_health["code"] = 503
    wait_for(lambda: health_flags(proxy)[a.address] == "/failed_active_hc", "a to fail its checks")
    assert bodies(proxy, 20) == {(200, "b"): 20}
    a_health["code"] = 200
    wait_for(lambda: health_flags(proxy)[a.address] == "healthy", "a to pass again")
    assert set(bodies(proxy, 20)) == {(200, "a"), (200, "b")}
    assert proxy.stat("cluster.web.health_check.failure") >= 2
    assert proxy.stat("cluster.web.health_check.success") >= 2
    checks = [m for m in a.requests if m.target == "/health"]
    assert checks[0].header("host") == "web"


def test_tcp_health_check_and_no_healthy_upstream(upstream, mosnx, free_port):
    dead = f"127.0.0.1:{free_port()}"
    proxy = mosnx([dead], cluster={"health_check": {"tcp": {}, "interval": "100ms", "timeout": "500ms"},
                                   "common_lb_config": {"healthy_panic_threshold": 0}})
    wait_for(lambda: health_flags(proxy).get(dead) == "/failed_active_hc", "the refused endpoint to fail")
    r = proxy.request("GET", "/")
    assert r.status == 503 and r.header("x-mosnx-error") == "no_healthy_upstream"


def test_panic_mode_routes_to_all_when_too_few_are_healthy(upstream, mosnx, free_port):
    dead = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    good = named(upstream, b"good")
    proxy = mosnx(dead + [good], cluster={"health_check": {"tcp": {}, "interval": "100ms", "timeout": "500ms"}})
    wait_for(lambda: [health_flags(proxy).get(d) for d in dead] == ["/failed_active_hc"] * 2,
             "both refused endpoints to fail")
    # one healthy of three is below Envoy's default 50%: every endpoint takes traffic again
    got = bodies(proxy, 9)
    assert got[(200, "good")] == 3 and sum(got.values()) == 9, got
    assert proxy.stat("cluster.web.lb_healthy_panic") == 9


def test_reloads_do_not_multiply_health_checkers(upstream, mosnx):
    a = named(upstream, b"a")
    proxy = mosnx([a], cluster={"health_check": {"http": {"path": "/health"}, "interval": "200ms"}})
    wait_for(lambda: any(m.target == "/health" for m in a.requests), "a first check")
    for i in range(5):
        cfg = proxy.config_with([a], cluster={"connect_timeout": f"{i + 1}s",
                                              "health_check": {"http": {"path": "/health"}, "interval": "200ms"}})
        proxy.write_config(cfg)
        status, body = proxy.reload()
        assert status == 200 and body.get("ok"), body
    before = sum(1 for m in a.requests if m.target == "/health")
    time.sleep(1.0)
    after = sum(1 for m in a.requests if m.target == "/health")
    # one checker at 5 checks a second; six would send about thirty
    assert after - before <= 10, after - before


def test_grpc_health_check_keeps_traffic_on_the_serving_endpoint(mosnx):
    grpc = pytest.importorskip("grpc")
    sys.path.insert(0, os.path.dirname(__file__))
    from grpchealth import ECHO, NOT_SERVING, HealthServer
    good = HealthServer(name="good")
    bad = HealthServer({"": NOT_SERVING}, name="bad")
    try:
        proxy = mosnx([good.address, bad.address], cluster={"protocol": "http2", "health_check": {
            "grpc": {"service_name": ""}, "interval": "100ms", "timeout": "1s"}})
        wait_for(lambda: health_flags(proxy).get(bad.address) == "/failed_active_hc", "bad to fail its checks")
        assert health_flags(proxy)[good.address] == "healthy"
        with grpc.insecure_channel(f"127.0.0.1:{proxy.port}") as ch:
            echo = ch.unary_unary(f"/{ECHO}/Echo")
            got = collections.Counter(echo(b"", timeout=10) for _ in range(20))
        assert got == {b"good": 20}
        assert proxy.stat("cluster.web.health_check.success") >= 1
        assert proxy.stat("cluster.web.health_check.failure") >= 1
        assert proxy.stat("cluster.web.health_check.network_failure") == 0
    finally:
        good.stop()
        bad.stop()


# ------------------------------------------------------------------ outlier detection
def test_consecutive_5xx_ejects_and_the_endpoint_returns(upstream, mosnx):
    bad_status = {"code": 500}
    bad = named(upstream, b"bad", status=bad_status)
    g1 = named(upstream, b"g1")
    g2 = named(upstream, b"g2")
    proxy = mosnx([bad, g1, g2], cluster={"outlier_detection": {
        "consecutive_5xx": 3, "interval": "200ms", "base_ejection_time": "1s", "max_ejection_percent": 50}})
    first = bodies(proxy, 30)
    assert first[(500, "bad")] == 3, first
    assert health_flags(proxy)[bad.address] == "/failed_outlier_check"
    assert proxy.stat("cluster.web.outlier_detection.ejections_enforced_consecutive_5xx") == 1
    assert proxy.stat("cluster.web.outlier_detection.ejections_active") == 1
    assert proxy.stat("cluster.web.outlier_detection.ejections_total") == 1
    bad_status["code"] = 200
    wait_for(lambda: health_flags(proxy)[bad.address] == "healthy", "the ejection to end")
    assert (200, "bad") in bodies(proxy, 30)
    assert proxy.stat("cluster.web.outlier_detection.ejections_active") == 0


def test_connect_failures_eject_and_max_ejection_percent_holds(upstream, mosnx, free_port):
    dead1 = f"127.0.0.1:{free_port()}"
    dead2 = f"127.0.0.1:{free_port()}"
    good = named(upstream, b"good")
    proxy = mosnx([dead1, dead2, good], cluster={"outlier_detection": {
        "consecutive_5xx": 2, "interval": "1s", "base_ejection_time": "30s", "max_ejection_percent": 34}})
    got = bodies(proxy, 30)
    flags = health_flags(proxy)
    assert sorted(flags.values()) == ["/failed_outlier_check", "healthy", "healthy"], flags
    assert proxy.stat("cluster.web.outlier_detection.ejections_overflow") >= 1
    assert got[(503, "upstream unavailable\n")] >= 2


def test_success_rate_ejection(upstream, mosnx):
    calls = collections.Counter()
    lock = threading.Lock()

    def flaky(conn, req):
        with lock:
            calls["n"] += 1
            n = calls["n"]
        conn.respond(503 if n % 2 else 200, b"flaky")

    ups = [upstream(on_request=flaky)] + [named(upstream, f"g{i}".encode()) for i in range(4)]
    proxy = mosnx(ups, cluster={"outlier_detection": {
        "consecutive_5xx": 1000, "interval": "500ms", "base_ejection_time": "30s",
        "max_ejection_percent": 100, "success_rate_minimum_hosts": 5,
        "success_rate_request_volume": 10}})
    # the sweep only judges endpoints with enough traffic in one interval: send it briskly
    wait_for(lambda: bodies(proxy, 60) and health_flags(proxy)[ups[0].address] == "/failed_outlier_check",
             "the flaky endpoint to be ejected by success rate", timeout=30)
    assert proxy.stat("cluster.web.outlier_detection.ejections_enforced_success_rate") >= 1
    assert all(f == "healthy" for a, f in health_flags(proxy).items() if a != ups[0].address)


def test_every_worker_checks_health(upstream, mosnx):
    a_health = {"code": 200}
    a = named(upstream, b"a", a_health)
    b = named(upstream, b"b")
    proxy = mosnx([a, b], workers=2, cluster={"health_check": {
        "http": {"path": "/health"}, "interval": "100ms", "unhealthy_threshold": 1}})
    a_health["code"] = 500
    wait_for(lambda: health_flags(proxy)[a.address] == "/failed_active_hc", "a to fail its checks")
    # /clusters shows the worst any worker saw; each worker learns it from its own checks,
    # so soon whichever worker takes a connection has the endpoint out of its rotation
    wait_for(lambda: all(proxy.request("GET", "/").body == b"b" for _ in range(12)),
             "every worker to leave a out")
    assert proxy.stat("cluster.web.health_check.failure") >= 2
