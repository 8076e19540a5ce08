"""Expression types for the checker: literals, fields, consts, calls and operators.

TypeChecker reports through err() and returns None for an expression whose type
cannot be known, so one mistake is reported once, where it is. Field types are
runtime.attributes' types; a field read before its phase is P502.
"""
from __future__ import annotations

import re
from typing import Iterable

from mosnx.runtime.attributes import ATTRIBUTES
from mosnx.runtime.diagnostics import Diagnostic, Span, did_you_mean

from . import ast as A
from . import scheme as S
from .load import Program
from .rpc import RPC_FIELDS, RPC_TYPE, is_rpc_field

HTTP, RPC = "http", "rpc"
RPC_READS = 'rpc.service, rpc.method, rpc.version, rpc.group and rpc.headers["name"]'


class TypeChecker:
    def __init__(self, prog: Program):
        self.prog = prog
        self.diags: list[Diagnostic] = []
        self.scope: dict[str, tuple[A.Const, str]] = {}
        self._const_types: dict[tuple[str, str], str | None] = {}
        self._const_phase: dict[tuple[str, str], int] = {}
        self._resolving: set[tuple[str, str]] = set()
        # the kind of rule being checked: HTTP fields and rpc.* fields do not mix (P503);
        # None while consts are typed on their own (their kind is checked where used)
        self.kind: str | None = None
        self._const_kinds: dict[tuple[str, str], frozenset[tuple[str, str]]] = {}

    def err(self, span: Span | None, code: str, msg: str, severity: str = "error") -> None:
        self.diags.append(self.prog.diag(span, code, msg, severity))

    def warn(self, span: Span | None, code: str, msg: str) -> None:
        self.err(span, code, msg, "warning")

    def duration(self, d: A.Duration) -> float | None:
        v = S.parse_duration(d.text)
        if v is None:
            self.err(d.span, "T103", f'bad duration "{d.text}": units are ms, s, m, h (800ms, 2s)')
        return v

    def percent(self, p: A.Percent) -> float | None:
        v = S.parse_percent(p.text)
        if v is None:
            self.err(p.span, "T103", f"percentage {p.text} is over 100%")
        return v

    def status(self, s: A.Int, lo: int, hi: int) -> None:
        if not lo <= s.value <= hi:
            self.err(s.span, "T104", f"status {s.value} is outside {lo}..{hi}")

    def regex(self, s: A.Str) -> None:
        try:
            re.compile(s.value)
        except re.error as e:
            self.err(s.span, "T102", f"invalid regex: {e}")

    def condition(self, e: A.Expr, phase: str) -> None:
        t = self.typ(e, phase)
        if t is not None and t != S.BOOL:
            self.err(e.span, "T101", f"a condition must be true or false, not {_a(t)}"
                     + (' (compare it: == "…", or test it with exists(…))' if t == S.STRING else ""))

    # ---- expression types ----
    def typ(self, e: A.Expr, phase: str) -> str | None:
        """The type of `e`, or None after reporting why it has none."""
        m = getattr(self, "t_" + type(e).__name__)
        return m(e, phase)

    def t_Str(self, e, phase):
        return S.STRING

    def t_Int(self, e, phase):
        return S.INT

    def t_Bool(self, e, phase):
        return S.BOOL

    def t_Duration(self, e, phase):
        return S.DURATION if self.duration(e) is not None else None

    def t_Percent(self, e, phase):
        return S.PERCENT if self.percent(e) is not None else None

    def t_Ip(self, e: A.Ip, phase):
        v = S.parse_ip(e.text)
        if v is None:
            self.err(e.span, "T103", f'bad IP address or CIDR "{e.text}"')
            return None
        return S.CIDR if "/" in e.text else S.IP

    def t_SetLit(self, e: A.SetLit, phase):
        types = []
        for it in e.items:
            t = self.typ(it, phase)
            if t is None:
                return None
            types.append(S.CIDR if t == S.IP else t)
        kinds = sorted(set(types))
        if len(kinds) > 1:
            self.err(e.span, "T101", f"a set holds one kind of value; this one mixes {' and '.join(kinds)}")
            return None
        if not kinds:
            return "set<any>"
        st = S.SET_OF.get(kinds[0])
        if st is None:
            self.err(e.span, "T101", f"sets hold strings, numbers or IP ranges, not {kinds[0]}")
        return st

    def t_Ref(self, e: A.Ref, phase):
        if is_rpc_field(e.name):
            return self.rpc_ref(e)
        attr = S.attribute(e.name)
        if attr is not None:
            if self.kind == RPC:
                self.err(e.span, "P503", f"{e.name} is an HTTP field; an RPC rule reads {RPC_READS}")
                return None
            if attr.keyed is not None and e.key is None:
                self.err(e.span, "E002", f'{e.name} needs a key, as {e.name}["name"]')
                return None
            if attr.keyed is None and e.key is not None:
                self.err(e.span, "E002", f"{e.name} takes no key")
                return None
            self.phase_ok(e, S.PHASE_ORDER.get(attr.phase, 0), phase, e.name)
            return attr.type
        if e.key is None and e.name in self.scope:
            t = self.const_type(e.name, e.span)
            key = (self.scope[e.name][1], e.name)
            self.phase_ok(e, self._const_phase.get(key, 0), phase, f'const "{e.name}"')
            if t is not None and self.kind is not None:
                other = [f for k, f in sorted(self._const_kinds.get(key, frozenset())) if k != self.kind]
                if other:
                    what = "an HTTP rule" if self.kind == HTTP else "an RPC rule"
                    self.err(e.span, "P503", f'const "{e.name}" reads {other[0]}, which {what} cannot read')
                    return None
            return t
        head = e.name.rsplit(".", 1)[0]
        if head in ATTRIBUTES and ATTRIBUTES[head].keyed is not None:
            self.err(e.span, "E002", f'unknown field "{e.name}": read {head} with a key, as '
                                     f'{head}["{e.name.rsplit(".", 1)[1]}"]')
            return None
        self.err(e.span, "E002", f'unknown field "{e.name}"'
                 + did_you_mean(e.name, list(ATTRIBUTES) + list(self.scope)))
        return None

    def rpc_ref(self, e: A.Ref) -> str | None:
        if e.name not in RPC_FIELDS:
            self.err(e.span, "E002", f'unknown field "{e.name}"' + did_you_mean(e.name, list(RPC_FIELDS)))
            return None
        if self.kind == HTTP:
            self.err(e.span, "P503", f"{e.name} is a field of RPC calls; it is read only in an rpc block's routes")
            return None
        keyed = RPC_FIELDS[e.name] is None
        if keyed and e.key is None:
            self.err(e.span, "E002", f'{e.name} needs a key, as {e.name}["name"]')
            return None
        if not keyed and e.key is not None:
            self.err(e.span, "E002", f"{e.name} takes no key")
            return None
        return RPC_TYPE

    def phase_ok(self, e: A.Ref, need: int, phase: str, what: str) -> None:
        if need > S.PHASE_ORDER[phase]:
            known = next(p for p, n in S.PHASE_ORDER.items() if n == need)
            self.err(e.span, "P502", f"{what} is not known yet in the {phase} phase; it is set in the {known} phase")

    def const_type(self, name: str, span: Span) -> str | None:
        const, path = self.scope[name]
        key = (path, name)
        if key in self._const_types:
            return self._const_types[key]
        if key in self._resolving:
            self.err(span, "E004", f'const "{name}" refers to itself')
            return None
        self._resolving.add(key)
        outer, self.scope = self.scope, self.prog.scopes.get(path, {})
        outer_kind, self.kind = self.kind, None     # a const's kind is checked where it is used
        n = len(self.diags)
        t = self.typ(const.value, "log")
        phase = max((S.PHASE_ORDER.get(ATTRIBUTES[r.name].phase, 0) for r in _refs(const.value)
                     if r.name in ATTRIBUTES), default=0)
        for r in _refs(const.value):
            if r.name not in ATTRIBUTES and r.key is None and r.name in self.scope:
                phase = max(phase, self._const_phase.get((self.scope[r.name][1], r.name), 0))
        kinds = set()
        for r in _refs(const.value):
            if is_rpc_field(r.name):
                kinds.add((RPC, r.name))
            elif r.name in ATTRIBUTES:
                kinds.add((HTTP, r.name))
            elif r.key is None and r.name in self.scope:
                kinds.update(self._const_kinds.get((self.scope[r.name][1], r.name), ()))
        self._const_kinds[key] = frozenset(kinds)
        self.scope, self.kind = outer, outer_kind
        self._resolving.discard(key)
        self._const_types[key] = t if len(self.diags) == n else None
        self._const_phase[key] = phase
        return self._const_types[key]

    def t_Call(self, e: A.Call, phase):
        sig = S.FUNCTIONS.get(e.name)
        if sig is None:
            self.err(e.span, "E002", f'unknown function "{e.name}"' + did_you_mean(e.name, S.FUNCTIONS))
            return None
        params, result = sig
        if len(e.args) != len(params):
            self.err(e.span, "T101", f"{e.name}() takes {len(params)} argument{'s' if len(params) != 1 else ''}, "
                                     f"not {len(e.args)}")
            return None
        for a, p in zip(e.args, params):
            if p == "field":
                if not isinstance(a, A.Ref) or not (a.name in ATTRIBUTES or is_rpc_field(a.name)):
                    self.err(a.span, "T101", f'{e.name}() takes a field, as {e.name}(request.headers["x"])')
                    return None
                if self.typ(a, phase) is None:
                    return None
                continue
            t = self.typ(a, phase)
            if t is None:
                return None
            if t != p:
                self.err(a.span, "T101", f"type mismatch: {e.name}() takes a {p}, not {_a(t)}")
                return None
        return result

    def t_Not(self, e: A.Not, phase):
        # a type or None, like every t_ method: never the bool that logical() answers
        return S.BOOL if self.logical(e.operand, "not", phase) else None

    def t_And(self, e: A.And, phase):
        a = self.logical(e.left, "and", phase)
        b = self.logical(e.right, "and", phase)
        return S.BOOL if a and b else None

    def t_Or(self, e: A.Or, phase):
        a = self.logical(e.left, "or", phase)
        b = self.logical(e.right, "or", phase)
        return S.BOOL if a and b else None

    def logical(self, e: A.Expr, op: str, phase: str) -> bool:
        t = self.typ(e, phase)
        if t is None:
            return False
        if t != S.BOOL:
            self.err(e.span, "T101", f'"{op}" combines conditions, not {_a(t)}')
            return False
        return True

    def t_Compare(self, e: A.Compare, phase):
        lt = self.typ(e.left, phase)
        rt = self.typ(e.right, phase)
        if lt is None or rt is None:
            return None
        op = e.op
        if op == "~":
            pat = self.const_str(e.right)
            if lt != S.STRING:
                self.err(e.left.span, "T101", f'"~" matches strings, not {_a(lt)}')
            elif pat is None:
                self.err(e.right.span, "T101", '"~" takes a regex as a string literal')
            else:
                self.regex(pat)
            return S.BOOL
        if op in S.STRING_OPS:
            if lt != S.STRING or rt != S.STRING:
                bad = e.left if lt != S.STRING else e.right
                self.err(bad.span, "T101", f'"{op}" needs strings on both sides, not a {lt if bad is e.left else rt}')
                return None
            return S.BOOL
        if op in ("<", "<=", ">", ">="):
            if lt not in S.ORDERED or rt != lt:
                self.err(e.span, "T101", f'type mismatch: "{op}" compares numbers or durations, '
                                         f'not {_desc(e.left)} ({lt}) with {_desc(e.right)} ({rt})')
                return None
            return S.BOOL
        same = lt == rt or {lt, rt} <= {S.IP}
        if not same:
            self.err(e.span, "T101", f"type mismatch: {_desc(e.left)} is {_a(lt)} but {_desc(e.right)} is {_a(rt)}"
                     + (f' (write "{e.right.value}")' if isinstance(e.right, A.Int) and lt == S.STRING else ""))
            return None
        if lt.startswith("set") or lt == S.CIDR:
            self.err(e.span, "T101", f'"{op}" compares single values; use "in" to test a {lt}')
            return None
        return S.BOOL

    def t_In(self, e: A.In, phase):
        lt = self.typ(e.left, phase)
        rt = self.typ(e.right, phase)
        if lt is None or rt is None:
            return None
        if not rt.startswith("set"):
            self.err(e.right.span, "T101", f'"in" needs a set ({{"a", "b"}}), not {_a(rt)}')
            return None
        want = S.SET_OF.get(lt)
        if want is None:
            self.err(e.left.span, "T101", f'"in" tests strings, numbers or IP addresses, not {_a(lt)}')
            return None
        if rt != want and rt != "set<any>":
            self.err(e.span, "T101", f"type mismatch: {_desc(e.left)} is {_a(lt)} but the set holds "
                                     f"{rt[4:-1]} values")
            return None
        return S.BOOL

    def const_str(self, e: A.Expr) -> A.Str | None:
        if isinstance(e, A.Str):
            return e
        if isinstance(e, A.Ref) and e.key is None and e.name in self.scope and e.name not in ATTRIBUTES:
            const, path = self.scope[e.name]
            if isinstance(const.value, A.Str):
                return const.value
        return None


def _a(t: str) -> str:
    return ("an " if t[0] in "aeiou" else "a ") + t


def _desc(e: A.Expr) -> str:
    if isinstance(e, A.Ref):
        return e.name + (f'["{e.key}"]' if e.key is not None else "")
    if isinstance(e, A.Str):
        return f'"{e.value}"'
    if isinstance(e, A.Int):
        return str(e.value)
    if isinstance(e, (A.Duration, A.Percent, A.Ip)):
        return e.text
    if isinstance(e, A.Call):
        return f"{e.name}(…)"
    return "the expression"


def _refs(e: A.Expr) -> Iterable[A.Ref]:
    if isinstance(e, A.Ref):
        yield e
    elif isinstance(e, (A.And, A.Or, A.Compare, A.In)):
        yield from _refs(e.left)
        yield from _refs(e.right)
    elif isinstance(e, A.Not):
        yield from _refs(e.operand)
    elif isinstance(e, A.Call):
        for a in e.args:
            yield from _refs(a)
    elif isinstance(e, A.SetLit):
        for a in e.items:
            yield from _refs(a)
