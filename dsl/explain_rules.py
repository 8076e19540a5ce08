"""The .mdsl side of `mosnx explain`: a listener's rules read again with their AST
nodes by span (Rules), and the explaining evaluator of a route's condition
(CondTrace).

Every operand is evaluated by the compiler's own closure (Rules.pred, memoised per
AST node): CondTrace only walks `and`, `or`, `not` and named conditions the way the
compiled closure short-circuits them, and records each operand's outcome and what
its field read. It never decides a match the compiled guard did not.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from mosnx.runtime.attributes import ATTRIBUTES
from mosnx.runtime.context import StreamContext
from mosnx.runtime.diagnostics import Span
from mosnx.runtime.pipeline import HttpFilter
from mosnx.runtime.registry import Services

from . import ast as A
from .compile import _Compiler
from .explain_report import Reached, where
from .expr import ExprCompiler, _flatten, text
from .load import Program, load


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
