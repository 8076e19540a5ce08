"""Locality-weighted load balancing (Envoy's "Locality weighted load balancing"): within
a priority level a locality is picked first, by its effective weight, then a host in
it by the cluster's own policy (a balancer of that kind per locality).

- A locality is the Endpoint's `locality` (region/zone/sub_zone); its weight the
  `locality_weight` its endpoints carry (EDS's LocalityLbEndpoints.load_balancing_weight;
  0: it takes no traffic, as in Envoy).
- Its effective weight is weight x availability, availability being the share of its
  hosts in rotation (not failing checks, not ejected) times the overprovisioning
  factor (1.4), capped at 1: a locality with 72% of its hosts up keeps its whole
  weight. A locality is picked with probability effective weight / their sum.
- When no locality has an effective weight (none with weight has a host up), picks go
  to every host of the level by the cluster's policy, as Envoy falls back to the
  whole host set.
- The weights are worked out when health changes (`refresh()`, called by the
  cluster's and the priority levels' rotation), never per pick: a pick is one draw,
  one bisect and the locality's own pick. A locality that has no host to give passes
  the pick to the others, heaviest first.
- `make()` is where a cluster or a level gets its balancer: a plain one unless the
  cluster balances by locality (options["locality_weighted"]), so a cluster that does
  not pays nothing.
"""
from __future__ import annotations

import bisect
import random
from typing import Any, Sequence

from . import lb as lbs

OVERPROVISIONING = 1.4          # Envoy's default overprovisioning factor, as priority.py


def make(kind: str, hosts: Sequence[Any], options: dict | None) -> Any:
    """The balancer of a cluster (or of one of its priority levels) over `hosts`."""
    if options and options.get("locality_weighted"):
        return Localities(hosts, kind, options)
    return lbs.make(kind, hosts, options)


class Localities:
    __slots__ = ("hosts", "localities", "effective", "cumulative", "fallback", "order", "rng")
    name = "locality_weighted"

    def __init__(self, hosts: Sequence[Any], kind: str, options: dict | None,
                 rng: random.Random | None = None) -> None:
        by: dict[str, list[Any]] = {}
        weight: dict[str, int] = {}
        for h in hosts:
            loc = h.endpoint.locality
            by.setdefault(loc, []).append(h)
            weight[loc] = max(weight.get(loc, 0), h.endpoint.locality_weight)
        self.hosts = list(hosts)
        # (locality, its hosts, its weight, its balancer), in name order
        self.localities = [(loc, by[loc], weight[loc], lbs.make(kind, by[loc], options)) for loc in sorted(by)]
        self.fallback = lbs.make(kind, self.hosts, options)
        self.rng: Any = rng if rng is not None else random
        self.effective: list[float] = []
        self.cumulative: list[float] = []
        self.order: list[int] = []
        self.refresh()

    def refresh(self) -> None:
        """Each locality's effective weight, from its hosts' checks and ejections."""
        eff = []
        for _, hosts, w, _ in self.localities:
            up = sum(1 for h in hosts if not (h.hc_failed or h.ejected))
            eff.append(w * min(1.0, OVERPROVISIONING * up / len(hosts)) if hosts else 0.0)
        total = 0.0
        cumulative = []
        for e in eff:
            total += e
            cumulative.append(total)
        self.effective = eff
        self.cumulative = cumulative
        self.order = sorted((i for i, e in enumerate(eff) if e > 0), key=lambda i: -eff[i])

    def shares(self) -> dict[str, float]:
        """Each locality's share of the picks now (for the admin and tests)."""
        total = self.cumulative[-1] if self.cumulative else 0.0
        return {loc: (e / total if total else 0.0) for (loc, *_), e in zip(self.localities, self.effective)}

    def pick(self, ctx: Any, exclude: Any = None) -> Any:
        cumulative = self.cumulative
        total = cumulative[-1] if cumulative else 0.0
        if total <= 0.0:
            return self.fallback.pick(ctx, exclude)
        i = bisect.bisect_right(cumulative, self.rng.random() * total)
        if i >= len(cumulative):        # a draw of exactly the total
            i = len(cumulative) - 1
        h = self.localities[i][3].pick(ctx, exclude)
        if h is not None:
            return h
        for j in self.order:
            if j != i:
                h = self.localities[j][3].pick(ctx, exclude)
                if h is not None:
                    return h
        return None
