"""Compile checked expressions to closures over a StreamContext.

Constants are captured, not looked up: regexes are compiled, sets frozen and IP
networks parsed here, once per snapshot. Comparisons against a literal get a
specialised closure, `and`/`or` short-circuit, and const names are compiled once
per file scope. Fields are read only through runtime.attributes.getter.
"""
from __future__ import annotations

import ipaddress
import operator
import re
from typing import Any, Callable

from mosnx.runtime.attributes import ATTRIBUTES, getter
from mosnx.runtime.context import StreamContext

from . import ast as A
from . import scheme as S

Fn = Callable[[StreamContext], Any]
Pred = Callable[[StreamContext], bool]

_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_NOTHING = object()


def text(v: Any) -> str:
    """A value as it goes into a header or a log field."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _const(v: Any) -> Fn:
    return lambda ctx: v


def _ip(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        return None


class ExprCompiler:
    """Compiles the expressions of one file scope (its consts and imports)."""

    def __init__(self, scope: dict[str, tuple[A.Const, str]],
                 scopes: dict[str, dict[str, tuple[A.Const, str]]], cache: dict | None = None):
        self.scope = scope
        self.scopes = scopes
        self.cache = cache if cache is not None else {}   # (path, const) -> compiled value

    def sub(self, path: str) -> "ExprCompiler":
        """The compiler of another file's scope (a const's), of the same kind."""
        return ExprCompiler(self.scopes.get(path, {}), self.scopes, self.cache)

    def field(self, e: A.Ref) -> Fn:
        return getter(e.name, e.key)

    def _const_expr(self, e: A.Ref) -> tuple[A.Expr, "ExprCompiler", tuple[str, str]] | None:
        if e.key is None and e.name not in ATTRIBUTES and e.name in self.scope:
            c, path = self.scope[e.name]
            return c.value, self.sub(path), (path, e.name)
        return None

    # ---- constant folding: literals and consts bound to literals ----
    def literal(self, e: A.Expr) -> Any:
        """The Python value of a literal (or of a const bound to one), else _NOTHING."""
        if isinstance(e, (A.Str, A.Int, A.Bool)):
            return e.value
        if isinstance(e, A.Duration):
            return S.parse_duration(e.text)
        if isinstance(e, A.Percent):
            return S.parse_percent(e.text)
        if isinstance(e, A.Ip):
            return S.parse_ip(e.text)
        if isinstance(e, A.SetLit):
            return frozenset(self.literal(i) for i in e.items)
        if isinstance(e, A.Ref):
            c = self._const_expr(e)
            if c is not None:
                return c[1].literal(c[0])
        return _NOTHING

    def is_ip(self, e: A.Expr) -> bool:
        if isinstance(e, A.Ip):
            return True
        if isinstance(e, A.Ref):
            a = ATTRIBUTES.get(e.name)
            if a is not None:
                return a.type == S.IP
            c = self._const_expr(e)
            return c is not None and c[1].is_ip(c[0])
        return False

    # ---- values ----
    def value(self, e: A.Expr) -> Fn:
        lit = self.literal(e)
        if lit is not _NOTHING:
            return _const(lit)
        if isinstance(e, A.Ref):
            c = self._const_expr(e)
            if c is not None:
                expr, sub, key = c
                fn = self.cache.get(key)
                if fn is None:
                    fn = self.cache[key] = sub.value(expr)
                return fn
            return self.field(e)
        if isinstance(e, A.Call):
            return self.call(e)
        return self.pred(e)

    def call(self, e: A.Call) -> Fn:
        if e.name == "exists":
            g = self.value(e.args[0])
            return lambda ctx: g(ctx) != ""
        f = self.value(e.args[0])
        if e.name == "lower":
            return lambda ctx: f(ctx).lower()
        if e.name == "upper":
            return lambda ctx: f(ctx).upper()
        raise ValueError(f"unknown function {e.name}")   # the checker rejects it first

    # ---- predicates ----
    def pred(self, e: A.Expr) -> Pred:
        if isinstance(e, A.And):
            return _all([self.pred(x) for x in _flatten(e, A.And)])
        if isinstance(e, A.Or):
            return _any([self.pred(x) for x in _flatten(e, A.Or)])
        if isinstance(e, A.Not):
            p = self.pred(e.operand)
            return lambda ctx: not p(ctx)
        if isinstance(e, A.Compare):
            return self.compare(e)
        if isinstance(e, A.In):
            return self.member(e)
        if isinstance(e, A.Bool):
            v = e.value
            return lambda ctx: v
        f = self.value(e)
        return lambda ctx: bool(f(ctx))

    def compare(self, e: A.Compare) -> Pred:
        op = e.op
        left = self.value(e.left)
        if op in ("==", "!=") and (self.is_ip(e.left) or self.is_ip(e.right)):
            return self._ip_eq(e, op == "==")
        lit = self.literal(e.right)
        if lit is _NOTHING:
            right = self.value(e.right)
            if op == "~":
                raise ValueError("regex must be a literal")   # the checker rejects it first
            fn = _DYNAMIC[op]
            return lambda ctx: fn(left(ctx), right(ctx))
        v = lit
        if op == "==":
            return lambda ctx: left(ctx) == v
        if op == "!=":
            return lambda ctx: left(ctx) != v
        if op == "prefix":
            return lambda ctx: left(ctx).startswith(v)
        if op == "suffix":
            return lambda ctx: left(ctx).endswith(v)
        if op == "contains":
            return lambda ctx: v in left(ctx)
        if op == "segment_prefix":
            return _segment_prefix(left, v)
        if op == "~":
            # the checker's compiled pattern when there is one (dsl.compile puts it in the cache)
            match = (self.cache.get((re.Pattern, v)) or re.compile(v)).fullmatch
            return lambda ctx: match(left(ctx)) is not None
        cmp = _ORDER[op]
        return lambda ctx: cmp(left(ctx), v)

    def _ip_eq(self, e: A.Compare, eq: bool) -> Pred:
        def as_ip(x: A.Expr) -> Fn:
            lit = self.literal(x)
            if lit is not _NOTHING:
                return _const(lit)
            g = self.value(x)
            return lambda ctx: _ip(g(ctx))
        left, right = as_ip(e.left), as_ip(e.right)
        if eq:
            return lambda ctx: (a := left(ctx)) is not None and a == right(ctx)
        return lambda ctx: (a := left(ctx)) is None or a != right(ctx)

    def member(self, e: A.In) -> Pred:
        left = self.value(e.left)
        members = self.literal(e.right)
        if self.is_ip(e.left):
            nets = tuple(m if isinstance(m, (ipaddress.IPv4Network, ipaddress.IPv6Network))
                         else ipaddress.ip_network(m) for m in members)

            def in_nets(ctx: StreamContext) -> bool:
                a = _ip(left(ctx))
                if a is None:
                    return False
                for n in nets:
                    if a in n:
                        return True
                return False
            return in_nets
        return lambda ctx: left(ctx) in members


def _flatten(e: A.Expr, kind: type[A.And] | type[A.Or]) -> list[A.Expr]:
    if isinstance(e, kind):
        return _flatten(e.left, kind) + _flatten(e.right, kind)
    return [e]


def _all(ps: list[Pred]) -> Pred:
    if len(ps) == 2:
        a, b = ps
        return lambda ctx: a(ctx) and b(ctx)
    if len(ps) == 3:
        a, b, c = ps
        return lambda ctx: a(ctx) and b(ctx) and c(ctx)
    tps = tuple(ps)

    def every(ctx: StreamContext) -> bool:
        for p in tps:
            if not p(ctx):
                return False
        return True
    return every


def _any(ps: list[Pred]) -> Pred:
    if len(ps) == 2:
        a, b = ps
        return lambda ctx: a(ctx) or b(ctx)
    tps = tuple(ps)

    def some(ctx: StreamContext) -> bool:
        for p in tps:
            if p(ctx):
                return True
        return False
    return some


def _segment_prefix(left: Fn, v: str) -> Pred:
    """Envoy's path_separated_prefix: the prefix is the whole path or ends at a "/" (or "?")."""
    if v.endswith("/"):
        return lambda ctx: left(ctx).startswith(v)
    n = len(v)

    def seg(ctx: StreamContext) -> bool:
        s = left(ctx)
        return s.startswith(v) and (len(s) == n or s[n] in "/?")
    return seg


def _seg_dynamic(s: str, v: str) -> bool:
    if not s.startswith(v):
        return False
    return v.endswith("/") or len(s) == len(v) or s[len(v)] in "/?"


_DYNAMIC = {
    "==": operator.eq, "!=": operator.ne, **_ORDER,
    "prefix": lambda s, v: s.startswith(v), "suffix": lambda s, v: s.endswith(v),
    "contains": lambda s, v: v in s, "segment_prefix": _seg_dynamic,
}
