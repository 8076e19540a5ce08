"""The admin API over real sockets: every endpoint, its status, content type and body,
and who may call it (Host, Origin, token)."""
from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time

import httpx
import pytest
import uvloop

from mosnx.proxy import admin, admin_format
from mosnx.proxy.admin import start_admin
from mosnx.proxy.admin_access import Access, Refusal
from mosnx.runtime.stat_tags import StatNaming
from mosnx.runtime.stats import Store, merge

HIST = "cluster.web.upstream_rq_time"


def worker_dumps() -> list[dict]:
    """Two workers' stores, merged as the supervisor does."""
    a, b = Store(), Store()
    a.inc("cluster.web.upstream_rq_total", 3)
    b.inc("cluster.web.upstream_rq_total", 2)
    a.inc("cluster.api.upstream_rq_total", 2)
    a.counter("cluster.web.upstream_cx_total")          # created, never bumped
    b.inc("http.ingress.downstream_rq_total", 7)
    a.inc("listener.main.downstream_cx_total", 3)
    b.inc("listener.main.http.ingress.downstream_rq_2xx", 4)
    a.inc("wasm.authz.denied", 1)
    a.gauge("server.live").set(1)
    b.gauge("cluster.web.upstream_cx_active").set(0)
    for v in (0.3, 3):
        a.histogram(HIST).record(v)
    for v in (7, 7):
        b.histogram(HIST).record(v)
    a.histogram("cluster.api.upstream_rq_time")         # no samples
    return [a.dump(), b.dump()]


CLUSTERS = {
    "web": {
        "lb": "round_robin",
        "circuit_breakers": {"max_connections": 1024},
        "endpoints": [
            {"address": "127.0.0.1:9000", "health": "healthy", "weight": 1,
             "cx_active": 0, "rq_active": 0, "rq_total": 5, "rq_error": 0},
            {"address": "127.0.0.1:9001", "health": "unhealthy", "weight": 2,
             "cx_active": 1, "rq_active": 0, "rq_total": 3, "rq_error": 3},
        ],
    },
}


class FakeBackend:
    def __init__(self) -> None:
        self.is_ready = True
        self.state = "LIVE"
        self.reload_result: tuple[bool, dict] = (True, {"version": 4})
        self.reloads = 0
        self.fail_stats = False
        self.naming = StatNaming()

    async def stats(self) -> dict:
        if self.fail_stats:
            raise RuntimeError("worker 2 did not answer")
        return merge(worker_dumps())

    async def clusters(self) -> dict:
        return CLUSTERS

    def stat_naming(self) -> StatNaming:
        return self.naming

    async def config_dump(self) -> dict:
        return {"version": 3, "listeners": [{"name": "main", "port": 8080}]}

    def server_info(self) -> dict:
        return {"version": "0.1.0", "state": self.state, "uptime_s": 12.5, "workers": 2,
                "config_path": "/etc/mosnx.yaml", "snapshot_version": 3}

    async def reload(self) -> tuple[bool, dict]:
        self.reloads += 1
        return self.reload_result

    def ready(self) -> bool:
        return self.is_ready


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def port(backend):
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start_admin("127.0.0.1", 0, backend), loop).result(5)
    yield server.sockets[0].getsockname()[1]
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def client(port):
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
        yield c


def exchange(port: int, raw: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- endpoints --------------------------------------------------------------------

def test_home_lists_every_endpoint(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=UTF-8"
    assert r.text.startswith("admin commands are:\n")
    for path in ("/ready", "/server_info", "/config_dump", "/clusters", "/stats",
                 "/stats/prometheus", "/reload"):
        assert f" {path}: " in r.text
    assert "  POST /reload: " in r.text


def test_ready(client, backend):
    r = client.get("/ready")
    assert (r.status_code, r.text) == (200, "LIVE\n")
    backend.is_ready, backend.state = False, "PRE_INITIALIZING"
    r = client.get("/ready")
    assert (r.status_code, r.text) == (503, "PRE_INITIALIZING\n")
    backend.state = "DRAINING"
    r = client.get("/ready")
    assert (r.status_code, r.text) == (503, "DRAINING\n")


def test_server_info_and_config_dump_are_json(client, backend):
    r = client.get("/server_info")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == backend.server_info()
    r = client.get("/config_dump")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"version": 3, "listeners": [{"name": "main", "port": 8080}]}
    assert '\n  "version": 3' in r.text        # pretty-printed


def test_clusters_text_is_envoys_layout(client):
    r = client.get("/clusters")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=UTF-8"
    host = "web::127.0.0.1:9000::"
    sick = "web::127.0.0.1:9001::"
    assert r.text.splitlines() == [
        "web::default_priority::max_connections::1024",
        "web::lb::round_robin",
        host + "cx_active::0", host + "rq_active::0", host + "rq_error::0", host + "rq_total::5",
        host + "hostname::", host + "health_flags::healthy", host + "weight::1",
        host + "region::", host + "zone::", host + "sub_zone::", host + "canary::false",
        host + "priority::0", host + "success_rate::-1", host + "local_origin_success_rate::-1",
        sick + "cx_active::1", sick + "rq_active::0", sick + "rq_error::3", sick + "rq_total::3",
        sick + "hostname::", sick + "health_flags::/failed_active_hc", sick + "weight::2",
        sick + "region::", sick + "zone::", sick + "sub_zone::", sick + "canary::false",
        sick + "priority::0", sick + "success_rate::-1", sick + "local_origin_success_rate::-1",
    ]


def test_clusters_json_is_envoys_shape(client):
    r = client.get("/clusters", params={"format": "json"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    [web] = r.json()["cluster_statuses"]
    assert web["name"] == "web"
    healthy, sick = web["host_statuses"]
    assert healthy["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": 9000}}
    assert healthy["health_status"] == {"eds_health_status": "HEALTHY"}
    assert {"name": "rq_total", "value": 5, "type": "COUNTER"} in healthy["stats"]
    assert {"name": "cx_active", "value": 0, "type": "GAUGE"} in healthy["stats"]
    assert sick["health_status"] == {"eds_health_status": "HEALTHY", "failed_active_health_check": True}
    assert sick["weight"] == 2


RQ_TIME = ("cluster.web.upstream_rq_time: P0(nan,0) P25(nan,0.5) P50(nan,5) P75(nan,7.5) P90(nan,9) "
           "P95(nan,9.5) P99(nan,9.9) P99.5(nan,9.95) P99.9(nan,9.99) P100(nan,10)")


def test_stats_text_sorted_with_histograms_last(client):
    r = client.get("/stats")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=UTF-8"
    assert r.text.splitlines() == [
        "cluster.api.upstream_rq_total: 2",
        "cluster.web.upstream_cx_active: 0",
        "cluster.web.upstream_cx_total: 0",
        "cluster.web.upstream_rq_total: 5",
        "http.ingress.downstream_rq_total: 7",
        "listener.main.downstream_cx_total: 3",
        "listener.main.http.ingress.downstream_rq_2xx: 4",
        "server.live: 1",
        "wasm.authz.denied: 1",
        "cluster.api.upstream_rq_time: No recorded values",
        RQ_TIME,
    ]


def test_stats_filter_and_usedonly(client):
    r = client.get("/stats", params={"filter": r"^cluster\.web\."})
    assert r.text.splitlines() == [
        "cluster.web.upstream_cx_active: 0",
        "cluster.web.upstream_cx_total: 0",
        "cluster.web.upstream_rq_total: 5",
        RQ_TIME,
    ]
    r = client.get("/stats?filter=cluster&usedonly")
    assert r.text.splitlines() == [
        "cluster.api.upstream_rq_total: 2",
        "cluster.web.upstream_rq_total: 5",
        RQ_TIME,
    ]
    r = client.get("/stats", params={"filter": "upstream_rq_(total"})
    assert r.status_code == 400
    assert r.text.startswith("invalid regex in filter:")


def test_stats_json_is_envoys_shape(client):
    r = client.get("/stats", params={"format": "json", "filter": "web|denied"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    stats = r.json()["stats"]
    assert stats[:4] == [
        {"name": "cluster.web.upstream_cx_active", "value": 0},
        {"name": "cluster.web.upstream_cx_total", "value": 0},
        {"name": "cluster.web.upstream_rq_total", "value": 5},
        {"name": "wasm.authz.denied", "value": 1},
    ]
    hist = stats[4]["histograms"]
    assert hist["supported_quantiles"] == [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]
    [rq_time] = hist["computed_quantiles"]
    assert rq_time["name"] == HIST
    assert rq_time["values"][2] == {"interval": None, "cumulative": 5}
    assert rq_time["values"][-1] == {"interval": None, "cumulative": 10}
    assert client.get("/stats", params={"format": "xml"}).status_code == 400


def test_prometheus_exposition(client):
    r = client.get("/stats/prometheus")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=UTF-8"
    lines = r.text.splitlines()
    family = lines.index("# TYPE mosnx_cluster_upstream_rq_total counter")
    assert lines[family + 1:family + 3] == [
        'mosnx_cluster_upstream_rq_total{cluster_name="api"} 2',
        'mosnx_cluster_upstream_rq_total{cluster_name="web"} 5',
    ]
    assert lines.count("# TYPE mosnx_cluster_upstream_rq_total counter") == 1
    for line in ('mosnx_http_downstream_rq_total{http_conn_manager_prefix="ingress"} 7',
                 'mosnx_listener_downstream_cx_total{listener_name="main"} 3',
                 'mosnx_listener_http_downstream_rq_2xx'
                 '{listener_name="main",http_conn_manager_prefix="ingress"} 4',
                 'mosnx_wasm_denied{plugin_name="authz"} 1',
                 "# TYPE mosnx_server_live gauge",
                 "mosnx_server_live 1",
                 "# TYPE mosnx_cluster_upstream_rq_time histogram"):
        assert line in lines
    web = [ln for ln in lines if ln.startswith("mosnx_cluster_upstream_rq_time") and '"web"' in ln]
    assert web[:5] == [
        'mosnx_cluster_upstream_rq_time_bucket{cluster_name="web",le="0.5"} 1',
        'mosnx_cluster_upstream_rq_time_bucket{cluster_name="web",le="1"} 1',
        'mosnx_cluster_upstream_rq_time_bucket{cluster_name="web",le="5"} 2',
        'mosnx_cluster_upstream_rq_time_bucket{cluster_name="web",le="10"} 4',
        'mosnx_cluster_upstream_rq_time_bucket{cluster_name="web",le="25"} 4',
    ]
    assert web[-4:] == [
        'mosnx_cluster_upstream_rq_time_bucket{cluster_name="web",le="3600000"} 4',
        'mosnx_cluster_upstream_rq_time_bucket{cluster_name="web",le="+Inf"} 4',
        'mosnx_cluster_upstream_rq_time_sum{cluster_name="web"} 17.3',
        'mosnx_cluster_upstream_rq_time_count{cluster_name="web"} 4',
    ]
    # Families come before their series: the TYPE line precedes the first sample.
    assert lines.index("# TYPE mosnx_cluster_upstream_rq_time histogram") < lines.index(web[0])


def test_prometheus_filter_and_stats_alias(client):
    r = client.get("/stats/prometheus", params={"filter": "wasm"})
    assert r.text == '# TYPE mosnx_wasm_denied counter\nmosnx_wasm_denied{plugin_name="authz"} 1\n'
    alias = client.get("/stats", params={"format": "prometheus", "filter": "wasm"})
    assert (alias.headers["content-type"], alias.text) == (r.headers["content-type"], r.text)


def test_prometheus_names_are_sanitised_and_labels_escaped():
    dump = {"counters": {'cluster.a"b\\c.upstream-rq.total': 1, "server.9lives": 2},
            "gauges": {}, "histograms": {}}
    assert admin_format.prometheus(dump).splitlines() == [
        "# TYPE mosnx_cluster_upstream_rq_total counter",
        'mosnx_cluster_upstream_rq_total{cluster_name="a\\"b\\\\c"} 1',
        "# TYPE mosnx_server_9lives counter",
        "mosnx_server_9lives 2",
    ]


def test_reload(client, backend):
    r = client.post("/reload")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"ok": True, "version": 4}
    backend.reload_result = (False, {"errors": ["mosnx.yaml:3:5: C002 unknown cluster \"reviewz\""]})
    r = client.post("/reload")
    assert r.status_code == 400
    assert r.json() == {"ok": False, "errors": ["mosnx.yaml:3:5: C002 unknown cluster \"reviewz\""]}
    assert backend.reloads == 2


# --- errors and the connection ----------------------------------------------------

def test_unknown_path_is_404_with_the_endpoint_list(client):
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.text.startswith("invalid path. admin commands are:\n")
    assert "/stats/prometheus" in r.text


def test_wrong_method_is_405(client, backend):
    r = client.get("/reload")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
    assert backend.reloads == 0
    r = client.post("/stats")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")


def test_head_has_headers_and_no_body(client):
    full = client.get("/stats")
    r = client.head("/stats")
    assert r.status_code == 200
    assert r.headers["content-length"] == full.headers["content-length"]
    assert r.content == b""


def test_backend_failure_is_500_and_the_connection_lives_on(client, backend):
    backend.fail_stats = True
    r = client.get("/stats")
    assert r.status_code == 500
    assert r.text == "error: RuntimeError: worker 2 did not answer\n"
    backend.fail_stats = False
    assert client.get("/ready").status_code == 200   # same pooled connection


def test_pipelined_requests_are_answered_in_order(port):
    raw = exchange(port, b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                         b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                         b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 ") == 3
    first, second, third = raw.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK") and first.endswith(b"\r\n\r\nLIVE\n")
    assert second.startswith(b"404 Not Found") and b"connection: close" not in second
    assert third.startswith(b"200 OK") and b"connection: close\r\n" in third


def test_http10_closes_after_the_response(port):
    raw = exchange(port, b"GET /ready HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in raw and raw.endswith(b"LIVE\n")


def test_malformed_request_is_400_and_closes(port, client):
    raw = exchange(port, b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert raw.split(b"HTTP/1.1 ")[-1].startswith(b"400 Bad Request")
    assert raw.endswith(b"malformed request\n")
    assert client.get("/ready").status_code == 200   # the server is unharmed


def test_oversized_head_is_431(port):
    raw = exchange(port, b"GET /ready HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_config_dump_survives_values_json_cannot_encode(client, backend):
    async def config_dump() -> dict:
        return {"version": 5, "sources": {"/etc/mosnx.yaml"}}
    backend.config_dump = config_dump
    r = client.get("/config_dump")
    assert r.status_code == 200
    assert json.loads(r.text) == {"version": 5, "sources": ["/etc/mosnx.yaml"]}


# --- the stats filter: RE2, bounded --------------------------------------------------

class ManyNames(FakeBackend):
    """Stat names that make a backtracking engine try 2^60 ways for `(a+)+$`."""

    async def stats(self) -> dict:
        s = Store()
        for i in range(200):
            s.inc(f"cluster.{'a' * 60}.upstream_rq_{i}", 1)
        s.inc("server.aaa", 1)
        return s.dump()


def test_backtracking_filter_is_answered(port, client, backend):
    backend.__class__ = ManyNames
    r = client.get("/stats", params={"filter": "(a+)+$"})
    assert r.status_code == 200
    assert r.text == "server.aaa: 1\n"
    r = client.get("/stats/prometheus", params={"filter": "(a+)+$"})
    assert r.text == "# TYPE mosnx_server_aaa counter\nmosnx_server_aaa 1\n"


@pytest.mark.parametrize("pattern, message", [
    ("upstream_rq_(total", "invalid regex in filter: missing ): upstream_rq_(total"),
    (r"(web)\1", r"invalid regex in filter: invalid escape sequence: \1"),
    ("(?=web)", "invalid regex in filter: invalid perl operator: (?="),
    ("a{1001}", "invalid regex in filter: invalid repetition size: {1001}"),
    ("x" * 1025, "invalid regex in filter: the pattern is 1025 characters; at most 1024 are accepted"),
])
def test_filter_that_re2_cannot_take_is_400_with_the_reason(client, pattern, message):
    for path in ("/stats", "/stats/prometheus"):
        r = client.get(path, params={"filter": pattern})
        assert (r.status_code, r.text) == (400, message + "\n")


def test_filter_at_the_length_cap_is_accepted(client):
    r = client.get("/stats", params={"filter": "(?:denied|" + "x" * 1013 + ")"})
    assert r.status_code == 200 and r.text == "wasm.authz.denied: 1\n"


def test_rendering_pauses_for_the_loop():
    """A long answer is rendered in slices: other work on the loop runs in between."""
    def slow_pieces():
        for _ in range(100):
            end = time.perf_counter() + 0.0002
            while time.perf_counter() < end:
                pass
            yield "x"

    async def main():
        ticks = 0
        stop = False

        async def other_work():
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.get_running_loop().create_task(other_work())
        await asyncio.sleep(0)
        response = await admin.render(slow_pieces())
        stop = True
        await task
        return response, ticks

    response, ticks = uvloop.run(main())
    assert (response.status, response.body) == (200, b"x" * 100)
    assert ticks >= 10, f"the loop ran only {ticks} times during a 20 ms rendering"


# --- access: cross-site, Host, token -------------------------------------------------

def test_cross_site_reload_is_403(client, port, backend):
    own = f"http://127.0.0.1:{port}"
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                    {"origin": f"http://127.0.0.1:{port + 1}"}, {"origin": f"https://127.0.0.1:{port}"},
                    {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"},
                    {"origin": own, "sec-fetch-site": "cross-site"}):
        r = client.post("/reload", headers=headers)
        assert r.status_code == 403, headers
        assert r.text.startswith(("cross-site request refused", "cross-origin request refused"))
    assert backend.reloads == 0
    for headers in ({}, {"origin": own}, {"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "none"}):
        assert client.post("/reload", headers=headers).status_code == 200, headers
    assert backend.reloads == 4


def test_reads_carry_no_cross_site_check(client):
    r = client.get("/stats", headers={"origin": "http://evil.example", "sec-fetch-site": "cross-site"})
    assert r.status_code == 200


def test_loopback_admin_answers_only_loopback_host_names(port):
    for host in (b"evil.example", b"evil.example:%d" % port, b"10.0.0.1", b"127.0.0.1.evil.example"):
        raw = exchange(port, b"GET /config_dump HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 403 Forbidden\r\n"), host
    for host in (b"127.0.0.1", b"localhost:%d" % port, b"[::1]:%d" % port, b"127.1.2.3"):
        raw = exchange(port, b"GET /ready HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), host


def test_access_rules_for_a_wildcard_address():
    access = Access("0.0.0.0")
    access.check("/stats", False, {b"host": b"proxy.internal:15000"})       # any name: no rebinding guard
    access.check("/reload", True, {b"host": b"proxy.internal:15000", b"origin": b"http://proxy.internal:15000"})
    with pytest.raises(Refusal) as e:
        access.check("/reload", True, {b"host": b"proxy.internal:15000", b"origin": b"http://evil.example"})
    assert e.value.status == 403
    with pytest.raises(Refusal):
        access.check("/reload", True, {b"origin": b"http://proxy.internal:15000"})    # no Host to match


@pytest.fixture
def guarded(backend):
    """An admin with a token, on its own loop thread; yields (client, access)."""
    access = Access("127.0.0.1", b"s3cret-token")
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start_admin("127.0.0.1", 0, backend, access), loop).result(5)
    port = server.sockets[0].getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
        yield c, access
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_token_is_needed_everywhere_but_ready(guarded, backend):
    client, _ = guarded
    for method, path in (("GET", "/"), ("GET", "/stats"), ("GET", "/config_dump"), ("GET", "/clusters"),
                         ("GET", "/server_info"), ("GET", "/stats/prometheus"), ("POST", "/reload"),
                         ("GET", "/nope")):
        for auth in (None, "Bearer wrong", "Bearer s3cret-toke", "Bearer s3cret-token2", "Basic s3cret-token",
                     "s3cret-token"):
            r = client.request(method, path, headers={"authorization": auth} if auth else {})
            assert r.status_code == 401, (method, path, auth)
            assert r.headers["www-authenticate"] == 'Bearer realm="mosnx admin"'
    assert backend.reloads == 0
    assert client.get("/ready").status_code == 200
    ok = {"authorization": "Bearer s3cret-token"}
    assert client.get("/stats", headers=ok).status_code == 200
    assert client.get("/config_dump", headers={"authorization": "bearer  s3cret-token"}).status_code == 200
    assert client.post("/reload", headers=ok).status_code == 200 and backend.reloads == 1
    assert client.get("/reload", headers=ok).status_code == 405


def test_token_does_not_lift_the_cross_site_check(guarded, backend):
    client, _ = guarded
    r = client.post("/reload", headers={"authorization": "Bearer s3cret-token", "origin": "http://evil.example"})
    assert r.status_code == 403 and backend.reloads == 0


def test_reloaded_token_replaces_the_old(guarded, tmp_path):
    from mosnx.runtime.config import load_config_text
    client, access = guarded
    (tmp_path / "t").write_text("rotated\n")
    access.update(load_config_text("admin: {token_file: t}\n", str(tmp_path / "m.yaml")).admin)
    assert client.get("/stats", headers={"authorization": "Bearer s3cret-token"}).status_code == 401
    assert client.get("/stats", headers={"authorization": "Bearer rotated"}).status_code == 200


FILTER_PIECES = ["(", ")", "a", "+", "*", "?", "{", "}", "1001", ",", "|", "[", "]", "^", "$", "\\", "\\1",
                 "(?", "(?P<n>", "(?=", "(?i)", ".", "\\p{Greek}", "\\C", "é", "\x00", "\ud800", "{2,}", "-"]


def test_any_filter_is_a_pattern_or_a_400_reason():
    """A seeded mutator over regex syntax: compile_filter returns a pattern or raises
    ValueError with a message, never anything else; a returned pattern searches a long
    name at once."""
    rnd = random.Random(11)
    name = "cluster." + "a" * 200 + ".upstream_rq_total"
    for _ in range(3000):
        pattern = "".join(rnd.choice(FILTER_PIECES) for _ in range(rnd.randint(1, 12)))
        try:
            compiled = admin_format.compile_filter(pattern)
        except ValueError as e:
            assert str(e), pattern
            continue
        compiled.search(name)
