"""The steps of `mosnx explain`: statements run one at a time on a private copy of
the request, and filters described, each as a Step with its effect.

A statement that only edits the request or response runs as the compiler compiled
it (Rules.steps_of), and its effect is the difference it makes (headers, path,
status). Filters (fault, limit, wasm, YAML filters) are described, never run: their
outcome is random, stateful or needs I/O. WalkState carries what one walk needs.
"""
from __future__ import annotations

from typing import Any, Iterable

from mosnx.runtime.actions import Action, LocalReply
from mosnx.runtime.context import StreamContext
from mosnx.runtime.filters.fault import FaultFilter
from mosnx.runtime.filters.ratelimit import RateLimitFilter
from mosnx.runtime.headers import Headers
from mosnx.runtime.pipeline import HttpFilter

from . import ast as A
from .explain_report import Explanation, Reached, Step, where
from .explain_rules import CondTrace, Rules
from .expr import text
from .shadow import inline


def heads(h: Headers) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in h.items]


def diff_headers(before: list[tuple[str, str]], after: list[tuple[str, str]], what: str) -> list[str]:
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


class WalkState:
    """Everything one walk needs; the request's facts live in ctx."""

    def __init__(self, ex: Explanation, ctx: StreamContext, rules: Rules | None, reached: Reached):
        self.ex, self.ctx, self.rules, self.reached = ex, ctx, rules, reached
        # the route's own statements (body, condition, file), for its response phase
        self.route_body: tuple[list[A.Stmt], A.Expr | None, str] | None = None


def snap(ctx: StreamContext) -> tuple:
    resp = heads(ctx.response.headers) if ctx.response is not None else []
    return (heads(ctx.request.headers), ctx.request.path, dict(ctx.metadata or {}), resp)


def effects(before: tuple, ctx: StreamContext) -> list[str]:
    after = snap(ctx)
    out = diff_headers(before[0], after[0], "request header")
    if before[1] != after[1]:
        out.append(f"path {before[1]} -> {after[1]}")
    for k in dict.fromkeys([*before[2], *after[2]]):
        if before[2].get(k) != after[2].get(k):
            out.append(f"metadata {k} removed" if k not in after[2] else f"metadata {k} = {text(after[2][k])!r}")
    out += diff_headers(before[3], after[3], "response header")
    return out


def describe_filter_stmt(s: A.Stmt, st: WalkState, path: str) -> tuple[str, list[str]]:
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


def walk(body: Iterable[A.Stmt], place: str, cond: A.Expr | None, phase: str, path: str, st: WalkState,
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
            r = walk(s.body if v else s.orelse, inner, scope_cond, phase, path, st)
            if r is not None:
                return r
            continue
        what = rules.source(s.span)
        if isinstance(s, (A.Limit, A.Fault, A.Wasm)):
            label, eff = describe_filter_stmt(s, st, path)
            st.ex.steps.append(Step(phase, w, f"{what}: {label}", eff, False, conditional))
            continue
        if isinstance(s, (A.TraceTag, A.TraceSample)) and not conditional:
            st.ex.steps.append(Step(phase, w, what, trace_effects(steps[phase], st.ctx)))
            continue
        if isinstance(s, A.Emit) or conditional:
            st.ex.steps.append(Step(phase, w, what, ["depends on the response"] if conditional else [],
                                    False, conditional))
            continue
        before = snap(st.ctx)
        for step in steps[phase]:
            a = step(st.ctx)
            if isinstance(a, Action):
                if not isinstance(a, LocalReply):
                    st.ex.steps.append(Step(phase, w, what, [f"{type(a).__name__} (not followed)"], False))
                    return None
                st.ex.steps.append(Step(phase, w, what, effects(before, st.ctx) + [f"local reply {a.status}"]))
                return a
        st.ex.steps.append(Step(phase, w, what, effects(before, st.ctx) or ["no change"]))
    return None


class _TraceProbe:
    """Stands for the stream's trace while a `trace` statement's compiled steps run:
    records what they would do to it."""
    __slots__ = ("sampled", "tags", "forced")

    def __init__(self) -> None:
        self.sampled = True
        self.tags: dict[str, Any] = {}
        self.forced: bool | None = None

    def tag(self, key: str, value: Any) -> None:
        self.tags[key] = value

    def force(self, sampled: bool) -> None:
        self.forced = self.sampled = sampled


def trace_effects(steps: Iterable[Any], ctx: StreamContext) -> list[str]:
    """A trace statement's effect, its compiled steps run against a probe (the
    listener's tracer decides whether a span exists at all)."""
    probe, saved = _TraceProbe(), ctx.trace
    ctx.trace = probe
    try:
        for step in steps:
            step(ctx)
    finally:
        ctx.trace = saved
    out = [f"span attribute {k} = {text(v)!r}" for k, v in probe.tags.items()]
    if probe.forced is not None:
        out.append("this request is sampled" if probe.forced else "this request is not sampled")
    return [o + " (when the listener traces)" for o in out] or ["no change"]


def filter_facts(f: Any, st: WalkState) -> list[str]:
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


def filter_label(step: Any) -> str:
    f = getattr(step, "__self__", None)
    if isinstance(f, HttpFilter):
        return f'filter "{getattr(f, "name", type(f).__name__)}" ({type(f).__name__})'
    q = getattr(step, "__qualname__", type(step).__name__)
    if "header_pipeline" in q:
        return "header edits of the route configuration (headers to add or remove)"
    return f"step {q}"


def describe_steps(steps: Iterable[Any], phase: str, st: WalkState, conditional: bool = False) -> LocalReply | None:
    """Steps compiled elsewhere (YAML, an Envoy RouteConfiguration): a filter's hook is
    described, never run; any other step is a compiled header edit and runs, unless
    it belongs to a response not given."""
    for step in steps:
        f = getattr(step, "__self__", None)
        if isinstance(f, HttpFilter) or conditional:
            label = filter_label(step)
            if type(f).__name__ == "WasmFilter":
                st.ex.filters.append(str(getattr(f, "name", "")))
            st.ex.steps.append(Step(phase, "", f"{label} would run" + ("" if conditional else " (not run here)"),
                                    filter_facts(f, st) if phase == "request" else [], False, conditional))
            continue
        before = snap(st.ctx)
        a = step(st.ctx)
        eff = effects(before, st.ctx)
        if isinstance(a, LocalReply):
            st.ex.steps.append(Step(phase, "", filter_label(step), eff + [f"local reply {a.status}"]))
            return a
        st.ex.steps.append(Step(phase, "", filter_label(step), eff or ["no change"]))
    return None


# ---- the explainer ----
