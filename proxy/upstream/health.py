"""Active health checks: a TCP connect or an HTTP GET to every endpoint, each interval.

One task per cluster (per worker) checks all its hosts concurrently, each check
bounded by `timeout`. A host that has never been checked is in rotation; its
first result decides at once, later ones move it only after unhealthy_threshold
failures (or healthy_threshold passes) in a row, so one lost probe does not flap
it. The task reads cluster.hosts each round, so DNS membership changes are
followed; stop() cancels it and with it every check in flight.
"""
from __future__ import annotations

import asyncio
import logging

from mosnx.runtime.config.cluster import HealthCheck

log = logging.getLogger("mosnx.health")

STATS = ("attempt", "success", "failure", "network_failure")


class HealthChecker:
    def __init__(self, cluster, config: HealthCheck):
        self.cluster = cluster
        self.config = config
        prefix = f"cluster.{cluster.name}.health_check."
        self.c = {s: cluster.stats.counter(prefix + s) for s in STATS}
        self.task: asyncio.Task | None = None
        http = config.http
        self.expected = http.expected if http is not None and http.expected is not None else frozenset({200})
        if http is not None:
            host = http.host or cluster.name
            self.request = (f"GET {http.path} HTTP/1.1\r\nHost: {host}\r\n"
                            "User-Agent: mosnx-health-check\r\nConnection: close\r\n\r\n").encode("latin-1")
        else:
            self.request = None

    def start(self, loop) -> None:
        self.task = loop.create_task(self._run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        while True:
            hosts = list(self.cluster.hosts)
            if hosts:
                results = await asyncio.gather(*(self._check(h) for h in hosts), return_exceptions=True)
                for h, ok in zip(hosts, results):
                    if isinstance(ok, BaseException):
                        log.error("health check of %s failed unexpectedly: %r", h.address, ok)
                        ok = False
                    self._record(h, ok)
            await asyncio.sleep(self.config.interval)

    async def _check(self, h) -> bool:
        self.c["attempt"].value += 1
        writer = None
        try:
            async with asyncio.timeout(self.config.timeout):
                reader, writer = await asyncio.open_connection(h.host, h.port)
                if self.request is None:
                    return True
                writer.write(self.request)
                line = await reader.readline()
        except (OSError, TimeoutError, asyncio.TimeoutError):
            self.c["network_failure"].value += 1
            return False
        finally:
            if writer is not None:
                writer.close()
        parts = line.split(None, 2)
        try:
            status = int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") else 0
        except ValueError:
            status = 0
        return status in self.expected

    def _record(self, h, ok: bool) -> None:
        cfg = self.config
        self.c["success" if ok else "failure"].value += 1
        first = not h.hc_checked
        h.hc_checked = True
        if ok:
            h.hc_fails = 0
            h.hc_oks += 1
            if h.hc_failed and (first or h.hc_oks >= cfg.healthy_threshold):
                h.hc_failed = False
                h.set_health()
        else:
            h.hc_oks = 0
            h.hc_fails += 1
            if not h.hc_failed and (first or h.hc_fails >= cfg.unhealthy_threshold):
                h.hc_failed = True
                h.set_health()
