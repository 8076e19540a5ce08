"""Envoy RouteConfiguration -> runtime.routes.RouteTable.

Virtual hosts keep their domains and order; routes keep first-match order. A
path match becomes the route's index hint (path_exact / path_prefix) and, when more
than the hint decides (case-insensitive, separated prefix, regex, headers, query
parameters), a compiled guard. Header edits at config, vhost and route level become
steps: the config's and the vhost's on the vhost's pipeline, the route's on its own,
so the innermost level edits last on the request and first on the response.

typed_per_filter_config (configuration, vhost, route, weighted cluster) and the
`cors` fields become each route's FilterOverrides (runtime.routes), the most
specific level winning per filter; runtime.route_filters runs them. A
runtime_fraction match draws one number per request (kept in its filter state),
as Envoy takes one random value per stream, so routes with growing fractions split
traffic as they do in Envoy; `random_source` is what draws it.

A control plane re-sends a whole RouteConfiguration when one of its routes changes.
With a RouteMemo (what the last translation of that configuration made, by route
and by what the route's translation reads: its place, its message's bytes, its
virtual host's fields but the routes, the configuration's typed_per_filter_config)
an unchanged route is the Route made last time, so the update costs the routes
that changed plus a byte comparison per route. Warnings are given when a route is
first translated, as apply() gives them per resource.
"""
from __future__ import annotations

import random
import re
from typing import Any, Callable, Mapping

from ..context import StreamContext
from ..pipeline import EMPTY, Pipeline
from ..routes import (CORS_POLICY, RETRY_ON, DirectResponse, FilterOverride, MirrorPolicy, RedirectAction,
                      RetryPolicy, Route, RouteAction, RouteTable, VirtualHost)
from .common import StrPred, header_edits, header_pipeline, regex_of, seconds, string_matcher
from .findings import Findings
from .runtime_layers import fraction
from .http_filters import cors_policy, per_filter_configs

Pred = Callable[[StreamContext], bool]

REDIRECT_CODES = {0: 301, 1: 302, 2: 303, 3: 307, 4: 308}
DENOMINATOR = {0: 100, 1: 10_000, 2: 1_000_000}
Overrides = Mapping[str, FilterOverride]
# (vhost key, route's place, route's bytes) -> its translation; see the docstring
RouteMemo = dict[tuple[Any, int, bytes], Route]

# draws the number a runtime_fraction match compares, in [0, 1): read when a route
# is translated, so a test may put a seeded one here first
random_source: Callable[[], float] = random.random


def translate_route_config(rc: Any, f: Findings, memo: RouteMemo | None = None,
                           keep: RouteMemo | None = None) -> RouteTable:
    """`memo`: what the last translation of this configuration put in its `keep`."""
    f.only(rc, {"name", "virtual_hosts", "request_headers_to_add", "request_headers_to_remove",
                "response_headers_to_add", "response_headers_to_remove", "validate_clusters",
                "typed_per_filter_config", "vhds",      # vhds: runtime.envoy.vhds merges its hosts in
                "ignore_port_in_host_matching", "max_direct_response_body_size_bytes"})
    if rc.ignore_port_in_host_matching:
        _ports_ignored(rc, f)
    if rc.HasField("max_direct_response_body_size_bytes"):
        _body_limit(rc, rc.max_direct_response_body_size_bytes.value, f)
    top_req = header_edits(list(rc.request_headers_to_add), list(rc.request_headers_to_remove), f,
                           "request_headers_to_add")
    top_resp = header_edits(list(rc.response_headers_to_add), list(rc.response_headers_to_remove), f,
                            "response_headers_to_add")
    top_filters = per_filter_configs(rc.typed_per_filter_config, f.at("typed_per_filter_config"))
    at = f.at("virtual_hosts").at
    top = rc.typed_per_filter_config
    # what every route's translation reads beside its own message (the guards' source of numbers too)
    common = (random_source, _map_bytes(top) if top else b"")
    vhosts = [_vhost(vh, at(i), top_req, top_resp, top_filters,
                     None if keep is None else (memo or {}, keep, (common, i)))
              for i, vh in enumerate(rc.virtual_hosts)]
    return RouteTable(vhosts)


def _ports_ignored(rc: Any, f: Findings) -> None:
    """ignore_port_in_host_matching: mosnx's vhost lookup already tries the Host without
    its port (RouteTable.vhost_for), so it matches as Envoy's does; only a domain with a
    port, which Envoy then never matches, is matched still."""
    for i, vh in enumerate(rc.virtual_hosts):
        for j, d in enumerate(vh.domains):
            if re.search(r":(\d+|\*)$", d) and not d.endswith("]"):
                f.at("virtual_hosts").at(i).at("domains").at(j).warn(
                    f'with ignore_port_in_host_matching Envoy matches no domain with a port; mosnx matches "{d}"')


def _body_limit(rc: Any, limit: int, f: Findings) -> None:
    """max_direct_response_body_size_bytes: a direct response body larger is refused, as
    Envoy refuses it (without the field mosnx sets no limit; Envoy's is 4096 bytes)."""
    for i, vh in enumerate(rc.virtual_hosts):
        for j, r in enumerate(vh.routes):
            if r.WhichOneof("action") != "direct_response":
                continue
            b = r.direct_response.body
            size = len(b.inline_string.encode() if b.WhichOneof("specifier") == "inline_string" else b.inline_bytes)
            if size > limit:
                f.at("virtual_hosts").at(i).at("routes").at(j).at("direct_response").reject(
                    f"the body is {size} bytes, more than max_direct_response_body_size_bytes ({limit})", "body")


def _map_bytes(m: Any) -> bytes:
    return b"".join(k.encode() + b"\0" + m[k].SerializeToString() for k in sorted(m))


def _without_routes(vh: Any) -> bytes:
    bare = type(vh)()
    bare.CopyFrom(vh)
    bare.ClearField("routes")
    return bare.SerializeToString()


def _vhost(vh: Any, f: Findings, top_req: list, top_resp: list, top_filters: Overrides,
           memos: tuple[RouteMemo, RouteMemo, Any] | None = None) -> VirtualHost:
    f.only(vh, {"name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove",
                "response_headers_to_add", "response_headers_to_remove", "retry_policy",
                "typed_per_filter_config", "cors"})
    if not vh.domains:
        f.reject("a virtual host needs domains", "domains")
    req = top_req + header_edits(list(vh.request_headers_to_add), list(vh.request_headers_to_remove), f,
                                 "request_headers_to_add")
    # on the response, the vhost's edits run before the config's, as Envoy applies them
    resp = header_edits(list(vh.response_headers_to_add), list(vh.response_headers_to_remove), f,
                        "response_headers_to_add") + top_resp
    default_retry = _retry(vh.retry_policy, f.at("retry_policy")) if vh.HasField("retry_policy") else None
    filters = {**top_filters, **per_filter_configs(vh.typed_per_filter_config, f.at("typed_per_filter_config"))}
    cors = cors_policy(vh.cors, f.at("cors")) if vh.HasField("cors") else None
    at = f.at("routes").at
    if memos is None:
        routes = [_route(r, at(i), default_retry, filters, cors, i) for i, r in enumerate(vh.routes)]
    else:
        memo, keep, top = memos
        vkey = (top, _without_routes(vh))
        routes = []
        for i, r in enumerate(vh.routes):
            key = (vkey, i, r.SerializeToString())
            got = memo.get(key)
            if got is None:
                got = _route(r, at(i), default_retry, filters, cors, i)
            keep[key] = got
            routes.append(got)
    pipeline = header_pipeline(req, resp) if (req or resp) else EMPTY
    return VirtualHost(vh.name or "default", list(vh.domains), routes, pipeline)


def _route(r: Any, f: Findings, default_retry: RetryPolicy | None, vh_filters: Overrides,
           vh_cors: dict[str, Any] | None, index: int = 0) -> Route:
    f.only(r, {"name", "match", "route", "redirect", "direct_response", "request_headers_to_add",
               "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
               "typed_per_filter_config"})
    exact, prefix, guard, matched = _match(r.match, f.at("match"))
    kind = r.WhichOneof("action")
    action: RouteAction | DirectResponse | RedirectAction
    filters = {**vh_filters, **per_filter_configs(r.typed_per_filter_config, f.at("typed_per_filter_config"))}
    cluster_filters: dict[str, Overrides] = {}
    cors = vh_cors
    if kind == "route":
        action = _forward(r.route, f.at("route"), matched, default_retry)
        if r.route.HasField("cors"):
            # Envoy reads each CORS setting from the route's policy, else the vhost's
            cors = {**(vh_cors or {}), **cors_policy(r.route.cors, f.at("route").at("cors"))}
        if r.route.WhichOneof("cluster_specifier") == "weighted_clusters":
            cluster_filters = _cluster_filters(r.route.weighted_clusters, f.at("route").at("weighted_clusters"))
    elif kind == "redirect":
        action = _redirect(r.redirect, f.at("redirect"), matched)
    elif kind == "direct_response":
        d = r.direct_response
        if not 200 <= d.status <= 599:
            f.at("direct_response").reject("status must be within 200..599", "status")
        body = d.body.inline_string.encode() if d.body.WhichOneof("specifier") == "inline_string" else d.body.inline_bytes
        if d.body.WhichOneof("specifier") in ("filename", "environment_variable"):
            f.at("direct_response").reject("a body from a file or the environment is not supported", "body")
        action = DirectResponse(d.status, body)
    else:
        f.reject("a route needs route, redirect or direct_response" +
                 (f" ({kind} is not supported)" if kind else ""))
    req = header_edits(list(r.request_headers_to_add), list(r.request_headers_to_remove), f, "request_headers_to_add")
    resp = header_edits(list(r.response_headers_to_add), list(r.response_headers_to_remove), f,
                        "response_headers_to_add")
    if cors is not None and not isinstance(action, RouteAction):
        cors = None         # Envoy's CORS filter passes by direct responses and redirects
    if cors is not None:
        filters[CORS_POLICY] = FilterOverride("cors", cors)
    return Route(r.name or f.path, action, guard, exact, prefix,
                 header_pipeline(req, resp) if (req or resp) else EMPTY,
                 index=index, filters=filters, cluster_filters=cluster_filters)


def _cluster_filters(wc: Any, f: Findings) -> dict[str, Overrides]:
    """Each weighted cluster's own typed_per_filter_config, by cluster name."""
    out: dict[str, Overrides] = {}
    for i, c in enumerate(wc.clusters):
        if not c.typed_per_filter_config:
            continue
        fc = f.at("clusters").at(i)
        got = per_filter_configs(c.typed_per_filter_config, fc.at("typed_per_filter_config"))
        if c.name in out and out[c.name] != got:
            fc.reject(f'cluster "{c.name}" is weighted twice with different typed_per_filter_config')
        out[c.name] = got
    return out


def _match(m: Any, f: Findings) -> tuple[str | None, str | None, Pred | None, str]:
    """(path_exact hint, path_prefix hint, guard, the path or prefix matched, for rewrites)."""
    f.only(m, {"prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers",
               "query_parameters", "grpc", "runtime_fraction"})
    preds: list[Pred] = []
    cs = m.case_sensitive.value if m.HasField("case_sensitive") else True
    kind = m.WhichOneof("path_specifier")
    exact = prefix = None
    matched = ""
    if kind == "prefix":
        matched = m.prefix
        if cs:
            prefix = m.prefix or None
        elif m.prefix:
            low = m.prefix.lower()
            preds.append(lambda ctx: ctx.url_path.lower().startswith(low))
    elif kind == "path":
        matched = m.path
        if cs:
            exact = m.path
        else:
            lowp = m.path.lower()
            preds.append(lambda ctx: ctx.url_path.lower() == lowp)
    elif kind == "path_separated_prefix":
        p = matched = m.path_separated_prefix
        if not p.startswith("/") or p.endswith("/") and p != "/":
            f.reject("must start with / and not end with /", "path_separated_prefix")
        n = len(p)
        if cs:
            prefix = p
            preds.append(lambda ctx: len(ctx.url_path) == n or ctx.url_path[n] == "/")
        else:
            lp = p.lower()
            preds.append(lambda ctx: ctx.url_path.lower().startswith(lp) and (len(ctx.url_path) == n
                                                                            or ctx.url_path[n] == "/"))
    elif kind == "safe_regex":
        rx = regex_of(m.safe_regex, f.at("safe_regex"))
        if not cs:
            rx = re.compile(rx.pattern, re.IGNORECASE)
        preds.append(lambda ctx: rx.fullmatch(ctx.url_path) is not None)
    else:
        f.reject("a route match needs prefix, path, safe_regex or path_separated_prefix" +
                 (f" ({kind} is not supported)" if kind else ""))
    for i, h in enumerate(m.headers):
        preds.append(_header(h, f.at("headers").at(i)))
    for i, q in enumerate(m.query_parameters):
        preds.append(_query(q, f.at("query_parameters").at(i)))
    if m.HasField("grpc"):
        preds.append(lambda ctx: (ctx.request.headers.get("content-type") or "").startswith("application/grpc"))
    if m.HasField("runtime_fraction"):
        rf = m.runtime_fraction
        # the runtime's value for the key (static and RTDS layers), else the default
        share = fraction(f.sink.runtime, rf.runtime_key, rf.default_value)
        # first among the guards when it decides alone (0 or all); otherwise last, so
        # a request the other conditions refuse draws nothing
        if share <= 0.0:
            preds.insert(0, lambda ctx: False)
        elif share < 1.0:
            preds.append(fraction_guard(share, random_source))
    guard: Pred | None = None
    if len(preds) == 1:
        guard = preds[0]
    elif preds:
        ps = tuple(preds)
        guard = lambda ctx: all(p(ctx) for p in ps)   # noqa: E731
    return exact, prefix, guard, matched


_DRAW = object()        # the filter-state key of a request's one runtime_fraction draw


def fraction_guard(share: float, rand: Callable[[], float]) -> Pred:
    """True for `share` (0..1) of requests: one draw per request, shared by every
    fractional route it meets, as Envoy compares one random value per stream."""
    def pred(ctx: StreamContext) -> bool:
        st = ctx.state()
        v = st.get(_DRAW)
        if v is None:
            v = st[_DRAW] = rand()
        return v < share
    return pred


def _header_value(name: str) -> Callable[[StreamContext], str | None]:
    if name == ":method":
        return lambda ctx: ctx.request.method
    if name == ":path":
        return lambda ctx: ctx.request.path
    if name == ":authority" or name == "host":
        return lambda ctx: ctx.request.host
    if name == ":scheme":
        return lambda ctx: ctx.request.scheme
    return lambda ctx: (",".join(v) if (v := ctx.request.headers.get_all(name)) else None)


def _header(h: Any, f: Findings) -> Pred:
    f.only(h, {"name", "exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match",
               "suffix_match", "contains_match", "string_match", "invert_match", "treat_missing_header_as_empty"})
    if not h.name:
        f.reject("a header matcher needs a name", "name")
    get = _header_value(h.name.lower())
    kind = h.WhichOneof("header_match_specifier")
    invert = h.invert_match
    missing_empty = h.treat_missing_header_as_empty
    test: StrPred
    if kind is None:
        present = True
        test = lambda v: True   # noqa: E731
    elif kind == "present_match":
        present = h.present_match
        test = lambda v: True   # noqa: E731
    else:
        present = True
        if kind == "string_match":
            test = string_matcher(h.string_match, f.at("string_match"))
        elif kind == "exact_match":
            e = h.exact_match
            test = lambda v: v == e   # noqa: E731
        elif kind == "prefix_match":
            p = h.prefix_match
            test = lambda v: v.startswith(p)   # noqa: E731
        elif kind == "suffix_match":
            s = h.suffix_match
            test = lambda v: v.endswith(s)   # noqa: E731
        elif kind == "contains_match":
            c = h.contains_match
            test = lambda v: c in v   # noqa: E731
        elif kind == "safe_regex_match":
            rx = regex_of(h.safe_regex_match, f.at("safe_regex_match"))
            test = lambda v: rx.fullmatch(v) is not None   # noqa: E731
        else:   # range_match
            lo, hi = h.range_match.start, h.range_match.end

            def test(v: str) -> bool:
                try:
                    return lo <= int(v) < hi
                except ValueError:
                    return False

    def pred(ctx: StreamContext) -> bool:
        v = get(ctx)
        if v is None and missing_empty:
            v = ""
        if v is None:
            ok = not present if kind == "present_match" else False
        else:
            ok = present and test(v)
        return ok != invert
    return pred


def _query(q: Any, f: Findings) -> Pred:
    f.only(q, {"name", "string_match", "present_match"})
    name = q.name
    if q.WhichOneof("query_parameter_match_specifier") == "string_match":
        test = string_matcher(q.string_match, f.at("string_match"))
        return lambda ctx: (v := ctx.query.get(name)) is not None and test(v)
    return lambda ctx: name in ctx.query


def _retry(rp: Any, f: Findings) -> RetryPolicy:
    f.only(rp, {"retry_on", "num_retries", "per_try_timeout", "retriable_status_codes", "retry_back_off"})
    on: set[str] = set()
    for cond in (c.strip() for c in rp.retry_on.split(",")):
        if not cond:
            continue
        if cond in RETRY_ON:
            on.add(cond)
        else:
            f.warn(f'retry_on "{cond}" is not supported; ignored', "retry_on")
    kw: dict[str, Any] = {"retry_on": frozenset(on) or frozenset({"connect-failure"}),
                          "num_retries": rp.num_retries.value if rp.HasField("num_retries") else 1,
                          "retriable_status_codes": frozenset(rp.retriable_status_codes)}
    if rp.HasField("per_try_timeout") and seconds(rp.per_try_timeout) > 0:
        kw["per_try_timeout"] = seconds(rp.per_try_timeout)
    if rp.HasField("retry_back_off"):
        base = seconds(rp.retry_back_off.base_interval)
        if base <= 0:
            f.at("retry_back_off").reject("base_interval must be longer than 0", "base_interval")
        kw["backoff_base"] = base
        kw["backoff_max"] = (seconds(rp.retry_back_off.max_interval) if rp.retry_back_off.HasField("max_interval")
                             else 10 * base)
    return RetryPolicy(**kw)


def _hash_key(hp: list, f: Findings) -> str | None:
    for i, h in enumerate(hp):
        kind = h.WhichOneof("policy_specifier")
        if i > 0:
            f.at(i).warn("only the first hash policy is used")
            continue
        if kind == "header":
            return f'request.headers["{h.header.header_name.lower()}"]'
        if kind == "cookie":
            return f'request.cookies["{h.cookie.name}"]'
        if kind == "query_parameter":
            return f'request.query["{h.query_parameter.name}"]'
        if kind == "connection_properties" and h.connection_properties.source_ip:
            return "source.address"
        f.at(i).warn(f"hash policy {kind} is not supported; ignored")
    return None


def _forward(a: Any, f: Findings, matched: str, default_retry: RetryPolicy | None) -> RouteAction:
    f.only(a, {"cluster", "weighted_clusters", "prefix_rewrite", "regex_rewrite", "host_rewrite_literal",
               "timeout", "idle_timeout", "retry_policy", "request_mirror_policies", "hash_policy",
               "cluster_header", "cors", "cluster_not_found_response_code"})
    kind = a.WhichOneof("cluster_specifier")
    kw: dict[str, Any] = {}
    if a.cluster_not_found_response_code != 0:
        f.warn("cluster_not_found_response_code other than SERVICE_UNAVAILABLE is not served: "
               "a missing cluster is answered 503", "cluster_not_found_response_code")
    if kind == "cluster":
        kw["cluster"] = a.cluster
    elif kind == "cluster_header":
        name = a.cluster_header.lower()
        if not name or name.startswith(":") or any(c in name for c in " \t\r\n"):
            f.reject("cluster_header must name a request header", "cluster_header")
        kw["cluster_header"] = name
    elif kind == "weighted_clusters":
        wc = a.weighted_clusters
        pairs = []
        for i, c in enumerate(wc.clusters):
            fc = f.at("weighted_clusters").at("clusters").at(i)
            fc.only(c, {"name", "weight", "typed_per_filter_config"})
            if not c.name:
                fc.reject("a weighted cluster needs a name (cluster_header here is not supported)", "name")
            pairs.append((c.name, c.weight.value if c.HasField("weight") else 0))
        if sum(w for _, w in pairs) <= 0:
            f.reject("the weights must add up to more than 0", "weighted_clusters")
        kw["weighted_clusters"] = tuple(pairs)
    else:
        f.reject(f"a route needs cluster, cluster_header or weighted_clusters ({kind or 'none'} is not supported)")
    if a.prefix_rewrite:
        kw["prefix_rewrite"] = (matched or "/", a.prefix_rewrite)
    if a.HasField("regex_rewrite"):
        rx = regex_of(a.regex_rewrite.pattern, f.at("regex_rewrite").at("pattern"))
        kw["regex_rewrite"] = (rx, a.regex_rewrite.substitution)
    if a.host_rewrite_literal:
        kw["host_rewrite"] = a.host_rewrite_literal
    kw["timeout"] = (seconds(a.timeout) or None) if a.HasField("timeout") else 15.0
    if a.HasField("idle_timeout"):
        kw["idle_timeout"] = seconds(a.idle_timeout) or None
    retry = _retry(a.retry_policy, f.at("retry_policy")) if a.HasField("retry_policy") else default_retry
    if retry is not None:
        kw["retry"] = retry
    mirrors = []
    for i, mp in enumerate(a.request_mirror_policies):
        fm = f.at("request_mirror_policies").at(i)
        fm.only(mp, {"cluster", "runtime_fraction"})
        pct = 100.0
        if mp.HasField("runtime_fraction"):
            d = mp.runtime_fraction.default_value
            pct = 100.0 * d.numerator / {0: 100, 1: 10_000, 2: 1_000_000}.get(d.denominator, 100)
        if not mp.cluster:
            fm.reject("a mirror policy needs a cluster", "cluster")
        mirrors.append(MirrorPolicy(mp.cluster, min(pct, 100.0)))
    kw["mirrors"] = tuple(mirrors)
    key = _hash_key(list(a.hash_policy), f.at("hash_policy"))
    if key is not None:
        kw["hash_key"] = key
    try:
        return RouteAction(**kw)
    except ValueError as e:
        f.reject(str(e))


def _redirect(r: Any, f: Findings, matched: str) -> RedirectAction:
    f.only(r, {"https_redirect", "scheme_redirect", "host_redirect", "path_redirect", "prefix_rewrite",
               "response_code", "strip_query"})
    scheme = "https" if r.https_redirect else (r.scheme_redirect or None)
    kw: dict[str, Any] = {"status": REDIRECT_CODES.get(r.response_code, 301), "scheme": scheme,
                          "host": r.host_redirect or None, "strip_query": r.strip_query}
    if r.path_redirect:
        kw["path"] = r.path_redirect
    elif r.prefix_rewrite:
        kw["prefix_rewrite"] = (matched or "/", r.prefix_rewrite)
    return RedirectAction(**kw)
