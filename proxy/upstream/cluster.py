"""Live clusters: hosts, their connection pools, load balancer and circuit breakers.

Snapshots are immutable; this is the mutable side. On a snapshot swap the manager
reconciles: a cluster whose config is unchanged is kept as is; a changed one keeps
the Host (and pooled connections) of every endpoint that stayed, drops the pools of
endpoints that left once their active requests finish, and builds a new balancer.
"""
from __future__ import annotations

from mosnx.runtime.model import ClusterConfig, Endpoint
from mosnx.runtime.stats import Store

from . import lb as lbs
from .pool import Pool


class Host:
    __slots__ = ("endpoint", "address", "host", "port", "weight", "healthy", "rq_active",
                 "rq_total", "rq_error", "pool", "cluster")

    def __init__(self, cluster: "Cluster", ep: Endpoint):
        self.cluster = cluster
        self.endpoint = ep
        self.address = ep.address
        self.host = ep.host
        self.port = ep.port
        self.weight = ep.weight
        self.healthy = True
        self.rq_active = 0
        self.rq_total = 0
        self.rq_error = 0
        self.pool = Pool(self)

    # -- what streams report about each attempt (outlier detection and balancers listen) --
    def observe(self, status: int, elapsed_ms: float) -> None:
        """An upstream answered this attempt with `status` after `elapsed_ms`."""
        if status >= 500:
            self.rq_error += 1

    def observe_failure(self, kind: str) -> None:
        """The attempt failed locally: "connect_failure", "reset" or "timeout"."""
        self.rq_error += 1

    def describe(self) -> dict:
        return {"address": self.address, "weight": self.weight,
                "health": "healthy" if self.healthy else "unhealthy",
                "cx_active": self.pool.cx_active, "cx_idle": len(self.pool.idle),
                "rq_active": self.rq_active, "rq_total": self.rq_total, "rq_error": self.rq_error}


# Stats every cluster keeps, under cluster.<name>.<stat> (Envoy's names).
CLUSTER_STATS = (
    "upstream_rq_total", "upstream_rq_2xx", "upstream_rq_3xx", "upstream_rq_4xx", "upstream_rq_5xx",
    "upstream_rq_timeout", "upstream_rq_per_try_timeout", "upstream_rq_retry",
    "upstream_rq_retry_overflow", "upstream_rq_pending_overflow", "upstream_rq_pending_total",
    "upstream_cx_total", "upstream_cx_connect_fail", "upstream_cx_connect_timeout",
    "upstream_cx_overflow", "upstream_cx_destroy_remote", "upstream_rq_rx_reset",
    "upstream_cx_protocol_error", "upstream_rq_maintenance_mode",
)


class Cluster:
    def __init__(self, config: ClusterConfig, stats: Store, old: "Cluster | None" = None):
        self.name = config.name
        self.config = config
        self.cb = config.circuit_breakers
        self.stats = stats
        prefix = f"cluster.{config.name}."
        self.c = {s: stats.counter(prefix + s) for s in CLUSTER_STATS}
        self.cx_active_gauge = stats.gauge(prefix + "upstream_cx_active")
        self.rq_active_gauge = stats.gauge(prefix + "upstream_rq_active")
        self.rq_time = stats.histogram(prefix + "upstream_rq_time")
        # circuit-breaker accounting across all hosts
        self.cx_active = old.cx_active if old else 0
        self.rq_pending = old.rq_pending if old else 0
        self.rq_active = old.rq_active if old else 0
        self.retries_active = old.retries_active if old else 0
        kept = {h.address: h for h in old.hosts} if old else {}
        self.hosts: list[Host] = []
        for ep in config.endpoints:
            h = kept.pop(ep.address, None)
            if h is not None and h.weight == ep.weight:
                h.cluster = self
            else:
                if h is not None:
                    h.pool.retire()
                h = Host(self, ep)
            self.hosts.append(h)
        for gone in kept.values():
            gone.pool.retire()
        self.lb = lbs.make(config.lb, self.hosts, config.options)

    def pick(self, ctx, exclude=None) -> Host | None:
        return self.lb.pick(ctx, exclude)

    def describe(self) -> dict:
        return {"lb": self.config.lb, "endpoints": [h.describe() for h in self.hosts],
                "circuit_breakers": {"max_connections": self.cb.max_connections,
                                     "max_pending_requests": self.cb.max_pending_requests,
                                     "max_requests": self.cb.max_requests,
                                     "max_retries": self.cb.max_retries},
                "cx_active": self.cx_active, "rq_active": self.rq_active,
                "rq_pending": self.rq_pending}

    def close(self) -> None:
        for h in self.hosts:
            h.pool.retire()


class ClusterManager:
    def __init__(self, stats: Store):
        self.stats = stats
        self.clusters: dict[str, Cluster] = {}

    def update(self, configs: dict[str, ClusterConfig]) -> None:
        new: dict[str, Cluster] = {}
        for name, cfg in configs.items():
            old = self.clusters.get(name)
            if old is not None and old.config == cfg:
                new[name] = old
            else:
                new[name] = Cluster(cfg, self.stats, old)
        for name, old in self.clusters.items():
            if name not in new:
                old.close()
        self.clusters = new

    def get(self, name: str) -> Cluster | None:
        return self.clusters.get(name)

    def sweep(self, now: float) -> None:
        for c in self.clusters.values():
            for h in c.hosts:
                if h.pool.idle:
                    h.pool.sweep(now)

    def describe(self) -> dict:
        return {n: c.describe() for n, c in self.clusters.items()}

    def close(self) -> None:
        for c in self.clusters.values():
            c.close()
