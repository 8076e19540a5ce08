"""STRICT_DNS discovery: a cluster's endpoint names resolved every dns_refresh_rate.

Every address a name resolves to becomes an endpoint with that name's port and
weight, as Envoy's strict_dns. A failed resolution keeps the last answer (a DNS
outage must not empty a cluster); resolving uses loop.getaddrinfo, so it never
blocks the worker. One task per cluster; stop() cancels it.
"""
from __future__ import annotations

import asyncio
import logging
import socket

from mosnx.runtime.model import Endpoint

log = logging.getLogger("mosnx.dns")


class DnsResolver:
    def __init__(self, cluster):
        self.cluster = cluster
        opts = cluster.config.options
        self.refresh = float(opts.get("dns_refresh_rate") or 5.0)
        self.family = opts.get("dns_lookup_family") or "v4_preferred"
        prefix = f"cluster.{cluster.name}."
        self.ok = cluster.stats.counter(prefix + "update_success")
        self.fail = cluster.stats.counter(prefix + "update_failure")
        self.task: asyncio.Task | None = None
        self.resolved: asyncio.Event | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.resolved = asyncio.Event()
        self.task = loop.create_task(self._run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def first(self, timeout: float) -> None:
        if self.resolved is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self.resolved.wait()
        except TimeoutError:
            log.warning("cluster %s: no DNS answer within %.1fs; serving without endpoints",
                        self.cluster.name, timeout)

    async def _run(self) -> None:
        while True:
            try:
                eps = await self.resolve()
            except OSError as e:
                self.fail.value += 1
                log.warning("cluster %s: DNS resolution failed: %s", self.cluster.name, e)
            else:
                self.ok.value += 1
                self.cluster.set_endpoints(eps)
            self.resolved.set()  # type: ignore[union-attr]  # start() made it before this task
            await asyncio.sleep(self.refresh)

    async def resolve(self) -> list[Endpoint]:
        loop = asyncio.get_running_loop()
        fam = {"v4_only": socket.AF_INET, "v6_only": socket.AF_INET6}.get(self.family, socket.AF_UNSPEC)
        out: list[Endpoint] = []
        seen: set[tuple[str, int]] = set()
        for ep in self.cluster.config.endpoints:
            infos = await loop.getaddrinfo(ep.host, ep.port, family=fam, type=socket.SOCK_STREAM)
            v4 = [str(i[4][0]) for i in infos if i[0] == socket.AF_INET]
            v6 = [str(i[4][0]) for i in infos if i[0] == socket.AF_INET6]
            if self.family == "v4_preferred":
                addrs = v4 or v6
            elif self.family == "auto":
                addrs = v6 or v4
            else:
                addrs = v4 + v6
            for a in addrs:
                if (a, ep.port) not in seen:
                    seen.add((a, ep.port))
                    out.append(Endpoint(a, ep.port, ep.weight, ep.tls_match))
        return out
