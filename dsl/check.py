"""The checker: names, types, phases and lint rules over a loaded Program.

It only reports; it never changes the AST and never compiles. The compiler runs
only on a program with no error here, so it may assume every name resolves and
every operand has the right type. Codes (docs/mdsl.md lists them all):
E002 unknown name, T1xx types and values, R2xx routing lints, U3xx unknown
references, D4xx duplicates, P5xx phases and places. HTTP rules and `rpc` blocks
read disjoint fields (P503, TypeChecker.kind); under a config the listener's kind
and tracing are known, and rules of the other kind (P504) or `trace` statements on
a listener that does not trace (U303, a warning) are reported.
"""
from __future__ import annotations

import re
from typing import Iterable

from mosnx.runtime.diagnostics import Diagnostic, Span, did_you_mean
from mosnx.runtime.routes import RETRY_ON

from . import ast as A
from . import scheme as S
from .gcpause import paused
from .load import Program
from .rpc import RPC_REPLY_STATUSES
from .shadow import ShadowIndex, inline, is_catch_all, path_prefix_of
from .types import HTTP, RPC, TypeChecker, _a

# Where a statement may appear. "route" is a route's body, "route_when" a `when`
# inside it; a top-level or vhost `on` block is its phase.
PLACES = {
    "request": '"on request"', "route": "a route", "route_when": 'a "when" inside a route',
    "response": '"on response"', "log": '"on log"',
}
_ALLOWED = {
    A.To: {"route"}, A.Split: {"route"}, A.Timeout: {"route"}, A.Retry: {"route"},
    A.Mirror: {"route"}, A.HostRewrite: {"route"}, A.RewritePrefix: {"route"}, A.RewriteRegex: {"route"},
    A.Assign: {"request", "route", "route_when", "response"},
    A.Remove: {"request", "route", "route_when", "response"},
    A.When: {"request", "route", "route_when", "response", "log"},
    A.Respond: {"request", "route", "route_when"},
    A.Redirect: {"request", "route", "route_when"},
    A.Fault: {"request", "route"}, A.Limit: {"request", "route"}, A.Wasm: {"request", "route"},
    A.Emit: {"log"},
    A.TraceTag: {"request", "route", "route_when", "response", "log"},
    A.TraceSample: {"request", "route", "route_when"},
}
KEYWORD = {
    A.To: "to", A.Split: "split", A.Timeout: "timeout", A.Retry: "retry", A.Mirror: "mirror",
    A.HostRewrite: "host_rewrite", A.RewritePrefix: "rewrite", A.RewriteRegex: "rewrite",
    A.Assign: "set", A.Remove: "remove", A.When: "when", A.Respond: "respond",
    A.Redirect: "redirect", A.Fault: "fault", A.Limit: "limit", A.Wasm: "wasm", A.Emit: "emit",
    A.TraceTag: "trace tag", A.TraceSample: "trace sample",
}
ROUTE_ACTIONS = A.ROUTE_ACTIONS
FORWARD_ONLY = A.FORWARD
RETRY_NAMES = sorted(RETRY_ON - {"retriable-status-codes"})
EMIT_STREAMS = ("access",)
REDIRECT_CODES = (301, 302, 303, 307, 308)
# Assignable targets: name -> places where set/add/remove may touch it
TARGETS = {
    "request.headers": {"request", "route", "route_when"},
    "response.headers": {"response", "route", "route_when"},
    "metadata": {"request", "route", "route_when", "response"},
    "request.path": {"request", "route", "route_when"},
}
# The phase a statement's values are read in, by place (and target).
_READ_PHASE = {"request": "request", "route": "route", "route_when": "route",
               "response": "response", "log": "log"}
# What an RPC route may say: its action (to, split, respond) and the forwarding
# settings the RPC server applies (timeout, retry without `on`).
RPC_STMTS = (A.To, A.Split, A.Respond, A.Timeout, A.Retry)
RPC_REPLIES = ", ".join(f"{c} {w}" for c, w in RPC_REPLY_STATUSES.items())


def check(prog: Program, clusters: set[str] | None = None,
          filters: set[str] | None = None, tracing: bool | None = None,
          rpc: bool | None = None) -> list[Diagnostic]:
    """Every finding for `prog`. `clusters`/`filters` None means unknown (not checked),
    except that clusters declared in the rules are checked when no set is given.
    `tracing`: whether the listener traces (False: trace statements warn U303);
    `rpc`: whether it is an RPC listener (P504 for rules of the other kind); None: unknown."""
    c = _Checker(prog, clusters, filters)
    c.tracing, c.rpc_listener = tracing, rpc
    with paused():
        c.run()
    return c.diags


class _Checker(TypeChecker):
    def __init__(self, prog: Program, clusters: set[str] | None, filters: set[str] | None):
        super().__init__(prog)
        declared = prog.declared_clusters()
        self.clusters = clusters if clusters is not None else (declared or None)
        self.filters = filters
        self.tracing: bool | None = None
        self.rpc_listener: bool | None = None

    def regex(self, s: A.Str) -> None:
        try:
            self.prog.regexes[s.value] = re.compile(s.value)   # kept for the compiler
        except re.error:
            super().regex(s)        # which words the error

    # ---- program ----
    def run(self) -> None:
        for f in self.prog.files.values():
            self.scope = self.prog.scopes.get(f.path, {})
            for it in f.items:
                if isinstance(it, A.Const):
                    self.const_type(it.name, it.span)
        vhosts: list[A.VHostDecl] = []
        default_routes: list[tuple[A.RouteDecl, dict]] = []
        rpcs: dict[str, A.RpcDecl] = {}
        for f in self.prog.roots:
            self.scope = self.prog.scopes.get(f.path, {})
            for it in f.items:
                if isinstance(it, A.RpcDecl):
                    self.kind = RPC
                    if self.rpc_listener is False:
                        self.err(it.name_span, "P504", f'rpc block "{it.name}" in rules of an HTTP listener: '
                                                       "rpc blocks route the calls of a protocol: bolt or dubbo listener")
                    prev = rpcs.get(it.name)
                    if prev is not None:
                        self.err(it.name_span, "D401", f'duplicate rpc block name "{it.name}" (first at {prev.span})')
                    rpcs.setdefault(it.name, it)
                    self.rpc_block(it)
                    continue
                self.kind = HTTP
                if self.rpc_listener and isinstance(it, (A.OnBlock, A.RouteDecl, A.VHostDecl)):
                    what = {A.OnBlock: f'"on {getattr(it, "phase", "")}" block', A.RouteDecl: "route",
                            A.VHostDecl: "vhost"}[type(it)]
                    self.err(getattr(it, "name_span", it.span), "P504",
                             f"{what} in rules of an RPC listener: an RPC listener reads only rpc blocks "
                             "(rpc NAME { route ... })")
                if isinstance(it, A.OnBlock):
                    self.block(it.body, it.phase)
                elif isinstance(it, A.RouteDecl):
                    self.route(it)
                    default_routes.append((it, self.scope))
                elif isinstance(it, A.VHostDecl):
                    self.vhost(it)
                    vhosts.append(it)
        self.kind = HTTP
        self.routes_lint([r for r, _ in default_routes], [s for _, s in default_routes])
        self.vhosts_lint(vhosts, bool(default_routes))
        self.kind = None

    def rpc_block(self, b: A.RpcDecl) -> None:
        for r in b.routes:
            self.rpc_route(r)
        self.routes_lint(list(b.routes), [self.scope] * len(b.routes))

    def rpc_route(self, r: A.RouteDecl) -> None:
        actions, forwards = self.route_head(r, "to, split or respond")
        seen: dict[type, A.Stmt] = {}
        for s in r.body:
            if not isinstance(s, RPC_STMTS):
                kw = "add" if isinstance(s, A.Assign) and s.mode == "add" else KEYWORD[type(s)]
                self.err(s.span, "P501", f'"{kw}" is not allowed in an RPC route; it takes to, split or respond, '
                                         "with timeout and retry")
                continue
            if isinstance(s, (A.Timeout, A.Retry)):
                if actions and not forwards:
                    self.err(s.span, "P501", f'"{KEYWORD[type(s)]}" applies only to a route that forwards (to or split)')
                if type(s) in seen:
                    self.err(s.span, "D403", f'"{KEYWORD[type(s)]}" is already set for this route '
                                             f'(line {seen[type(s)].span.line})')
                seen.setdefault(type(s), s)
            if isinstance(s, A.Retry) and s.on:
                self.err(s.on[0].span, "P501", "an RPC retry takes no conditions: a call is retried on a reset, "
                                               "a connect failure or a per-try timeout, and only for a method "
                                               "in rpc.idempotent_methods")
            elif isinstance(s, A.Respond):
                if s.status.value not in RPC_REPLY_STATUSES:
                    self.err(s.status.span, "T104", f"an RPC reply's status picks the protocol's error: "
                                                    f"{RPC_REPLIES}; not {s.status.value}")
                if s.headers:
                    self.err(s.span, "P501", "an RPC reply carries no headers: it is the protocol's error response")
            else:
                self.stmt(s, "route", r)

    def vhost(self, vh: A.VHostDecl) -> None:
        routes = []
        for it in vh.items:
            if isinstance(it, A.OnBlock):
                self.block(it.body, it.phase)
            else:
                self.route(it)
                routes.append(it)
        self.routes_lint(routes, [self.scope] * len(routes))

    def vhosts_lint(self, vhosts: list[A.VHostDecl], has_default: bool) -> None:
        names: dict[str, A.VHostDecl] = {}
        owner: dict[str, str] = {}
        if has_default:
            owner["*"] = "default"
        for vh in vhosts:
            prev = names.get(vh.name)
            if prev is not None:
                self.err(vh.name_span, "D401", f'duplicate vhost name "{vh.name}" (first at {prev.span})')
            else:
                names[vh.name] = vh
            for d in (vh.domains or (A.Domain(vh.name_span, "*"),)):
                key = d.name.lower()
                if key in owner and owner[key] != vh.name:
                    self.warn(d.span, "R203", f'domain "{d.name}" is already served by vhost "{owner[key]}"; '
                                              f'this vhost never sees it')
                else:
                    owner.setdefault(key, vh.name)

    def routes_lint(self, routes: list[A.RouteDecl], scopes: list[dict]) -> None:
        seen: dict[str, A.RouteDecl] = {}
        for r in routes:
            prev = seen.get(r.name)
            if prev is not None:
                self.err(r.name_span, "D401", f'duplicate route name "{r.name}" (first at line {prev.span.line})')
            else:
                seen[r.name] = r
        catch_all: A.RouteDecl | None = None
        conds = [self.inline(r.cond, s) if r.cond is not None else None for r, s in zip(routes, scopes)]
        earlier = ShadowIndex()     # only routes that could match the same requests are compared
        for j, r in enumerate(routes):
            if catch_all is not None:
                self.warn(r.name_span, "R201", f'route "{r.name}" is unreachable: route "{catch_all.name}" '
                                               f'(line {catch_all.span.line}) matches every request first')
                continue
            if is_catch_all(conds[j]):
                catch_all = r
                continue
            i = earlier.first_implied(conds[j])
            if i is not None:
                self.warn(r.name_span, "R202", f'route "{r.name}" is shadowed by route "{routes[i].name}" '
                                               f'(line {routes[i].span.line}), which matches all its requests first')
            earlier.add(j, conds[j])  # type: ignore[arg-type]  # no cond is a catch-all, above

    def inline(self, e: A.Expr, scope: dict) -> A.Expr:
        return inline(e, scope, self.prog.scopes)

    # ---- routes and statements ----
    def route_head(self, r: A.RouteDecl, kinds: str) -> tuple[list[A.Stmt], bool]:
        """A route's condition and its one action (R205, R206): its actions, and whether it forwards."""
        if r.cond is not None:
            self.condition(r.cond, "request")
        actions: list[A.Stmt] = [s for s in r.body if isinstance(s, ROUTE_ACTIONS)]
        if not actions:
            self.err(r.name_span, "R205", f'route "{r.name}" has no action: add {kinds}')
        for extra in actions[1:]:
            self.err(extra.span, "R206", f'route "{r.name}" already has an action ("{KEYWORD[type(actions[0])]}" '
                                         f'at line {actions[0].span.line}); a route has exactly one')
        return actions, bool(actions) and isinstance(actions[0], (A.To, A.Split))

    def route(self, r: A.RouteDecl) -> None:
        actions, forwards = self.route_head(r, "to, split, respond or redirect")
        seen: dict[type, A.Stmt] = {}
        for s in r.body:
            if isinstance(s, FORWARD_ONLY):
                if actions and not forwards:
                    self.err(s.span, "P501", f'"{KEYWORD[type(s)]}" applies only to a route that forwards (to or split)')
                key = A.RewritePrefix if isinstance(s, A.RewriteRegex) else type(s)
                if key in seen and key is not A.Mirror:
                    self.err(s.span, "D403", f'"{KEYWORD[type(s)]}" is already set for this route '
                                             f'(line {seen[key].span.line})')
                seen.setdefault(key, s)
        for s in r.body:
            self.stmt(s, "route", r)

    def block(self, body: Iterable[A.Stmt], place: str, route: A.RouteDecl | None = None) -> None:
        for s in body:
            self.stmt(s, place, route)

    def stmt(self, s: A.Stmt, place: str, route: A.RouteDecl | None) -> None:
        allowed = _ALLOWED[type(s)]
        if place not in allowed:
            where = " or ".join(PLACES[p] for p in PLACES if p in allowed)
            kw = "add" if isinstance(s, A.Assign) and s.mode == "add" else KEYWORD[type(s)]
            self.err(s.span, "P501", f'"{kw}" is not allowed in {PLACES[place]}; it belongs in {where}')
            return
        phase = _READ_PHASE[place]
        m = getattr(self, "s_" + type(s).__name__)
        m(s, place, phase, route)

    def s_To(self, s: A.To, place, phase, route) -> None:
        self.cluster(s.cluster, s.span)

    def s_Split(self, s: A.Split, place, phase, route) -> None:
        total = 0
        names: set[str] = set()
        for w in s.weights:
            self.cluster(w.cluster, w.span)
            if w.cluster in names:
                self.err(w.span, "D403", f'cluster "{w.cluster}" appears twice in this split')
            names.add(w.cluster)
            total += w.weight
        if total <= 0:
            self.err(s.span, "T103", "split weights must add up to more than 0")
        elif total != 100:
            self.warn(s.span, "R204", f"split weights add up to {total}, not 100")

    def s_Timeout(self, s: A.Timeout, place, phase, route) -> None:
        self.duration(s.duration)

    def s_Retry(self, s: A.Retry, place, phase, route) -> None:
        for on in s.on:
            if on.name == "retriable-status-codes":
                for code in on.statuses:
                    if not 100 <= code <= 599:
                        self.err(on.span, "T104", f"status {code} is outside 100..599")
            elif on.name not in RETRY_ON:
                self.err(on.span, "E002", f'unknown retry condition "{on.name}"' + did_you_mean(on.name, RETRY_NAMES))
        if s.per_try is not None:
            self.duration(s.per_try)

    def s_Mirror(self, s: A.Mirror, place, phase, route) -> None:
        self.cluster(s.cluster, s.span)
        if s.percent is not None:
            self.percent(s.percent)

    def s_HostRewrite(self, s, place, phase, route) -> None:
        if not s.host:
            self.err(s.span, "T103", "host_rewrite needs a host name")

    def s_RewritePrefix(self, s: A.RewritePrefix, place, phase, route) -> None:
        if not s.old.startswith("/"):
            self.err(s.span, "T103", f'rewrite prefix "{s.old}" must start with "/"')

    def s_RewriteRegex(self, s: A.RewriteRegex, place, phase, route) -> None:
        self.regex(s.pattern)

    def s_Assign(self, s: A.Assign, place, phase, route) -> None:
        if not self.target(s.target, place, s.mode):
            return
        if s.target.name == "response.headers":
            phase = "response"
        t = self.typ(s.value, phase)
        if t is not None and t not in (S.STRING, S.INT, S.BOOL, S.IP, S.DURATION, S.PERCENT):
            self.err(s.value.span, "T101", f"type mismatch: {s.target.name} takes a single value, not {_a(t)}")

    def s_Remove(self, s: A.Remove, place, phase, route) -> None:
        if s.target.name == "request.path":
            self.err(s.target.span, "T105", "request.path cannot be removed; use set")
            return
        self.target(s.target, place, "remove")

    def s_When(self, s: A.When, place, phase, route) -> None:
        self.condition(s.cond, phase)
        inner = "route_when" if place in ("route", "route_when") else place
        self.block(s.body, inner, route)
        self.block(s.orelse, inner, route)

    def s_Respond(self, s: A.Respond, place, phase, route) -> None:
        self.status(s.status, 100, 599)

    def s_Redirect(self, s: A.Redirect, place, phase, route) -> None:
        if s.status.value not in REDIRECT_CODES:
            self.err(s.status.span, "T104", f"redirect status must be one of 301, 302, 303, 307, 308, not {s.status.value}")
        if s.prefix is not None and s.path is not None:
            self.err(s.span, "T103", "redirect takes prefix or path, not both")
        if s.prefix is not None and place == "route":
            cond = self.inline(route.cond, self.scope) if route and route.cond is not None else None
            if path_prefix_of(cond) is None:
                self.err(s.span, "R207", "redirect prefix needs the route's condition to test a path prefix "
                                         '(request.path prefix "/old/")')

    def s_Fault(self, s: A.Fault, place, phase, route) -> None:
        if s.delay is not None:
            self.duration(s.delay.duration)
            if s.delay.percent is not None:
                self.percent(s.delay.percent)
        if s.abort is not None:
            self.status(s.abort.status, 200, 599)
            if s.abort.percent is not None:
                self.percent(s.abort.percent)

    def s_Limit(self, s: A.Limit, place, phase, route) -> None:
        if S.parse_rate(s.rate) is None:
            self.err(s.rate_span, "T103", f'bad rate "{s.rate}": write a count per s, m or h (100/s)')
        if s.burst is not None and s.burst < 1:
            self.err(s.span, "T103", "burst must be at least 1")
        if s.key is not None:
            t = self.typ(s.key, phase)
            if t is not None and t.startswith("set"):
                self.err(s.key.span, "T101", f"a limit key must be a single value, not {_a(t)}")
        if s.status is not None:
            self.status(s.status, 400, 599)

    def s_Wasm(self, s: A.Wasm, place, phase, route) -> None:
        if self.filters is not None and s.name not in self.filters:
            hint = did_you_mean(s.name, self.filters) or " (declare it in the listener's filters)"
            self.err(s.span, "U302", f'unknown wasm filter "{s.name}"' + hint)

    def s_Emit(self, s: A.Emit, place, phase, route) -> None:
        if s.stream not in EMIT_STREAMS:
            self.err(s.span, "E002", f'unknown emit stream "{s.stream}"' + (did_you_mean(s.stream, EMIT_STREAMS)
                                                                           or ' (known: "access")'))
        seen: set[str] = set()
        for fld in s.fields:
            if fld.name in seen:
                self.err(fld.span, "D403", f'field "{fld.name}" appears twice')
            seen.add(fld.name)
            t = self.typ(fld.value, "log")
            if t is not None and t.startswith("set"):
                self.err(fld.value.span, "T101", f"a log field takes a single value, not {_a(t)}")

    def s_TraceTag(self, s: A.TraceTag, place, phase, route) -> None:
        self.untraced(s)
        if not s.key.strip():
            self.err(s.key_span, "T103", "a span attribute needs a name")
        t = self.typ(s.value, phase)
        if t is not None and t.startswith("set"):
            self.err(s.value.span, "T101", f"a span attribute takes a single value, not {_a(t)}")

    def s_TraceSample(self, s: A.TraceSample, place, phase, route) -> None:
        self.untraced(s)
        self.percent(s.percent)

    def untraced(self, s: A.TraceTag | A.TraceSample) -> None:
        if self.tracing is False:
            self.warn(s.span, "U303", f'"{KEYWORD[type(s)]}" does nothing here: the listener does not trace '
                                      "(give it tracing:)")

    # ---- values ----
    def cluster(self, name: str, span: Span) -> None:
        if self.clusters is not None and name not in self.clusters:
            self.err(span, "U301", f'unknown cluster "{name}"' + did_you_mean(name, self.clusters))

    def target(self, ref: A.Ref, place: str, mode: str) -> bool:
        places = TARGETS.get(ref.name)
        if places is None:
            self.err(ref.span, "T105", f'cannot {mode} {ref.name}: only request.headers["…"], '
                                       f'response.headers["…"], metadata["…"] and request.path can change'
                     + did_you_mean(ref.name, TARGETS))
            return False
        keyed = ref.name != "request.path"
        if keyed and ref.key is None:
            self.err(ref.span, "E002", f'{ref.name} needs a key, as {ref.name}["name"]')
            return False
        if not keyed and (ref.key is not None or mode == "add"):
            self.err(ref.span, "T105", "request.path takes set only, with no key")
            return False
        if place not in places:
            why = {"request.headers": "the request has already been sent",
                   "response.headers": "there is no response yet",
                   "metadata": "the stream has ended",
                   "request.path": "the request has already been routed"}[ref.name]
            self.err(ref.span, "P501", f"{ref.name} cannot change in {PLACES[place]}: {why}")
            return False
        return True
