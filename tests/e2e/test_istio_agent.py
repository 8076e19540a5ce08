"""mosnx where Istio's agent (pilot-agent) expects envoy, end to end.

mosnx is started the way the agent starts envoy (its flags, no subcommand) on the
agent's own bootstrap (Istio's `default` golden, its ports moved to free loopback
ones and its `xds-grpc` pipe to a Unix socket in a temporary folder, where the test's
ADS server listens). Then the agent's calls, in its order: /ready,
/stats?usedonly&filter=... for readiness, the 15021 listener's /healthz/ready routed
to the agent (cluster `agent`), the 15090 listener's /stats/prometheus routed to the
admin (cluster `prometheus_stats`), /healthcheck/fail and /ok, /drain_listeners
?inboundonly&graceful (only the INBOUND listener stops), /quitquitquit (exit 0).
"""
from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from google.protobuf import json_format

pytest.importorskip("envoy.config.listener.v3.listener_pb2")

import grpc.aio  # noqa: E402
from envoy.config.cluster.v3 import cluster_pb2  # noqa: E402
from envoy.config.listener.v3 import listener_pb2  # noqa: E402
from envoy.service.discovery.v3 import ads_pb2_grpc  # noqa: E402

from mosnx.runtime.envoy.protos import CLUSTER, LISTENER  # noqa: E402

from .conftest import HOST, START_WAIT, free_port, wait_until  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy" / "xds"))
from ads_server import AdsServer  # noqa: E402

def _testdata() -> Path:
    """../shared/testdata beside the checkout (found from any folder above this file)."""
    for up in Path(__file__).resolve().parents:
        if (up / "shared" / "testdata").is_dir():
            return up / "shared" / "testdata"
    return Path("/nonexistent")


GOLDENS = _testdata() / "istio" / "pkg" / "bootstrap" / "testdata"
DEFAULT = GOLDENS / "default_golden.json"
needs_goldens = pytest.mark.skipif(not DEFAULT.exists(), reason=f"Istio's bootstrap goldens are not at {GOLDENS}")

# what pkg/envoy/proxy.go passes (drain time shortened for the test)
AGENT_FLAGS = ["--drain-time-s", "2", "--drain-strategy", "immediate", "--local-address-ip-version", "v4",
               "--file-flush-interval-msec", "1000", "--disable-hot-restart", "--allow-unknown-static-fields",
               "-l", "warning"]
READY_STATS = r"^(server\.state|listener_manager\.workers_started)"
UPDATE_STATS = r"^(cluster_manager\.cds|listener_manager\.lds)\.(update_success|update_rejected)$"


class UnixAds(AdsServer):
    """The in-repo ADS server, listening on a Unix socket (as the agent's xDS proxy at /tmp/XDS)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    async def start(self) -> int:
        self._server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"unix:{self.path}")
        await self._server.start()
        return 0


class Control:
    def __init__(self, path: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = UnixAds(path)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def push(self, type_url: str, version: str, resources) -> None:
        async def go():
            self.server.push(type_url, version, resources)
        self.call(go())

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def short_dir():
    # a Unix socket path must fit in 108 bytes: pytest's tmp_path may not
    d = tempfile.mkdtemp(prefix="mx-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def golden_on_free_ports(src: Path, dst: Path, *, admin: int, stats: int, health: int, agent: int,
                         xds: str) -> None:
    """Istio's golden with the agent's fixed ports moved to free loopback ones."""
    b = json.loads(src.read_text())
    b["admin"]["address"]["socket_address"].update(address=HOST, port_value=admin)
    ports = {"0.0.0.0_15090": stats, "0.0.0.0_15021": health}
    for lst in b["static_resources"]["listeners"]:
        lst["address"]["socket_address"].update(address=HOST, port_value=ports[lst["name"]])
    for c in b["static_resources"]["clusters"]:
        ep = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        if c["name"] == "prometheus_stats":
            ep["socket_address"]["port_value"] = admin
        elif c["name"] == "agent":
            ep["socket_address"]["port_value"] = agent
        elif c["name"] == "xds-grpc":
            ep["pipe"]["path"] = xds
    dst.write_text(json.dumps(b))


def inbound_listener(port: int, cluster: str):
    return json_format.ParseDict({
        "name": "virtualInbound", "traffic_direction": "INBOUND",
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                         "HttpConnectionManager",
                "stat_prefix": "inbound",
                "route_config": {"name": "inbound", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            }}]}],
    }, listener_pb2.Listener())


def static_cluster(name: str, port: int):
    return json_format.ParseDict({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": HOST, "port_value": port}}}}]}]},
    }, cluster_pb2.Cluster())


def call(port: int, method: str, target: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(method, target)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def stats(admin: int, pattern: str) -> dict[str, int]:
    from urllib.parse import quote
    status, body = call(admin, "GET", f"/stats?usedonly&filter={quote(pattern)}")
    assert status == 200, body
    return {k: int(v) for k, _, v in (line.partition(": ") for line in body.splitlines() if line)}


def refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=2).close()
    except OSError:
        return True
    return False


@needs_goldens
@pytest.mark.parametrize("concurrency", [1, 2])
def test_the_agents_calls_on_its_own_bootstrap(tmp_path, short_dir, upstream, concurrency):
    app, agent = upstream(), upstream()        # the workload, and the agent's status port (15020)
    sock = str(short_dir / "XDS")
    control = Control(sock)
    inbound = free_port()
    control.push(CLUSTER, "1", [static_cluster("inbound|8080||", app.port)])
    control.push(LISTENER, "1", [inbound_listener(inbound, "inbound|8080||")])
    admin, prom, health = free_port(), free_port(), free_port()
    boot = tmp_path / "envoy-rev.json"
    golden_on_free_ports(DEFAULT, boot, admin=admin, stats=prom, health=health, agent=agent.port, xds=sock)
    log = open(tmp_path / "mosnx.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mosnx", "-c", str(boot), *AGENT_FLAGS,
                             "--concurrency", str(concurrency)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    try:
        def ready():
            assert proc.poll() is None, (tmp_path / "mosnx.log").read_text()
            try:
                return call(admin, "GET", "/ready") == (200, "LIVE\n")
            except OSError:
                return False
        wait_until(ready, START_WAIT, "/ready 200 LIVE")

        # the agent's readiness probe of envoy (the workers' stats are merged as they report)
        wait_until(lambda: stats(admin, READY_STATS) == {"server.state": 0, "listener_manager.workers_started": 1},
                   10, "server.state 0 and workers_started 1")
        updates = stats(admin, UPDATE_STATS)
        assert updates["cluster_manager.cds.update_success"] >= 1
        assert updates["listener_manager.lds.update_success"] >= 1
        assert updates.get("cluster_manager.cds.update_rejected", 0) == 0

        # the bootstrap's own listeners: 15021 to the agent, 15090 to the admin
        assert call(health, "GET", "/healthz/ready")[0] == 200
        assert agent.requests and agent.requests[-1].target == "/healthz/ready"
        status, body = call(prom, "GET", "/stats/prometheus")
        assert status == 200 and "envoy_server_state 0" in body
        # the control plane's inbound listener serves the workload
        assert call(inbound, "GET", "/app")[0] == 200 and app.requests[-1].target == "/app"

        assert call(admin, "POST", "/healthcheck/fail") == (200, "OK\n")
        assert call(admin, "GET", "/ready") == (503, "DRAINING\n")
        wait_until(lambda: stats(admin, r"^server\.state$") == {"server.state": 1}, 10, "server.state 1")
        assert call(inbound, "GET", "/app")[0] == 200        # traffic is served as before
        assert call(admin, "POST", "/healthcheck/ok") == (200, "OK\n")
        assert call(admin, "GET", "/ready") == (200, "LIVE\n")

        status, body = call(admin, "GET", "/listeners?format=json")
        names = {s["name"] for s in json.loads(body)["listener_statuses"]}
        assert {"0.0.0.0_15090", "0.0.0.0_15021", "virtualInbound"} <= names

        assert call(admin, "GET", "/drain_listeners?inboundonly")[0] == 405     # mutating: POST only
        assert call(admin, "POST", "/drain_listeners?inboundonly&graceful") == (200, "OK\n")
        wait_until(lambda: refused(inbound), 10, "the inbound listener stops after the drain time")
        assert call(health, "GET", "/healthz/ready")[0] == 200     # not INBOUND: still served

        assert call(admin, "POST", "/quitquitquit") == (200, "OK\n")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
        control.stop()


@needs_goldens
@pytest.mark.parametrize("golden", sorted(p.name for p in GOLDENS.glob("*_golden.json")) if GOLDENS.exists()
                         else [])
def test_every_golden_checks_with_warnings_only(golden):
    r = subprocess.run([sys.executable, "-m", "mosnx", "check", str(GOLDENS / golden)], capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stdout + r.stderr          # findings: the warnings
    assert " error" not in r.stdout and "X002" not in r.stdout and "X003" not in r.stdout, r.stdout
    assert "bug" not in r.stderr, r.stderr
    assert 'Cluster "xds-grpc" load_assignment' in r.stdout and "unix:/tmp/XDS" in r.stdout
