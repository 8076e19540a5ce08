"""The admin API's view of the whole proxy: the workers' answers gathered and merged
(counters and histograms add up, per-proxy gauges are reported once; see
runtime.stats), the snapshot's dump (with the control plane's resources in Envoy's
typed form when there is one), and readiness.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from mosnx import __version__
from mosnx.runtime.stats import merge, merge_into

if TYPE_CHECKING:
    from .supervisor import Supervisor


class AdminBackend:
    """What the admin API reads (proxy.admin.AdminBackend), from the supervisor and
    its workers."""

    def __init__(self, sup: Supervisor):
        self.sup = sup

    async def stats(self) -> dict:
        dumps = [r["stats"] for r in await self.sup.gather("stats") if "stats" in r]
        if len(dumps) == 1:
            # One worker shares this loop: its dump is already a copy, so the
            # supervisor's few stats are added to it rather than copying it whole.
            return merge_into(dumps[0], self.sup.stats.dump())
        dumps.append(self.sup.stats.dump())
        return merge(dumps)

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
        return {"version": __version__, "state": s.state, "uptime_s": int(time.time() - s.started),
                "workers": len(s.workers), "pid": os.getpid(), "config_path": s.config_path,
                "snapshot_version": s.version}

    async def reload(self) -> tuple[bool, dict]:
        return await self.sup.reload("admin")

    def ready(self) -> bool:
        # with a control plane, not before its first listeners and clusters came
        return self.sup.state == "LIVE" and (self.sup.xds is None or self.sup.xds.ready())


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
