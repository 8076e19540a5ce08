"""Route tables: virtual hosts chosen by domain, routes matched in first-match order.

The same RouteTable is built from YAML, .mdsl and xDS. Matching is indexed (exact
domain dict then wildcards; exact-path dict and a prefix map per vhost) while
keeping first-match order: candidate routes are tried by their declared index.
Every route's guard is a compiled predicate; nothing here walks an AST.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

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
    """Forward to a cluster (or a weighted split of clusters)."""
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
    # whether any rewrite applies: known once, so a request without one looks once
    rewrites: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        if (self.cluster is None) == (not self.weighted_clusters):
            raise ValueError("a route action names a cluster or a weighted split, exactly one")
        if self.weighted_clusters and sum(w for _, w in self.weighted_clusters) <= 0:
            raise ValueError("weighted split needs a positive total weight")
        object.__setattr__(self, "rewrites", self.prefix_rewrite is not None or self.regex_rewrite is not None
                           or self.host_rewrite is not None)

    def clusters(self) -> list[str]:
        return [self.cluster] if self.cluster else [c for c, _ in self.weighted_clusters]


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


class Route:
    """One route: guard, action, and its own pipeline steps.

    `chain` is the effective pipeline for the phases after routing (listener,
    vhost and route steps merged), set once by RouteTable.finalize().
    """
    __slots__ = ("name", "match", "path_exact", "path_prefix", "action", "pipeline",
                 "span", "chain", "index", "plain")

    def __init__(self, name: str, action: RouteAction | DirectResponse | RedirectAction,
                 match: Predicate | None = None, path_exact: str | None = None,
                 path_prefix: str | None = None, pipeline: Pipeline = EMPTY,
                 span: Span | None = None):
        self.name = name
        self.match = match            # full guard; path_exact/prefix are index hints implied by it
        self.path_exact = path_exact
        self.path_prefix = path_prefix
        self.action = action
        self.pipeline = pipeline
        self.span = span
        self.chain: Pipeline = pipeline
        self.index = 0
        # the action, when forwarding is all this route does (set by finalize)
        self.plain: RouteAction | None = None

    def __repr__(self) -> str:
        return f"Route({self.name!r})"


class VirtualHost:
    __slots__ = ("name", "domains", "routes", "pipeline", "chain", "span",
                 "_exact", "_prefix", "_always", "_linear", "_merge")

    def __init__(self, name: str, domains: Iterable[str], routes: Iterable[Route],
                 pipeline: Pipeline = EMPTY, span: Span | None = None):
        self.name = name
        self.domains = tuple(domains) or ("*",)
        self.routes = tuple(routes)
        self.pipeline = pipeline
        self.chain = pipeline
        self.span = span
        for i, r in enumerate(self.routes):
            r.index = i
        self._index()

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
        self._merge = len(always) > _MERGE_ABOVE
        if self._merge:
            self._exact = exact
            self._prefix = [(p, rs, rs) for p, rs in prefix.items()]
        else:
            self._exact = {p: sorted(rs + always, key=_by_index) for p, rs in exact.items()}
            self._prefix = [(p, rs, sorted(rs + always, key=_by_index)) for p, rs in prefix.items()]
        self._always = always
        # small tables: a straight scan is faster than merging candidate lists
        self._linear = len(self.routes) <= 8

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
        cands = None
        for p, rs, merged in self._prefix:
            if path.startswith(p):
                if cands is None:
                    cands = merged if exact is None else sorted(exact + rs, key=_by_index)
                else:       # another prefix too: its routes join in declared order
                    cands = sorted(cands + rs, key=_by_index)
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


def _first_of(a: list[Route], b: list[Route], ctx: StreamContext) -> Route | None:
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


def _plain(r: Route) -> bool:
    """No step in any phase, and an action that only forwards: the core may take
    such a route's requests through a shorter path (proxy.express)."""
    a = r.action
    return (not r.chain and isinstance(a, RouteAction) and a.retry is None and not a.mirrors
            and a.prefix_rewrite is None and a.regex_rewrite is None and a.host_rewrite is None)


def _by_index(r: Route) -> int:
    return r.index


class RouteTable:
    """Virtual hosts by domain: exact, then `*.suffix` (longest first), `prefix.*`, then `*`."""
    __slots__ = ("vhosts", "_exact", "_suffix", "_prefix", "_default", "only_vhost")

    def __init__(self, vhosts: Iterable[VirtualHost]):
        self.vhosts = tuple(vhosts)
        self._exact: dict[str, VirtualHost] = {}
        suffix: list[tuple[str, VirtualHost]] = []
        prefix: list[tuple[str, VirtualHost]] = []
        self._default: VirtualHost | None = None
        for vh in self.vhosts:
            for d in vh.domains:
                d = d.lower()
                if d == "*":
                    self._default = self._default or vh
                elif d.startswith("*"):
                    suffix.append((d[1:], vh))
                elif d.endswith("*"):
                    prefix.append((d[:-1], vh))
                else:
                    self._exact.setdefault(d, vh)
        self._suffix = sorted(suffix, key=lambda kv: -len(kv[0]))
        self._prefix = sorted(prefix, key=lambda kv: -len(kv[0]))
        # the vhost every request gets when only `*` is served: no Host to look at
        self.only_vhost = (self._default if not self._exact and not suffix and not prefix
                           else None)

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
        """Bind each vhost and route to its effective pipeline (listener ⊃ vhost ⊃ route)."""
        for vh in self.vhosts:
            vh.chain = listener.then(vh.pipeline)
            for r in vh.routes:
                r.chain = vh.chain.then(r.pipeline)
                r.plain = r.action if _plain(r) else None  # type: ignore[assignment]  # _plain: a RouteAction
        return self

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
        d: dict = {"cluster": a.cluster} if a.cluster else {"weighted_clusters": dict(a.weighted_clusters)}
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
