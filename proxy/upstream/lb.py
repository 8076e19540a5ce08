"""Load balancers: pick a host among a cluster's healthy hosts.

A balancer is built once per cluster (and rebuilt when membership changes); pick()
runs per request and allocates nothing on the round-robin path. `exclude` lets a
retry go to another host where one exists.
"""
from __future__ import annotations

import random
from typing import Sequence


class LoadBalancer:
    name = "base"

    def __init__(self, hosts: Sequence, options: dict | None = None):
        self.hosts = list(hosts)

    def pick(self, ctx, exclude=None):
        raise NotImplementedError

    def _available(self, exclude):
        hs = [h for h in self.hosts if h.healthy and h is not exclude]
        if not hs and exclude is not None:
            hs = [h for h in self.hosts if h.healthy]
        return hs


class RoundRobin(LoadBalancer):
    """Weighted round robin by expansion: a host of weight w appears w times, interleaved."""
    name = "round_robin"

    def __init__(self, hosts, options=None):
        super().__init__(hosts, options)
        ring = []
        top = max((h.weight for h in self.hosts), default=1)
        for round_ in range(top):
            ring.extend(h for h in self.hosts if h.weight > round_)
        self.ring = ring
        self.i = random.randrange(len(ring)) if ring else 0   # workers should not all start on host 0

    def pick(self, ctx, exclude=None):
        ring = self.ring
        n = len(ring)
        for _ in range(n):
            self.i = (self.i + 1) % n
            h = ring[self.i]
            if h.healthy and h is not exclude:
                return h
        if exclude is not None and exclude.healthy:
            return exclude
        return None


class Random(LoadBalancer):
    name = "random"

    def pick(self, ctx, exclude=None):
        hs = self._available(exclude)
        if not hs:
            return None
        return random.choices(hs, weights=[h.weight for h in hs])[0] if len(hs) > 1 else hs[0]


class LeastRequest(LoadBalancer):
    """Power of two choices on active requests, weighted as Envoy does (active / weight)."""
    name = "least_request"

    def pick(self, ctx, exclude=None):
        hs = self._available(exclude)
        if not hs:
            return None
        if len(hs) == 1:
            return hs[0]
        a, b = random.sample(hs, 2)
        return a if (a.rq_active + 1) / a.weight <= (b.rq_active + 1) / b.weight else b


BALANCERS = {cls.name: cls for cls in (RoundRobin, Random, LeastRequest)}


def make(name: str, hosts, options=None) -> LoadBalancer:
    return BALANCERS[name](hosts, options)
