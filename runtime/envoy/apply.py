"""apply(): a base Config plus Envoy resources from a control plane -> a new Config.

`resources` maps a type URL (protos.LISTENER, ROUTE, CLUSTER, ENDPOINT) to the
resources of that type by name, as the xDS client holds them. The result keeps the
base's static listeners and clusters and adds every dynamic resource that
translates; a resource that does not is left out and reported as a Rejection (one
bad resource never keeps the others out). A dynamic resource named like a static
one is rejected: the file's own resources win, as in Envoy. A listener whose
RouteConfiguration has not arrived (or was rejected) is left out without a Rejection:
it waits, as Envoy warms a listener, with a warning (X004) in the sink; needed_names()
names what it waits for (scoped routes: its SRDS scopes and their RouteConfigurations,
runtime.envoy.scoped_routes; every ScopedRouteConfiguration held serves every
listener over scoped_rds). A listener whose routes name a cluster that is not there is
rejected (mosnx cannot build it). An EDS cluster with no ClusterLoadAssignment yet
has no endpoints.

Secrets (protos.SECRET, SDS) are translated first (secrets.py); a listener or
cluster whose TLS names one that has not arrived waits, as a listener waits for its
routes (left out, no Rejection; needed_names() names the secret). Static secrets (a
bootstrap's static_resources.secrets) come as `static_secrets`, or with the base's
xds.static_resources; a TLS context names them without an sds_config. A cluster's
translation is kept while the secrets it names are the same messages. Pure: the
messages are only read.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..model import ClusterConfig, Config, ListenerConfig
from ..routes import RouteTable
from ..diagnostics import Diagnostic
from .findings import WAITING, Findings, Rejected, Rejection, Sink, Waiting
from . import runtime_layers, scoped_routes, vhds
from .protos import CLUSTER, ENDPOINT, LISTENER, ROUTE, RUNTIME, SCOPED_ROUTE, SECRET, VIRTUAL_HOST
from .secrets import Secret, SecretStore, translate_secret
from .tls import cluster_secret_names, needed_secrets
from .translate import eds_name, is_eds, rds_names, translate_cluster, translate_listener, translate_route_config

Resources = dict[str, dict[str, Any]]


def needed_names(resources: Resources, base: Config | None = None) -> dict[str, set[str]]:
    """The RouteConfigurations the listeners use, the ClusterLoadAssignments the EDS
    clusters use and the Secrets (SDS) the TLS of both names, by type URL: what the
    client should subscribe to next. With `base`, its bootstrap's waiting listeners
    and EDS clusters count too."""
    waiting = base.xds.static_resources if base is not None and base.xds is not None else {}
    listeners = [*resources.get(LISTENER, {}).values(), *waiting.get(LISTENER, {}).values()]
    clusters = [*resources.get(CLUSTER, {}).values(), *waiting.get(CLUSTER, {}).values()]
    routes = {n for lst in listeners for n in rds_names(lst)}
    eds = {eds_name(c) for c in clusters if is_eds(c)}
    scoped = scoped_routes.needed(listeners, resources.get(SCOPED_ROUTE, {}))
    out = {ROUTE: routes | scoped[ROUTE], ENDPOINT: eds, SECRET: needed_secrets(listeners, clusters)}
    if scoped[SCOPED_ROUTE]:        # only when a listener uses scoped_rds
        out[SCOPED_ROUTE] = scoped[SCOPED_ROUTE]
    rtds = runtime_layers.rtds_names(_layers(base))
    if rtds:
        out[RUNTIME] = rtds
    if _delta(base):        # VHDS: by namespace, the RouteConfigurations' names
        names = vhds.vhds_names(resources.get(ROUTE, {}).values())
        if names:
            out[VIRTUAL_HOST] = names
    return out


def _delta(base: Config | None) -> bool:
    return base is not None and base.xds is not None and base.xds.mode == "delta"


def _layers(base: Config | None) -> tuple[runtime_layers.Layer, ...]:
    """The bootstrap's runtime layers (kept with its waiting resources), if any."""
    if base is None or base.xds is None:
        return ()
    lr = base.xds.static_resources.get(runtime_layers.LAYERED_RUNTIME, {}).get("layered_runtime")
    return runtime_layers.layers_of(lr) if lr is not None else ()


class Translations:
    """What apply() translated, by resource name, with the messages it came from: a
    later apply() given the same message objects (the xDS client keeps those it did
    not replace) takes the translation, or the rejection, as it was, so an update
    costs the resources that changed. Warnings are given when a resource is first
    translated."""

    def __init__(self) -> None:
        self.base: Config | None = None     # what they were translated beside
        self.routes: dict[str, tuple[Any, Any]] = {}
        # name -> (cluster, assignment, translation, the secrets it names as translated)
        self.clusters: dict[str, tuple[Any, Any, Any, tuple]] = {}
        self.secrets: dict[str, tuple[Any, Secret | Rejection]] = {}
        self.scopes = scoped_routes.ScopeCache()
        self.runtime: dict[str, Any] | None = None      # the runtime values the routes were translated with
        self.vhds = vhds.Merged()


def _secrets(msgs: dict[str, Any], sink: Sink, kept: dict[str, tuple[Any, Secret | Rejection]] | None,
             seen: dict[str, tuple[Any, Secret | Rejection]]) -> dict[str, Secret | Rejection]:
    out: dict[str, Secret | Rejection] = {}
    for name, s in msgs.items():
        hit = kept.get(name) if kept is not None else None
        if hit is not None and hit[0] is s:
            got = hit[1]
        else:
            try:
                got = translate_secret(s, Findings(SECRET, name, "", sink))
            except Rejected as e:
                got = e.rejection
        seen[name] = (s, got)
        out[name] = got
    return out


def apply(base: Config, resources: Resources, sink: Sink | None = None,
          cache: Translations | None = None,
          static_secrets: dict[str, Any] | None = None) -> tuple[Config, list[Rejection]]:
    """`sink` collects the warnings (valid Envoy mosnx ignores), when given; `cache`
    keeps translations from one call to the next; `static_secrets`: Secrets by name
    that TLS contexts name without an sds_config (a bootstrap's)."""
    sink = sink if sink is not None else Sink()
    if cache is not None and cache.base is not base:
        # another file config (its static names decide some rejections): start again
        cache.base, cache.routes, cache.clusters, cache.secrets = base, {}, {}, {}
        cache.scopes = scoped_routes.ScopeCache()
    rejected: list[Rejection] = []
    waiting = base.xds.static_resources if base.xds is not None else {}
    layers = _layers(base)
    if layers:
        # RTDS and static layers: what runtime keys read while translating
        sink.runtime = runtime_layers.merged(layers, resources.get(RUNTIME, {}))
    if cache is not None and cache.runtime != sink.runtime:
        cache.routes, cache.runtime = {}, dict(sink.runtime)     # routes read runtime keys
    seen_secrets: dict[str, tuple[Any, Secret | Rejection]] = {}
    dynamic = _secrets(resources.get(SECRET, {}), sink, cache.secrets if cache is not None else None, seen_secrets)
    rejected.extend(r for r in dynamic.values() if isinstance(r, Rejection))
    static = _secrets({**waiting.get(SECRET, {}), **(static_secrets or {})}, sink, None, {})
    rejected.extend(r for r in static.values() if isinstance(r, Rejection) and static_secrets is not None)
    store = SecretStore(static, dynamic)
    if cache is not None:
        cache.secrets = seen_secrets
    tables: dict[str, RouteTable] = {}
    seen_routes: dict[str, tuple[Any, Any]] = {}
    merged = cache.vhds if cache is not None else vhds.Merged()
    delta = _delta(base)
    for name, rc in vhds.merged(resources.get(ROUTE, {}), resources.get(VIRTUAL_HOST, {}), merged).items():
        hit = cache.routes.get(name) if cache is not None else None
        if hit is not None and hit[0] is rc:
            got = hit[1]
        else:
            f = Findings(ROUTE, name, "", sink)
            try:
                why = vhds.sotw_refusal(rc)
                if why is not None and not delta:
                    f.reject(why, "vhds")
                got = translate_route_config(rc, f)
            except Rejected as e:
                o = merged.origin(name, e.rejection.field_path)      # a virtual host VHDS brought
                got = e if o is None else Rejected(Rejection(VIRTUAL_HOST, o[0], o[1], e.rejection.message))
        seen_routes[name] = (rc, got)
        if isinstance(got, Rejected):
            rejected.append(got.rejection)
        else:
            tables[name] = got
    if cache is not None:
        cache.routes = seen_routes
    # SRDS: every scope held serves every listener over scoped_rds
    scopes, bad_scopes = scoped_routes.scopes(resources.get(SCOPED_ROUTE, {}), sink,
                                              cache.scopes if cache is not None else None)
    rejected.extend(bad_scopes)
    static_clusters = {c.name for c in base.clusters}
    assignments = resources.get(ENDPOINT, {})
    clusters: list[ClusterConfig] = list(base.clusters)
    # the bootstrap's EDS clusters fed over the stream: their endpoints, once sent
    for i, c in enumerate(clusters):
        msg = waiting.get(CLUSTER, {}).get(c.name)
        if msg is not None and eds_name(msg) in assignments:
            try:
                clusters[i] = translate_cluster(msg, Findings(CLUSTER, c.name, "", sink),
                                                assignments[eds_name(msg)], store)
            except Waiting as e:
                _wait(sink, e.rejection, "cluster")
            except Rejected as e:
                rejected.append(e.rejection)
    seen_clusters: dict[str, tuple[Any, Any, Any, tuple]] = {}
    for name, c in resources.get(CLUSTER, {}).items():
        cla = assignments.get(eds_name(c)) if is_eds(c) else None
        was = cache.clusters.get(name) if cache is not None else None
        names = cluster_secret_names(c)
        deps = tuple(dynamic.get(n) for n in sorted(names)) if names else ()
        if (was is not None and was[0] is c and was[1] is cla and len(was[3]) == len(deps)
                and all(a is b for a, b in zip(was[3], deps))):
            got = was[2]
        else:
            f = Findings(CLUSTER, name, "", sink)
            try:
                if name in static_clusters:
                    f.reject("a static cluster of the same name is in the bootstrap", "name")
                if c.name != name:
                    f.reject(f'the resource is named "{name}" but the cluster "{c.name}"', "name")
                got = translate_cluster(c, f, cla, store)
            except Rejected as e:
                got = e
        seen_clusters[name] = (c, cla, got, deps)
        if isinstance(got, Waiting):
            _wait(sink, got.rejection, "cluster")
        elif isinstance(got, Rejected):
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
            lc = translate_listener(lst, f, tables, store, scopes)
            if (lc.host, lc.port) in ports:
                f.reject(f"another listener is at {lc.host}:{lc.port}", "address")
            ports.add((lc.host, lc.port))
            listeners.append(lc)
        except Waiting as e:
            _wait(sink, e.rejection, "listener")
        except Rejected as e:
            rejected.append(e.rejection)
    # a route naming a cluster that is not there is not served: its listener waits (a
    # tcp_proxy's cluster too: a CDS update that removes it waits for the new listener)
    known = {c.name for c in clusters}
    kept = []
    for lc in listeners:
        missing = sorted(set().union(*(_stack_clusters(st) for st in lc.stacks())) - known)
        if missing and lc.name not in base_listeners:
            rejected.append(Rejection(LISTENER, lc.name, "", f'its routes name unknown cluster "{missing[0]}"'))
            continue
        kept.append(lc)
    return dataclasses.replace(base, listeners=tuple(kept), clusters=tuple(clusters)), rejected


def _stack_clusters(st: ListenerConfig) -> set[str]:
    if st.route_table is not None:
        return st.route_table.clusters()
    if st.protocol == "tcp" and st.route is not None:
        return set(st.route.clusters())
    return set()


def _wait(sink: Sink, rj: Rejection, what: str) -> None:
    sink.waiting.append(rj)
    sink.warnings.append(Diagnostic(None, WAITING, f"{rj}; the {what} waits for it", "warning"))
