"""examples/bookinfo: Istio's traffic-management tasks (request routing, traffic shifting,
fault injection, timeouts, retries, circuit breaking, mirroring), each served by the
example's own rules and config against its own services."""
from __future__ import annotations

import collections
import importlib.util
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"
WAIT = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_services():
    spec = importlib.util.spec_from_file_location("bookinfo_services", EXAMPLE / "services.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bookinfo(module_mosnx):
    """The example's services on free ports, and mosnx serving the example's config."""
    services_mod = _load_services()
    ports = {name: _free_port() for name in services_mod.SERVICES}
    services = services_mod.start(ports)
    config = yaml.safe_load((EXAMPLE / "mosnx.yaml").read_text())
    del config["admin"]
    lst = config["listeners"][0]
    lst.pop("address")
    lst["rules"] = str(EXAMPLE / lst["rules"])
    for c in config["clusters"]:
        c["endpoints"] = [f"127.0.0.1:{ports[c['name']]}"]
    proxy = module_mosnx(config=config)
    yield proxy, services
    services_mod.stop(services)


def get(proxy, host: str, path: str = "/", headers=(), timeout: float = WAIT):
    r = proxy.request("GET", path, headers=[("Host", host), *headers], timeout=timeout)
    return r, (json.loads(r.body) if r.header("content-type") == "application/json" else None)


def test_request_routing_by_end_user(bookinfo):
    proxy, _ = bookinfo
    for _ in range(3):
        assert get(proxy, "reviews", "/reviews/1", [("end-user", "jason")])[1]["version"] == "v2"
        assert get(proxy, "reviews", "/reviews/1")[1]["version"] == "v1"


def test_traffic_shifting_fifty_fifty(bookinfo):
    proxy, _ = bookinfo
    versions = collections.Counter()
    with proxy.connect() as c:
        for i in range(200):
            r = c.request("GET", f"/reviews/{i}", headers=[("Host", "reviews-shift")])
            versions[json.loads(r.body)["version"]] += 1
    assert set(versions) == {"v1", "v3"}
    assert 60 <= versions["v3"] <= 140, versions


def test_fault_injection_delay_and_abort(bookinfo):
    proxy, services = bookinfo
    before = len(services["ratings"].requests)
    r, _ = get(proxy, "ratings", "/ratings/0", [("end-user", "tester")])
    assert r.status == 500 and r.header("x-mosnx-error") == "fault_abort"
    assert len(services["ratings"].requests) == before, "an aborted request never reaches ratings"
    t0 = time.monotonic()
    r, _ = get(proxy, "ratings", "/ratings/0", [("end-user", "jason")])
    assert r.status == 200 and time.monotonic() - t0 >= 1.0
    assert get(proxy, "ratings", "/ratings/0")[0].status == 200


def test_request_timeout(bookinfo):
    proxy, _ = bookinfo
    r, _ = get(proxy, "reviews-timeout", "/reviews/0?delay=2000")
    assert r.status == 504 and r.header("x-mosnx-error") == "upstream_response_timeout"
    assert get(proxy, "reviews-timeout", "/reviews/0?delay=10")[0].status == 200


def test_retries_hide_a_flaky_service(bookinfo):
    proxy, _ = bookinfo
    with proxy.connect() as c:
        rs = [c.request("GET", "/ratings/0?fail_every=2", headers=[("Host", "ratings-retry")]) for _ in range(10)]
    assert [r.status for r in rs] == [200] * 10
    assert any(r.header("x-envoy-attempt-count") == "2" for r in rs)


def test_circuit_breaking_overflows_with_503(bookinfo):
    proxy, _ = bookinfo
    results = []
    lock = threading.Lock()

    def client():
        r, _ = get(proxy, "httpbin", "/get?delay=500")
        with lock:
            results.append(r)
    ts = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WAIT)
    statuses = collections.Counter(r.status for r in results)
    assert statuses[200] >= 1 and statuses[503] >= 1, statuses
    assert all(r.header("x-mosnx-error") == "upstream_overflow" for r in results if r.status == 503)
    assert proxy.stat("cluster.httpbin.upstream_rq_pending_overflow") >= 1


def test_mirroring_copies_to_v2(bookinfo):
    proxy, services = bookinfo
    _, body = get(proxy, "reviews-mirror", "/reviews/mirrored")
    assert body["version"] == "v1"
    v2 = services["reviews-v2"]
    deadline = time.monotonic() + WAIT
    while not any(p == "/reviews/mirrored" for _, p, _ in v2.requests):
        assert time.monotonic() < deadline, "no mirrored copy reached reviews v2"
        time.sleep(0.05)
    copy = next(h for _, p, h in v2.requests if p == "/reviews/mirrored")
    assert copy["host"] == "reviews-mirror-shadow"
