"""EDS in place: what changed ClusterLoadAssignments make of the clusters that use
them, without translating anything else.

An update that changes only assignments changes only the endpoints of the clusters
that name them (eds_cluster_config.service_name, or the cluster's own name), so:

- check() translates one assignment's endpoints with apply()'s own code
  (clusters.endpoints_of: UNHEALTHY, DRAINING, TIMEOUT and DEGRADED endpoints left
  out, weights kept, ports checked) and refuses it by its own name and field path.
- users() indexes which clusters use which assignment: the dynamic EDS clusters and
  the bootstrap's own EDS clusters fed over the stream.
- reassign() gives the new ClusterConfig of every cluster using a changed assignment:
  the translation apply() kept of it (Translations), its endpoints replaced (each
  picking its transport socket from the cluster's transport_socket_matches), which is
  what translate_cluster() would give, since an EDS cluster's assignment decides its
  endpoints and nothing else. It records them in those translations, so the next
  apply() finds every cluster as translated now. It answers None, and changes
  nothing, when one of those clusters has no good translation of the messages held
  now (the caller then applies the whole configuration).

Pure apart from the Translations it is given; the messages are only read.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..model import ClusterConfig, Config, Endpoint
from .apply import Resources, Translations
from .clusters import eds_name, endpoints_of, is_eds, translate_cluster
from .findings import Findings, Rejected, Rejection, Sink
from .protos import CLUSTER, ENDPOINT


@dataclasses.dataclass(frozen=True, slots=True)
class Users:
    """Assignment name -> the clusters using it: dynamic (CDS) and the bootstrap's own."""
    dynamic: dict[str, tuple[str, ...]]
    static: dict[str, tuple[str, ...]]


def users(resources: Resources, base: Config, memo: dict[str, tuple[Any, str | None]] | None = None) -> Users:
    """`memo`: each dynamic cluster's message and the assignment it names (None: not
    EDS), as the last call found them; a cluster whose message is the same is not read
    again (a cluster change re-indexes 20,000 clusters in a few ms instead of tens), and
    the memo is refilled with what is held now."""
    dynamic: dict[str, list[str]] = {}
    seen = dict(memo) if memo else {}
    if memo is not None:
        memo.clear()
    for name, c in resources.get(CLUSTER, {}).items():
        hit = seen.get(name)
        if hit is not None and hit[0] is c:
            a = hit[1]
        else:
            a = eds_name(c) if is_eds(c) else None
        if memo is not None:
            memo[name] = (c, a)
        if a is not None:
            dynamic.setdefault(a, []).append(name)
    static: dict[str, list[str]] = {}
    waiting = base.xds.static_resources.get(CLUSTER, {}) if base.xds is not None else {}
    for name, c in waiting.items():
        if is_eds(c):
            static.setdefault(eds_name(c), []).append(name)
    return Users({k: tuple(v) for k, v in dynamic.items()}, {k: tuple(v) for k, v in static.items()})


def check(name: str, cla: Any, sink: Sink | None = None) -> tuple[Endpoint, ...] | Rejection:
    """The endpoints assignment `name` gives, or why it is refused."""
    try:
        return endpoints_of(cla, Findings(ENDPOINT, name, "", sink))
    except Rejected as e:
        return e.rejection


def reassign(base: Config, resources: Resources, changed: Mapping[str, tuple[Any | None, tuple[Endpoint, ...]]],
             cache: Translations, index: Users, sink: Sink | None = None) -> dict[str, ClusterConfig] | None:
    """The clusters' new configs once the assignments in `changed` (name -> (message,
    its endpoints as check() gave them); (None, ()) for one removed) replace those in
    `resources` (what is held now, before the change). None when it cannot be done
    in place."""
    if cache.base is not base:
        return None
    clusters = resources.get(CLUSTER, {})
    held = resources.get(ENDPOINT, {})
    out: dict[str, ClusterConfig] = {}
    record: dict[str, tuple[Any, Any, Any, tuple]] = {}
    for a, (cla, eps) in changed.items():
        for name in index.dynamic.get(a, ()):
            c = clusters.get(name)
            was = cache.clusters.get(name)
            if c is None or was is None or was[0] is not c or was[1] is not held.get(a) \
                    or not isinstance(was[2], ClusterConfig):
                return None
            matches = was[2].options.get("tls_matches", ())
            if matches and cla is not None:
                # each endpoint picks its transport socket by its metadata (Istio's tlsMode)
                try:
                    eps = endpoints_of(cla, Findings(ENDPOINT, a, "", sink), matches)
                except Rejected:
                    return None
            out[name] = cfg = dataclasses.replace(was[2], endpoints=eps)
            record[name] = (c, cla, cfg, was[3])      # its secrets did not change
        for name in index.static.get(a, ()):
            if name in out:         # named like a dynamic one: apply() decides which serves
                return None
            assert base.xds is not None         # users() found it there
            try:
                if cla is not None:
                    msg = base.xds.static_resources[CLUSTER][name]
                    out[name] = translate_cluster(msg, Findings(CLUSTER, name, "", sink), cla)
                else:
                    # no assignment: the cluster as the bootstrap made it (as apply() leaves it)
                    out[name] = next(c for c in base.clusters if c.name == name)
            except (Rejected, KeyError, StopIteration):
                return None
    cache.clusters.update(record)
    return out
