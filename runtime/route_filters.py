"""A listener's HTTP filters that routes configure: Envoy's typed_per_filter_config,
its `cors` policies and its disabled-by-default filters, put to work.

bind() is called by build_snapshot() for a listener whose route table has
per-route filter settings (Route.filters, Route.cluster_filters). A listener's
filters run before routing, but a filter whose settings depend on the route must
run after it; so the listener's filters keep their order, split in two: those
before the first filter any route configures stay on the listener; that one and
every one after it go onto each route's own pipeline, ahead of the route's header
edits, each with the settings that route gives it (the most specific level's:
weighted cluster, route, vhost, configuration), its listener's settings, or none
(disabled there). The request phase of a route's steps runs once the route is
matched and its cluster picked, so a weighted cluster's own settings are chosen by
the cluster picked (ctx.cluster_name).

Settings are built into filters once per snapshot: one filter per distinct
settings object, so routes that take a vhost's settings share its filter (and its
token bucket, as Envoy's per-route local rate limit shares its config's bucket).
A listener without per-route settings is left exactly as it was, so routes
without them keep their short path (runtime.routes' `plain`).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .model import FilterSpec
from .pipeline import _HOOKS, EMPTY, HttpFilter, Pipeline
from .routes import CORS_POLICY, FilterOverride, Route, RouteAction, RouteTable

Make = Callable[[FilterSpec, Mapping[str, Any]], HttpFilter]
BODY_PHASES = frozenset({"request_body", "response_body"})


def bind(table: RouteTable, specs: Sequence[FilterSpec], built: Sequence[HttpFilter | None],
         make: Make) -> tuple[list[HttpFilter], RouteTable]:
    """(the filters that stay on the listener, the table with the rest on its routes).
    `built[i]` is specs[i] built with its own settings (None: not built, or none of its own)."""
    names = table.filter_names()
    configured = [i for i, s in enumerate(specs) if s.name in names or (s.kind == "cors" and CORS_POLICY in names)]
    head = [f for s, f in zip(specs, built) if f is not None and not s.disabled]
    if not configured:
        return head, table
    k = configured[0]
    head = [f for s, f in zip(specs[:k], built[:k]) if f is not None and not s.disabled]
    tail = list(zip(specs[k:], built[k:]))
    made: dict[int, HttpFilter] = {}
    alone: dict[int, Pipeline] = {}

    def resolve(spec: FilterSpec, own: HttpFilter | None, ov: FilterOverride | None) -> HttpFilter | None:
        if ov is None or (ov.kind is None and ov.type_name):
            # no settings here (or settings of a type it cannot take, said at translation)
            return own if not spec.disabled else None
        if ov.disabled:
            return None
        if ov.config is not None:
            f = made.get(id(ov))
            if f is None:
                f = made[id(ov)] = make(spec, ov.config)
            return f
        return own          # enabled here, with the listener's settings (none: nothing to run)

    def piece(f: HttpFilter) -> Pipeline:
        p = alone.get(id(f))
        if p is None:
            p = alone[id(f)] = Pipeline.of([f])
        return p

    def placed(r: Route) -> Route:
        p = EMPTY
        for spec, own in tail:
            if spec.kind == "cors" and not isinstance(r.action, RouteAction):
                continue    # as Envoy's CORS filter, it passes by direct responses and redirects
            base = resolve(spec, own, _setting(r.filters, spec))
            per = {c: _setting(fs, spec) for c, fs in r.cluster_filters.items()}
            if any(ov is not None for ov in per.values()):
                choice = {c: (resolve(spec, own, ov) if ov is not None else base) for c, ov in per.items()}
                p = p.then(_by_cluster(choice, base))
            elif base is not None:
                p = p.then(piece(base))
        return r.with_pipeline(p.then(r.pipeline)) if p else r

    return head, table.with_routes(placed)


def _setting(settings: Mapping[str, FilterOverride], spec: FilterSpec) -> FilterOverride | None:
    ov = settings.get(spec.name)
    if ov is None and spec.kind == "cors":
        ov = settings.get(CORS_POLICY)
    return ov


def _overrides(f: HttpFilter | None, hook: str) -> bool:
    return f is not None and getattr(type(f), hook) is not getattr(HttpFilter, hook)


def _by_cluster(choice: dict[str, HttpFilter | None], default: HttpFilter | None) -> Pipeline:
    """One filter's steps on a weighted route: each phase's step is the hook of the
    filter the picked cluster takes (`default` for a cluster without its own)."""
    phases: dict[str, tuple[Any, ...]] = {}
    for phase, hook in _HOOKS.items():
        if not any(_overrides(f, hook) for f in (*choice.values(), default)):
            continue
        steps = {c: (getattr(f, hook) if _overrides(f, hook) else None) for c, f in choice.items()}
        dflt = getattr(default, hook) if _overrides(default, hook) else None
        phases[phase] = (_body_step(steps, dflt) if phase in BODY_PHASES else _step(steps, dflt),)
    return Pipeline(**phases) if phases else EMPTY


def _step(steps: dict[str, Any], dflt: Any) -> Callable[..., Any]:
    def step(ctx: Any) -> Any:
        s = steps.get(ctx.cluster_name, dflt)
        return s(ctx) if s is not None else None
    return step


def _body_step(steps: dict[str, Any], dflt: Any) -> Callable[..., Any]:
    def step(ctx: Any, data: bytes, end: bool) -> Any:
        s = steps.get(ctx.cluster_name, dflt)
        return s(ctx, data, end) if s is not None else None
    return step
