"""The admin API of a running mosnx: every endpoint answers from the live workers, no
admin query can stall the data plane, and only the admin's own callers may use it.

One two-worker proxy that served three requests is shared by the read-only checks."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from .conftest import HOST, free_port


def call(proxy, path: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One admin request with the given headers (Mosnx.admin sends none)."""
    req = urllib.request.Request(f"http://{HOST}:{proxy.admin_port}{path}", method=method,
                                 data=b"" if method == "POST" else None, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


@pytest.fixture(scope="module")
def served(module_upstream, module_mosnx):
    up = module_upstream()
    proxy = module_mosnx(up, workers=2)
    for _ in range(3):
        assert proxy.request("GET", "/").status == 200
    return proxy, up


def test_ready(served):
    proxy, _ = served
    status, headers, body = proxy.admin("/ready")
    assert (status, body) == (200, b"LIVE\n")
    assert headers["content-type"].startswith("text/plain")


def test_server_info(served):
    proxy, _ = served
    from mosnx import __version__
    info = proxy.admin_json("/server_info")
    assert info["version"] == __version__
    assert info["state"] == "LIVE"
    assert info["workers"] == 2
    assert info["snapshot_version"] == 1
    assert info["config_path"] == str(proxy.config_path)
    assert isinstance(info["uptime_s"], int)


def test_config_dump_shows_live_snapshot(served):
    proxy, up = served
    dump = proxy.admin_json("/config_dump")
    assert dump["version"] == 1
    assert dump["worker_versions"] == [1, 1]
    assert dump["last_reload_error"] == []
    assert str(proxy.config_path) in dump["sources"]
    cfg = dump["config"]
    assert cfg["listeners"][0]["name"] == "ingress"
    assert cfg["clusters"][0]["endpoints"] == [up.address]


def test_clusters_text_and_json(served):
    proxy, up = served
    status, _, body = proxy.admin("/clusters")
    assert status == 200
    text = body.decode()
    assert f"web::{up.address}::" in text, text
    status, headers, body = proxy.admin("/clusters?format=json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    [web] = json.loads(body)["cluster_statuses"]
    assert web["name"] == "web"
    [host] = web["host_statuses"]
    assert host["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": up.port}
    rq_total = [s["value"] for s in host["stats"] if s["name"] == "rq_total"]
    assert rq_total == [3], "per-endpoint counters are summed across workers"


def test_stats_text_summed_across_workers(served):
    proxy, _ = served
    status, _, body = proxy.admin("/stats")
    assert status == 200
    lines = dict(line.split(": ", 1) for line in body.decode().splitlines() if ": " in line)
    assert lines["http.ingress.downstream_rq_total"] == "3"
    assert lines["http.ingress.downstream_rq_2xx"] == "3"
    assert lines["cluster.web.upstream_rq_total"] == "3"
    assert "P50(" in lines["http.ingress.downstream_rq_time"]
    assert "cluster.web.upstream_rq_time" in lines


def test_stats_filter(served):
    proxy, _ = served
    status, _, body = proxy.admin("/stats?filter=downstream_rq_2xx")
    assert status == 200
    names = [line.split(":")[0] for line in body.decode().splitlines()]
    assert names == ["http.ingress.downstream_rq_2xx"]


def test_stats_prometheus(served):
    proxy, _ = served
    status, headers, body = proxy.admin("/stats/prometheus")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert re.search(r'^mosnx_http_downstream_rq_total\{http_conn_manager_prefix="ingress"\} 3$', text, re.M), text
    assert re.search(r'^mosnx_cluster_upstream_rq_total\{cluster_name="web"\} 3$', text, re.M)
    assert "# TYPE mosnx_http_downstream_rq_total counter" in text
    assert re.search(r"^# TYPE mosnx_http_downstream_rq_time histogram$", text, re.M)
    assert re.search(r'^mosnx_http_downstream_rq_time_count\{http_conn_manager_prefix="ingress"\} 3$', text, re.M)


def test_post_reload(upstream, mosnx):
    proxy = mosnx(upstream(), workers=2)
    status, reply = proxy.reload()
    assert status == 200 and reply == {"ok": True, "version": 2}
    assert proxy.admin_json("/server_info")["snapshot_version"] == 2
    assert proxy.admin_json("/config_dump")["worker_versions"] == [2, 2]


def test_reload_needs_post(served):
    proxy, _ = served
    status, headers, _ = proxy.admin("/reload")
    assert status == 405 and headers["allow"] == "POST"


def test_unknown_admin_path_is_404(served):
    proxy, _ = served
    status, _, body = proxy.admin("/nope")
    assert status == 404 and b"/stats" in body


def test_stats_filter_that_is_not_a_valid_re2_pattern_is_400(served):
    proxy, _ = served
    status, _, body = proxy.admin("/stats?filter=rq_(2xx")
    assert status == 400 and body.startswith(b"invalid regex in filter: missing ): ")
    status, _, body = proxy.admin("/stats?filter=" + "x" * 2000)
    assert status == 400 and b"at most 1024" in body


LONG = "a" * 48      # a cluster name that makes `(a+)+$` backtrack 2^48 ways in a backtracking engine


def test_backtracking_filter_does_not_stall_proxied_requests(upstream, mosnx):
    """With one worker the admin shares the data plane's loop: a hostile filter and big
    renders must leave proxied requests served promptly."""
    proxy = mosnx(upstream(), route={"cluster": LONG}, clusters={LONG: [upstream()]})
    for _ in range(3):
        assert proxy.request().status == 200
    admin_times: list[float] = []
    answers: list[tuple[int, bytes]] = []

    def hammer_admin():
        for _ in range(10):
            t0 = time.monotonic()
            status, _, body = proxy.admin("/stats?filter=(a%2B)%2B%24", timeout=30)
            admin_times.append(time.monotonic() - t0)
            answers.append((status, body))

    t = threading.Thread(target=hammer_admin)
    t.start()
    worst = 0.0
    with proxy.connect() as c:
        while t.is_alive():
            t0 = time.monotonic()
            assert c.request().status == 200
            worst = max(worst, time.monotonic() - t0)
    t.join(60)
    assert all(status == 200 for status, _ in answers), answers
    assert all(LONG not in body.decode() for _, body in answers), "no stat name ends in a's"
    assert max(admin_times) < 10, admin_times
    assert worst < 2.0, f"a proxied request waited {worst:.3f}s behind the admin"


def test_cross_site_reload_is_refused(served):
    proxy, _ = served
    before = proxy.snapshot_version()
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        status, _, body = call(proxy, "/reload", "POST", headers)
        assert status == 403, (headers, body)
    status, _, body = call(proxy, "/config_dump", headers={"Host": "evil.example"})
    assert status == 403, "a loopback admin answers no foreign Host (DNS rebinding)"
    assert proxy.snapshot_version() == before
    own = f"http://{HOST}:{proxy.admin_port}"
    status, _, body = call(proxy, "/reload", "POST", {"Origin": own, "Sec-Fetch-Site": "same-origin"})
    assert status == 200 and json.loads(body)["version"] == before + 1


def test_token_file_guards_the_admin_and_is_re_read_on_change(upstream, mosnx, tmp_path):
    token = tmp_path / "admin.token"
    token.write_text("first-token-0123456789\n")
    config = {"admin": {"address": f"{HOST}:{free_port()}", "token_file": str(token)},
              "listeners": [{"name": "ingress", "route": {"cluster": "web"}}],
              "clusters": [{"name": "web", "endpoints": [upstream().address]}]}
    proxy = mosnx(config=config)       # started: /ready needs no token
    status, headers, _ = call(proxy, "/stats")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert call(proxy, "/reload", "POST")[0] == 401
    assert call(proxy, "/stats", headers={"Authorization": "Bearer wrong"})[0] == 401
    first = {"Authorization": "Bearer first-token-0123456789"}
    assert call(proxy, "/stats", headers=first)[0] == 200
    status, _, body = call(proxy, "/reload", "POST", first)
    assert status == 200 and json.loads(body) == {"ok": True, "version": 2}
    # rotating the file is a reload: the new token works, the old one no longer does
    token.write_text("second-token-9876543210\n")
    second = {"Authorization": "Bearer second-token-9876543210"}
    proxy.wait_until(lambda: call(proxy, "/stats", headers=second)[0] == 200, 10, "the rotated token")
    assert call(proxy, "/stats", headers=first)[0] == 401
    # an emptied file is a config error at its position; the last good token stays
    token.write_text("")
    proxy.wait_until(lambda: json.loads(call(proxy, "/config_dump", headers=second)[2])["last_reload_error"],
                     10, "the emptied token file to be reported")
    err = json.loads(call(proxy, "/config_dump", headers=second)[2])["last_reload_error"][0]
    assert re.match(re.escape(str(proxy.config_path)) + r":\d+:\d+: C004 admin.token_file: .* is empty", err), err
    assert call(proxy, "/stats", headers=second)[0] == 200


def test_check_warns_about_an_admin_beyond_loopback_without_token(tmp_path):
    cfg = tmp_path / "exposed.yaml"
    cfg.write_text("admin: {address: 0.0.0.0:15000}\n"
                   "listeners: [{name: l, address: 127.0.0.1:18080, route: {cluster: web}}]\n"
                   "clusters: [{name: web, endpoints: [127.0.0.1:9000]}]\n")
    r = subprocess.run([sys.executable, "-m", "mosnx", "check", str(cfg)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stderr
    assert f"{cfg}:1:8: C401 the admin API listens on 0.0.0.0:15000" in r.stdout + r.stderr
