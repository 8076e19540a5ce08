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
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from mosnx.runtime.actions import Action, LocalReply
from mosnx.runtime.attributes import ATTRIBUTES, getter_for
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.diagnostics import Span
from mosnx.runtime.filters.fault import FaultFilter
from mosnx.runtime.filters.ratelimit import RateLimitFilter
from mosnx.runtime.headers import Headers
from mosnx.runtime.model import Listener, Snapshot
from mosnx.runtime.pipeline import PHASES, HttpFilter
from mosnx.runtime.registry import Services
from mosnx.runtime.routes import DirectResponse, RedirectAction, Route, RouteAction, VirtualHost

from . import ast as A
from .compile import _Compiler
from .expr import ExprCompiler, _flatten, text
from .load import Program, load
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


# ---- what explain finds ----
@dataclass
class Step:
    phase: str
    where: str                # file:line:col, or "filter NAME"
    what: str                 # the statement as written, or the filter
    effect: list[str] = field(default_factory=list)
    ran: bool = True          # False: described, not run (a filter), or depends on the response
    conditional: bool = False

    def json(self) -> dict:
        return {"phase": self.phase, "where": self.where, "what": self.what, "effect": self.effect,
                "ran": self.ran, "conditional": self.conditional}


@dataclass
class Tried:
    route: str
    where: str
    matched: bool
    why: list[str]

    def json(self) -> dict:
        return {"route": self.route, "where": self.where, "matched": self.matched, "why": self.why}


@dataclass
class Explanation:
    request: Request
    listener: str = ""
    vhost: str | None = None
    vhost_where: str = ""
    route: str | None = None
    route_where: str = ""
    route_index: int = -1
    tried: list[Tried] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    action: str = ""                  # forward | respond | redirect | reject
    status: int | None = None         # a local reply's
    location: str | None = None
    reply_headers: list[tuple[str, str]] = field(default_factory=list)
    cluster: str | None = None        # the pick (a split's, when pinned or by weight)
    split: list[tuple[str, float]] = field(default_factory=list)   # (cluster, probability)
    hash_key: tuple[str, str] | None = None
    timeout: float | None = None
    retry: dict | None = None
    mirrors: list[tuple[str, float]] = field(default_factory=list)
    path: str = ""                    # sent upstream (after rewrite)
    upstream_host: str = ""
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    response_status: int | None = None
    response_headers: list[tuple[str, str]] | None = None
    filters: list[str] = field(default_factory=list)      # WASM filters that would run
    rate_limit_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mismatch: list[str] = field(default_factory=list)    # explainer and core disagree (a bug)

    def json(self) -> dict:
        r = self.request
        return {
            "request": {"method": r.method, "url": r.line(), "headers": dict(r.headers), "source": r.source,
                        "protocol": "HTTP/2" if r.http2 else "HTTP/1.1"},
            "listener": self.listener, "vhost": self.vhost, "vhost_source": self.vhost_where,
            "route": self.route, "route_source": self.route_where,
            "tried": [t.json() for t in self.tried], "steps": [s.json() for s in self.steps],
            "action": self.action, "status": self.status, "location": self.location,
            "cluster": self.cluster, "split": [{"cluster": c, "probability": p} for c, p in self.split],
            "hash_key": ({"attribute": self.hash_key[0], "value": self.hash_key[1]} if self.hash_key else None),
            "timeout": self.timeout, "retry": self.retry,
            "mirrors": [{"cluster": c, "percent": p} for c, p in self.mirrors],
            "upstream_path": self.path, "upstream_host": self.upstream_host,
            "request_headers": [list(kv) for kv in self.request_headers],
            "response_status": self.response_status,
            "response_headers": None if self.response_headers is None else [list(kv) for kv in self.response_headers],
            "wasm_filters": self.filters, "rate_limit_keys": self.rate_limit_keys,
            "notes": self.notes, "mismatch": self.mismatch,
        }


# ---- coverage: what the evaluation reached ----
@dataclass
class Reached:
    routes: set[str] = field(default_factory=set)                   # route keys
    atoms: dict[str, set[bool]] = field(default_factory=dict)       # condition operand -> outcomes
    whens: dict[str, set[bool]] = field(default_factory=dict)       # when statement -> branches
    arms: set[tuple[str, str]] = field(default_factory=set)         # (route key, cluster)

    def merge(self, o: "Reached") -> None:
        self.routes |= o.routes
        self.arms |= o.arms
        for mine, theirs in ((self.atoms, o.atoms), (self.whens, o.whens)):
            for k, v in theirs.items():
                mine.setdefault(k, set()).update(v)


def where(span: Span | None) -> str:
    if span is None:
        return ""
    p = span.path
    try:
        rel = os.path.relpath(p)
        p = rel if not rel.startswith("..") else p
    except ValueError:
        pass
    return f"{p}:{span.line}:{span.column}"


def route_key(listener: str, vh: VirtualHost, r: Route) -> str:
    return where(r.span) if r.span is not None else f"{listener}/{vh.name}/{r.name}"


# ---- the rules behind one listener, for explaining ----
class _AllHooks(HttpFilter):
    """Stands for a filter a `wasm` statement names, to learn the phases it joins."""
    def on_request(self, ctx: StreamContext) -> None: ...
    def on_response(self, ctx: StreamContext) -> None: ...
    def on_log(self, ctx: StreamContext) -> None: ...


class Rules:
    """The .mdsl program of one listener, read again from the files the snapshot was
    built from, with its AST nodes by span (the compiled routes and vhosts keep the
    span of their declaration)."""

    def __init__(self, paths: tuple[str, ...], wasm_names: Iterable[str]):
        self.prog: Program = load(paths)
        self.routes: dict[Span, tuple[A.RouteDecl, str]] = {}
        self.vhosts: dict[Span, tuple[A.VHostDecl, str]] = {}
        self.listener_blocks: list[tuple[A.OnBlock, str]] = []
        self.default_blocks: list[tuple[A.OnBlock, str]] = []
        fake: dict[str, HttpFilter] = {n: _AllHooks() for n in wasm_names}
        self.compiler = _Compiler(self.prog, fake, Services())
        self._preds: dict[int, tuple[A.Expr, Callable]] = {}
        self._values: dict[int, tuple[A.Expr, Callable]] = {}
        self._stmts: dict[tuple[int, str], tuple[A.Stmt, dict[str, list[Any]]]] = {}
        for f in self.prog.roots:
            for it in f.items:
                if isinstance(it, A.OnBlock):
                    self.listener_blocks.append((it, f.path))
                elif isinstance(it, A.RouteDecl):
                    self.routes[it.span] = (it, f.path)
                elif isinstance(it, A.VHostDecl):
                    self.vhosts[it.span] = (it, f.path)
                    for sub in it.items:
                        if isinstance(sub, A.RouteDecl):
                            self.routes[sub.span] = (sub, f.path)

    def ex(self, path: str) -> ExprCompiler:
        return ExprCompiler(self.prog.scopes.get(path, {}), self.prog.scopes, self.compiler.cache)

    def source(self, span: Span) -> str:
        f = self.prog.files.get(span.path)
        if f is None:
            return ""
        lines = f.text.splitlines()
        if span.end_line == span.line and span.end_column > span.column:
            return lines[span.line - 1][span.column - 1:span.end_column - 1]
        first = lines[span.line - 1][span.column - 1:] if 0 < span.line <= len(lines) else ""
        return first.split("{")[0].strip() + (" { ... }" if "{" in first else "")

    def pred(self, e: A.Expr, path: str) -> Callable:
        hit = self._preds.get(id(e))
        if hit is None:
            hit = self._preds[id(e)] = (e, self.ex(path).pred(e))
        return hit[1]

    def value(self, e: A.Expr, path: str) -> Callable:
        hit = self._values.get(id(e))
        if hit is None:
            hit = self._values[id(e)] = (e, self.ex(path).value(e))
        return hit[1]

    def steps_of(self, s: A.Stmt, place: str, cond: A.Expr | None, path: str) -> dict[str, list[Any]]:
        """The compiler's steps for one statement, by phase."""
        key = (id(s), place)
        hit = self._stmts.get(key)
        if hit is None:
            c = self.compiler
            c.scope = self.prog.scopes.get(path, {})
            c.ex = ExprCompiler(c.scope, self.prog.scopes, c.cache)
            hit = self._stmts[key] = (s, c.block([s], place, cond).phases)
        return hit[1]


# ---- the explaining evaluator ----
class CondTrace:
    """Evaluates a condition operand by operand, as the compiled closure does (`and`
    and `or` short-circuit left to right), recording each operand's outcome."""

    def __init__(self, rules: Rules, ctx: StreamContext, reached: Reached):
        self.rules, self.ctx, self.reached = rules, ctx, reached

    def eval(self, e: A.Expr, path: str, why: list[str]) -> bool:
        if isinstance(e, A.And):
            for x in _flatten(e, A.And):
                if not self.eval(x, path, why):
                    return False
            return True
        if isinstance(e, A.Or):
            sub: list[str] = []
            for x in _flatten(e, A.Or):
                if self.eval(x, path, sub):
                    return True
            why.append("no alternative holds: " + "; ".join(sub))
            return False
        if isinstance(e, A.Not):
            inner: list[str] = []
            v = not self.eval(e.operand, path, inner)
            if not v:
                why.append(f"{self.rules.source(e.span)} is false: its operand holds")
            return v
        if isinstance(e, A.Ref) and e.key is None and e.name not in ATTRIBUTES:
            scope = self.rules.prog.scopes.get(path, {})
            if e.name in scope:
                const, cpath = scope[e.name]
                sub2: list[str] = []
                v = self.eval(const.value, cpath, sub2)
                if not v:
                    why.append(f"{e.name} is false ({'; '.join(sub2)})")
                return v
        v = bool(self.rules.pred(e, path)(self.ctx))
        self.reached.atoms.setdefault(self._key(e), set()).add(v)
        if not v:
            why.append(f"{self.rules.source(e.span)} is false{self._seen(e, path)}")
        return v

    def _key(self, e: A.Expr) -> str:
        return f"{where(e.span)}  {self.rules.source(e.span)}"

    def _seen(self, e: A.Expr, path: str) -> str:
        """What the operand's field read, when it is a field."""
        left = e.left if isinstance(e, (A.Compare, A.In)) else None
        if isinstance(left, A.Call) and left.args:
            left = left.args[0]
        if isinstance(left, A.Ref) and left.name in ATTRIBUTES:
            try:
                got = self.rules.value(left, path)(self.ctx)
            except Exception as ex:     # a field this phase cannot read: say so, as the core would fail
                return f" ({type(ex).__name__})"
            shown = left.name + (f'["{left.key}"]' if left.key is not None else "")
            return f": {shown} is {text(got)!r}" if got != "" else f": {shown} is empty"
        return ""


def _heads(h: Headers) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in h.items]


def _diff(before: list[tuple[str, str]], after: list[tuple[str, str]], what: str) -> list[str]:
    out = []
    b: dict[str, list[str]] = {}
    a: dict[str, list[str]] = {}
    for k, v in before:
        b.setdefault(k, []).append(v)
    for k, v in after:
        a.setdefault(k, []).append(v)
    for k in dict.fromkeys([*b, *a]):
        if b.get(k) != a.get(k):
            if k not in a:
                out.append(f"{what} {k} removed")
            else:
                out.append(f"{what} {k}: {', '.join(a[k])}")
    return out


class _State:
    """Everything one walk needs; the request's facts live in ctx."""

    def __init__(self, ex: Explanation, ctx: StreamContext, rules: Rules | None, reached: Reached):
        self.ex, self.ctx, self.rules, self.reached = ex, ctx, rules, reached
        # the route's own statements (body, condition, file), for its response phase
        self.route_body: tuple[list[A.Stmt], A.Expr | None, str] | None = None


def _snap(ctx: StreamContext) -> tuple:
    resp = _heads(ctx.response.headers) if ctx.response is not None else []
    return (_heads(ctx.request.headers), ctx.request.path, dict(ctx.metadata or {}), resp)


def _effects(before: tuple, ctx: StreamContext) -> list[str]:
    after = _snap(ctx)
    out = _diff(before[0], after[0], "request header")
    if before[1] != after[1]:
        out.append(f"path {before[1]} -> {after[1]}")
    for k in dict.fromkeys([*before[2], *after[2]]):
        if before[2].get(k) != after[2].get(k):
            out.append(f"metadata {k} removed" if k not in after[2] else f"metadata {k} = {text(after[2][k])!r}")
    out += _diff(before[3], after[3], "response header")
    return out


def _describe_filter_stmt(s: A.Stmt, st: _State, path: str) -> tuple[str, list[str]]:
    rules = st.rules
    assert rules is not None
    if isinstance(s, A.Limit):
        eff = [f"token bucket {s.rate}, burst {s.burst or s.rate.split('/')[0]}, over it {s.status.value if s.status else 429}"
               + (" (queued)" if s.queue else "")]
        if s.key is not None:
            k = text(rules.value(s.key, path)(st.ctx))
            st.ex.rate_limit_keys.append(k)
            eff.append(f"key {rules.source(s.key.span)} = {k!r}")
        else:
            st.ex.rate_limit_keys.append("")
            eff.append("one bucket for every request")
        return "rate limit (not run: depends on the traffic)", eff
    if isinstance(s, A.Fault):
        eff = []
        if s.delay is not None:
            eff.append(f"delay {s.delay.duration.text} for {s.delay.percent.text if s.delay.percent else '100%'}")
        if s.abort is not None:
            eff.append(f"abort {s.abort.status.value} for {s.abort.percent.text if s.abort.percent else '100%'}")
        return "fault (not run: random)", eff
    assert isinstance(s, A.Wasm)
    st.ex.filters.append(s.name)
    return f'wasm filter "{s.name}" would run (its answer is not predicted)', []


def _walk(body: Iterable[A.Stmt], place: str, cond: A.Expr | None, phase: str, path: str, st: _State,
          conditional: bool = False) -> LocalReply | None:
    """Run or describe `body`'s statements of `phase`, in order; a local reply ends it."""
    rules = st.rules
    assert rules is not None
    for s in body:
        steps = rules.steps_of(s, place, cond, path)
        if not steps.get(phase):
            continue
        w = where(s.span)
        if isinstance(s, A.When):
            src = rules.source(s.cond.span)
            if conditional:
                st.ex.steps.append(Step(phase, w, f"when {src}", ["depends on the response"], False, True))
                continue
            why: list[str] = []
            v = CondTrace(rules, st.ctx, st.reached).eval(s.cond, path, why)
            st.reached.whens.setdefault(f"{w}  when {src}", set()).add(v)
            st.ex.steps.append(Step(phase, w, f"when {src}",
                                    ["holds"] if v else ["does not hold: " + "; ".join(why)]))
            inner = "route_when" if place in ("route", "route_when") else place
            scope_cond = inline(s.cond, rules.prog.scopes.get(path, {}), rules.prog.scopes) if v else cond
            r = _walk(s.body if v else s.orelse, inner, scope_cond, phase, path, st)
            if r is not None:
                return r
            continue
        what = rules.source(s.span)
        if isinstance(s, (A.Limit, A.Fault, A.Wasm)):
            label, eff = _describe_filter_stmt(s, st, path)
            st.ex.steps.append(Step(phase, w, f"{what}: {label}", eff, False, conditional))
            continue
        if isinstance(s, A.Emit) or conditional:
            st.ex.steps.append(Step(phase, w, what, ["depends on the response"] if conditional else [],
                                    False, conditional))
            continue
        before = _snap(st.ctx)
        for step in steps[phase]:
            a = step(st.ctx)
            if isinstance(a, Action):
                if not isinstance(a, LocalReply):
                    st.ex.steps.append(Step(phase, w, what, [f"{type(a).__name__} (not followed)"], False))
                    return None
                st.ex.steps.append(Step(phase, w, what, _effects(before, st.ctx) + [f"local reply {a.status}"]))
                return a
        st.ex.steps.append(Step(phase, w, what, _effects(before, st.ctx) or ["no change"]))
    return None


def _filter_facts(f: Any, st: _State) -> list[str]:
    """What a built-in filter's settings say about this request, read, not run."""
    if isinstance(f, FaultFilter):
        c = f.config
        out = []
        if c.delay is not None:
            out.append(f"delay {c.delay:g}s for {c.delay_percent:g}%")
        if c.abort_status is not None:
            out.append(f"abort {c.abort_status} for {c.abort_percent:g}%")
        return out + (["delay or abort asked by request headers"] if c.header_delay or c.header_abort else [])
    if isinstance(f, RateLimitFilter):
        rc = f.config
        out = [f"{rc.algorithm} {rc.rate:g}/s, burst {rc.burst}, over it {rc.status}"]
        if f.key is not None:
            k = text(f.key(st.ctx))
            st.ex.rate_limit_keys.append(k)
            out.append(f"key = {k!r}")
        else:
            st.ex.rate_limit_keys.append("")
        return out
    return []


def _filter_label(step: Any) -> str:
    f = getattr(step, "__self__", None)
    if isinstance(f, HttpFilter):
        return f'filter "{getattr(f, "name", type(f).__name__)}" ({type(f).__name__})'
    q = getattr(step, "__qualname__", type(step).__name__)
    if "header_pipeline" in q:
        return "header edits of the route configuration (headers to add or remove)"
    return f"step {q}"


def _describe_steps(steps: Iterable[Any], phase: str, st: _State, conditional: bool = False) -> LocalReply | None:
    """Steps compiled elsewhere (YAML, an Envoy RouteConfiguration): a filter's hook is
    described, never run; any other step is a compiled header edit and runs, unless
    it belongs to a response not given."""
    for step in steps:
        f = getattr(step, "__self__", None)
        if isinstance(f, HttpFilter) or conditional:
            label = _filter_label(step)
            if type(f).__name__ == "WasmFilter":
                st.ex.filters.append(str(getattr(f, "name", "")))
            st.ex.steps.append(Step(phase, "", f"{label} would run" + ("" if conditional else " (not run here)"),
                                    _filter_facts(f, st) if phase == "request" else [], False, conditional))
            continue
        before = _snap(st.ctx)
        a = step(st.ctx)
        eff = _effects(before, st.ctx)
        if isinstance(a, LocalReply):
            st.ex.steps.append(Step(phase, "", _filter_label(step), eff + [f"local reply {a.status}"]))
            return a
        st.ex.steps.append(Step(phase, "", _filter_label(step), eff or ["no change"]))
    return None


# ---- the explainer ----
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
        st = _State(ex, ctx, rules, reached if reached is not None else Reached())
        reply = self._request_phase(lst, st)
        if reply is None and ctx.vhost is not None and ctx.route is not None:
            reply = self._action(lst, st, pick)
        elif reply is None:
            ex.action = "reject"
            reply = LocalReply(404, b"", (), "route_not_found")
            ex.notes.append("no route takes this request: 404 route_not_found")
        ex.request_headers = _heads(ctx.request.headers)
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
            ex.response_headers = _heads(ctx.response.headers)
        self._log_phase(lst, st)
        return ex

    # -- phases --
    def _request_phase(self, lst: Listener, st: _State) -> LocalReply | None:
        ctx, rules, ex = st.ctx, st.rules, st.ex
        yaml_steps = [s for s in lst.pipeline.request if isinstance(getattr(s, "__self__", None), HttpFilter)]
        _describe_steps(yaml_steps, "request", st)
        if rules is not None:
            for blk, path in rules.listener_blocks:
                if blk.phase == "request":
                    r = _walk(blk.body, "request", None, "request", path, st)
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
                    r = _walk(it.body, "request", None, "request", vdecl[1], st)
                    if r is not None:
                        return r
        elif vh.pipeline.request and rules is None:
            r = _describe_steps(vh.pipeline.request, "request", st)
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
            reply = _walk(body, "route", cond, "request", path, st)
        else:
            n = len(ex.steps)
            reply = _describe_steps(route.pipeline.request, "request", st)
        for s in ex.steps[n:]:
            if s.phase == "request":
                s.phase = "route"       # the route's own request steps, shown apart
        return reply

    def _tried(self, lst: Listener, vh: VirtualHost, chosen: Route | None, st: _State) -> None:
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

    def _action(self, lst: Listener, st: _State, pick: str | None) -> LocalReply | None:
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
            before = _snap(ctx)
            self.core.rewrite(ctx, a)
            ex.steps.append(Step("rewrite", where(route.span), "the route's rewrite", _effects(before, ctx)))
        _describe_steps(route.chain.upstream_request, "upstream_request", st)
        return None

    def _response_phase(self, lst: Listener, st: _State) -> None:
        ctx, rules = st.ctx, st.rules
        cond = ctx.response is None
        route, vh = ctx.route, ctx.vhost
        body = st.route_body
        if rules is not None:
            if body is not None:
                _walk(body[0], "route", body[1], "response", body[2], st, cond)
            vdecl = rules.vhosts.get(vh.span) if vh is not None and vh.span is not None else None
            if vdecl is not None:
                for it in vdecl[0].items:
                    if isinstance(it, A.OnBlock) and it.phase == "response":
                        _walk(it.body, "response", None, "response", vdecl[1], st, cond)
            for blk, path in rules.listener_blocks:
                if blk.phase == "response":
                    _walk(blk.body, "response", None, "response", path, st, cond)
            yaml = [s for s in lst.pipeline.response if isinstance(getattr(s, "__self__", None), HttpFilter)]
            _describe_steps(yaml, "response", st, cond)
        else:
            chain = route.chain if route is not None else lst.pipeline
            _describe_steps(chain.response, "response", st, cond)

    def _log_phase(self, lst: Listener, st: _State) -> None:
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


# ---- text output ----
def render_text(ex: Explanation) -> str:
    r = ex.request
    out = [f"request   {r.line()}  ({'HTTP/2' if r.http2 else 'HTTP/1.1'}, from {r.source})"]
    for k, v in r.headers:
        out.append(f"          {k}: {v}")
    out.append(f"listener  {ex.listener}")
    out.append(f"vhost     {ex.vhost or '(none)'}" + (f"  {ex.vhost_where}" if ex.vhost_where else ""))
    if ex.tried:
        out.append("routes tried, in order")
        for t in ex.tried:
            mark = "match" if t.matched else "no   "
            out.append(f"  {mark} {t.route:<14} {t.where}".rstrip() + ("" if t.matched else "  " + "; ".join(t.why)))
    none = "(none: answered before routing)" if ex.status is not None and ex.action != "reject" else "(none)"
    out.append(f"route     {ex.route or none}" + (f"  {ex.route_where}" if ex.route_where else ""))
    for phase in ("request", "route", "rewrite", "upstream_request", "response", "log"):
        steps = [s for s in ex.steps if s.phase == phase]
        if not steps:
            continue
        title = _TITLES[phase]
        if phase == "response" and ex.response_status is None:
            title += " (no response given: each step depends on it)"
        out.append(title)
        for s in steps:
            tag = "" if s.ran else " [not run]" if not s.conditional else " [conditional]"
            out.append(f"  {s.where + '  ' if s.where else ''}{s.what}{tag}")
            for e in s.effect:
                out.append(f"      -> {e}")
    if ex.action == "forward":
        if ex.split:
            out.append("cluster   split " + ", ".join(f"{c} {p:.0%}" for c, p in ex.split))
        else:
            out.append(f"cluster   {ex.cluster}")
        if ex.hash_key:
            out.append(f"hash key  {ex.hash_key[0]} = {ex.hash_key[1]!r}")
        out.append(f"upstream  {r.method} {ex.path}  host {ex.upstream_host}")
        out.append(f"timeout   {_dur(ex.timeout)}")
        if ex.retry:
            rt = ex.retry
            on = ", ".join(rt["retry_on"]) + (f", status {rt['retriable_status_codes']}" if rt["retriable_status_codes"] else "")
            out.append(f"retry     {rt['num_retries']} on {on}"
                       + (f" per_try {_dur(rt['per_try_timeout'])}" if rt["per_try_timeout"] else ""))
        for c, p in ex.mirrors:
            out.append(f"mirror    {c} {p:g}%")
    elif ex.status is not None:
        out.append(f"reply     {ex.status}" + (f"  location: {ex.location}" if ex.location else ""))
    if ex.filters:
        out.append("wasm      " + ", ".join(dict.fromkeys(ex.filters)))
    if ex.rate_limit_keys:
        out.append("rate key  " + ", ".join(repr(k) for k in ex.rate_limit_keys))
    if ex.response_headers is not None and ex.response_status is not None:
        out.append(f"response  {ex.response_status}")
        for k, v in ex.response_headers:
            out.append(f"          {k}: {v}")
    for n in ex.notes:
        out.append(f"note      {n}")
    for m in ex.mismatch:
        out.append(f"MISMATCH  {m} (a bug of mosnx explain: please report)")
    return "\n".join(out) + "\n"


_TITLES = {"request": "before routing (on request)", "route": "route steps", "rewrite": "rewrite",
           "upstream_request": "upstream request", "response": "on response", "log": "on log"}


def _dur(t: float | None) -> str:
    if not t:
        return "none"
    return f"{t * 1000:g}ms" if t < 1 else f"{t:g}s"


__all__ = ["Core", "Explainer", "Explanation", "Reached", "Request", "RequestError", "UpstreamResponse",
           "parse_request", "parse_header", "render_text", "PHASES"]
