"""What a route condition implies about the path, and whether one condition implies another.

Used by the checker (R201 catch-all, R202 shadowing, R207 redirect prefix) and by
the compiler (exact-path and prefix index hints). Conservative by design: `implies`
answers True only when it can prove it from the top-level `and` chain, so a lint
never fires on a route that can in fact match.
"""
from __future__ import annotations

from typing import Any

from mosnx.runtime.attributes import ATTRIBUTES

from . import ast as A

PATH_FIELDS = ("request.path", "request.url_path")


def inline(e: A.Expr | None, scope: dict, scopes: dict, seen: frozenset = frozenset()) -> A.Expr | None:
    """`e` with const names replaced by their values, so named conditions take part
    in the lints and the path index. A self-referring const is left as it is."""
    if isinstance(e, A.Ref) and e.key is None and e.name in scope and e.name not in ATTRIBUTES:
        c, path = scope[e.name]
        key = (path, e.name)
        if key in seen:
            return e
        return inline(c.value, scopes.get(path, {}), scopes, seen | {key})
    if isinstance(e, (A.And, A.Or)):
        return type(e)(e.span, inline(e.left, scope, scopes, seen), inline(e.right, scope, scopes, seen))
    if isinstance(e, A.Not):
        return A.Not(e.span, inline(e.operand, scope, scopes, seen))
    if isinstance(e, A.In):
        return A.In(e.span, e.left, inline(e.right, scope, scopes, seen))
    if isinstance(e, A.Compare):
        return A.Compare(e.span, e.op, e.left, inline(e.right, scope, scopes, seen))
    return e


def conjuncts(e: A.Expr | None) -> list[A.Expr]:
    if e is None:
        return []
    if isinstance(e, A.And):
        return conjuncts(e.left) + conjuncts(e.right)
    return [e]


def is_catch_all(e: A.Expr | None) -> bool:
    return e is None or (isinstance(e, A.Bool) and e.value)


def norm(e: Any) -> Any:
    """A span-free, hashable form of an expression, for structural equality."""
    if isinstance(e, (A.And, A.Or, A.Compare, A.In)):
        op = e.op if isinstance(e, A.Compare) else type(e).__name__
        return (op, norm(e.left), norm(e.right))
    if isinstance(e, A.Not):
        return ("not", norm(e.operand))
    if isinstance(e, A.Ref):
        return ("ref", e.name, e.key)
    if isinstance(e, A.SetLit):
        return ("set", frozenset(norm(i) for i in e.items))
    if isinstance(e, A.Call):
        return ("call", e.name, tuple(norm(a) for a in e.args))
    if isinstance(e, (A.Str, A.Int, A.Bool)):
        return (type(e).__name__, e.value)
    if isinstance(e, (A.Duration, A.Percent, A.Ip)):
        return (type(e).__name__, e.text)
    return ("?", id(e))


def _str_test(e: A.Expr) -> tuple[str, tuple, str] | None:
    """(op, field, literal) for `field OP "literal"` on a plain field, else None."""
    if isinstance(e, A.Compare) and isinstance(e.left, A.Ref) and isinstance(e.right, A.Str):
        return e.op, norm(e.left), e.right.value
    return None


def _seg_under(s: str, p: str) -> bool:
    return s == p or s.startswith(p if p.endswith("/") else p + "/")


def atom_implies(b: A.Expr, a: A.Expr) -> bool:
    """Whether condition `b` being true proves `a` true."""
    if norm(a) == norm(b):
        return True
    ta, tb = _str_test(a), _str_test(b)
    if ta and tb and ta[1] == tb[1]:
        (oa, _, va), (ob, _, vb) = ta, tb
        if oa == "prefix":
            return ob in ("prefix", "==", "segment_prefix") and vb.startswith(va)
        if oa == "segment_prefix":
            if ob in ("==", "segment_prefix"):
                return _seg_under(vb, va)
            return ob == "prefix" and vb.startswith(va if va.endswith("/") else va + "/")
        if oa == "suffix":
            return ob in ("suffix", "==") and vb.endswith(va)
        if oa == "contains":
            return ob in ("contains", "==", "prefix", "suffix", "segment_prefix") and va in vb
    if isinstance(a, A.In) and isinstance(a.right, A.SetLit):
        members = {norm(i) for i in a.right.items}
        if isinstance(b, A.Compare) and b.op == "==" and norm(b.left) == norm(a.left):
            return norm(b.right) in members
        if isinstance(b, A.In) and isinstance(b.right, A.SetLit) and norm(b.left) == norm(a.left):
            return {norm(i) for i in b.right.items} <= members
    return False


def implies(b: A.Expr | None, a: A.Expr | None) -> bool:
    """Whether every request matching `b` also matches `a` (provable cases only)."""
    if is_catch_all(a):
        return True
    bs = conjuncts(b)
    return all(any(atom_implies(x, y) for x in bs) for y in conjuncts(a))


def path_hint(e: A.Expr | None) -> tuple[str | None, str | None]:
    """(exact url path, url path prefix) that the condition requires, for the route
    index; at most one of them is set. A test on request.path (which includes the
    query) gives a hint only for a literal without "?", where it implies the same of
    the url path."""
    exact = prefix = None
    for c in conjuncts(e):
        t = _str_test(c)
        if t is None or t[1][1] not in PATH_FIELDS or t[1][2] is not None or "?" in t[2]:
            continue
        op, v = t[0], t[2]
        if op == "==" and exact is None:
            exact = v
        elif op in ("prefix", "segment_prefix") and (prefix is None or len(v) > len(prefix)):
            prefix = v
    return (exact, None) if exact is not None else (None, prefix)


def path_prefix_of(e: A.Expr | None) -> str | None:
    """The path prefix a condition tests (for `redirect prefix`), or None."""
    for c in conjuncts(e):
        t = _str_test(c)
        if t and t[0] in ("prefix", "segment_prefix") and t[1][1] in PATH_FIELDS:
            return t[2]
    return None
