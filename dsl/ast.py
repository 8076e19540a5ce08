"""The .mdsl syntax tree: frozen, slotted dataclasses, each with its source span.

Built only by dsl.parse; read by dsl.check and dsl.compile. Nodes hold values as
written (a duration keeps its text) so the checker can point at a bad one; they
never hold compiled objects. Constructors reject shapes the grammar cannot
produce, so a parser bug fails where the node is made.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from mosnx.runtime.diagnostics import Span

COMPARE_OPS = frozenset({"==", "!=", "<", "<=", ">", ">=", "~",
                         "prefix", "suffix", "contains", "segment_prefix"})
PHASES = ("request", "response", "log")


# ---- expressions ----
@dataclass(frozen=True, slots=True)
class Ref:
    """A field (`request.headers["x"]`) or a const name; the checker decides which."""
    span: Span
    name: str
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Str:
    span: Span
    value: str


@dataclass(frozen=True, slots=True)
class Int:
    span: Span
    value: int


@dataclass(frozen=True, slots=True)
class Bool:
    span: Span
    value: bool


@dataclass(frozen=True, slots=True)
class Duration:
    span: Span
    text: str                  # "800ms"; the checker validates the unit


@dataclass(frozen=True, slots=True)
class Percent:
    span: Span
    text: str                  # "0.1%"; the checker validates the range


@dataclass(frozen=True, slots=True)
class Ip:
    span: Span
    text: str                  # an address or a CIDR; the checker validates it


@dataclass(frozen=True, slots=True)
class SetLit:
    span: Span
    items: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class Call:
    span: Span
    name: str
    args: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class Compare:
    span: Span
    op: str
    left: "Expr"
    right: "Expr"

    def __post_init__(self) -> None:
        if self.op not in COMPARE_OPS:
            raise ValueError(f"unknown operator {self.op!r}")


@dataclass(frozen=True, slots=True)
class In:
    span: Span
    left: "Expr"
    right: "Expr"              # a SetLit or a Ref to a const set


@dataclass(frozen=True, slots=True)
class And:
    span: Span
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True, slots=True)
class Or:
    span: Span
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True, slots=True)
class Not:
    span: Span
    operand: "Expr"


Expr = Union[Ref, Str, Int, Bool, Duration, Percent, Ip, SetLit, Call, Compare, In, And, Or, Not]


# ---- statements ----
@dataclass(frozen=True, slots=True)
class To:
    span: Span
    cluster: str


@dataclass(frozen=True, slots=True)
class Weight:
    span: Span
    cluster: str
    weight: int


@dataclass(frozen=True, slots=True)
class Split:
    span: Span
    weights: tuple[Weight, ...]


@dataclass(frozen=True, slots=True)
class Timeout:
    span: Span
    duration: Duration


@dataclass(frozen=True, slots=True)
class RetryOn:
    span: Span
    name: str                  # a retry_on name, or "retriable-status-codes"
    statuses: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Retry:
    span: Span
    count: int
    on: tuple[RetryOn, ...]
    per_try: Duration | None


@dataclass(frozen=True, slots=True)
class Mirror:
    span: Span
    cluster: str
    percent: Percent | None


@dataclass(frozen=True, slots=True)
class HostRewrite:
    span: Span
    host: str


@dataclass(frozen=True, slots=True)
class RewritePrefix:
    span: Span
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class RewriteRegex:
    span: Span
    pattern: Str
    substitution: str


@dataclass(frozen=True, slots=True)
class Assign:
    """`set` (replace) or `add` (append) of a header or metadata entry."""
    span: Span
    mode: str                  # "set" | "add"
    target: Ref
    value: "Expr"

    def __post_init__(self) -> None:
        if self.mode not in ("set", "add"):
            raise ValueError(f"unknown assignment {self.mode!r}")


@dataclass(frozen=True, slots=True)
class Remove:
    span: Span
    target: Ref


@dataclass(frozen=True, slots=True)
class FaultDelay:
    span: Span
    duration: Duration
    percent: Percent | None


@dataclass(frozen=True, slots=True)
class FaultAbort:
    span: Span
    status: Int
    percent: Percent | None


@dataclass(frozen=True, slots=True)
class Fault:
    span: Span
    delay: FaultDelay | None
    abort: FaultAbort | None


@dataclass(frozen=True, slots=True)
class Limit:
    span: Span
    rate: str                  # "100/s" as written
    rate_span: Span
    burst: int | None
    key: "Expr | None"
    status: Int | None
    queue: bool


@dataclass(frozen=True, slots=True)
class Wasm:
    span: Span
    name: str


@dataclass(frozen=True, slots=True)
class Respond:
    span: Span
    status: Int
    body: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Redirect:
    span: Span
    status: Int
    prefix: str | None = None
    path: str | None = None
    host: str | None = None
    scheme: str | None = None
    strip_query: bool = False


@dataclass(frozen=True, slots=True)
class EmitField:
    span: Span
    name: str
    value: "Expr"


@dataclass(frozen=True, slots=True)
class Emit:
    span: Span
    stream: str
    fields: tuple[EmitField, ...]


@dataclass(frozen=True, slots=True)
class When:
    span: Span
    cond: "Expr"
    body: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...] = ()


@dataclass(frozen=True, slots=True)
class TraceTag:
    """`trace tag "name" = value`: an attribute of the request's server span."""
    span: Span
    key: str
    key_span: Span
    value: "Expr"


@dataclass(frozen=True, slots=True)
class TraceSample:
    """`trace sample 100%`: this request's sampling decision, drawn at that percentage."""
    span: Span
    percent: Percent


Stmt = Union[To, Split, Timeout, Retry, Mirror, HostRewrite, RewritePrefix, RewriteRegex,
             Assign, Remove, Fault, Limit, Wasm, Respond, Redirect, Emit, When, TraceTag, TraceSample]
# what ends a route (exactly one per route), and what only a forwarding route may carry:
# the checker and the compiler read the same two lists
ROUTE_ACTIONS = (To, Split, Respond, Redirect)
FORWARD = (Timeout, Retry, Mirror, HostRewrite, RewritePrefix, RewriteRegex)


# ---- declarations ----
@dataclass(frozen=True, slots=True)
class Import:
    span: Span
    path: str


@dataclass(frozen=True, slots=True)
class Const:
    span: Span
    name: str
    value: "Expr"


@dataclass(frozen=True, slots=True)
class Clusters:
    span: Span
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OnBlock:
    span: Span
    phase: str
    body: tuple[Stmt, ...]

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}")


@dataclass(frozen=True, slots=True)
class RouteDecl:
    span: Span
    name: str
    name_span: Span
    cond: "Expr | None"
    body: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class Domain:
    span: Span
    name: str


@dataclass(frozen=True, slots=True)
class VHostDecl:
    span: Span
    name: str
    name_span: Span
    domains: tuple[Domain, ...]
    items: tuple[OnBlock | RouteDecl, ...]


@dataclass(frozen=True, slots=True)
class RpcDecl:
    """`rpc name { route ... }`: routes for the calls of an RPC listener (protocol bolt or
    dubbo), read against rpc.* fields; tried in order, after the rpc blocks before it."""
    span: Span
    name: str
    name_span: Span
    routes: tuple[RouteDecl, ...]


Item = Union[Import, Const, Clusters, OnBlock, RouteDecl, VHostDecl, RpcDecl]


@dataclass(frozen=True, slots=True)
class File:
    path: str
    text: str
    items: tuple[Item, ...]

    def line(self, n: int) -> str | None:
        lines = self.text.splitlines()
        return lines[n - 1] if 0 < n <= len(lines) else None
