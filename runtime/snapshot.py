"""build_snapshot(): config in, immutable Snapshot out, or ConfigError with every finding.

Pure: no sockets, no global state beyond the registry of front ends. Called by the
CLI for `check`, by each worker at start and on reload, and by the reload path in
the supervisor to validate before telling workers. A listener with filter chains
(protocol "chains") is kept as it is, and each chain's stack is built as a listener
of its own, named "<listener>/<chain>", which workers serve but never bind. A step that takes more than
SLOW seconds (loading the YAML, one listener's rules) says so in the log at INFO,
with what it did, so a large config does not look like a hang.

with_clusters() is the one change made without a build: clusters replaced by
configs of the same names (an EDS update changes endpoints, on which no listener,
route or pipeline depends).

An update built with `previous` (the snapshot serving now) costs what changed: a
listener whose ListenerConfig is the very object `previous` was built from is taken
as it is (its Listener objects, pipelines and finalized route tables), when nothing
else it was built with changed: every other field of the Config is the same object,
no cluster went away (a listener's build reads only the cluster names, to find the
ones it names), and its first build gave no diagnostics, read no file and built no
filter holding shared state (runtime.shared numbers those by build order, which a
reused filter would not follow). Such listeners are Snapshot.reusable. What the
extensions dict of `previous` holds is carried on, as its filters' state lives there.
A config read from a file makes new objects throughout: a file reload builds all.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Iterable

from . import registry, route_filters, shared
from .diagnostics import ConfigError, Diagnostic, did_you_mean
from .model import ClusterConfig, Config, Listener, ListenerConfig, Snapshot
from .pipeline import Pipeline
from .routes import Route, RouteAction, RouteTable, VirtualHost
from .tracing.tracer import make_tracer


log = logging.getLogger("mosnx")
SLOW = 1.0


def _took(start: float, what: str, *args) -> None:
    took = time.perf_counter() - start
    if took > SLOW:
        log.info(what + " in %.1f s", *args, took)


def default_route_table(action: RouteAction) -> RouteTable:
    return RouteTable([VirtualHost("default", ["*"], [Route("default", action)])])


def build_snapshot(config: Config | str, version: int = 1,
                   services: registry.Services | None = None,
                   previous: Snapshot | None = None) -> Snapshot:
    if isinstance(config, str):
        from .config import load_config
        start = time.perf_counter()
        config = load_config(config)
        _took(start, "%s loaded", config.path)
    diags: list[Diagnostic] = []
    clusters = {c.name: c for c in config.clusters}
    listeners: dict[str, Listener] = {}
    sources: list[str] = [config.path, *config.sources]
    extensions: dict = {}
    reusable: set[str] = set()
    old = _reuse(previous, config, clusters)
    if old:
        assert previous is not None     # _reuse() found some
        extensions = dict(previous.extensions)     # the kept filters' state, under the names they gave it
        sources.extend(previous.sources)
    for top in config.listeners:
        was = old.get(top.name)
        if was is not None and was.config is top:
            got = [(lc.name, old.get(lc.name)) for lc in top.stacks()]
            if all(lst is not None and lst.config is lc for (_, lst), lc in zip(got, top.stacks())):
                listeners[top.name] = was
                listeners.update(got)   # type: ignore[arg-type]  # all checked not None
                reusable.update(name for name, _ in got)
                reusable.add(top.name)
                continue
        if top.protocol == "chains":
            # the listener itself runs nothing: its chains' stacks serve its connections
            listeners[top.name] = Listener(top, Pipeline.of([]), RouteTable([]))
        quiet = True
        for lc in top.stacks():
            if lc.chain_of is not None and lc.name in listeners:
                diags.append(Diagnostic(lc.span, "C006", f'filter chain "{lc.name}": a listener has that name'))
                continue
            marks = len(diags), len(sources), shared.filter_ids_taken()
            built = _build_listener(lc, config, clusters, extensions, services, diags, sources)
            if built is not None:
                listeners[lc.name] = built
            quiet = quiet and built is not None and marks == (len(diags), len(sources), shared.filter_ids_taken())
        if quiet:
            reusable.add(top.name)
            reusable.update(lc.name for lc in top.stacks())
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        raise ConfigError(errors)
    return Snapshot(version=version, config=config, listeners=listeners, clusters=clusters,
                    sources=tuple(dict.fromkeys(sources)), extensions=extensions, reusable=frozenset(reusable))


_OWN = ("listeners", "clusters")


def _reuse(previous: Snapshot | None, config: Config, clusters: dict[str, ClusterConfig]) -> dict[str, Listener]:
    """The listeners of `previous` that a build of `config` may take as they are (by
    name; each still to be matched by its ListenerConfig's identity): none unless
    every other field of the config is the same object and no cluster went away."""
    if previous is None or not previous.reusable:
        return {}
    before = previous.config
    if before is not config:
        for f in dataclasses.fields(Config):
            if f.name not in _OWN and getattr(before, f.name) is not getattr(config, f.name):
                return {}
        if not previous.clusters.keys() <= clusters.keys():
            return {}
    keep = previous.reusable
    return {n: lst for n, lst in previous.listeners.items() if n in keep}


def with_clusters(snap: Snapshot, changed: dict[str, ClusterConfig]) -> Snapshot:
    """`snap` with the clusters in `changed` replaced (same version, listeners and
    pipelines): copies of two references per cluster, no build. Names it does not
    have are left out."""
    clusters = dict(snap.clusters)
    for name, cfg in changed.items():
        if name in clusters:
            clusters[name] = cfg
    config = snap.config
    if len(clusters) == len(config.clusters):
        # build_snapshot() made the dict from config.clusters, in order, one per name
        listed = tuple(clusters.values())
    else:
        listed = tuple(changed.get(c.name, c) for c in config.clusters)
    return dataclasses.replace(snap, config=dataclasses.replace(config, clusters=listed), clusters=clusters)


def _check_clusters(routes: RouteTable, clusters: dict, lc) -> Iterable[Diagnostic]:
    for vh in routes.vhosts:
        for r in vh.routes:
            if not isinstance(r.action, RouteAction):
                continue
            names = r.action.clusters() + [m.cluster for m in r.action.mirrors]
            for name in names:
                if name not in clusters:
                    span = r.span or lc.span
                    yield Diagnostic(span, "C101", f'unknown cluster "{name}"' + did_you_mean(name, clusters))


def _build_listener(lc: ListenerConfig, config: Config, clusters: dict, extensions: dict,
                    services: registry.Services | None, diags: list[Diagnostic],
                    sources: list[str]) -> Listener | None:
    """One protocol stack: its filters, pipeline and route table; None when it has
    no routes (the reason is in `diags`)."""
    ctx = registry.BuildContext(config=config, listener=lc, clusters=set(clusters),
                                filters={}, extensions=extensions,
                                services=services or registry.Services())
    filters = []
    built: list = []            # per spec, its filter (None: not built, or no settings of its own)
    for spec in lc.filters:
        built.append(None)
        factory = registry.filter_factory(spec.kind)
        if factory is None:
            diags.append(Diagnostic(spec.span, "C201", f'unknown filter type "{spec.kind}"'
                                    + did_you_mean(spec.kind, registry.filter_kinds())))
            continue
        if not spec.own:
            continue            # it runs only with the settings routes give it (route_filters)
        try:
            f = factory(spec.name, spec.config, ctx)
        except (ValueError, OSError) as e:
            diags.append(Diagnostic(spec.span, "C202", f'filter "{spec.name}": {e}'))
            continue
        built[-1] = f
        ctx.filters[spec.name] = f
        if not spec.disabled:
            filters.append(f)
    pipeline = Pipeline.of(filters)
    routes: RouteTable | None = None
    rpc_rules = None
    if lc.route_table is not None:
        routes = lc.route_table
        if routes.filter_names():
            try:
                head, routes = route_filters.bind(routes, lc.filters, built, _maker(ctx))
                pipeline = Pipeline.of(head)
            except ValueError as e:
                diags.append(Diagnostic(lc.span, "C202", f'listener "{lc.name}": a route\'s filter settings: {e}'))
    elif lc.rules:
        loader = registry.rules_loader("mdsl")
        if loader is None:
            diags.append(Diagnostic(lc.span, "C203", "rules: need the mdsl front end, which is not installed"))
        else:
            start = time.perf_counter()
            result = loader(lc.rules, ctx)
            if result is not None:
                routes = result.routes
                rpc_rules = result.rpc
                pipeline = pipeline.then(result.pipeline)
                n = len(routes.vhosts)
                _took(start, 'listener "%s": %d routes in %d vhost%s loaded, checked and compiled',
                      lc.name, sum(len(vh.routes) for vh in routes.vhosts), n, "" if n == 1 else "s")
    elif lc.route is not None:
        routes = default_route_table(lc.route)
    elif getattr(lc.options.get("rpc"), "routes", None):
        routes = RouteTable(())      # an RPC listener routed by its rpc.routes alone
    else:
        diags.append(Diagnostic(lc.span, "C204", f'listener "{lc.name}" has neither route: nor rules:'))
    diags.extend(ctx.diagnostics)
    sources.extend(ctx.sources)
    if routes is None:
        return None
    diags.extend(_check_clusters(routes, clusters, lc))
    # a new table, bound to this listener's steps; the compiled one is left as it is
    return Listener(lc, pipeline, routes.finalize(pipeline), tracer=make_tracer(lc, config.tracing),
                    rpc_rules=rpc_rules)


def _maker(ctx: registry.BuildContext) -> route_filters.Make:
    """Builds a listener filter with a route's settings, as its own are built."""
    def make(spec, config):
        factory = registry.filter_factory(spec.kind)
        if factory is None:
            raise ValueError(f'unknown filter type "{spec.kind}"')
        return factory(spec.name, dict(config), ctx)
    return make
