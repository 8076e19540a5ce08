"""`mosnx explain`: what a compiled snapshot does with one request, without sockets.

Invariants:
- The route taken is the core's: VirtualHost.match of the snapshot's own table, with
  the vhost from RouteTable.vhost_of. Nothing here decides a match on its own; the
  reasons given for the routes tried before it come from evaluating each route's
  .mdsl condition operand by operand, every operand through the compiler's own
  closure (ExprCompiler.pred), and are checked against the route's compiled guard:
  a disagreement is reported as such, never hidden.
- Statements that only edit the request or response (set, add, remove, respond,
  redirect) run as the compiler compiles them, one statement at a time, on a private
  StreamContext; their effect is the difference they make. Filters (fault, limit,
  wasm, YAML filters) are described, never run: their outcome is random, stateful or
  needs I/O.
- Routes without an .mdsl source (YAML routes, an Envoy RouteConfiguration) are
  explained from the compiled route alone: its index hints and its guard's verdict.
- Bad input (a request line or header that cannot be parsed) is a RequestError with
  a column, never another exception.

What the proxy core alone owns (path normalisation, the route's rewrite) is passed
in as Core, so this module keeps to runtime and dsl.

This module is the walk itself (Explainer: listener, vhost, routes, action, cluster).
Its parts: explain_report (the records, coverage, the text), explain_rules (the
.mdsl program read again and the explaining evaluator of conditions), explain_steps
(statements run on a private copy, filters described).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.attributes import getter_for
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.model import Listener, Snapshot
from mosnx.runtime.pipeline import PHASES, HttpFilter
from mosnx.runtime.routes import DirectResponse, RedirectAction, Route, RouteAction, VirtualHost

from . import ast as A
from .explain_report import Explanation, Reached, Step, Tried, render_text, route_key, where
from .explain_rules import CondTrace, Rules
from .explain_steps import WalkState, describe_steps, effects, heads, snap, walk
from .expr import text
from .request import Request, RequestError, UpstreamResponse, parse_header, parse_request
from .shadow import inline


HASHING = frozenset({"ring_hash", "maglev"})    # balancers that pick by a hash key


@dataclass(frozen=True)
class Core:
    """What only the proxy core knows how to do, lent by the composition root."""
    # (listener, method, target) -> (origin-form target, authority of an absolute-form one or None);
    # raises ValueError (its message the client's 400) for a target the listener refuses
    normalize: Callable[[Listener, str, str], tuple[str, str | None]]
    # the route's prefix/regex/host rewrite applied to the context, as the core applies it
    rewrite: Callable[[StreamContext, RouteAction], None]


class Explainer:
    """Explains requests against one snapshot; reuse it for many requests (tests)."""

    def __init__(self, snapshot: Snapshot, core: Core):
        self.snapshot, self.core = snapshot, core
        self._rules: dict[str, Rules | None] = {}

    def listeners(self) -> list[str]:
        return [n for n, l in self.snapshot.listeners.items() if l.routes.vhosts]

    def listener(self, name: str | None, req: Request) -> Listener:
        names = self.listeners()
        if name is not None:
            if name not in names:
                raise RequestError(f'no HTTP listener "{name}"; there are: {", ".join(names) or "none"}', "--listener")
            return self.snapshot.listeners[name]
        if len(names) == 1:
            return self.snapshot.listeners[names[0]]
        port = req.host.rsplit(":", 1)[1] if ":" in req.host and not req.host.endswith("]") else \
            ("443" if req.scheme == "https" else "80")
        by_port = [n for n in names if str(self.snapshot.listeners[n].config.port) == port]
        if len(by_port) == 1:
            return self.snapshot.listeners[by_port[0]]
        if not names:
            raise RequestError("this config has no HTTP listener to explain", "--listener")
        raise RequestError(f"several listeners could take it ({', '.join(names)}): name one with --listener",
                           "--listener")

    def rules(self, lst: Listener) -> Rules | None:
        n = lst.config.name
        if n not in self._rules:
            lc = lst.config
            self._rules[n] = Rules(lc.rules, [f.name for f in lc.filters]) if lc.rules else None
        return self._rules[n]

    def context(self, lst: Listener, req: Request) -> StreamContext:
        hdrs = Headers.from_pairs([("host", req.host)] + req.headers) if not req.http2 else \
            Headers.from_pairs(req.headers)
        try:
            target, authority = self.core.normalize(lst, req.method, req.target)
        except ValueError as e:
            raise RequestError(f"the listener refuses this path (400): {e}", "request") from None
        head = RequestHead(req.method, target, hdrs, "2" if req.http2 else "1.1", req.scheme,
                           (authority or req.host) if req.http2 else None)
        if authority is not None and not req.http2:
            hdrs.set(b"host", authority.encode("latin-1"))
        ctx = StreamContext(head, lst.config.name, "HTTP/2" if req.http2 else "HTTP/1.1",
                            (req.source, req.source_port), (lst.config.host, lst.config.port))
        ctx.request_id = "explain"
        return ctx

    def explain(self, req: Request, listener: str | None = None, response: UpstreamResponse | None = None,
                pick: str | None = None, reached: Reached | None = None) -> Explanation:
        lst = self.listener(listener, req)
        ex = Explanation(req, listener=lst.config.name)
        ctx = self.context(lst, req)
        rules = self.rules(lst)
        st = WalkState(ex, ctx, rules, reached if reached is not None else Reached())
        reply = self._request_phase(lst, st)
        if reply is None and ctx.vhost is not None and ctx.route is not None:
            reply = self._action(lst, st, pick)
        elif reply is None:
            ex.action = "reject"
            reply = LocalReply(404, b"", (), "route_not_found")
            ex.notes.append("no route takes this request: 404 route_not_found")
        ex.request_headers = heads(ctx.request.headers)
        ex.path = ctx.request.path
        ex.upstream_host = ctx.request.host
        if reply is not None:
            ex.status = reply.status
            if ex.action == "":
                ex.action = "respond"
            ex.reply_headers = list(reply.headers)
            if ex.location is None:     # a `redirect` statement's reply, made before any route
                ex.location = next((v for k, v in reply.headers if k.lower() == "location"), None)
            hdrs = Headers([(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers])
            # as the core's local reply (proxy.stream.local_reply) makes its head
            if reply.body and not hdrs.has(b"content-type"):
                hdrs.items.append((b"content-type", b"text/plain"))
            if reply.detail:
                hdrs.items.append((b"x-mosnx-error", reply.detail.encode("latin-1")))
            ctx.response = ResponseHead(reply.status, hdrs)
        elif response is not None:
            ctx.response = ResponseHead(response.status, Headers.from_pairs(response.headers))
        self._response_phase(lst, st)
        if ctx.response is not None:
            ex.response_status = ctx.response.status
            ex.response_headers = heads(ctx.response.headers)
        self._log_phase(lst, st)
        return ex

    # -- phases --
    def _request_phase(self, lst: Listener, st: WalkState) -> LocalReply | None:
        ctx, rules, ex = st.ctx, st.rules, st.ex
        yaml_steps = [s for s in lst.pipeline.request if isinstance(getattr(s, "__self__", None), HttpFilter)]
        describe_steps(yaml_steps, "request", st)
        if rules is not None:
            for blk, path in rules.listener_blocks:
                if blk.phase == "request":
                    r = walk(blk.body, "request", None, "request", path, st)
                    if r is not None:
                        return r
        vh = lst.routes.vhost_of(ctx.request)
        if vh is None:
            ex.notes.append(f"no virtual host serves host {ctx.request.host!r}")
            return None
        ctx.vhost = vh
        ex.vhost = vh.name
        vdecl = rules.vhosts.get(vh.span) if rules is not None and vh.span is not None else None
        ex.vhost_where = " ".join(filter(None, [where(vh.span), f"(domains {', '.join(vh.domains)})"]))
        if vdecl is not None:
            for it in vdecl[0].items:
                if isinstance(it, A.OnBlock) and it.phase == "request":
                    r = walk(it.body, "request", None, "request", vdecl[1], st)
                    if r is not None:
                        return r
        elif vh.pipeline.request and rules is None:
            r = describe_steps(vh.pipeline.request, "request", st)
            if r is not None:
                return r
        route = vh.match(ctx)
        self._tried(lst, vh, route, st)
        if route is None:
            return None
        ctx.route = route
        ex.route, ex.route_where, ex.route_index = route.name, where(route.span), route.index
        st.reached.routes.add(route_key(lst.config.name, vh, route))
        a = route.action
        if isinstance(a, RouteAction):
            ctx.cluster_name = a.cluster or ""
        rdecl = rules.routes.get(route.span) if rules is not None and route.span is not None else None
        if rdecl is not None:
            decl, path = rdecl
            cond = inline(decl.cond, rules.prog.scopes.get(path, {}), rules.prog.scopes) if rules else None
            body: list[A.Stmt] = [s for s in decl.body if not isinstance(s, A.ROUTE_ACTIONS + A.FORWARD)]
            st.route_body = (body, cond, path)
            n = len(ex.steps)
            reply = walk(body, "route", cond, "request", path, st)
        else:
            n = len(ex.steps)
            reply = describe_steps(route.pipeline.request, "request", st)
        for s in ex.steps[n:]:
            if s.phase == "request":
                s.phase = "route"       # the route's own request steps, shown apart
        return reply

    def _tried(self, lst: Listener, vh: VirtualHost, chosen: Route | None, st: WalkState) -> None:
        """Every route before the chosen one (all of them when none matched), with why
        it did not match; and the chosen one. The reasons are checked against each
        route's compiled guard."""
        rules, ctx = st.rules, st.ctx
        upto = chosen.index if chosen is not None else len(vh.routes) - 1
        for r in vh.routes[:upto + 1]:
            why: list[str] = []
            path = ctx.url_path
            hint_ok = (r.path_exact is None or path == r.path_exact) and \
                (r.path_prefix is None or path.startswith(r.path_prefix))
            guard = r.match is None or bool(r.match(ctx))
            core = hint_ok and guard
            rdecl = rules.routes.get(r.span) if rules is not None and r.span is not None else None
            if rdecl is not None and rdecl[0].cond is not None:
                assert rules is not None
                mine = CondTrace(rules, ctx, st.reached).eval(rdecl[0].cond, rdecl[1], why)
            else:
                mine = core
                if not hint_ok:
                    why.append(f"path {path!r} is not {r.path_exact!r}" if r.path_exact is not None
                               else f"path {path!r} does not start with {r.path_prefix!r}")
                elif not guard:
                    why.append(("path " + _describe_match(r) + " holds; " if r.path_exact or r.path_prefix else "")
                               + "the route's other conditions (headers, query, method, ...) do not")
            if mine != core:
                st.ex.mismatch.append(f"route {r.name}: the explanation says {mine}, the core's guard {core}")
            matched = r is chosen
            if not matched and core:
                st.ex.mismatch.append(f"route {r.name} matches but the core took a later one")
            st.ex.tried.append(Tried(r.name, where(r.span), matched, [] if matched else why))

    def _action(self, lst: Listener, st: WalkState, pick: str | None) -> LocalReply | None:
        ctx, ex = st.ctx, st.ex
        route = ctx.route
        assert route is not None and ctx.vhost is not None
        a = route.action
        if isinstance(a, DirectResponse):
            ex.action = "respond"
            return LocalReply(a.status, a.body, a.headers, "")
        if isinstance(a, RedirectAction):
            ex.action = "redirect"
            ex.location = a.location(ctx)
            return LocalReply(a.status, b"", (("location", ex.location),), "")
        ex.action = "forward"
        key = route_key(lst.config.name, ctx.vhost, route)
        if a.weighted_clusters:
            total = sum(w for _, w in a.weighted_clusters)
            ex.split = [(c, w / total) for c, w in a.weighted_clusters]
            arms = [c for c, w in a.weighted_clusters if w > 0]
            if pick is not None and pick in arms:
                ex.cluster = pick
                st.reached.arms.add((key, pick))
            else:
                ex.cluster = max(a.weighted_clusters, key=lambda cw: cw[1])[0]
                if pick is not None:
                    ex.notes.append(f"{pick} is not an arm of this split")
                ex.notes.append(f"a split: later steps are shown with {ex.cluster}, its heaviest arm")
        elif a.cluster_header is not None:
            ex.cluster = ctx.request.headers.get(a.cluster_header) or ""
            ex.notes.append(f"cluster from request header {a.cluster_header}: {ex.cluster or '(absent: 503)'}")
        else:
            ex.cluster = a.cluster
        ctx.cluster_name = ex.cluster or ""
        if ex.cluster and ex.cluster not in self.snapshot.clusters:
            ex.notes.append(f'cluster "{ex.cluster}" does not exist: 503 cluster_not_found')
        ex.timeout = a.timeout or None
        if a.retry is not None:
            ex.retry = {"num_retries": a.retry.num_retries, "retry_on": sorted(a.retry.retry_on),
                        "retriable_status_codes": sorted(a.retry.retriable_status_codes),
                        "per_try_timeout": a.retry.per_try_timeout}
        ex.mirrors = [(m.cluster, m.percent) for m in a.mirrors]
        # only a hashing balancer reads a key: the route's, else the cluster's (proxy.upstream.lb)
        cc = self.snapshot.clusters.get(ex.cluster or "")
        hk = None
        if cc is not None and cc.lb in HASHING:
            hk = a.hash_key or cc.options.get("hash_key")
            if not hk:
                ex.notes.append(f"{cc.lb} without a hash key: each request goes to a random healthy host")
        if hk:
            try:
                ex.hash_key = (hk, text(getter_for(hk)(ctx)))
            except Exception as e:       # a reference the config checked; say what went wrong
                ex.hash_key = (hk, f"<{type(e).__name__}>")
        if a.rewrites:
            before = snap(ctx)
            self.core.rewrite(ctx, a)
            ex.steps.append(Step("rewrite", where(route.span), "the route's rewrite", effects(before, ctx)))
        describe_steps(route.chain.upstream_request, "upstream_request", st)
        return None

    def _response_phase(self, lst: Listener, st: WalkState) -> None:
        ctx, rules = st.ctx, st.rules
        cond = ctx.response is None
        route, vh = ctx.route, ctx.vhost
        body = st.route_body
        if rules is not None:
            if body is not None:
                walk(body[0], "route", body[1], "response", body[2], st, cond)
            vdecl = rules.vhosts.get(vh.span) if vh is not None and vh.span is not None else None
            if vdecl is not None:
                for it in vdecl[0].items:
                    if isinstance(it, A.OnBlock) and it.phase == "response":
                        walk(it.body, "response", None, "response", vdecl[1], st, cond)
            for blk, path in rules.listener_blocks:
                if blk.phase == "response":
                    walk(blk.body, "response", None, "response", path, st, cond)
            yaml = [s for s in lst.pipeline.response if isinstance(getattr(s, "__self__", None), HttpFilter)]
            describe_steps(yaml, "response", st, cond)
        else:
            chain = route.chain if route is not None else lst.pipeline
            describe_steps(chain.response, "response", st, cond)

    def _log_phase(self, lst: Listener, st: WalkState) -> None:
        rules, vh = st.rules, st.ctx.vhost
        if rules is None:
            return
        vdecl = rules.vhosts.get(vh.span) if vh is not None and vh.span is not None else None
        blocks = [(it, vdecl[1]) for it in vdecl[0].items if isinstance(it, A.OnBlock)] if vdecl else []
        for blk, path in blocks + rules.listener_blocks:
            if blk.phase == "log":
                for s in blk.body:
                    st.ex.steps.append(Step("log", where(s.span), rules.source(s.span), [], False))


def _describe_match(r: Route) -> str:
    return f"== {r.path_exact!r}" if r.path_exact is not None else f"prefix {r.path_prefix!r}"


__all__ = ["Core", "Explainer", "Explanation", "Reached", "Request", "RequestError", "UpstreamResponse",
           "parse_request", "parse_header", "render_text", "PHASES"]
