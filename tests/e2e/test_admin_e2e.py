"""The admin API of a running mosnx: every endpoint answers from the live workers.

One two-worker proxy that served three requests is shared by the read-only checks."""
from __future__ import annotations

import json
import re

import pytest


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
