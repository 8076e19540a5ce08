"""Priority levels of a cluster's endpoints (Envoy's EDS `priority`): traffic goes to
the lowest level while it is healthy enough, and spills to the next ones as it is
not.

Each level has a balancer of the cluster's kind over its own hosts. A level's health
is the share of its hosts in rotation times Envoy's overprovisioning factor (1.4),
capped at 100%: a level with 72% of its hosts up still takes all the traffic. Levels
take load in order, each what its health allows of what is left; when the levels'
health adds up to less than 100%, the loads are scaled up to fill it (Envoy's
normalized total health). Below the cluster's healthy_panic_threshold of normalized
total health, every host is in rotation again, as the single-level panic does, and
the levels' health is counted as if all were up (so level 0 takes the traffic).

Built by the cluster when its endpoints name more than one level; a cluster of one
level never comes here, and its picks cost what they did. A cluster balancing by
locality has a locality.Localities per level, refreshed with the levels' health.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

from . import locality

OVERPROVISIONING = 1.4


class Levels:
    __slots__ = ("levels", "loads", "panic")

    def __init__(self, hosts: Sequence[Any], kind: str, options: dict | None) -> None:
        by: dict[int, list[Any]] = {}
        for h in hosts:
            by.setdefault(h.endpoint.priority, []).append(h)
        # (priority, its hosts, its balancer), lowest priority first
        self.levels = [(p, by[p], locality.make(kind, by[p], options)) for p in sorted(by)]
        self.loads: list[float] = [100.0] + [0.0] * (len(self.levels) - 1)
        self.panic = False

    def rotation(self, threshold: float) -> None:
        """Each host's `healthy` and each level's share of the load, from the hosts'
        checks and ejections."""
        health = []
        for _, hosts, _ in self.levels:
            ok = sum(1 for h in hosts if not (h.hc_failed or h.ejected))
            health.append(min(100.0, OVERPROVISIONING * 100.0 * ok / len(hosts)) if hosts else 0.0)
        total = min(100.0, sum(health))
        self.panic = total < threshold
        for _, hosts, _ in self.levels:
            for h in hosts:
                h.healthy = self.panic or not (h.hc_failed or h.ejected)
        for _, _, balancer in self.levels:
            if isinstance(balancer, locality.Localities):
                balancer.refresh()
        if self.panic:
            health = [100.0] * len(self.levels)
            total = 100.0
        left = 100.0
        loads = []
        for hl in health:
            share = min(left, hl * 100.0 / total) if total else 0.0
            loads.append(share)
            left -= share
        self.loads = loads

    def healthy_count(self) -> int:
        return sum(1 for _, hosts, _ in self.levels for h in hosts if not (h.hc_failed or h.ejected))

    def pick(self, ctx: Any, exclude: Any = None) -> Any:
        r = random.random() * 100.0
        levels = self.levels
        start = len(levels) - 1
        for i, load in enumerate(self.loads):
            if r < load:
                start = i
                break
            r -= load
        # the chosen level first; should it have no host to give, the others in order
        h = levels[start][2].pick(ctx, exclude)
        if h is not None:
            return h
        for i, (_, _, balancer) in enumerate(levels):
            if i != start:
                h = balancer.pick(ctx, exclude)
                if h is not None:
                    return h
        return None
