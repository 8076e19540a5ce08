"""What a route condition implies about the path, and whether one condition implies another.

Used by the checker (R201 catch-all, R202 shadowing, R207 redirect prefix) and by
the compiler (exact-path and prefix index hints). Conservative by design: `implies`
answers True only when it can prove it from the top-level `and` chain, so a lint
never fires on a route that can in fact match.

ShadowIndex finds, for each route, the first earlier route that matches all its
requests: the same answer as trying `implies` against every earlier route in
order, but it tries only the earlier routes that one of the route's own tests
could imply (see ShadowIndex), so thousands of routes check in about n log n.
"""
from __future__ import annotations

from typing import Any, overload

from mosnx.runtime.attributes import ATTRIBUTES

from . import ast as A

PATH_FIELDS = ("request.path", "request.url_path")


@overload
def inline(e: A.Expr, scope: dict, scopes: dict, seen: frozenset = ...) -> A.Expr: ...
@overload
def inline(e: None, scope: dict, scopes: dict, seen: frozenset = ...) -> None: ...
@overload
def inline(e: A.Expr | None, scope: dict, scopes: dict, seen: frozenset = ...) -> A.Expr | None: ...


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


# ---- the shadowing index ----
# A route can be shadowed by an earlier one only if each of the earlier route's tests
# is implied by one of its own (implies()). So each earlier route is filed under ONE
# of its tests (its key), in the bucket where every test that could imply that key
# looks: an exact-form dict for any test (implied by an identical test), a prefix map
# for `prefix`/`segment_prefix` (implied by `==`/`prefix`/`segment_prefix` on a value
# that starts with it), a suffix map, a per-field list for `contains`, and a per-member
# map for `in {set}` (implied by `==` one member, or a subset). Looking up a route's
# own tests then yields a superset of the earlier routes that can shadow it; each is
# confirmed with implies(), in declared order, so the first confirmed one is the answer
# the full scan would give.
_PREFIX_OPS = ("prefix", "segment_prefix")
_IMPLIES_PREFIX = ("prefix", "==", "segment_prefix")     # tests that can imply a prefix test
_IMPLIES_SUFFIX = ("suffix", "==")
_IMPLIES_CONTAINS = ("contains", "==", "prefix", "suffix", "segment_prefix")
# a key's rank breaks ties between equally full buckets: the narrower lookups first
_RANK = {"eq": 0, "prefix": 1, "suffix": 2, "in": 3, "contains": 4}


class ShadowIndex:
    """Earlier routes' conditions, filed for `first_implied`.

    `add(i, cond)` files route `i` (positions must grow); `first_implied(cond)` is the
    smallest filed `i` with implies(cond, cond_i), or None. A route is filed under the
    test whose bucket is emptiest when it is added, so routes that share a path prefix
    but differ by a header are filed by the header and stay out of each other's way.
    """
    __slots__ = ("_conds", "_eq", "_prefix", "_suffix", "_contains", "_member", "_in_left")

    def __init__(self) -> None:
        self._conds: dict[int, A.Expr] = {}
        self._eq: dict[Any, list[int]] = {}
        self._prefix: dict[tuple, list[int]] = {}
        self._suffix: dict[tuple, list[int]] = {}
        self._contains: dict[Any, list[tuple[str, int]]] = {}
        self._member: dict[tuple, list[int]] = {}
        self._in_left: dict[Any, list[int]] = {}

    def _slot(self, y: A.Expr) -> tuple[str, Any, int]:
        """(bucket kind, key, current size) where test `y` would be filed."""
        t = _str_test(y)
        if t is not None and t[0] in _PREFIX_OPS:
            key = (t[1], t[2])
            return "prefix", key, len(self._prefix.get(key, ()))
        if t is not None and t[0] == "suffix":
            key = (t[1], t[2])
            return "suffix", key, len(self._suffix.get(key, ()))
        if t is not None and t[0] == "contains":
            return "contains", t[1], len(self._contains.get(t[1], ()))
        if isinstance(y, A.In) and isinstance(y.right, A.SetLit):
            key = norm(y.left)
            return "in", key, len(self._in_left.get(key, ()))
        key = norm(y)
        return "eq", key, len(self._eq.get(key, ()))

    def add(self, i: int, cond: A.Expr) -> None:
        atoms = conjuncts(cond)
        if not atoms:
            return
        self._conds[i] = cond
        slots = [self._slot(y) + (y,) for y in atoms]
        kind, key, _, y = min(slots, key=lambda s: (s[2], _RANK[s[0]]))
        if kind == "eq":
            self._eq.setdefault(key, []).append(i)
        elif kind == "prefix":
            self._prefix.setdefault(key, []).append(i)
        elif kind == "suffix":
            self._suffix.setdefault(key, []).append(i)
        elif kind == "contains":
            self._contains.setdefault(key, []).append((_str_test(y)[2], i))  # type: ignore[index]  # _slot filed it so
        else:
            self._in_left.setdefault(key, []).append(i)
            for m in {norm(m) for m in y.right.items}:  # type: ignore[union-attr]  # _slot: an In over a SetLit
                self._member.setdefault((key, m), []).append(i)

    def candidates(self, cond: A.Expr | None) -> set[int]:
        """Every filed route whose key some test of `cond` could imply (a superset of
        the routes `cond` implies)."""
        out: set[int] = set()
        for x in conjuncts(cond):
            out.update(self._eq.get(norm(x), ()))
            t = _str_test(x)
            if t is not None:
                op, f, v = t
                if op in _IMPLIES_PREFIX and self._prefix:
                    for k in range(len(v) + 1):
                        out.update(self._prefix.get((f, v[:k]), ()))
                if op in _IMPLIES_SUFFIX and self._suffix:
                    for k in range(len(v) + 1):
                        out.update(self._suffix.get((f, v[k:]), ()))
                if op in _IMPLIES_CONTAINS:
                    out.update(i for s, i in self._contains.get(f, ()) if s in v)
            if isinstance(x, A.Compare) and x.op == "==":
                out.update(self._member.get((norm(x.left), norm(x.right)), ()))
            elif isinstance(x, A.In) and isinstance(x.right, A.SetLit):
                left = norm(x.left)
                if x.right.items:
                    out.update(self._member.get((left, norm(x.right.items[0])), ()))
                else:       # the empty set is a subset of every set
                    out.update(self._in_left.get(left, ()))
        return out

    def first_implied(self, cond: A.Expr | None) -> int | None:
        for i in sorted(self.candidates(cond)):
            if implies(cond, self._conds[i]):
                return i
        return None
