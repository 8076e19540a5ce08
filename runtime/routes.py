"""Route tables: virtual hosts chosen by domain, routes matched in first-match order.

The same RouteTable is built from YAML, .mdsl and xDS. Matching is indexed (exact
domain dict then wildcards; exact-path dict and a prefix map per vhost) while
keeping first-match order: candidate routes are tried by their declared index.
Every route's guard is a compiled predicate; nothing here walks an AST.

Nothing here changes once constructed: a snapshot's table is read by every stream
in flight. Route, VirtualHost and RouteTable refuse assignment; finalize() returns a
new table of new objects bound to their listener, each route's `plain` (may it take
the short path) decided as it is made, and leaves the compiled table as it was.
"""
from __future__ import annotations

import re
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from .context import StreamContext
from .diagnostics import Span
from .pipeline import EMPTY, Pipeline

Predicate = Callable[[StreamContext], bool]

RETRY_ON = frozenset({"5xx", "gateway-error", "reset", "connect-failure",
                      "retriable-status-codes", "refused-stream", "retriable-4xx"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_on: frozenset[str] = frozenset({"connect-failure"})
    num_retries: int = 1
    per_try_timeout: float | None = None
    retriable_status_codes: frozenset[int] = frozenset()
    backoff_base: float = 0.025
    backoff_max: float = 0.25

    def __post_init__(self) -> None:
        bad = set(self.retry_on) - RETRY_ON
        if bad:
            raise ValueError(f"unknown retry_on {sorted(bad)}; known: {sorted(RETRY_ON)}")
        if self.num_retries < 0:
            raise ValueError("num_retries must be >= 0")


@dataclass(frozen=True, slots=True)
class MirrorPolicy:
    cluster: str
    percent: float = 100.0


@dataclass(frozen=True, slots=True)
class RouteAction:
    """Forward to a cluster, a weighted split of clusters, or the cluster a request
    header names (cluster_header: a request without it, or naming no cluster, is
    answered 503 cluster_not_found, as Envoy's NC)."""
    cluster: str | None = None
    weighted_clusters: tuple[tuple[str, int], ...] = ()
    timeout: float | None = 15.0          # whole-request timeout; None or 0 disables
    idle_timeout: float | None = None
    retry: RetryPolicy | None = None
    prefix_rewrite: tuple[str, str] | None = None     # (matched prefix, replacement)
    regex_rewrite: tuple[re.Pattern, str] | None = None
    host_rewrite: str | None = None
    mirrors: tuple[MirrorPolicy, ...] = ()
    hash_key: str | None = None           # attribute reference for consistent hashing
    cluster_header: str | None = None     # lower-case request header whose value names the cluster
    # whether any rewrite applies: known once, so a request without one looks once
    rewrites: bool = field(init=False, repr=False, compare=False, default=False)
    # cluster_header as the bytes a request's header names are kept in
    cluster_header_b: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        if (self.cluster is not None) + bool(self.weighted_clusters) + (self.cluster_header is not None) != 1:
            raise ValueError("a route action names a cluster, a weighted split or a cluster_header, exactly one")
        if self.cluster_header is not None:
            if not self.cluster_header or self.cluster_header != self.cluster_header.lower():
                raise ValueError("cluster_header must be a non-empty lower-case header name")
            object.__setattr__(self, "cluster_header_b", self.cluster_header.encode("latin-1"))
        if self.weighted_clusters and sum(w for _, w in self.weighted_clusters) <= 0:
            raise ValueError("weighted split needs a positive total weight")
        object.__setattr__(self, "rewrites", self.prefix_rewrite is not None or self.regex_rewrite is not None
                           or self.host_rewrite is not None)

    def clusters(self) -> list[str]:
        """The clusters named in the config (a cluster_header's are known per request only)."""
        return [self.cluster] if self.cluster else [c for c, _ in self.weighted_clusters]


@dataclass(frozen=True, slots=True)
class FilterOverride:
    """A route's own settings for one of its listener's HTTP filters (Envoy's
    typed_per_filter_config, the most specific level's). `config`, when given,
    replaces the filter's settings on this route (a filter of `kind`); `disabled`,
    when given, turns the filter off (True) or on (False) here. `kind` None with a
    `type_name` is a setting of a type mosnx cannot apply (the listener decides:
    a warning, or a rejection when the filter runs)."""
    kind: str | None = None
    config: Mapping[str, Any] | None = None
    disabled: bool | None = None
    type_name: str = ""
    optional: bool = False              # FilterConfig.is_optional: unknown settings are only a warning


# Route.filters key of the CORS policy given by Envoy's `cors` fields (vhost and
# route merged), for the listener's filter of kind "cors", whatever its name
CORS_POLICY = "*cors"


@dataclass(frozen=True, slots=True)
class DirectResponse:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RedirectAction:
    status: int = 301
    scheme: str | None = None
    host: str | None = None
    path: str | None = None
    prefix_rewrite: tuple[str, str] | None = None
    strip_query: bool = False

    def location(self, ctx: StreamContext) -> str:
        req = ctx.request
        path, _, query = req.path.partition("?")
        if self.path is not None:
            path = self.path
        elif self.prefix_rewrite is not None:
            old, new = self.prefix_rewrite
            if path.startswith(old):
                path = new + path[len(old):]
        if query and not self.strip_query:
            path = f"{path}?{query}"
        scheme = self.scheme or req.scheme
        host = self.host or req.host
        return f"{scheme}://{host}{path}"


class _Frozen:
    """Refuses assignment once constructed: a snapshot is shared by every stream in
    flight, so what one of them reads can never change under another. Constructors
    write their slots with object.__setattr__; reading a slot costs what it always does."""
    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to {type(self).__name__}.{name}: it is part of a snapshot")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete {type(self).__name__}.{name}: it is part of a snapshot")


_ACTIONS = (RouteAction, DirectResponse, RedirectAction)
_NONE: Mapping[str, Any] = {}       # shared, never written: a route without filter settings


class Route(_Frozen):
    """One route: guard, action, and its own pipeline steps.

    As declared, `chain` is the route's own pipeline and `plain` is None. A
    finalized table (RouteTable.finalize) holds new routes made with `chain`, the
    effective pipeline for the phases after routing (listener ⊃ vhost ⊃ route), and
    `plain` decided from it once, at construction. `index` is the route's place in
    its vhost, given by the VirtualHost that holds it.
    """
    __slots__ = ("name", "match", "path_exact", "path_prefix", "action", "pipeline",
                 "span", "chain", "index", "plain", "filters", "cluster_filters")
    name: str
    match: Predicate | None
    path_exact: str | None
    path_prefix: str | None
    action: RouteAction | DirectResponse | RedirectAction
    pipeline: Pipeline
    span: Span | None
    chain: Pipeline
    index: int
    plain: RouteAction | None
    # filter name -> this route's settings for that listener filter (vhost's and its own,
    # the route's winning); cluster -> the same, from a weighted cluster's own settings
    filters: Mapping[str, FilterOverride]
    cluster_filters: Mapping[str, Mapping[str, FilterOverride]]

    def __init__(self, name: str, action: RouteAction | DirectResponse | RedirectAction,
                 match: Predicate | None = None, path_exact: str | None = None,
                 path_prefix: str | None = None, pipeline: Pipeline = EMPTY,
                 span: Span | None = None, *, index: int = 0, chain: Pipeline | None = None,
                 filters: Mapping[str, FilterOverride] | None = None,
                 cluster_filters: Mapping[str, Mapping[str, FilterOverride]] | None = None):
        if not isinstance(action, _ACTIONS):
            raise TypeError(f"route {name!r}: action must be a RouteAction, DirectResponse or "
                            f"RedirectAction, not {type(action).__name__}")
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "match", match)      # full guard; path_exact/prefix are index hints implied by it
        set_(self, "path_exact", path_exact)
        set_(self, "path_prefix", path_prefix)
        set_(self, "action", action)
        set_(self, "pipeline", pipeline)
        set_(self, "span", span)
        set_(self, "index", index)
        set_(self, "filters", filters or _NONE)
        set_(self, "cluster_filters", cluster_filters or _NONE)
        if chain is None:
            # not bound to a listener yet: its steps are unknown, so no short path
            set_(self, "chain", pipeline)
            set_(self, "plain", None)
        else:
            set_(self, "chain", chain)
            # the action, when forwarding is all this route does
            set_(self, "plain", action if _plain(chain, action) else None)

    def _bound(self, chain: Pipeline) -> "Route":
        """This route as a finalized table holds it: same declaration, effective chain."""
        return Route(self.name, self.action, self.match, self.path_exact, self.path_prefix,
                     self.pipeline, self.span, index=self.index, chain=chain, filters=self.filters,
                     cluster_filters=self.cluster_filters)

    def with_pipeline(self, pipeline: Pipeline) -> "Route":
        """This route, not yet bound, with its own pipeline replaced (its listener's
        filters placed on it: runtime.route_filters)."""
        return Route(self.name, self.action, self.match, self.path_exact, self.path_prefix,
                     pipeline, self.span, index=self.index, filters=self.filters,
                     cluster_filters=self.cluster_filters)

    def _renumbered(self, index: int) -> "Route":
        """This route at another place in a vhost; chain and plain as they are."""
        new = object.__new__(Route)
        for k in Route.__slots__:
            object.__setattr__(new, k, getattr(self, k))
        object.__setattr__(new, "index", index)
        return new

    def __repr__(self) -> str:
        return f"Route({self.name!r})"


class VirtualHost(_Frozen):
    """Domains and routes. It holds its own numbered copies of the routes it is given
    (a route given at its place already is kept as it is); the match index is built
    here and never changes. `chain` is the vhost's own pipeline, or, in a finalized
    table, listener ⊃ vhost."""
    __slots__ = ("name", "domains", "routes", "pipeline", "chain", "span",
                 "_exact", "_prefix", "_always", "_linear", "_merge", "_by_len")
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    pipeline: Pipeline
    chain: Pipeline
    span: Span | None
    # exact path -> candidates; a dict for the lookup's sake, written here only
    _exact: dict[str, tuple[Route, ...]]
    _prefix: tuple[tuple[str, tuple[Route, ...], tuple[Route, ...]], ...]
    _always: tuple[Route, ...]
    _linear: bool
    _merge: bool
    # with many prefixes, _prefix's entries by prefix length then prefix: a request
    # looks up its path's first n characters for each length n there is, instead of
    # testing every prefix (a control plane's table of thousands of routes)
    _by_len: tuple[tuple[int, dict[str, tuple[str, tuple[Route, ...], tuple[Route, ...]]]], ...] | None

    def __init__(self, name: str, domains: Iterable[str], routes: Iterable[Route],
                 pipeline: Pipeline = EMPTY, span: Span | None = None, *,
                 chain: Pipeline | None = None):
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "domains", tuple(domains) or ("*",))
        set_(self, "routes", tuple(r if r.index == i else r._renumbered(i) for i, r in enumerate(routes)))
        set_(self, "pipeline", pipeline)
        set_(self, "chain", pipeline if chain is None else chain)
        set_(self, "span", span)
        self._index()

    def _bound(self, listener: Pipeline) -> "VirtualHost":
        """This vhost as a finalized table holds it: its chain and its routes' bound."""
        chain = listener.then(self.pipeline)
        return VirtualHost(self.name, self.domains, [r._bound(chain.then(r.pipeline)) for r in self.routes],
                           self.pipeline, self.span, chain=chain)

    def _index(self) -> None:
        exact: dict[str, list[Route]] = {}
        prefix: dict[str, list[Route]] = {}
        always: list[Route] = []
        for r in self.routes:
            if r.path_exact is not None:
                exact.setdefault(r.path_exact, []).append(r)
            elif r.path_prefix is not None:
                prefix.setdefault(r.path_prefix, []).append(r)
            else:
                always.append(r)
        # per exact path, its routes and the unconditional ones already in declared
        # order, so a request whose path matches no prefix route sorts nothing; likewise
        # per prefix, for a path that only that prefix takes. That copies every
        # unconditional route into every entry, so with many of them (thousands of
        # header- or regex-only routes beside thousands of paths) the entries keep their
        # own routes and match() merges the unconditional ones in as it goes.
        set_ = object.__setattr__
        merge = len(always) > _MERGE_ABOVE
        set_(self, "_merge", merge)
        if merge:
            set_(self, "_exact", {p: tuple(rs) for p, rs in exact.items()})
            set_(self, "_prefix", tuple((p, tuple(rs), tuple(rs)) for p, rs in prefix.items()))
        elif not always:
            # each list is in declared order already (routes are walked in order)
            set_(self, "_exact", {p: tuple(rs) for p, rs in exact.items()})
            set_(self, "_prefix", tuple((p, t, t) for p, rs in prefix.items() for t in (tuple(rs),)))
        else:
            set_(self, "_exact", {p: tuple(sorted(rs + always, key=_by_index)) for p, rs in exact.items()})
            set_(self, "_prefix", tuple((p, tuple(rs), tuple(sorted(rs + always, key=_by_index)))
                                        for p, rs in prefix.items()))
        set_(self, "_always", tuple(always))
        by_len: dict[int, dict[str, tuple[str, tuple[Route, ...], tuple[Route, ...]]]] = {}
        if len(self._prefix) > _SCAN_PREFIXES:
            for e in self._prefix:
                by_len.setdefault(len(e[0]), {})[e[0]] = e
        set_(self, "_by_len", tuple(sorted(by_len.items())) if by_len else None)
        # small tables: a straight scan is faster than merging candidate lists
        set_(self, "_linear", len(self.routes) <= 8)

    def __repr__(self) -> str:
        return f"VirtualHost({self.name!r})"

    def match(self, ctx: StreamContext) -> Route | None:
        if self._linear:
            path = None
            for r in self.routes:
                if r.path_exact is not None or r.path_prefix is not None:
                    if path is None:
                        path = ctx.url_path
                    if r.path_exact is not None and path != r.path_exact:
                        continue
                    if r.path_prefix is not None and not path.startswith(r.path_prefix):
                        continue
                m = r.match
                if m is None or m(ctx):
                    return r
            return None
        path = ctx.url_path
        exact = self._exact.get(path)
        cands: Sequence[Route] | None = None
        by_len = self._by_len
        for p, rs, merged in (self._prefix if by_len is None else
                              [e for n, d in by_len if (e := d.get(path[:n])) is not None]):
            if path.startswith(p):
                if cands is None:
                    cands = merged if exact is None else sorted(exact + rs, key=_by_index)
                else:       # another prefix too: its routes join in declared order
                    cands = sorted([*cands, *rs], key=_by_index)
        if cands is None:
            if exact is None:
                cands = self._always
            elif self._merge:
                return _first_of(exact, self._always, ctx)
            else:
                cands = exact
        elif self._merge:
            return _first_of(cands, self._always, ctx)
        for r in cands:
            m = r.match
            if m is None or m(ctx):
                return r
        return None


def _first_of(a: Sequence[Route], b: Sequence[Route], ctx: StreamContext) -> Route | None:
    """The first matching route of two index-ordered lists, tried in index order."""
    i = j = 0
    na, nb = len(a), len(b)
    while i < na or j < nb:
        if j >= nb or (i < na and a[i].index < b[j].index):
            r = a[i]
            i += 1
        else:
            r = b[j]
            j += 1
        m = r.match
        if m is None or m(ctx):
            return r
    return None


# more unconditional routes than this in a vhost are merged in at match time
_MERGE_ABOVE = 64
# more path prefixes than this in a vhost are looked up by length, not each tested
_SCAN_PREFIXES = 16


def _plain(chain: Pipeline, action: object) -> bool:
    """No step in any phase of the effective chain, and an action that only forwards
    (a cluster or a weighted split; a timeout, idle timeout or hash key is fine):
    the core may take such a route's requests through a shorter path (proxy.fastpath.express),
    which runs no step, retries nothing, mirrors nothing and rewrites nothing."""
    a = action
    return (not chain and isinstance(a, RouteAction) and a.retry is None and not a.mirrors
            and a.prefix_rewrite is None and a.regex_rewrite is None and a.host_rewrite is None
            and a.cluster_header is None)


def _by_index(r: Route) -> int:
    return r.index


class RouteTable(_Frozen):
    """Virtual hosts by domain: exact, then `*.suffix` (longest first), `prefix.*`, then `*`.

    Immutable: finalize() returns a new table, the one a Snapshot holds."""
    __slots__ = ("vhosts", "_exact", "_suffix", "_prefix", "_default", "only_vhost")
    vhosts: tuple[VirtualHost, ...]
    # domain -> vhost; a dict for the lookup's sake, written here only
    _exact: dict[str, VirtualHost]
    _suffix: tuple[tuple[str, VirtualHost], ...]
    _prefix: tuple[tuple[str, VirtualHost], ...]
    _default: VirtualHost | None
    only_vhost: VirtualHost | None

    def __init__(self, vhosts: Iterable[VirtualHost]):
        set_ = object.__setattr__
        set_(self, "vhosts", tuple(vhosts))
        exact: dict[str, VirtualHost] = {}
        suffix: list[tuple[str, VirtualHost]] = []
        prefix: list[tuple[str, VirtualHost]] = []
        default: VirtualHost | None = None
        for vh in self.vhosts:
            for d in vh.domains:
                d = d.lower()
                if d == "*":
                    default = default or vh
                elif d.startswith("*"):
                    suffix.append((d[1:], vh))
                elif d.endswith("*"):
                    prefix.append((d[:-1], vh))
                else:
                    exact.setdefault(d, vh)
        set_(self, "_exact", exact)
        set_(self, "_suffix", tuple(sorted(suffix, key=lambda kv: -len(kv[0]))))
        set_(self, "_prefix", tuple(sorted(prefix, key=lambda kv: -len(kv[0]))))
        set_(self, "_default", default)
        # the vhost every request gets when only `*` is served: no Host to look at
        set_(self, "only_vhost", default if not exact and not suffix and not prefix else None)

    def vhost_of(self, request) -> VirtualHost | None:
        """The vhost for a request; its Host is read only when more than `*` is served."""
        if self.only_vhost is not None:
            return self.only_vhost
        return self.vhost_for(request.host)

    def vhost_for(self, host: str) -> VirtualHost | None:
        if self.only_vhost is not None:
            return self.only_vhost
        h = host.lower()
        vh = self._exact.get(h)
        if vh is not None:
            return vh
        if h.endswith("]") or ":" not in h:
            name = h
        else:
            name = h.rsplit(":", 1)[0]
            vh = self._exact.get(name)
            if vh is not None:
                return vh
        for s, vh in self._suffix:
            if name.endswith(s) and len(name) > len(s):
                return vh
        for p, vh in self._prefix:
            if name.startswith(p) and len(name) > len(p):
                return vh
        return self._default

    def finalize(self, listener: Pipeline) -> "RouteTable":
        """A new table whose vhosts and routes are new objects bound to their effective
        pipeline (listener ⊃ vhost ⊃ route), each route's `plain` decided with it. This
        table and its objects are left as they are."""
        return RouteTable([vh._bound(listener) for vh in self.vhosts])

    def filter_names(self) -> set[str]:
        """Names of the listener filters some route has settings for (Route.filters, cluster_filters)."""
        out: set[str] = set()
        for vh in self.vhosts:
            for r in vh.routes:
                out.update(r.filters)
                for per in r.cluster_filters.values():
                    out.update(per)
        return out

    def with_routes(self, routes: Callable[[Route], Route]) -> "RouteTable":
        """A new table, not yet finalized, whose routes are `routes(route)`."""
        return RouteTable([VirtualHost(vh.name, vh.domains, [routes(r) for r in vh.routes], vh.pipeline, vh.span)
                           for vh in self.vhosts])

    def clusters(self) -> set[str]:
        out: set[str] = set()
        for vh in self.vhosts:
            for r in vh.routes:
                if isinstance(r.action, RouteAction):
                    out.update(r.action.clusters())
                    out.update(m.cluster for m in r.action.mirrors)
        return out

    def describe(self) -> list[dict]:
        return [{"name": vh.name, "domains": list(vh.domains),
                 "routes": [{"name": r.name, "action": _describe_action(r.action),
                             "source": str(r.span) if r.span else None} for r in vh.routes]}
                for vh in self.vhosts]


def _describe_action(a: object) -> dict:
    if isinstance(a, RouteAction):
        d: dict = ({"cluster": a.cluster} if a.cluster else {"cluster_header": a.cluster_header}
                   if a.cluster_header else {"weighted_clusters": dict(a.weighted_clusters)})
        d["timeout"] = a.timeout
        if a.retry:
            d["retry"] = {"retry_on": sorted(a.retry.retry_on), "num_retries": a.retry.num_retries}
        if a.mirrors:
            d["mirrors"] = [{"cluster": m.cluster, "percent": m.percent} for m in a.mirrors]
        return d
    if isinstance(a, DirectResponse):
        return {"direct_response": a.status}
    if isinstance(a, RedirectAction):
        return {"redirect": a.status}
    return {}
