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

With a Translations cache an update costs what changed, not what is held: a
resource whose message is the very object translated before (and whose
dependencies are too: a cluster's assignment and secrets, a listener's route
tables and secrets) is taken as translated, with what was read of it to find those
dependencies (a cluster's EDS and secret names, a listener's RDS names and the
clusters its routes name). The translations are then the same objects from one
Config to the next, which runtime.snapshot.build_snapshot(previous=...) relies on
to keep what was built of them.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..model import ClusterConfig, Config, ListenerConfig
from ..routes import RouteTable
from .routes import RouteMemo
from ..diagnostics import Diagnostic
from .findings import WAITING, Findings, Rejected, Rejection, Sink, Waiting
from . import runtime_layers, scoped_routes, vhds
from .protos import CLUSTER, ENDPOINT, LISTENER, ROUTE, RUNTIME, SCOPED_ROUTE, SECRET, VIRTUAL_HOST
from .secrets import Secret, SecretStore, translate_secret
from .tls import cluster_secret_names, listener_secret_names, needed_secrets
from .translate import eds_name, is_eds, rds_names, translate_cluster, translate_listener, translate_route_config

Resources = dict[str, dict[str, Any]]


def needed_names(resources: Resources, base: Config | None = None,
                 cache: Translations | None = None) -> dict[str, set[str]]:
    """The RouteConfigurations the listeners use, the ClusterLoadAssignments the EDS
    clusters use and the Secrets (SDS) the TLS of both names, by type URL: what the
    client should subscribe to next. With `base`, its bootstrap's waiting listeners
    and EDS clusters count too. With `cache` (the Translations of an apply() of these
    resources), what was read of a resource then is not read again."""
    waiting = base.xds.static_resources if base is not None and base.xds is not None else {}
    if cache is None:
        listeners = [*resources.get(LISTENER, {}).values(), *waiting.get(LISTENER, {}).values()]
        clusters = [*resources.get(CLUSTER, {}).values(), *waiting.get(CLUSTER, {}).values()]
        out = {ROUTE: {n for lst in listeners for n in rds_names(lst)},
               ENDPOINT: {eds_name(c) for c in clusters if is_eds(c)},
               SECRET: needed_secrets(listeners, clusters)}
    else:
        out = _needed_cached(resources, waiting, cache)
        # only the listeners that may use scoped routes are read again for them
        listeners = [lst for name, lst in resources.get(LISTENER, {}).items()
                     if (t := cache.listeners.get(name)) is None or t.msg is not lst or t.scoped]
        listeners += waiting.get(LISTENER, {}).values()
    scoped = scoped_routes.needed(listeners, resources.get(SCOPED_ROUTE, {}))
    out[ROUTE] = out[ROUTE] | scoped[ROUTE]
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


def _needed_cached(resources: Resources, waiting: dict[str, dict[str, Any]], cache: Translations
                   ) -> dict[str, set[str]]:
    """needed_names' RDS, EDS and SDS names, from what the cache read of each resource."""
    routes: set[str] = set()
    eds: set[str] = set()
    secrets: set[str] = set()
    for name, lst in resources.get(LISTENER, {}).items():
        t = cache.listeners.get(name)
        if t is not None and t.msg is lst:
            routes.update(t.rds)
            secrets.update(t.secrets)
        else:
            routes.update(rds_names(lst))
            secrets |= listener_secret_names(lst)
    for lst in waiting.get(LISTENER, {}).values():
        routes.update(rds_names(lst))
        secrets |= listener_secret_names(lst)
    reads = cache.cluster_reads
    for name, c in resources.get(CLUSTER, {}).items():
        r = reads.get(name)
        if r is None or r[0] is not c:
            r = _reads(c)
        if r[1] is not None:
            eds.add(r[1])
        if r[2]:
            secrets |= r[2]
    for c in waiting.get(CLUSTER, {}).values():
        r = _reads(c)
        if r[1] is not None:
            eds.add(r[1])
        secrets |= r[2]
    return {ROUTE: routes, ENDPOINT: eds, SECRET: secrets}


def _delta(base: Config | None) -> bool:
    return base is not None and base.xds is not None and base.xds.mode == "delta"


def _layers(base: Config | None) -> tuple[runtime_layers.Layer, ...]:
    """The bootstrap's runtime layers (kept with its waiting resources), if any."""
    if base is None or base.xds is None:
        return ()
    lr = base.xds.static_resources.get(runtime_layers.LAYERED_RUNTIME, {}).get("layered_runtime")
    return runtime_layers.layers_of(lr) if lr is not None else ()


def _reads(c: Any) -> tuple[Any, str | None, frozenset[str]]:
    """What apply() reads of a cluster to find what it depends on: (the cluster, its
    EDS service name or None, the secrets it names)."""
    return c, eds_name(c) if is_eds(c) else None, frozenset(cluster_secret_names(c))


class Translations:
    """What apply() translated, by resource name, with the messages it came from: a
    later apply() given the same message objects (the xDS client keeps those it did
    not replace) takes the translation, or the rejection, as it was, so an update
    costs the resources that changed. Warnings are given when a resource is first
    translated."""

    def __init__(self) -> None:
        self.base: Config | None = None     # what they were translated beside
        self.routes: dict[str, tuple[Any, Any]] = {}
        # name -> the routes its last translation made, by what each was made of (routes.RouteMemo)
        self.route_memos: dict[str, RouteMemo] = {}
        # name -> (cluster, assignment, translation, the secrets it names as translated)
        self.clusters: dict[str, tuple[Any, Any, Any, tuple]] = {}
        # name -> (cluster, its EDS service name or None, the secrets it names)
        self.cluster_reads: dict[str, tuple[Any, str | None, frozenset[str]]] = {}
        self.secrets: dict[str, tuple[Any, Secret | Rejection]] = {}
        self.scopes = scoped_routes.ScopeCache()
        self.runtime: dict[str, Any] | None = None      # the runtime values the routes were translated with
        self.vhds = vhds.Merged()
        self.static_secrets: dict[str, tuple[Any, Secret | Rejection]] = {}
        self.listeners: dict[str, _Listener] = {}

    def reset(self, base: Config | None) -> None:
        self.base, self.routes, self.clusters, self.cluster_reads = base, {}, {}, {}
        self.route_memos = {}
        self.secrets, self.static_secrets, self.listeners = {}, {}, {}
        self.scopes = scoped_routes.ScopeCache()


class _Listener:
    """A listener's translation and what it was made of."""
    __slots__ = ("msg", "rds", "secrets", "deps", "got", "uses", "scoped")

    def __init__(self, msg: Any, rds: tuple[str, ...], secrets: tuple[str, ...], deps: tuple,
                 got: ListenerConfig | Rejected, scoped: bool) -> None:
        self.msg, self.rds, self.secrets, self.deps, self.got = msg, rds, secrets, deps, got
        # its HCMs take scoped routes: what it depends on is the scopes', translated afresh each time
        self.scoped = scoped
        # the clusters its routes and tcp_proxy name (a cluster_header's are known per request only)
        self.uses: frozenset[str] = frozenset().union(*(_stack_clusters(st) for st in got.stacks())) \
            if isinstance(got, ListenerConfig) else frozenset()


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
        cache.reset(base)
    rejected: list[Rejection] = []
    waiting = base.xds.static_resources if base.xds is not None else {}
    layers = _layers(base)
    if layers:
        # RTDS and static layers: what runtime keys read while translating
        sink.runtime = runtime_layers.merged(layers, resources.get(RUNTIME, {}))
    if cache is not None and cache.runtime != sink.runtime:
        cache.routes, cache.runtime = {}, dict(sink.runtime)     # routes read runtime keys
        cache.route_memos = {}
    seen_secrets: dict[str, tuple[Any, Secret | Rejection]] = {}
    dynamic = _secrets(resources.get(SECRET, {}), sink, cache.secrets if cache is not None else None, seen_secrets)
    rejected.extend(r for r in dynamic.values() if isinstance(r, Rejection))
    seen_static: dict[str, tuple[Any, Secret | Rejection]] = {}
    static = _secrets({**waiting.get(SECRET, {}), **(static_secrets or {})}, sink,
                      cache.static_secrets if cache is not None else None, seen_static)
    rejected.extend(r for r in static.values() if isinstance(r, Rejection) and static_secrets is not None)
    store = SecretStore(static, dynamic)
    if cache is not None:
        cache.secrets, cache.static_secrets = seen_secrets, seen_static
    tables: dict[str, RouteTable] = {}
    seen_routes: dict[str, tuple[Any, Any]] = {}
    memos: dict[str, RouteMemo] = {}
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
                keep: RouteMemo | None = {} if cache is not None else None
                got = translate_route_config(rc, f, cache.route_memos.get(name) if cache is not None else None,
                                             keep)
                if keep is not None:
                    memos[name] = keep
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
        # a table taken as it was keeps its memo; one gone takes its memo with it
        cache.route_memos = {name: memos.get(name) or cache.route_memos.get(name) or {} for name in seen_routes}
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
    reads = cache.cluster_reads if cache is not None else {}
    seen_reads: dict[str, tuple[Any, str | None, frozenset[str]]] = {}
    for name, c in resources.get(CLUSTER, {}).items():
        r = reads.get(name)
        if r is None or r[0] is not c:
            r = _reads(c)
        seen_reads[name] = r
        cla = assignments.get(r[1]) if r[1] is not None else None
        was = cache.clusters.get(name) if cache is not None else None
        names = r[2]
        deps = tuple(dynamic.get(n) for n in sorted(names)) if names else ()
        if (was is not None and was[0] is c and was[1] is cla
                and (was[3] == () if not deps else
                     len(was[3]) == len(deps) and all(a is b for a, b in zip(was[3], deps)))):
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
        cache.clusters, cache.cluster_reads = seen_clusters, seen_reads
    base_listeners = {lc.name for lc in base.listeners}
    static_listeners = base_listeners | set(waiting.get(LISTENER, {}))
    ports = {(lc.host, lc.port) for lc in base.listeners}
    listeners: list[tuple[ListenerConfig, frozenset[str]]] = [(lc, frozenset()) for lc in base.listeners]
    offered = [(n, m, True) for n, m in waiting.get(LISTENER, {}).items()]
    offered += [(n, m, False) for n, m in resources.get(LISTENER, {}).items()]
    kept_listeners = cache.listeners if cache is not None else {}
    seen_listeners: dict[str, _Listener] = {}
    for name, lst, own in offered:
        was_l = kept_listeners.get(name)
        if was_l is not None and was_l.msg is lst:
            rds, names_l, scoped = was_l.rds, was_l.secrets, was_l.scoped
        else:
            rds, names_l = tuple(rds_names(lst)), tuple(sorted(listener_secret_names(lst)))
            scoped = scoped_routes.uses_scopes(lst)
        deps_l = (*(tables.get(n) for n in rds), *(x for n in names_l for x in (dynamic.get(n), static.get(n))))
        if (not scoped and was_l is not None and was_l.msg is lst and len(was_l.deps) == len(deps_l)
                and all(a is b for a, b in zip(was_l.deps, deps_l))):
            t = was_l
        else:
            f = Findings(LISTENER, name, "", sink)
            got_l: ListenerConfig | Rejected
            try:
                if name in static_listeners and not own:
                    f.reject("a static listener of the same name is in the bootstrap", "name")
                got_l = translate_listener(lst, f, tables, store, scopes)
            except Rejected as e:
                got_l = e
            t = _Listener(lst, rds, names_l, deps_l, got_l, scoped)
        seen_listeners[name] = t
        got = t.got
        if isinstance(got, Waiting):
            _wait(sink, got.rejection, "listener")
        elif isinstance(got, Rejected):
            rejected.append(got.rejection)
        elif (got.host, got.port) in ports:
            rejected.append(Rejection(LISTENER, name, "address", f"another listener is at {got.host}:{got.port}"))
        else:
            ports.add((got.host, got.port))
            listeners.append((got, t.uses))
    if cache is not None:
        cache.listeners = seen_listeners
    # a route naming a cluster that is not there is not served: its listener waits (a
    # tcp_proxy's cluster too: a CDS update that removes it waits for the new listener)
    known = {c.name for c in clusters}
    kept = []
    for lc, uses in listeners:
        if lc.name not in base_listeners and not uses <= known:
            missing = sorted(uses - known)
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
