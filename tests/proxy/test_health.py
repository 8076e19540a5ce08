"""Active health checks against real sockets on 127.0.0.1: TCP and HTTP checks, thresholds,
endpoints leaving and rejoining rotation, and the checkers' lifecycle with the cluster."""
from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import pytest

from mosnx.proxy.upstream.cluster import Cluster, ClusterManager
from mosnx.runtime.config.cluster import HealthCheck, HttpHealthCheck
from mosnx.runtime.model import ClusterConfig, Endpoint
from mosnx.runtime.stats import Store

FAST = HealthCheck(interval=0.05, timeout=0.5, unhealthy_threshold=2, healthy_threshold=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer:
    """Answers every request with `status`, recording request heads."""

    def __init__(self, status: int = 200):
        self.status = status
        self.heads: list[bytes] = []
        self.server = None
        self.port = 0

    async def start(self, port: int = 0) -> "HttpServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % self.status)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def until(pred, timeout=10.0, what="condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def config(ports, hc: HealthCheck, name="web", panic: float = 0.0) -> ClusterConfig:
    """Panic mode off unless asked for: these tests watch single hosts leave rotation."""
    eps = tuple(Endpoint("127.0.0.1", p) for p in ports)
    return ClusterConfig(name, eps, options={"health_check": hc,
                                             "common_lb_config": {"healthy_panic_threshold": panic}})


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 30))


def test_tcp_check_takes_a_refused_endpoint_out_and_brings_it_back():
    async def main():
        live = await HttpServer().start()
        dead_port = free_port()
        c = Cluster(config([live.port, dead_port], FAST), Store())
        dead = c.hosts[1]
        try:
            await until(lambda: not dead.healthy, what="the refused endpoint to leave rotation")
            assert dead.describe()["health"] == "unhealthy"
            assert all(c.pick(None) is c.hosts[0] for _ in range(10))
            revived = await HttpServer().start(dead_port)
            await until(lambda: dead.healthy, what="the endpoint to come back")
            assert dead.describe()["health"] == "healthy"
            assert {c.pick(None).port for _ in range(10)} == {live.port, dead_port}
            await revived.stop()
        finally:
            c.close()
            await live.stop()
        assert c.stats.counters["cluster.web.health_check.network_failure"].value >= 1
    run(main())


def test_http_check_uses_path_host_and_expected_statuses():
    async def main():
        srv = await HttpServer(200).start()
        hc = replace(FAST, http=HttpHealthCheck("/healthz", frozenset({200, 204})))
        c = Cluster(config([srv.port], hc, name="reviews"), Store())
        h = c.hosts[0]
        try:
            await until(lambda: len(srv.heads) >= 1, what="a check")
            head = srv.heads[0].decode()
            assert head.startswith("GET /healthz HTTP/1.1\r\n")
            assert "\r\nHost: reviews\r\n" in head, "the Host header defaults to the cluster's name"
            srv.status = 503
            await until(lambda: not h.healthy, what="503 to fail the check")
            srv.status = 204
            await until(lambda: h.healthy, what="204 to pass it")
        finally:
            c.close()
            await srv.stop()
    run(main())


def test_thresholds_need_failures_and_passes_in_a_row():
    c = Cluster(config([1], HealthCheck(unhealthy_threshold=3, healthy_threshold=2)), Store())
    from mosnx.proxy.upstream.health import HealthChecker
    hc = HealthChecker(c, c.config.options["health_check"])
    h = c.hosts[0]
    hc._record(h, True)          # the first result decides at once
    assert h.healthy
    for ok in (False, False, True, False, False):
        hc._record(h, ok)
        assert h.healthy, "never three failures in a row"
    hc._record(h, False)
    assert not h.healthy
    hc._record(h, True)
    assert not h.healthy, "one pass is not enough with healthy_threshold 2"
    hc._record(h, True)
    assert h.healthy


def test_a_never_checked_endpoint_that_fails_its_first_check_leaves_at_once():
    c = Cluster(config([1], HealthCheck(unhealthy_threshold=5)), Store())
    from mosnx.proxy.upstream.health import HealthChecker
    HealthChecker(c, c.config.options["health_check"])._record(c.hosts[0], False)
    assert not c.hosts[0].healthy


def test_checkers_stop_with_the_cluster_and_restart_on_change():
    async def main():
        srv = await HttpServer().start()
        mgr = ClusterManager(Store())
        base = asyncio.all_tasks()
        mgr.update({"web": config([srv.port], FAST)})
        first = mgr.get("web").health.task
        await until(lambda: mgr.stats.counters["cluster.web.health_check.success"].value >= 1,
                    what="a first check")
        # unchanged config: the same cluster and checker keep running
        mgr.update({"web": config([srv.port], FAST)})
        assert mgr.get("web").health.task is first
        slower = replace(FAST, interval=0.1)
        for _ in range(20):          # repeated reloads must not pile up tasks
            mgr.update({"web": config([srv.port], slower if _ % 2 else FAST)})
        await asyncio.sleep(0.05)
        assert first.done()
        extra = [t for t in asyncio.all_tasks() - base if not t.done()]
        assert len(extra) == 1, extra
        mgr.update({})
        await asyncio.sleep(0.05)
        assert [t for t in asyncio.all_tasks() - base if not t.done()] == []
        await srv.stop()
    run(main())


def test_removing_health_check_returns_hosts_to_rotation():
    c = Cluster(config([1], HealthCheck()), Store())
    c.hosts[0].hc_failed = True
    c.hosts[0].set_health()
    plain = Cluster(replace(c.config, options={}), c.stats, c)
    assert plain.hosts[0].healthy


@pytest.mark.parametrize("path", ["/", "/status/ready"])
def test_health_check_config_from_yaml(path):
    from mosnx.runtime.config import load_config_text
    c = load_config_text(f"""\
clusters:
  - name: reviews
    endpoints: ["127.0.0.1:9081"]
    health_check: {{ http: {{ path: {path}, expected: [200] }}, interval: 2s, timeout: 1s,
                    unhealthy_threshold: 2, healthy_threshold: 1 }}
""")
    hc = c.clusters[0].options["health_check"]
    assert hc == HealthCheck(2.0, 1.0, 2, 1, HttpHealthCheck(path, frozenset({200})))


def test_panic_mode_puts_every_host_back_below_the_threshold():
    c = Cluster(config([1, 2, 3, 4], HealthCheck(), panic=50.0), Store())
    from mosnx.proxy.upstream.health import HealthChecker
    hc = HealthChecker(c, c.config.options["health_check"])
    a, b, _, _ = c.hosts
    hc._record(a, False)
    assert not a.healthy and not c.panic
    hc._record(b, False)
    assert not b.healthy, "two of four healthy is not below 50%"
    hc._record(c.hosts[2], False)
    assert c.panic and all(h.healthy for h in c.hosts), "one of four: spread over all"
    assert c.hosts[2].describe()["health"] == "unhealthy", "/clusters still tells the truth"
    c.pick(None)
    assert c.stats.counters["cluster.web.lb_healthy_panic"].value == 1
    hc._record(c.hosts[2], True)
    assert not c.panic and not a.healthy and c.hosts[2].healthy


def test_health_check_config_errors_are_positioned():
    from mosnx.runtime.config import load_config_text
    from mosnx.runtime.diagnostics import ConfigError
    with pytest.raises(ConfigError) as e:
        load_config_text("""\
clusters:
  - name: a
    endpoints: ["127.0.0.1:9081"]
    health_check: {http: {path: /h}, tcp: {}}
  - name: b
    endpoints: ["127.0.0.1:9082"]
    health_check: {http: {path: /h, expected: [700]}, intervall: 1s}
""")
    text = str(e.value)
    assert "has both http: and tcp:" in text
    assert ":7:" in text and "700 is above the maximum 599" in text
    assert 'unknown key "intervall"' in text and 'did you mean "interval"' in text


def test_expected_statuses_ranges_as_envoy():
    from mosnx.proxy.upstream.health import HealthChecker
    from mosnx.runtime.config import load_config_text
    c = load_config_text("""\
clusters:
  - name: web
    endpoints: ["127.0.0.1:9081"]
    health_check: {http: {path: /, expected: [204], expected_statuses: [{start: 300, end: 302}]}}
""")
    hc = c.clusters[0].options["health_check"]
    assert hc.http.expected == frozenset({204, 300, 301})
    plain = Cluster(config([1], replace(hc, http=HttpHealthCheck("/"))), Store())
    assert HealthChecker(plain, plain.config.options["health_check"]).expected == frozenset({200})
