"""Dynamic membership through a real mosnx: endpoints change by reload without dropping
in-flight requests, and strict_dns clusters resolve their names."""
from __future__ import annotations

import threading
import time

WAIT = 15.0


def endpoints(proxy, cluster: str = "web") -> set[str]:
    status, _, body = proxy.admin("/clusters")
    assert status == 200
    out = set()
    for line in body.decode().splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and parts[2] == "health_flags":
            out.add(parts[1])
    return out


def wait_for(pred, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_reload_swaps_endpoints_without_dropping_in_flight_requests(upstream, mosnx):
    gate = threading.Event()

    def held(conn, req):
        if req.target == "/slow":
            gate.wait(WAIT)
        conn.respond(200, b"old:" + req.target.encode())
    old = upstream(on_request=held)
    new = upstream(on_request=lambda conn, req: conn.respond(200, b"new"))
    proxy = mosnx([old])
    results = {}
    threads = []
    for i in range(3):
        def go(i=i):
            results[i] = proxy.request("GET", "/slow", timeout=WAIT)
        t = threading.Thread(target=go, daemon=True)
        t.start()
        threads.append(t)
    old.wait_requests(3)
    proxy.write_config(proxy.config_with([new]))
    status, body = proxy.reload()
    assert status == 200 and body.get("ok"), body
    assert endpoints(proxy) == {new.address}
    assert proxy.request("GET", "/x").body == b"new"
    gate.set()
    for t in threads:
        t.join(WAIT)
    assert [results[i].status for i in range(3)] == [200, 200, 200]
    assert all(results[i].body == b"old:/slow" for i in range(3))
    # the old endpoint's pool closes its connections once they are released
    wait_for(lambda: proxy.stat("cluster.web.upstream_cx_active") <= 1, "the old connections to close")


def test_reload_adds_an_endpoint_and_keeps_the_others_connections(upstream, mosnx):
    a = upstream(on_request=lambda conn, req: conn.respond(200, b"a"))
    b = upstream(on_request=lambda conn, req: conn.respond(200, b"b"))
    proxy = mosnx([a])
    with proxy.connect() as c:
        for _ in range(3):
            assert c.request("GET", "/").body == b"a"
    proxy.write_config(proxy.config_with([a, b]))
    status, body = proxy.reload()
    assert status == 200 and body.get("ok"), body
    seen = {proxy.request("GET", "/").body for _ in range(10)}
    assert seen == {b"a", b"b"}
    assert a.accepted == 1, "the endpoint that stayed kept its pooled connection"


def test_strict_dns_resolves_names(upstream, mosnx):
    up = upstream(on_request=lambda conn, req: conn.respond(200, b"dns"))
    proxy = mosnx([f"localhost:{up.port}"], cluster={"type": "strict_dns", "dns_refresh_rate": "200ms"})
    assert proxy.request("GET", "/").body == b"dns"
    assert endpoints(proxy) == {f"127.0.0.1:{up.port}"}, "v4 preferred: localhost is 127.0.0.1"
    assert proxy.wait_stat("cluster.web.update_success", 3) >= 3, "resolved again every refresh"


def test_strict_dns_name_that_does_not_resolve_serves_503(upstream, mosnx):
    proxy = mosnx(["no-such-host.invalid:80"], cluster={"type": "strict_dns", "dns_refresh_rate": "1s"})
    r = proxy.request("GET", "/")
    assert r.status == 503 and r.header("x-mosnx-error") == "no_healthy_upstream"
    assert proxy.stat("cluster.web.update_failure") >= 1
