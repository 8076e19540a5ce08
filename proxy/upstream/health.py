"""Active health checks: a connect, an HTTP GET or a gRPC Health/Check to every endpoint, each interval.

A check speaks what the cluster's traffic speaks, as Envoy's do: TLS with the
cluster's own settings when it originates TLS, HTTP/2 when its protocol is http2
(prior knowledge in cleartext, ALPN h2 over TLS), on a connection of its own that
it closes when done. One task per cluster (per worker) checks all its hosts
concurrently, each check bounded by `timeout`. A host that has never been checked
is in rotation; its first result decides at once, later ones move it only after
unhealthy_threshold failures (or healthy_threshold passes) in a row, so one lost
probe does not flap it. The task reads cluster.hosts each round, so DNS membership
changes are followed; stop() cancels it and with it every check in flight.
"""
from __future__ import annotations

import asyncio
import logging

from mosnx.runtime.config.cluster import HealthCheck

from ..tls import client_connect_args
from . import health_h2

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
        self.h2 = cluster.config.protocol == "http2"
        self.tls = cluster.config.options.get("tls")
        self.request: bytes | None = None    # HTTP/1.1: the request's bytes
        self.h2_request: list[tuple[bytes, bytes]] | None = None  # HTTP/2 and gRPC: the request's header block
        self.grpc_body = b""
        self.probe = self._probe_for(config)

    def _probe_for(self, config: HealthCheck):
        """The coroutine function that judges one open connection."""
        scheme = b"https" if self.tls is not None else b"http"
        # HealthCheck.kind is "grpc" when grpc is set, "http" when http is
        if config.kind == "grpc":
            grpc = config.grpc
            self.h2_request = health_h2.grpc_request(grpc.authority or self.cluster.name, scheme)  # type: ignore[union-attr]
            self.grpc_body = health_h2.health_check_request(grpc.service_name)  # type: ignore[union-attr]
            return self._grpc
        if config.kind == "tcp":
            return self._tcp
        http = config.http
        host = http.host or self.cluster.name  # type: ignore[union-attr]
        if self.h2:
            self.h2_request = health_h2.get_request(http.path, host, scheme)  # type: ignore[union-attr]
            return self._http2
        self.request = (f"GET {http.path} HTTP/1.1\r\nHost: {host}\r\n"  # type: ignore[union-attr]
                        "User-Agent: mosnx-health-check\r\nConnection: close\r\n\r\n").encode("latin-1")
        return self._http1

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
                reader, writer = await asyncio.open_connection(h.host, h.port, **client_connect_args(self.cluster.config, h.host, h.endpoint))
                ok = await self.probe(reader, writer)
        except (OSError, TimeoutError, asyncio.TimeoutError):
            self.c["network_failure"].value += 1
            if writer is not None:
                # a hung or broken endpoint must not keep the connection (or a TLS shutdown) alive
                writer.transport.abort()
            return False
        except BaseException:
            if writer is not None:
                writer.transport.abort()
            raise
        writer.close()
        return ok

    async def _tcp(self, reader, writer) -> bool:
        return True

    async def _http1(self, reader, writer) -> bool:
        writer.write(self.request)
        line = await reader.readline()
        parts = line.split(None, 2)
        try:
            status = int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") else 0
        except ValueError:
            status = 0
        return status in self.expected

    async def _http2(self, reader, writer) -> bool:
        # _probe_for built the request of the probe it chose
        r = await health_h2.exchange(reader, writer, self.h2_request, whole=False)  # type: ignore[arg-type]
        return r.status in self.expected

    async def _grpc(self, reader, writer) -> bool:
        r = await health_h2.exchange(reader, writer, self.h2_request, self.grpc_body)  # type: ignore[arg-type]
        return health_h2.grpc_serving(r)

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
