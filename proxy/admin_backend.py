"""The admin API's view of the whole proxy: the workers' answers gathered and merged
(counters and histograms add up, per-proxy gauges are reported once; see
runtime.stats), the snapshot's dump (with the control plane's resources in Envoy's
typed form when there is one), and readiness.

It also acts on the proxy for the mutating endpoints Istio's agent calls, as Envoy
does: stop (/quitquitquit: drain, exit 0), fail the health check (the server's
state reads DRAINING and /ready 503 until /healthcheck/ok; traffic is served as
before), drain listeners (the workers stop accepting on them, graceful or at once),
and set log levels (here and in every worker).

The server state is Envoy's: PRE_INITIALIZING until the workers are up, INITIALIZING
while the control plane's first listeners and clusters are awaited, LIVE, DRAINING
when stopping or failed by /healthcheck/fail.
"""
from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from mosnx import __version__
from mosnx.runtime.stat_tags import MOSNX_STATS, StatNaming
from mosnx.runtime.stats import PER_PROXY, merge, merge_into

if TYPE_CHECKING:
    from .supervisor import Supervisor


class AdminBackend:
    """What the admin API reads (proxy.admin.AdminBackend), from the supervisor and
    its workers."""

    def __init__(self, sup: Supervisor):
        self.sup = sup
        self.health_check_failed = False
        self._naming: StatNaming | None = None      # by the serving config's `stats` (stat_naming)
        st = sup.stats
        st.gauge_reading("server.state", lambda: STATES[self.state()], PER_PROXY)
        st.gauge_reading("server.live", lambda: int(self.state() == "LIVE"), PER_PROXY)
        st.gauge_reading("listener_manager.workers_started",
                         lambda: int(self.sup.state in ("LIVE", "DRAINING")), PER_PROXY)

    def state(self) -> str:
        s = self.sup.state
        if s == "LIVE" and self.sup.xds is not None and not self.sup.xds.ready():
            return "INITIALIZING"
        if s == "LIVE" and self.health_check_failed:
            return "DRAINING"
        return s

    async def stats(self) -> dict:
        dumps = [r["stats"] for r in await self.sup.gather("stats") if "stats" in r]
        if len(dumps) == 1:
            # One worker shares this loop: its dump is already a copy, so the
            # supervisor's few stats are added to it rather than copying it whole.
            return merge_into(dumps[0], self.sup.stats.dump())
        dumps.append(self.sup.stats.dump())
        return merge(dumps)

    def stat_naming(self) -> StatNaming:
        """How /stats/prometheus names series: the serving config's `stats` (an Envoy
        bootstrap's stats_config), made again only when that changes, so what it
        worked out of each stat name is kept from one scrape to the next."""
        snap = self.sup.snapshot
        config = (snap.config.stats if snap is not None else None) or MOSNX_STATS
        naming = self._naming
        if naming is None or naming.config != config:
            naming = self._naming = StatNaming(config)
        return naming

    async def clusters(self) -> dict:
        replies = [r["clusters"] for r in await self.sup.gather("clusters") if "clusters" in r]
        return merge_clusters(replies)

    async def config_dump(self) -> dict:
        replies = await self.sup.gather("config_dump")
        dump = self.sup.snapshot.dump()
        dump["worker_versions"] = [r.get("dump", {}).get("version") for r in replies if r.get("dump")]
        dump["last_reload_error"] = self.sup.last_error
        if self.sup.xds is not None:
            # Envoy's own shape of the control plane's resources, for Envoy's tools
            dump["configs"] = self.sup.xds.dump()["configs"]
        return dump

    def server_info(self) -> dict:
        s = self.sup
        return {"version": __version__, "state": self.state(), "uptime_s": int(time.time() - s.started),
                "workers": len(s.workers), "pid": os.getpid(), "config_path": s.config_path,
                "snapshot_version": s.version}

    async def reload(self) -> tuple[bool, dict]:
        return await self.sup.reload("admin")

    def ready(self) -> bool:
        # with a control plane, not before its first listeners and clusters came
        return self.state() == "LIVE"

    def fail_health_check(self, failed: bool) -> None:
        self.health_check_failed = failed

    def quit(self) -> bool:
        """Drain and exit 0, as on SIGTERM; False when not serving yet (or already stopping)."""
        return self.sup.stop("admin /quitquitquit")

    def listeners(self) -> list[dict[str, Any]]:
        snap = self.sup.snapshot
        if snap is None:
            return []
        return [{"name": name, "host": l.config.host, "port": l.config.port,
                 "traffic_direction": l.config.options.get("traffic_direction")}
                for name, l in snap.listeners.items()
                if l.config.chain_of is None]     # a filter chain's stack is served, never bound

    async def drain_listeners(self, inbound_only: bool, graceful: bool) -> list[str]:
        """Envoy's /drain_listeners: every listener, or those whose traffic_direction is
        INBOUND; the workers stop accepting on them at once, or with `graceful` after the
        drain time, their connections told to close meanwhile. The names drained."""
        names = [l["name"] for l in self.listeners()
                 if not inbound_only or l["traffic_direction"] == "INBOUND"]
        timeout = self.sup.drain_timeout() if graceful else 0.0
        await self._tell_all("drain_listeners", names=names, graceful=graceful, after=timeout)
        return names

    async def set_log_levels(self, levels: dict[str, str]) -> dict[str, str]:
        """{logger: level} set here and in every worker; the levels now, by logger."""
        set_levels(levels)
        await self._tell_all("log_levels", levels=levels)
        return log_levels()

    def log_levels(self) -> dict[str, str]:
        return log_levels()

    async def _tell_all(self, op: str, **kw: Any) -> None:
        for h in self.sup.workers:
            try:
                await h.ask(op, timeout=5.0, **kw)
            except (ConnectionError, TimeoutError, OSError):
                continue


STATES = {"LIVE": 0, "DRAINING": 1, "PRE_INITIALIZING": 2, "INITIALIZING": 3}
# Envoy's log level names -> Python's (the command line's -l and the admin's /logging)
ENVOY_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "warn": "warning", "warning": "warning",
                "error": "error", "critical": "critical", "off": "critical"}
ROOT = "mosnx"


def set_levels(levels: dict[str, str]) -> None:
    """Python levels by logger name ("mosnx" is every logger of the proxy)."""
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level.upper())


def log_levels() -> dict[str, str]:
    """The effective level of mosnx's loggers, by name."""
    names = [ROOT] + sorted(n for n in logging.root.manager.loggerDict if n.startswith(ROOT + "."))
    return {n: logging.getLevelName(logging.getLogger(n).getEffectiveLevel()).lower() for n in names}


def merge_clusters(replies: list[dict]) -> dict:
    """One /clusters answer from the workers'. Only the numbers each worker keeps of
    its own traffic (CLUSTER_TRAFFIC, HOST_TRAFFIC) add up; everything else (the
    endpoint list, weights, settings, flags) describes the proxy and is reported
    once, from the first worker that names it; an endpoint's health is the worst any
    worker saw."""
    from .upstream.cluster import CLUSTER_TRAFFIC, HOST_TRAFFIC     # what a worker counts: the describe()s
    out: dict = {}
    for rep in replies:
        for name, c in rep.items():
            cur = out.get(name)
            if cur is None:
                out[name] = {k: v for k, v in c.items()}
                out[name]["endpoints"] = [dict(e) for e in c.get("endpoints", ())]
                continue
            for k in CLUSTER_TRAFFIC:
                if k in c:
                    cur[k] = cur.get(k, 0) + c[k]
            by_addr = {e["address"]: e for e in cur["endpoints"]}
            for e in c.get("endpoints", ()):
                m = by_addr.get(e["address"])
                if m is None:
                    cur["endpoints"].append(dict(e))
                    continue
                for k in HOST_TRAFFIC:
                    if k in e:
                        m[k] = m.get(k, 0) + e[k]
                if e.get("health", "healthy") != "healthy":
                    m["health"] = e["health"]
    return out
