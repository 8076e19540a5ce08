"""Compile a checked Program into runtime objects: RouteTable, VirtualHost, Route,
RouteAction / DirectResponse / RedirectAction, and Pipeline steps.

Runs only after dsl.check found no error, so it does not re-validate. Everything
that can be decided here is: header names are lower-cased bytes, constant values
are pre-encoded, filters are built once per snapshot. Statements run in the order
they are written, in every phase; a `when` becomes one guarded step per phase its
body touches. `rpc` blocks compile apart (RulesResult.rpc, a dsl.rpc.RpcRouter):
their guards read a call's header map, never a StreamContext. `trace` statements
act on ctx.trace only when the listener traces; without one they return at once.
"""
from __future__ import annotations

import random
import re
from typing import Any, Callable

from mosnx.runtime.actions import LocalReply, redirect
from mosnx.runtime.context import StreamContext
from mosnx.runtime.filters.fault import FaultConfig, FaultFilter
from mosnx.runtime.filters.ratelimit import RateLimitConfig, RateLimitFilter
from mosnx.runtime.pipeline import PHASES, HttpFilter, Pipeline
from mosnx.runtime.registry import RulesResult, Services
from mosnx.runtime.routes import (DirectResponse, MirrorPolicy, RedirectAction, RetryPolicy, Route,
                                  RouteAction, RouteTable, VirtualHost)

from . import ast as A
from . import scheme as S
from .expr import _NOTHING, ExprCompiler, text
from .gcpause import paused
from .load import Program
from .rpc import RpcRouter, reply, rpc_getter
from .shadow import inline, is_catch_all, path_hint, path_prefix_of

BODY_PHASES = frozenset({"request_body", "response_body"})
DEFAULT_RETRY_ON = frozenset({"connect-failure", "refused-stream"})
ROUTE_ACTIONS = A.ROUTE_ACTIONS
FORWARD = A.FORWARD
# Where header and metadata edits run, by the place they are written.
_EDIT_PHASE = {"request": "request", "route": "request", "route_when": "request", "response": "response"}
# Where a span attribute is set, by the place it is written (the server span is made at the end).
_TAG_PHASE = dict(_EDIT_PHASE, log="log")
_random = random.random


class RpcExprCompiler(ExprCompiler):
    """Expressions of RPC rules: closures over a call's header map (dsl.rpc)."""

    def sub(self, path: str) -> ExprCompiler:
        return RpcExprCompiler(self.scopes.get(path, {}), self.scopes, self.cache)

    def field(self, e: A.Ref) -> Any:
        return rpc_getter(e.name, e.key)


class Steps:
    """Steps per phase, in the order written."""
    __slots__ = ("phases",)

    def __init__(self) -> None:
        self.phases: dict[str, list[Any]] = {p: [] for p in PHASES}

    def add(self, phase: str, step: Any) -> None:
        self.phases[phase].append(step)

    def extend(self, other: "Steps") -> None:
        for p, steps in other.phases.items():
            self.phases[p].extend(steps)

    def add_pipeline(self, p: Pipeline) -> None:
        for phase in PHASES:
            self.phases[phase].extend(getattr(p, phase))

    def pipeline(self) -> Pipeline:
        return Pipeline(**{p: tuple(v) for p, v in self.phases.items()})


def compile_program(prog: Program, filters: dict[str, HttpFilter] | None = None,
                    services: Services | None = None) -> RulesResult:
    with paused():
        return _Compiler(prog, filters, services or Services()).run()


def _enc(s: str) -> bytes:
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


class _Compiler:
    def __init__(self, prog: Program, filters: dict[str, HttpFilter] | None, services: Services):
        self.prog = prog
        self.filters = filters
        self.services = services
        # (re.Pattern, text) -> the pattern the checker compiled; no (path, const) key is a type
        self.cache: dict = {(re.Pattern, p): c for p, c in prog.regexes.items()}
        self.scope: dict = {}
        self.ex: ExprCompiler = ExprCompiler({}, prog.scopes, self.cache)

    def run(self) -> RulesResult:
        listener = Steps()
        vhosts: list[VirtualHost] = []
        default_routes: list[Route] = []
        rpc_routes: list = []
        # RPC rules get a cache of their own: a const compiles to a read of the header map there
        rpc_cache: dict = {k: v for k, v in self.cache.items() if isinstance(k, tuple) and k[0] is re.Pattern}
        for f in self.prog.roots:
            self.scope = self.prog.scopes.get(f.path, {})
            self.ex = ExprCompiler(self.scope, self.prog.scopes, self.cache)
            rpc_ex = RpcExprCompiler(self.scope, self.prog.scopes, rpc_cache)
            for it in f.items:
                if isinstance(it, A.RpcDecl):
                    rpc_routes.extend(self.rpc_route(r, rpc_ex) for r in it.routes)
                elif isinstance(it, A.OnBlock):
                    listener.extend(self.block(it.body, it.phase, None))
                elif isinstance(it, A.RouteDecl):
                    default_routes.append(self.route(it))
                elif isinstance(it, A.VHostDecl):
                    vhosts.append(self.vhost(it))
        if default_routes:
            vhosts.append(VirtualHost("default", ["*"], default_routes))
        result = RulesResult(RouteTable(vhosts), listener.pipeline())
        if rpc_routes:
            result.rpc = RpcRouter(rpc_routes)
        return result

    def regex(self, text: str) -> re.Pattern:
        return self.cache.get((re.Pattern, text)) or re.compile(text)

    def vhost(self, vh: A.VHostDecl) -> VirtualHost:
        steps = Steps()
        routes = []
        for it in vh.items:
            if isinstance(it, A.OnBlock):
                steps.extend(self.block(it.body, it.phase, None))
            else:
                routes.append(self.route(it))
        return VirtualHost(vh.name, [d.name for d in vh.domains] or ["*"], routes, steps.pipeline(), vh.span)

    # ---- routes ----
    def route(self, r: A.RouteDecl) -> Route:
        cond = inline(r.cond, self.scope, self.prog.scopes)
        exact, prefix = path_hint(cond)
        # the hints only narrow the candidates: the guard stays complete, so a route
        # matched without the index (an admin route test) answers the same
        guard = None if is_catch_all(cond) else self.ex.pred(r.cond)  # type: ignore[arg-type]  # no cond is a catch-all
        body = [s for s in r.body if not isinstance(s, ROUTE_ACTIONS + FORWARD)]
        pipeline = self.block(body, "route", cond).pipeline()
        action = next(s for s in r.body if isinstance(s, ROUTE_ACTIONS))
        return Route(r.name, self.action(action, r.body, cond), guard, path_exact=exact,
                     path_prefix=prefix, pipeline=pipeline, span=r.span)

    def rpc_route(self, r: A.RouteDecl, ex: ExprCompiler) -> tuple[str, Any, Any, Any]:
        cond = inline(r.cond, self.scope, self.prog.scopes)
        guard = None if is_catch_all(cond) else ex.pred(r.cond)  # type: ignore[arg-type]  # no cond is a catch-all
        a = next(s for s in r.body if isinstance(s, ROUTE_ACTIONS))
        if isinstance(a, A.Respond):
            return r.name, r.span, guard, reply(a.status.value, a.body)
        return r.name, r.span, guard, self.action(a, r.body, cond)

    def action(self, a: A.To | A.Split | A.Respond | A.Redirect, body: tuple[A.Stmt, ...], cond: A.Expr | None):
        if isinstance(a, A.Respond):
            return DirectResponse(a.status.value, _enc_body(a.body), a.headers)
        if isinstance(a, A.Redirect):
            return self.redirect_action(a, cond)
        kw: dict[str, Any] = {}
        mirrors = []
        for s in body:
            if isinstance(s, A.Timeout):
                kw["timeout"] = S.parse_duration(s.duration.text)
            elif isinstance(s, A.Retry):
                kw["retry"] = self.retry(s)
            elif isinstance(s, A.Mirror):
                pct = S.parse_percent(s.percent.text) if s.percent is not None else 100.0
                mirrors.append(MirrorPolicy(s.cluster, pct))  # type: ignore[arg-type]  # the checker refused a bad percent
            elif isinstance(s, A.HostRewrite):
                kw["host_rewrite"] = s.host
            elif isinstance(s, A.RewritePrefix):
                kw["prefix_rewrite"] = (s.old, s.new)
            elif isinstance(s, A.RewriteRegex):
                kw["regex_rewrite"] = (self.regex(s.pattern.value), s.substitution)
        if isinstance(a, A.To):
            kw["cluster"] = a.cluster
        else:
            kw["weighted_clusters"] = tuple((w.cluster, w.weight) for w in a.weights)
        return RouteAction(mirrors=tuple(mirrors), **kw)

    def retry(self, s: A.Retry) -> RetryPolicy:
        names = frozenset(on.name for on in s.on) or DEFAULT_RETRY_ON
        codes = frozenset(c for on in s.on for c in on.statuses)
        per_try = S.parse_duration(s.per_try.text) if s.per_try is not None else None
        return RetryPolicy(retry_on=names, num_retries=s.count, per_try_timeout=per_try,
                           retriable_status_codes=codes)

    def redirect_action(self, a: A.Redirect, cond: A.Expr | None) -> RedirectAction:
        prefix = None
        if a.prefix is not None:
            prefix = (path_prefix_of(cond) or "", a.prefix)
        return RedirectAction(a.status.value, a.scheme, a.host, a.path, prefix, a.strip_query)

    # ---- statements ----
    def block(self, body, place: str, cond: A.Expr | None) -> Steps:
        out = Steps()
        for s in body:
            m = getattr(self, "s_" + type(s).__name__)
            m(s, place, cond, out)
        return out

    def s_Assign(self, s: A.Assign, place: str, cond, out: Steps) -> None:
        t = s.target
        value = self.ex.value(s.value)
        lit = self.ex.literal(s.value)
        if t.name == "metadata":
            key: str = t.key  # type: ignore[assignment]  # metadata["k"] has its key

            def set_meta(ctx: StreamContext) -> None:
                ctx.meta()[key] = value(ctx)
            out.add(_EDIT_PHASE[place], set_meta)
            return
        if t.name == "request.path":
            def set_path(ctx: StreamContext) -> None:
                ctx.set_path(text(value(ctx)))
            out.add("request", set_path)
            return
        name = t.key.lower().encode("latin-1")  # type: ignore[union-attr]  # a header target has its name
        add = s.mode == "add"
        const = _enc(text(lit)) if lit is not _NOTHING else None
        if t.name == "request.headers":
            if const is not None:
                def req_const(ctx: StreamContext) -> None:
                    h = ctx.request.headers
                    h.add(name, const) if add else h.set(name, const)
                out.add("request", req_const)
            else:
                def req_dyn(ctx: StreamContext) -> None:
                    h = ctx.request.headers
                    v = _enc(text(value(ctx)))
                    h.add(name, v) if add else h.set(name, v)
                out.add("request", req_dyn)
            return

        def resp(ctx: StreamContext) -> None:
            r = ctx.response
            if r is None:
                return
            v = const if const is not None else _enc(text(value(ctx)))
            r.headers.add(name, v) if add else r.headers.set(name, v)
        out.add("response", resp)

    def s_Remove(self, s: A.Remove, place: str, cond, out: Steps) -> None:
        t = s.target
        if t.name == "metadata":
            key: str = t.key  # type: ignore[assignment]  # metadata["k"] has its key

            def del_meta(ctx: StreamContext) -> None:
                if ctx.metadata:
                    ctx.metadata.pop(key, None)
            out.add(_EDIT_PHASE[place], del_meta)
            return
        name = t.key.lower().encode("latin-1")  # type: ignore[union-attr]  # a header target has its name
        if t.name == "request.headers":
            def req(ctx: StreamContext) -> None:
                ctx.request.headers.remove(name)
            out.add("request", req)
            return

        def resp(ctx: StreamContext) -> None:
            if ctx.response is not None:
                ctx.response.headers.remove(name)
        out.add("response", resp)

    def s_When(self, s: A.When, place: str, cond, out: Steps) -> None:
        pred = self.ex.pred(s.cond)
        inner = "route_when" if place in ("route", "route_when") else place
        scope_cond = inline(s.cond, self.scope, self.prog.scopes)
        then = self.block(s.body, inner, scope_cond)
        orelse = self.block(s.orelse, inner, cond)
        for phase in PHASES:
            a, b = tuple(then.phases[phase]), tuple(orelse.phases[phase])
            if a or b:
                out.add(phase, _guarded(pred, a, b, phase))

    def s_Respond(self, s: A.Respond, place: str, cond, out: Steps) -> None:
        reply = LocalReply(s.status.value, _enc_body(s.body), s.headers)
        out.add("request", lambda ctx: reply)

    def s_Redirect(self, s: A.Redirect, place: str, cond, out: Steps) -> None:
        ra = self.redirect_action(s, cond)
        status = ra.status
        out.add("request", lambda ctx: redirect(status, ra.location(ctx)))

    def s_Fault(self, s: A.Fault, place: str, cond, out: Steps) -> None:
        kw: dict[str, Any] = {}
        if s.delay is not None:
            kw["delay"] = S.parse_duration(s.delay.duration.text)
            if s.delay.percent is not None:
                kw["delay_percent"] = S.parse_percent(s.delay.percent.text)
        if s.abort is not None:
            kw["abort_status"] = s.abort.status.value
            if s.abort.percent is not None:
                kw["abort_percent"] = S.parse_percent(s.abort.percent.text)
        out.add_pipeline(Pipeline.of([FaultFilter(FaultConfig(**kw), "fault", self.services.stats)]))

    def s_Limit(self, s: A.Limit, place: str, cond, out: Steps) -> None:
        count, per = S.parse_rate(s.rate)  # type: ignore[misc]  # the checker refused a bad rate
        cfg = RateLimitConfig(rate=count / per, burst=s.burst or count,
                              status=s.status.value if s.status is not None else 429,
                              algorithm="leaky_bucket" if s.queue else "token_bucket")
        key = self.ex.value(s.key) if s.key is not None else None
        f = RateLimitFilter(cfg, key, "rate_limit", self.services.stats)
        out.add_pipeline(Pipeline.of([f]))

    def s_Wasm(self, s: A.Wasm, place: str, cond, out: Steps) -> None:
        f = (self.filters or {}).get(s.name)
        if f is not None:          # None only when linting without a config
            out.add_pipeline(Pipeline.of([f]))

    def s_Emit(self, s: A.Emit, place: str, cond, out: Steps) -> None:
        services = self.services
        stream = s.stream
        fields = tuple((f.name, self.ex.value(f.value)) for f in s.fields)

        def emit(ctx: StreamContext) -> None:
            sink = services.emit
            if sink is not None:
                sink(ctx, stream, {k: v(ctx) for k, v in fields})
        out.add("log", emit)


    def s_TraceTag(self, s: A.TraceTag, place: str, cond, out: Steps) -> None:
        key = s.key
        lit = self.ex.literal(s.value)
        if lit is not _NOTHING and not isinstance(lit, (str, int, float)):
            lit = text(lit)                        # an address literal is written as text
        value = self.ex.value(s.value)

        def tag(ctx: StreamContext) -> None:
            t = ctx.trace
            if t is not None:       # kept even while unsampled: a later `trace sample` may sample it
                t.tag(key, lit if lit is not _NOTHING else value(ctx))
        out.add(_TAG_PHASE[place], tag)

    def s_TraceSample(self, s: A.TraceSample, place: str, cond, out: Steps) -> None:
        pct: float = S.parse_percent(s.percent.text)  # type: ignore[assignment]  # the checker refused a bad one

        if pct >= 100.0 or pct <= 0.0:
            on = pct >= 100.0

            def sample(ctx: StreamContext) -> None:
                t = ctx.trace
                if t is not None:
                    t.force(on)
        else:
            def sample(ctx: StreamContext) -> None:
                t = ctx.trace
                if t is not None:
                    t.force(_random() * 100.0 < pct)
        out.add("request", sample)


def _enc_body(s: str) -> bytes:
    return s.encode("utf-8")


def _guarded(pred: Callable, then: tuple, orelse: tuple, phase: str) -> Callable:
    if phase in BODY_PHASES:
        return _guarded_body(pred, then, orelse)
    if not orelse:
        if len(then) == 1:
            step = then[0]
            return lambda ctx: step(ctx) if pred(ctx) else None

        def when(ctx: StreamContext):
            if pred(ctx):
                for st in then:
                    a = st(ctx)
                    if a is not None:
                        return a
            return None
        return when

    def when_else(ctx: StreamContext):
        for st in (then if pred(ctx) else orelse):
            a = st(ctx)
            if a is not None:
                return a
        return None
    return when_else


def _guarded_body(pred: Callable, then: tuple, orelse: tuple) -> Callable:
    """A body step (a filter named by `wasm` inside a `when`): each step sees the chunk
    as the previous one left it; an action ends the chain."""
    def when_body(ctx: StreamContext, data: bytes, end_stream: bool):
        changed = None
        for st in (then if pred(ctx) else orelse):
            r = st(ctx, data, end_stream)
            if r is None:
                continue
            if isinstance(r, (bytes, bytearray)):
                data = changed = bytes(r)
                continue
            return r
        return changed
    return when_body
