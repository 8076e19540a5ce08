"""apply(): a base Config plus Envoy resources from a control plane -> a new Config.

`resources` maps a type URL (protos.LISTENER, ROUTE, CLUSTER, ENDPOINT) to the
resources of that type by name, as the xDS client holds them. The result keeps the
base's static listeners and clusters and adds every dynamic resource that
translates; a resource that does not is left out and reported as a Rejection (one
bad resource never keeps the others out). A dynamic resource named like a static
one is rejected: the file's own resources win, as in Envoy. A listener whose
RouteConfiguration has not arrived (or was rejected) is left out without a Rejection:
it waits, as Envoy warms a listener, with a warning (X004) in the sink; needed_names()
names what it waits for. A listener whose routes name a cluster that is not there is
rejected (mosnx cannot build it). An EDS cluster with no ClusterLoadAssignment yet
has no endpoints. Pure: the messages are only read.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..model import ClusterConfig, Config, ListenerConfig
from ..routes import RouteTable
from ..diagnostics import Diagnostic
from .findings import WAITING, Findings, Rejected, Rejection, Sink, Waiting
from .protos import CLUSTER, ENDPOINT, LISTENER, ROUTE
from .translate import eds_name, is_eds, rds_names, translate_cluster, translate_listener, translate_route_config

Resources = dict[str, dict[str, Any]]


def needed_names(resources: Resources, base: Config | None = None) -> dict[str, set[str]]:
    """The RouteConfigurations the listeners use and the ClusterLoadAssignments the
    EDS clusters use, by type URL: what the client should subscribe to next. With
    `base`, its bootstrap's waiting listeners and EDS clusters count too."""
    waiting = base.xds.static_resources if base is not None and base.xds is not None else {}
    listeners = [*resources.get(LISTENER, {}).values(), *waiting.get(LISTENER, {}).values()]
    clusters = [*resources.get(CLUSTER, {}).values(), *waiting.get(CLUSTER, {}).values()]
    routes = {n for lst in listeners for n in rds_names(lst)}
    eds = {eds_name(c) for c in clusters if is_eds(c)}
    return {ROUTE: routes, ENDPOINT: eds}


class Translations:
    """What apply() translated, by resource name, with the messages it came from: a
    later apply() given the same message objects (the xDS client keeps those it did
    not replace) takes the translation, or the rejection, as it was, so an update
    costs the resources that changed. Warnings are given when a resource is first
    translated."""

    def __init__(self) -> None:
        self.base: Config | None = None     # what they were translated beside
        self.routes: dict[str, tuple[Any, Any]] = {}
        self.clusters: dict[str, tuple[Any, Any, Any]] = {}


def apply(base: Config, resources: Resources, sink: Sink | None = None,
          cache: Translations | None = None) -> tuple[Config, list[Rejection]]:
    """`sink` collects the warnings (valid Envoy mosnx ignores), when given; `cache`
    keeps translations from one call to the next."""
    sink = sink if sink is not None else Sink()
    if cache is not None and cache.base is not base:
        # another file config (its static names decide some rejections): start again
        cache.base, cache.routes, cache.clusters = base, {}, {}
    rejected: list[Rejection] = []
    tables: dict[str, RouteTable] = {}
    seen_routes: dict[str, tuple[Any, Any]] = {}
    for name, rc in resources.get(ROUTE, {}).items():
        hit = cache.routes.get(name) if cache is not None else None
        if hit is not None and hit[0] is rc:
            got = hit[1]
        else:
            try:
                got = translate_route_config(rc, Findings(ROUTE, name, "", sink))
            except Rejected as e:
                got = e
        seen_routes[name] = (rc, got)
        if isinstance(got, Rejected):
            rejected.append(got.rejection)
        else:
            tables[name] = got
    if cache is not None:
        cache.routes = seen_routes
    static_clusters = {c.name for c in base.clusters}
    assignments = resources.get(ENDPOINT, {})
    waiting = base.xds.static_resources if base.xds is not None else {}
    clusters: list[ClusterConfig] = list(base.clusters)
    # the bootstrap's EDS clusters fed over the stream: their endpoints, once sent
    for i, c in enumerate(clusters):
        msg = waiting.get(CLUSTER, {}).get(c.name)
        if msg is not None and eds_name(msg) in assignments:
            try:
                clusters[i] = translate_cluster(msg, Findings(CLUSTER, c.name, "", sink),
                                                assignments[eds_name(msg)])
            except Rejected as e:
                rejected.append(e.rejection)
    seen_clusters: dict[str, tuple[Any, Any, Any]] = {}
    for name, c in resources.get(CLUSTER, {}).items():
        cla = assignments.get(eds_name(c)) if is_eds(c) else None
        was = cache.clusters.get(name) if cache is not None else None
        if was is not None and was[0] is c and was[1] is cla:
            got = was[2]
        else:
            f = Findings(CLUSTER, name, "", sink)
            try:
                if name in static_clusters:
                    f.reject("a static cluster of the same name is in the bootstrap", "name")
                if c.name != name:
                    f.reject(f'the resource is named "{name}" but the cluster "{c.name}"', "name")
                got = translate_cluster(c, f, cla)
            except Rejected as e:
                got = e
        seen_clusters[name] = (c, cla, got)
        if isinstance(got, Rejected):
            rejected.append(got.rejection)
        else:
            clusters.append(got)
    if cache is not None:
        cache.clusters = seen_clusters
    base_listeners = {lc.name for lc in base.listeners}
    static_listeners = base_listeners | set(waiting.get(LISTENER, {}))
    ports = {(lc.host, lc.port) for lc in base.listeners}
    listeners: list[ListenerConfig] = list(base.listeners)
    offered = [(n, m, True) for n, m in waiting.get(LISTENER, {}).items()]
    offered += [(n, m, False) for n, m in resources.get(LISTENER, {}).items()]
    for name, lst, own in offered:
        f = Findings(LISTENER, name, "", sink)
        try:
            if name in static_listeners and not own:
                f.reject("a static listener of the same name is in the bootstrap", "name")
            lc = translate_listener(lst, f, tables)
            if (lc.host, lc.port) in ports:
                f.reject(f"another listener is at {lc.host}:{lc.port}", "address")
            ports.add((lc.host, lc.port))
            listeners.append(lc)
        except Waiting as e:
            rj = e.rejection
            sink.waiting.append(rj)
            sink.warnings.append(Diagnostic(None, WAITING, f"{rj}; the listener waits for it", "warning"))
        except Rejected as e:
            rejected.append(e.rejection)
    # a route naming a cluster that is not there is not served: its listener waits
    known = {c.name for c in clusters}
    kept = []
    for lc in listeners:
        missing = sorted(set().union(*(st.route_table.clusters() for st in lc.stacks()
                                       if st.route_table is not None)) - known)
        if missing and lc.name not in base_listeners:
            rejected.append(Rejection(LISTENER, lc.name, "", f'its routes name unknown cluster "{missing[0]}"'))
            continue
        kept.append(lc)
    return dataclasses.replace(base, listeners=tuple(kept), clusters=tuple(clusters)), rejected
