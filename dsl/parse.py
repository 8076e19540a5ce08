"""Parse .mdsl text into a dsl.ast.File, or into an E001 diagnostic.

The grammar is grammar/mdsl.lark; each of its aliases maps to one method of
_Build, which makes one AST node with its span. The LALR tables are built once
per process (building them is the slow part); each parse gets callbacks of its
own, so it keeps no state and a reload always sees the file as it is now.
Syntax errors never escape as exceptions: dsl.syntax_errors turns them into
diagnostics.

No parse tree is built: the parser calls _Build as it reduces each rule (an
LALR reduction sees its children already made, so nothing here recurses).
Every value on the parser's stack is an _At holding the node with the first and
last token it covers, which is the span Lark's propagate_positions gave a tree
node, and its height in tree levels, which is what the nesting bound counts.

Nesting is bounded (MAX_NESTING, E005): the checker and the compiler walk
conditions and blocks recursively, so a file nested deeper than any rule a
person writes is refused here, with its position, before any of them could
exhaust the interpreter's stack. A syntax error is reported before E005, and
E005 before a node its constructor rejected, as a tree walked after parsing
would order them.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from lark import Lark, Token
from lark.exceptions import UnexpectedInput
from lark.parsers.lalr_parser import _Parser

from mosnx.grammar import grammar_text
from mosnx.runtime.diagnostics import Diagnostic, Span

from . import ast as A
from .gcpause import paused
from .lalr_drive import Stuck, Tables, drive, pass_child
from .syntax_errors import syntax_error

_parser: Lark | None = None
_plan: list | None = None
_tables: Tables | None = None

# Levels of and, or, not, parentheses, sets, calls and `when` blocks, counted from
# the file: far above what a rule needs, far below the interpreter's stack limit
# even with consts inlined (dsl.load bounds those to the same depth).
MAX_NESTING = 64


def parser() -> Lark:
    """The Lark parser: its tables and lexer drive parse(); it also replays snippets
    for syntax_errors. Built without positions: _At carries them."""
    global _parser, _plan, _tables
    if _parser is None:
        p = Lark(grammar_text("mdsl.lark"), parser="lalr", maybe_placeholders=True)
        _plan = _rule_plan(p)
        try:
            _tables = Tables(p)
        except Exception:  # a Lark laid out otherwise: its own parser loop does the same, slower
            _tables = None
        _parser = p
    return _parser


def parse(text: str, path: str = "<string>") -> A.File | Diagnostic:
    """The file's AST, or the diagnostic (E001, E005) of what stops it."""
    p = parser()
    build = _Build(path, text)
    try:
        with paused():
            root = _run(p, build, text)
    except UnexpectedInput as e:
        return syntax_error(e, p, text, path)
    if root.height - 1 > MAX_NESTING:
        deep = _too_deep(root)
        return Diagnostic(_at_span(path, deep), "E005", too_deep_message(), source_line=_line(text, deep))
    if build.failed is not None:  # a node constructor rejected a shape: report it, do not crash
        return Diagnostic(Span(path, 1, 1), "E001", f"cannot read this file: {build.failed}")
    return root.value


def _run(p: Lark, build: "_Build", text: str) -> "_At":
    """The root _At: from the fast loop, or where it stops (a syntax error), from
    Lark's parser, which raises the error as Lark words it."""
    if _tables is not None:
        try:
            return drive(_tables, text, build.callbacks(_plan))  # type: ignore[arg-type]  # parser() made the plan
        except Stuck:
            build.failed = None
    return _frontend(p, build.callbacks(_plan)).parse(text)  # type: ignore[arg-type]  # as above


def too_deep_message() -> str:
    return (f"nested more than {MAX_NESTING} levels deep (each and, or, not, parenthesis, call and "
            f"when block is a level, consts counted where they are used); "
            f'many alternatives read better as a set: field in {{"a", "b"}}')


# ---- the parser's values ----
class _At:
    """A reduced rule: its value, the first and last token it covers (None: none),
    its height in tree levels, and the raw children it was reduced from. A rule
    that makes no tree node (a `?rule` passing its one child up, or Lark's
    internal repetition rules) is not a level."""
    __slots__ = ("value", "first", "last", "height", "kids", "level")

    def __init__(self, first: Any, last: Any, height: int, kids: list, level: bool):
        self.value: Any = None
        self.first = first
        self.last = last
        self.height = height
        self.kids = kids
        self.level = level


def _too_deep(root: _At) -> _At:
    """The first node, in source order, deeper than MAX_NESTING; found without recursion."""
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if node.level:
            if depth > MAX_NESTING:
                return node
            depth += 1
        stack.extend((k, depth) for k in reversed(node.kids) if type(k) is _At)
    raise AssertionError("no node below the nesting bound")  # height said there is one


def _at_span(path: str, at: _At) -> Span:
    if at.first is None:
        return Span(path, 1, 1)
    first, last = at.first, at.last
    return Span(path, first.line, first.column, first.line,
                last.end_column if last.end_line == first.line else first.column + 1)


def _line(text: str, at: _At) -> str | None:
    if at.first is None:
        return None
    lines = text.splitlines()
    n = at.first.line
    return lines[n - 1] if 0 < n <= len(lines) else None


def _frontend(p: Lark, callbacks: dict) -> Any:
    """p's lexer and tables with these reduction callbacks, for one parse."""
    front = copy.copy(p.parser)
    lalr = copy.copy(front.parser)
    lalr.parser = _Parser(lalr._parse_table, callbacks)
    front.parser = lalr
    return front


def _rule_plan(p: Lark) -> list:
    """Per grammar rule, how its children become the arguments of its _Build method,
    as Lark's tree builder would pass them (maybe_placeholders=True): which raw
    children are kept (anonymous tokens are dropped), which are internal rules to
    splice in, and where the Nones of absent [optional] parts go."""
    plan = []
    for rule in p.rules:
        expansion = rule.expansion
        name = rule.origin.name
        if isinstance(name, Token):
            name = str(name)
        empty = rule.options.empty_indices
        if empty:
            s = "".join(str(int(b)) for b in empty)
            nones = [len(ones) for ones in s.split("0")]
        else:
            nones = [0] * (len(expansion) + 1)
        include = []
        pending = 0
        for i, sym in enumerate(expansion):
            pending += nones[i]
            if rule.options.keep_all_tokens or not (sym.is_term and sym.filter_out):  # type: ignore[attr-defined]  # a Terminal's
                include.append((i, not sym.is_term and sym.name.startswith("_"), pending))
                pending = 0
        tail = pending + nones[len(expansion)]
        if name.startswith("_"):
            kind = "splice"
        elif rule.options.expand1 and not rule.alias:
            # a `?rule` alternative that passes its one child up: the grammar has no other kind
            if len(include) != 1 or include[0][1] or include[0][2] or tail or len(expansion) != 1:
                raise AssertionError(f"grammar rule {rule} would build a bare tree node")
            kind = "pass"
        else:
            kind = rule.alias or rule.options.template_source or name
            if not hasattr(_Build, kind):
                raise AssertionError(f"grammar rule {rule} has no _Build method {kind!r}")
        plan.append((rule, tuple(include), tail, kind))
    return plan


# ---- AST ----
def _unquote(tok: str) -> str:
    """Decode a "..." literal: \\n \\t \\r \\" \\\\ are escapes; any other backslash
    is kept, so regexes ("\\d+") read as written."""
    s = tok[1:-1]
    if "\\" not in s:
        return s
    out = []
    i = 0
    esc = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n in esc:
                out.append(esc[n])
            else:
                out.append(c + n)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


class _Build:
    """The AST node of each grammar alias, from the kept children `c`; `at` gives
    the span. A constructor that raises is recorded in `failed` (the first one)
    and the parse goes on, so a later syntax error still comes first."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self.failed: Exception | None = None

    def callbacks(self, plan: list) -> dict:
        return {rule: (pass_child if kind == "pass" else self._reducer(include, tail, kind))
                for rule, include, tail, kind in plan}

    def _reducer(self, include: tuple, tail: int, kind: str) -> Callable[[list], _At]:
        method = None if kind == "splice" else getattr(self, kind)
        level = method is not None

        def reduce(s):
            first = last = None
            height = 0
            for x in s:
                if type(x) is _At:
                    if x.height > height:
                        height = x.height
                    if x.first is not None:
                        if first is None:
                            first = x.first
                        last = x.last
                else:
                    if first is None:
                        first = x
                    last = x
            c = []
            for i, splice, nones in include:
                if nones:
                    c += [None] * nones
                x = s[i]
                if splice:
                    if c:
                        c += x.value
                    else:       # left recursion (a repetition): grow its list in place, not a copy
                        c = x.value
                else:
                    c.append(x.value if type(x) is _At else x)
            if tail:
                c += [None] * tail
            at = _At(first, last, height + 1 if level else height, s, level)
            if method is None:
                at.value = c
            elif self.failed is None:
                try:
                    at.value = method(at, c)
                except Exception as e:
                    self.failed = e
            return at
        return reduce

    def _span(self, at: _At) -> Span:
        first = at.first
        if first is None:
            return Span(self.path, 1, 1)
        last = at.last
        return Span(self.path, first.line, first.column, last.end_line, last.end_column)

    def _tspan(self, tok: Token) -> Span:
        # the lexer's tokens carry their positions
        return Span(self.path, tok.line, tok.column, tok.end_line, tok.end_column)  # type: ignore[arg-type]

    # ---- declarations ----
    def file(self, at, items):
        return A.File(self.path, self.text, tuple(items))

    def import_(self, at, c):
        return A.Import(self._span(at), _unquote(c[0]))

    def const(self, at, c):
        return A.Const(self._span(at), str(c[0]), c[1])

    def clusters(self, at, c):
        return A.Clusters(self._span(at), tuple(str(t) for t in c[0]))

    def name_list(self, at, c):
        return list(c)

    def domains(self, at, c):
        return [A.Domain(self._tspan(t), _unquote(t)) for t in c]

    def vhost(self, at, c):
        name = c[0]
        rest = c[1:]
        domains: list[A.Domain] = []
        if rest and isinstance(rest[0], list):
            domains = rest[0]
            rest = rest[1:]
        return A.VHostDecl(self._span(at), str(name), self._tspan(name), tuple(domains), tuple(rest))

    def rpc_block(self, at, c):
        name = c[0]
        return A.RpcDecl(self._span(at), str(name), self._tspan(name), tuple(c[1:]))

    def on_block(self, at, c):
        return A.OnBlock(self._span(at), str(c[0]), tuple(c[1:]))

    def route(self, at, c):
        name = c[0]
        rest = list(c[1:])
        cond = None
        if rest and not isinstance(rest[0], _STMT_TYPES):
            cond = rest.pop(0)
        return A.RouteDecl(self._span(at), str(name), self._tspan(name), cond, tuple(rest))

    # ---- statements ----
    def to(self, at, c):
        return A.To(self._span(at), str(c[0]))

    def weight(self, at, c):
        return A.Weight(self._span(at), str(c[0]), int(c[1]))

    def split(self, at, c):
        return A.Split(self._span(at), tuple(c))

    def timeout(self, at, c):
        return A.Timeout(self._span(at), self._duration(c[0]))

    def retry(self, at, c):
        on: tuple = ()
        per_try = None
        for x in c[1:]:
            if isinstance(x, list):
                on = tuple(x)
            elif isinstance(x, A.Duration):
                per_try = x
        return A.Retry(self._span(at), int(c[0]), on, per_try)

    def retry_on(self, at, c):
        return list(c)

    def retry_name(self, at, c):
        return A.RetryOn(self._span(at), str(c[0]))

    def retry_5xx(self, at, c):
        return A.RetryOn(self._span(at), "5xx")

    def retry_status(self, at, c):
        return A.RetryOn(self._span(at), "retriable-status-codes", tuple(int(t) for t in c))

    def per_try(self, at, c):
        return self._duration(c[0])

    def mirror(self, at, c):
        pct = self._percent(c[1]) if len(c) > 1 and c[1] is not None else None
        return A.Mirror(self._span(at), str(c[0]), pct)

    def host_rewrite(self, at, c):
        return A.HostRewrite(self._span(at), _unquote(c[0]))

    def rewrite_prefix(self, at, c):
        return A.RewritePrefix(self._span(at), _unquote(c[0]), _unquote(c[1]))

    def rewrite_regex(self, at, c):
        return A.RewriteRegex(self._span(at), A.Str(self._tspan(c[0]), _unquote(c[0])), _unquote(c[1]))

    def set_(self, at, c):
        return A.Assign(self._span(at), "set", c[0], c[1])

    def add(self, at, c):
        return A.Assign(self._span(at), "add", c[0], c[1])

    def remove(self, at, c):
        return A.Remove(self._span(at), c[0])

    def fault(self, at, c):
        delay = next((x for x in c if isinstance(x, A.FaultDelay)), None)
        abort = next((x for x in c if isinstance(x, A.FaultAbort)), None)
        return A.Fault(self._span(at), delay, abort)

    def fault_delay(self, at, c):
        pct = self._percent(c[1]) if len(c) > 1 and c[1] is not None else None
        return A.FaultDelay(self._span(at), self._duration(c[0]), pct)

    def fault_abort(self, at, c):
        pct = self._percent(c[1]) if len(c) > 1 and c[1] is not None else None
        return A.FaultAbort(self._span(at), A.Int(self._tspan(c[0]), int(c[0])), pct)

    def limit(self, at, c):
        opts = dict(c[1:])
        return A.Limit(self._span(at), str(c[0]), self._tspan(c[0]), opts.get("burst"),
                       opts.get("key"), opts.get("status"), bool(opts.get("queue")))

    def limit_burst(self, at, c):
        return ("burst", int(c[0]))

    def limit_key(self, at, c):
        return ("key", c[0])

    def limit_status(self, at, c):
        return ("status", A.Int(self._tspan(c[0]), int(c[0])))

    def limit_queue(self, at, c):
        return ("queue", True)

    def wasm(self, at, c):
        return A.Wasm(self._span(at), _unquote(c[0]))

    def respond(self, at, c):
        status = A.Int(self._tspan(c[0]), int(c[0]))
        body = ""
        headers = []
        for x in c[1:]:
            if isinstance(x, Token):
                body = _unquote(x)
            elif isinstance(x, tuple):
                headers.append(x)
        return A.Respond(self._span(at), status, body, tuple(headers))

    def header_opt(self, at, c):
        return (c[0], _unquote(c[1]))

    def header_name(self, at, c):
        return str(c[0]).lower()

    def header_name_str(self, at, c):
        return _unquote(c[0]).lower()

    def redirect(self, at, c):
        opts: dict = dict(x for x in c[1:])
        return A.Redirect(self._span(at), A.Int(self._tspan(c[0]), int(c[0])), **opts)

    def redirect_prefix(self, at, c):
        return ("prefix", _unquote(c[0]))

    def redirect_path(self, at, c):
        return ("path", _unquote(c[0]))

    def redirect_host(self, at, c):
        return ("host", _unquote(c[0]))

    def redirect_scheme(self, at, c):
        return ("scheme", _unquote(c[0]))

    def redirect_strip_query(self, at, c):
        return ("strip_query", True)

    def emit(self, at, c):
        return A.Emit(self._span(at), str(c[0]), tuple(c[1:]))

    def emit_field(self, at, c):
        return A.EmitField(self._span(at), str(c[0]), c[1])

    def when(self, at, c):
        cond = c[0]
        body = list(c[1:])
        orelse: tuple = ()
        if body and isinstance(body[-1], _Else):
            orelse = body.pop().body
        return A.When(self._span(at), cond, tuple(body), orelse)

    def trace_tag(self, at, c):
        return A.TraceTag(self._span(at), _unquote(c[0]), self._tspan(c[0]), c[1])

    def trace_sample(self, at, c):
        return A.TraceSample(self._span(at), self._percent(c[0]))

    def else_block(self, at, c):
        return _Else(tuple(c))

    # ---- expressions ----
    def or_(self, at, c):
        return A.Or(self._span(at), c[0], c[1])

    def and_(self, at, c):
        return A.And(self._span(at), c[0], c[1])

    def not_(self, at, c):
        return A.Not(self._span(at), c[0])

    def compare(self, at, c):
        return A.Compare(self._span(at), str(c[1]), c[0], c[2])

    def word_op(self, at, c):
        return str(c[0])

    def in_(self, at, c):
        return A.In(self._span(at), c[0], c[1])

    def call(self, at, c):
        args = tuple(x for x in c[1:] if x is not None)
        return A.Call(self._span(at), str(c[0]), args)

    def group(self, at, c):
        return c[0]

    def ref(self, at, c):
        key = None
        names = list(c)
        if names and names[-1].type == "STRING":
            key = _unquote(names.pop())
        return A.Ref(self._span(at), ".".join(str(n) for n in names), key)

    def set_lit(self, at, c):
        return A.SetLit(self._span(at), tuple(x for x in c if x is not None))

    def string(self, at, c):
        return A.Str(self._span(at), _unquote(c[0]))

    def int(self, at, c):
        return A.Int(self._span(at), int(c[0]))

    def duration(self, at, c):
        return self._duration(c[0])

    def percent(self, at, c):
        return self._percent(c[0])

    def ip(self, at, c):
        return A.Ip(self._span(at), str(c[0]))

    def true(self, at, c):
        return A.Bool(self._span(at), True)

    def false(self, at, c):
        return A.Bool(self._span(at), False)

    def _duration(self, tok: Token) -> A.Duration:
        return A.Duration(self._tspan(tok), str(tok))

    def _percent(self, tok: Token) -> A.Percent:
        return A.Percent(self._tspan(tok), str(tok))


class _Else:
    __slots__ = ("body",)

    def __init__(self, body: tuple):
        self.body = body


_STMT_TYPES = (A.To, A.Split, A.Timeout, A.Retry, A.Mirror, A.HostRewrite, A.RewritePrefix,
               A.RewriteRegex, A.Assign, A.Remove, A.Fault, A.Limit, A.Wasm, A.Respond,
               A.Redirect, A.Emit, A.When, A.TraceTag, A.TraceSample)
