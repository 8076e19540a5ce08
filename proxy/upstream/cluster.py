"""Live clusters: hosts, their connection pools, load balancer and circuit breakers.

Snapshots are immutable; this is the mutable side. On a snapshot swap the manager
reconciles: a cluster whose config is unchanged is kept as is; a changed one keeps
the Host (and pooled connections, health and ejection state) of every endpoint that
stayed, drops the pools of endpoints that left once their active requests finish,
and builds a new balancer. A strict_dns cluster reconciles the same way each time
its names resolve to another set of addresses, and so does an EDS cluster whose
endpoints alone changed (ClusterManager.reassign): the Cluster stays, with its
health checker, outlier detector and stats, and only its membership changes.

Each cluster owns its background work (active health checks, the outlier
detector's sweep, DNS refresh): started when the cluster is made, stopped when it
is replaced or removed, so a reload never leaves a task behind.

Circuit breakers are per proxy. With one worker, Resources are plain counts
and `cb` is the config. With N workers (a shared segment, runtime.shared),
each resource of a cluster name is a Lease on a proxy-wide count: the counts
stay local ints, `cb.max_*` reads the worker's lease (grown from shared memory
only when used up) and a count going down gives back unused lease. The
worker keeps a cluster name's Resources across reloads and removals, so its
slots in shared memory are never held twice.
"""
from __future__ import annotations

import asyncio
import logging
from operator import attrgetter
from typing import TYPE_CHECKING, Iterable

from mosnx.runtime import shared as sh
from mosnx.runtime.model import CircuitBreakers, ClusterConfig, Endpoint
from mosnx.runtime.stats import ACCUMULATE, PER_PROXY, RESPONSE_CLASSES, Counter, Store

from . import lb as lbs, locality
from .http2 import H2Pool
from .pool import Pool

if TYPE_CHECKING:
    from .priority import Levels
    from mosnx.runtime.context import StreamContext
    from .dns import DnsResolver
    from .health import HealthChecker
    from .outlier import OutlierDetector


class Host:
    __slots__ = ("endpoint", "address", "host", "port", "weight", "healthy", "rq_active",
                 "rq_total", "rq_error", "pool", "cluster",
                 "hc_failed", "hc_checked", "hc_fails", "hc_oks",
                 "ejected", "ejected_at", "ejections", "od_5xx", "od_gw", "od_local", "od_total", "od_ok",
                 "success_rate", "ewma", "ewma_at")

    def __init__(self, cluster: "Cluster", ep: Endpoint):
        self.cluster = cluster
        self.endpoint = ep
        self.address = ep.address
        self.host = ep.host
        self.port = ep.port
        self.weight = ep.weight
        self.healthy = True              # in rotation: not failing active checks, not ejected
        self.rq_active = 0
        self.rq_total = 0
        self.rq_error = 0
        self.pool = H2Pool(self) if cluster.config.protocol == "http2" else Pool(self)
        # active health checking (health.py)
        self.hc_failed = False
        self.hc_checked = False
        self.hc_fails = 0
        self.hc_oks = 0
        # outlier detection (outlier.py)
        self.ejected = False
        self.ejected_at = 0.0
        self.ejections = 0               # Envoy's ejection time back-off multiplier
        self.od_5xx = 0
        self.od_gw = 0
        self.od_local = 0                # local-origin failures in a row, when split
        self.od_total = 0                # this interval's requests and successes
        self.od_ok = 0
        self.success_rate = -1.0         # last interval's, as /clusters shows it
        # peak EWMA balancer
        self.ewma: float | None = None
        self.ewma_at = 0.0

    def set_health(self) -> None:
        """hc_failed or ejected changed: recompute who is in rotation."""
        self.cluster.rotation()

    # -- what streams report about each attempt (outlier detection and balancers listen) --
    def observe(self, status: int, elapsed_ms: float) -> None:
        """An upstream answered this attempt with `status` after `elapsed_ms`."""
        if status >= 500:
            self.rq_error += 1
        c = self.cluster
        if c.outlier is not None:
            c.outlier.on_result(self, status)
        if c.latency_tau:
            lbs.observe_latency(self, elapsed_ms, c.latency_tau)

    def observe_failure(self, kind: str) -> None:
        """The attempt failed locally: "connect_failure", "reset" or "timeout"."""
        self.rq_error += 1
        c = self.cluster
        if c.outlier is not None:
            c.outlier.on_local_failure(self, kind)
        if c.latency_tau:
            # a failure is as bad as the slowest answer we would tolerate: the connect timeout
            lbs.observe_latency(self, c.config.connect_timeout * 1000.0, c.latency_tau)

    @property
    def health(self) -> str:
        if self.hc_failed:
            return "unhealthy"
        if self.ejected:
            return "ejected"
        return "healthy"

    # of describe()'s numbers, those counting this worker's own traffic: summed across
    # workers for /clusters; the rest describe the host and are reported once
    TRAFFIC = ("cx_active", "cx_idle", "rq_active", "rq_total", "rq_error")

    def describe(self) -> dict:
        d = {"address": self.address, "weight": self.weight, "health": self.health,
             "cx_active": self.pool.cx_active, "cx_idle": len(self.pool.idle),
             "rq_active": self.rq_active, "rq_total": self.rq_total, "rq_error": self.rq_error}
        if self.success_rate >= 0:
            d["success_rate"] = self.success_rate
        return d


# Stats every cluster keeps, under cluster.<name>.<stat> (Envoy's names).
CLUSTER_STATS = (
    "upstream_rq_total", "upstream_rq_2xx", "upstream_rq_3xx", "upstream_rq_4xx", "upstream_rq_5xx",
    "upstream_rq_timeout", "upstream_rq_per_try_timeout", "upstream_rq_retry", "upstream_rq_retry_success",
    "upstream_rq_retry_overflow", "upstream_rq_pending_overflow", "upstream_rq_pending_total",
    "upstream_cx_total", "upstream_cx_connect_fail", "upstream_cx_connect_timeout",
    "upstream_cx_overflow", "upstream_cx_destroy_remote", "upstream_rq_rx_reset",
    "upstream_cx_protocol_error", "upstream_rq_maintenance_mode", "lb_healthy_panic",
    "original_dst_host_invalid",
)


# of Cluster.describe()'s numbers, those counting this worker's own traffic (see Host.TRAFFIC)
CLUSTER_TRAFFIC = ("cx_active", "rq_active", "rq_pending")
HOST_TRAFFIC = Host.TRAFFIC


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Resources:
    """What the circuit breakers count, for one cluster name across its versions."""
    __slots__ = ("cx_active", "rq_pending", "rq_active", "retries_active")

    def __init__(self):
        self.cx_active = 0
        self.rq_pending = 0
        self.rq_active = 0
        self.retries_active = 0


# circuit-breaker setting -> the Resources count it bounds
LIMITED = (("max_connections", "cx_active"), ("max_pending_requests", "rq_pending"),
           ("max_requests", "rq_active"), ("max_retries", "retries_active"))


def _counted(name: str) -> property:
    own = "_" + name
    lease_of = attrgetter(name + "_lease")
    get = attrgetter(own)

    def set_(self, v):
        old = getattr(self, own)
        setattr(self, own, v)
        lease = lease_of(self)
        if v < old:
            lease.settle(v)
        elif v > lease.lease:
            lease.cover(v)
    return property(get, set_)


class SharedResources:
    """Resources whose limits hold across worker processes: each count is local,
    each has a Lease on the proxy-wide limit (runtime.shared)."""
    __slots__ = ("_cx_active", "_rq_pending", "_rq_active", "_retries_active",
                 "cx_active_lease", "rq_pending_lease", "rq_active_lease", "retries_active_lease", "starved",
                 "name")
    # set by name in __init__, one per LIMITED count
    _cx_active: int
    _rq_pending: int
    _rq_active: int
    _retries_active: int
    cx_active_lease: sh.Lease
    rq_pending_lease: sh.Lease
    rq_active_lease: sh.Lease
    retries_active_lease: sh.Lease
    cx_active = _counted("cx_active")
    rq_pending = _counted("rq_pending")
    rq_active = _counted("rq_active")
    retries_active = _counted("retries_active")

    def __init__(self, seg: "sh.Segment", name: str, cb: CircuitBreakers):
        self.name = name
        for setting, count in LIMITED:
            setattr(self, "_" + count, 0)
            setattr(self, count + "_lease", sh.Lease(seg, f"cluster/{name}/{count}", getattr(cb, setting), self))
        # requests of each worker that wait for a connection their pool may not open
        self.starved = sh.Board(seg, f"cluster/{name}/starved")

    def configure(self, cb: CircuitBreakers) -> None:
        for setting, count in LIMITED:
            getattr(self, count + "_lease").configure(getattr(cb, setting))

    def settle(self) -> None:
        """Give back lease taken by a check that no count followed (a request that
        then found no healthy host): without it the slack would wait for this
        worker's next release."""
        # each LIMITED count, written out: this runs for every cluster four times a second
        self.cx_active_lease.settle(self._cx_active)
        self.rq_pending_lease.settle(self._rq_pending)
        self.rq_active_lease.settle(self._rq_active)
        self.retries_active_lease.settle(self._retries_active)

    def unused(self) -> bool:
        """Nothing leased and nothing reported: the sweep may pass it by until a lease
        grows again (runtime.shared.Segment.in_use)."""
        return not (self.cx_active_lease.lease or self.rq_pending_lease.lease or self.rq_active_lease.lease
                    or self.retries_active_lease.lease or self.starved.value)


def _room(count: str) -> property:
    own = "_" + count
    lease_of = attrgetter("res." + count + "_lease")
    used = attrgetter("res." + own)

    def get(self):
        lease = lease_of(self)
        n = used(self)
        return lease.lease if n < lease.lease else lease.grant(n)
    return property(get)


class SharedBreakers:
    """A cluster's `cb` with N workers: each max_* is how far this worker's count
    may go now, so the checks `count >= cb.max_*` elsewhere read the same."""
    __slots__ = ("config", "res")
    max_connections = _room("cx_active")
    max_pending_requests = _room("rq_pending")
    max_requests = _room("rq_active")
    max_retries = _room("retries_active")

    def __init__(self, config: CircuitBreakers, res: SharedResources):
        self.config = config
        self.res = res


def _resource(name: str) -> property:
    def set_(self, v):
        setattr(self.res, name, v)
    return property(attrgetter("res." + name), set_)


class Cluster:
    cx_active = _resource("cx_active")
    rq_pending = _resource("rq_pending")
    rq_active = _resource("rq_active")
    retries_active = _resource("retries_active")

    def __init__(self, config: ClusterConfig, stats: Store, old: "Cluster | None" = None,
                 res: "SharedResources | None" = None):
        self.name = config.name
        self.config = config
        self.cb = config.circuit_breakers if res is None else SharedBreakers(config.circuit_breakers, res)
        self.stats = stats
        prefix = f"cluster.{config.name}."
        # made on first use (most stay at zero), listed in /stats all the same
        self.c = c = stats.family(prefix, CLUSTER_STATS)
        # the counters every request bumps, without a name lookup
        self.rq_total_counter = c["upstream_rq_total"]
        # upstream_rq_<code>, by exact status as Envoy counts (made at a code's first
        # response), is the one count a response costs (count_status); upstream_rq_<class>
        # is their sum, added when read. A status outside 100..599 has no counter of its
        # own and counts as 5xx (under 0). The store keeps the codes met per prefix, so
        # every version of the cluster counts into, and sums, the same counters.
        self.responses = stats.responses(prefix + "upstream_rq_")
        self.rq_codes = self.responses.codes
        self.cx_active_gauge = stats.gauge(prefix + "upstream_cx_active", ACCUMULATE)
        # the circuit breaker's own count (shared across versions, see res below)
        stats.gauge_reading(prefix + "upstream_rq_active", lambda: self.res.rq_active, ACCUMULATE)
        # every worker holds the whole membership: reported once, not per worker
        self.membership_gauge = stats.gauge(prefix + "membership_total", PER_PROXY)
        self.healthy_gauge = stats.gauge(prefix + "membership_healthy", PER_PROXY)
        self.rq_time = stats.histogram(prefix + "upstream_rq_time")
        # Envoy's upstream_rq_completed: the responses the class counters count, added when read
        classes = tuple(stats.counters[f"{prefix}upstream_rq_{cls}"] for cls in RESPONSE_CLASSES)
        stats.counter_reading(prefix + "upstream_rq_completed", lambda: sum(k.value for k in classes))
        # circuit-breaker accounting across all hosts, shared with the cluster's earlier
        # versions: streams and pools still holding one of those settle their counts here
        self.res: Resources | SharedResources = res if res is not None else old.res if old else Resources()
        self.shared = res is not None      # breakers held across worker processes
        opts = config.options
        self.outlier: OutlierDetector | None = None
        self.health: HealthChecker | None = None
        self.dns: DnsResolver | None = None
        lb_cfg = opts.get("peak_ewma_lb_config") or {}
        self.latency_tau = float(lb_cfg.get("decay_time", 10.0)) if config.lb == "peak_ewma" else 0.0
        self.hosts: list[Host] = []
        self.lb: lbs.LoadBalancer = None  # type: ignore[assignment]  # _reconcile sets it, below
        self.levels: Levels | None = None  # endpoints of several priorities
        self.panic = False
        common = opts.get("common_lb_config") or {}
        self.panic_threshold = float(common.get("healthy_panic_threshold", 50.0))
        eps: tuple[Endpoint, ...]
        if opts.get("type") == "strict_dns":
            # the named endpoints are resolved by the DNS task; until then keep what the
            # previous version of this cluster had resolved
            eps = tuple(h.endpoint for h in old.hosts) if old is not None and old.dns is not None else ()
        else:
            eps = config.endpoints
        self._reconcile(eps, old.hosts if old else ())
        self._start(old)

    def _reconcile(self, endpoints: Iterable[Endpoint], current: Iterable[Host]) -> None:
        kept = {h.address: h for h in current}
        hosts: list[Host] = []
        for ep in endpoints:
            h = kept.pop(ep.address, None)
            same_pool = h is not None and h.cluster.config.protocol == self.config.protocol
            if h is not None and h.weight == ep.weight and same_pool and h.endpoint.tls_match == ep.tls_match:
                h.cluster = self
                h.endpoint = ep          # its priority may have changed
            else:
                if h is not None:
                    h.pool.retire()
                h = Host(self, ep)
            hosts.append(h)
        for gone in kept.values():
            gone.pool.retire()
        self.hosts = hosts
        self.membership_gauge.value = len(hosts)
        if self.config.lb == "cluster_provided":      # ORIGINAL_DST: hosts made per destination
            from .original_dst import Balancer
            self.lb = Balancer(self)  # type: ignore[assignment]  # a balancer of its own kind
        else:
            self.lb = locality.make(self.config.lb, hosts, self.config.options)
        self.levels = None
        if self.config.lb != "cluster_provided" and len({h.endpoint.priority for h in hosts}) > 1:
            from .priority import Levels
            self.levels = Levels(hosts, self.config.lb, self.config.options)
        self.rotation()

    def count_status(self, status: int) -> None:
        """One upstream response of `status` (or a local reply counted as one)."""
        c = self.rq_codes.get(status)
        if c is None:
            c = self.code_counter(status)
        c.value += 1

    def code_counter(self, status: int) -> Counter:
        """upstream_rq_<status>, made at its first response (Responses.made)."""
        return self.responses.made(status)

    def rotation(self) -> None:
        """Set each host's `healthy` (in rotation) from its checks and ejection. Below
        healthy_panic_threshold percent of healthy hosts, every host is in rotation,
        as Envoy's panic mode: spreading load over all beats crushing the few left.
        Endpoints of several priorities: their levels decide (priority.Levels)."""
        levels = self.levels
        if levels is not None:
            levels.rotation(self.panic_threshold)
            self.healthy_gauge.value = levels.healthy_count()
            self.panic = levels.panic
            self.pick = self._pick_by_level  # type: ignore[method-assign]
            return
        hosts = self.hosts
        ok = sum(1 for h in hosts if not (h.hc_failed or h.ejected))
        self.healthy_gauge.value = ok
        self.panic = bool(hosts) and ok * 100.0 < self.panic_threshold * len(hosts)
        for h in hosts:
            h.healthy = self.panic or not (h.hc_failed or h.ejected)
        if isinstance(self.lb, locality.Localities):
            self.lb.refresh()
        # out of panic a pick is the balancer's alone: streams call it without the
        # frame of pick() below, which only adds the panic count
        if self.panic:
            self.__dict__.pop("pick", None)
        else:
            self.pick = self.lb.pick  # type: ignore[method-assign]  # the balancer's own, without this frame

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """Membership changed at run time (DNS): reuse the Hosts of endpoints that stayed."""
        endpoints = tuple(endpoints)
        if tuple(h.endpoint for h in self.hosts) == endpoints:
            return
        self._reconcile(endpoints, self.hosts)
        if self.outlier is not None:
            self.outlier.refresh()

    def _start(self, old: "Cluster | None") -> None:
        opts = self.config.options
        od = opts.get("outlier_detection")
        hc = opts.get("health_check")
        if od is None or hc is None:
            # state a removed checker can no longer clear must not keep hosts out of rotation
            for h in self.hosts:
                if od is None:
                    h.ejected = False
                if hc is None:
                    h.hc_failed = False
                    h.hc_checked = False
            self.rotation()
        if od is not None:
            from .outlier import OutlierDetector
            self.outlier = OutlierDetector(self, od)
        elif old is not None and old.outlier is not None:
            old.outlier.clear_gauge()
        loop = _running_loop()
        if loop is None:
            return            # built outside a worker (config checks, unit tests): nothing runs
        if self.outlier is not None:
            self.outlier.start(loop)
        if hc is not None:
            from .health import HealthChecker
            self.health = HealthChecker(self, hc)
            self.health.start(loop)
        if opts.get("type") == "strict_dns":
            from .dns import DnsResolver
            self.dns = DnsResolver(self)
            self.dns.start(loop)

    def _stop(self) -> None:
        if self.health is not None:
            self.health.stop()
        if self.outlier is not None:
            self.outlier.stop()
        if self.dns is not None:
            self.dns.stop()

    def pick(self, ctx: StreamContext | None, exclude: Host | None = None) -> Host | None:
        if self.panic:
            self.c["lb_healthy_panic"].value += 1
        return self.lb.pick(ctx, exclude)

    def _pick_by_level(self, ctx: StreamContext | None, exclude: Host | None = None) -> Host | None:
        if self.panic:
            self.c["lb_healthy_panic"].value += 1
        assert self.levels is not None          # rotation() chose this pick for levels
        return self.levels.pick(ctx, exclude)

    async def warm(self, timeout: float) -> None:
        """Wait (bounded) for what the cluster needs before serving: its first DNS answer."""
        if self.dns is not None:
            await self.dns.first(timeout)

    def describe(self) -> dict:
        cb = self.config.circuit_breakers
        return {"lb": self.config.lb, "endpoints": [h.describe() for h in self.hosts],
                "circuit_breakers": {"max_connections": cb.max_connections,
                                     "max_pending_requests": cb.max_pending_requests,
                                     "max_requests": cb.max_requests,
                                     "max_retries": cb.max_retries},
                "cx_active": self.cx_active, "rq_active": self.rq_active,
                "rq_pending": self.rq_pending}

    def close(self) -> None:
        self._stop()
        if self.outlier is not None:
            self.outlier.clear_gauge()
        self.membership_gauge.value = self.healthy_gauge.value = 0
        for h in self.hosts:
            h.pool.retire()


class ClusterManager:
    def __init__(self, stats: Store, shared: "sh.Segment | None" = None):
        self.stats = stats
        self.clusters: dict[str, Cluster] = {}
        self.shared = shared
        # with N workers: each cluster name's Resources, kept while the process lives
        # (a removed cluster's streams still settle there; a re-added one reuses it)
        self.resources: dict[str, SharedResources] = {}
        self.full = False       # the shared file had no room for a cluster's share

    def _resources(self, cfg: ClusterConfig) -> "SharedResources | None":
        if self.shared is None:
            return None
        res = self.resources.get(cfg.name)
        if res is None:
            if self.full:
                return None
            try:
                res = self.resources[cfg.name] = SharedResources(self.shared, cfg.name, cfg.circuit_breakers)
            except sh.SegmentFull:
                # regions are never freed: it stays full, and finding that out again
                # walks its whole directory, so clusters named from now on do not ask
                self.full = True
                logging.getLogger("mosnx").warning(
                    "the shared limits file is full (%d clusters hold a share): cluster %s and those named "
                    "after it have circuit breakers per worker", len(self.resources), cfg.name)
                return None
        else:
            res.configure(cfg.circuit_breakers)
        return res

    def update(self, configs: dict[str, ClusterConfig]) -> None:
        new: dict[str, Cluster] = {}
        for name, cfg in configs.items():
            old = self.clusters.get(name)
            if old is not None and (old.config is cfg or old.config == cfg):
                new[name] = old
            else:
                if old is not None:
                    old._stop()
                new[name] = Cluster(cfg, self.stats, old, self._resources(cfg))
        for name, old in self.clusters.items():
            if name not in new:
                old.close()
        self.clusters = new

    def reassign(self, cfg: ClusterConfig) -> None:
        """The cluster named `cfg.name` now has `cfg`, which differs from its config in
        its endpoints alone (an EDS update): its membership changes in place, as
        set_endpoints does (the Hosts, pools and health of endpoints that stay are
        kept). A cluster not here is not made; one whose membership DNS decides keeps
        it."""
        c = self.clusters.get(cfg.name)
        if c is None or c.dns is not None:
            return
        c.config = cfg
        c.set_endpoints(cfg.endpoints)

    async def warm(self, timeout: float = 5.0) -> None:
        for c in list(self.clusters.values()):
            await c.warm(timeout)

    def get(self, name: str) -> Cluster | None:
        return self.clusters.get(name)

    def sweep(self, now: float) -> None:
        """Idle connections timed out, and (N workers) unused lease given back and
        connections shared out. Four times a second, so a cluster in which this
        worker has no connection open and no request waiting costs one check: with
        thousands of clusters, most are idle in any one worker."""
        if self.shared is None:
            for c in self.clusters.values():
                self._sweep(c, now)
            return
        # with N workers only the clusters whose shares this worker ever leased: a
        # cluster with nothing leased has no connection, no request and nothing to give
        # back here (its counts never pass its lease: runtime.shared.Lease)
        clusters = self.clusters
        in_use = self.shared.in_use
        for share in list(in_use):
            share.settle()
            held = clusters.get(share.name)
            if held is not None and held.res is share:
                self._sweep(held, now)
            if share.unused():
                in_use.discard(share)
        if self.full:           # clusters past the shared file's room count per worker
            for c in clusters.values():
                if not c.shared:
                    self._sweep(c, now)

    def _sweep(self, c: Cluster, now: float) -> None:
        res = c.res
        if not (res.cx_active or res.rq_pending):
            # nothing to time out, close or wake here; nothing starved to report
            if isinstance(res, SharedResources):
                res.starved.publish(0)
            return
        for h in c.hosts:
            pool = h.pool
            # HTTP/2 pools time their idle connections themselves and have no sweep
            if pool.idle and hasattr(pool, "sweep"):
                pool.sweep(now)
        if c.shared:
            self._share_connections(c)

    @staticmethod
    def _share_connections(c: Cluster) -> None:
        """With N workers, at max_connections: a pool with no connection queues
        (pool.py), and connections idle in some worker would keep it waiting for
        ever. Each worker reports its starved requests; while any worker has some
        and the proxy is at the limit, workers close idle connections, and every
        worker retries its queued requests (another worker's closed connection
        does not wake them)."""
        res: SharedResources = c.res  # type: ignore[assignment]  # c.shared: its counts are shared
        res.starved.publish(sum(len(h.pool.waiters) for h in c.hosts if h.pool.cx_active == 0))
        want = res.starved.total()
        if want and res.cx_active_lease.total() >= c.config.circuit_breakers.max_connections:
            for h in c.hosts:
                for conn in list(h.pool.idle):
                    if want <= 0:
                        break
                    conn.close()
                    want -= 1
        for h in c.hosts:
            if h.pool.waiters:
                h.pool.wake()

    def describe(self) -> dict:
        return {n: c.describe() for n, c in self.clusters.items()}

    def close(self) -> None:
        for c in self.clusters.values():
            c.close()
