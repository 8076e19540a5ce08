"""The parse path dsl.parse replaced, kept only to prove the new one equivalent:
Lark builds a tree with propagate_positions, _too_deep walks it for E005, and a
Transformer turns it into the AST. Only tests/dsl/test_parse_equivalence.py uses it.
"""
from __future__ import annotations

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedInput, VisitError

from mosnx.dsl import ast as A
from mosnx.dsl.syntax_errors import syntax_error
from mosnx.grammar import grammar_text
from mosnx.runtime.diagnostics import Diagnostic, Span


_parser: Lark | None = None




from mosnx.dsl.parse import MAX_NESTING, too_deep_message  # noqa: E402


def parser() -> Lark:
    global _parser
    if _parser is None:
        _parser = Lark(grammar_text("mdsl.lark"), parser="lalr", propagate_positions=True,
                       maybe_placeholders=True)
    return _parser


def parse(text: str, path: str = "<string>") -> A.File | Diagnostic:
    """The file's AST, or the E001 diagnostic of its first syntax error."""
    p = parser()
    try:
        tree = p.parse(text)
    except UnexpectedInput as e:
        return syntax_error(e, p, text, path)
    deep = _too_deep(tree)
    if deep is not None:
        return Diagnostic(_meta_span(path, deep.meta), "E005", too_deep_message(), source_line=_line(text, deep.meta))
    try:
        return _Build(path, text).transform(tree)
    except VisitError as e:  # a node constructor rejected a shape: report it, do not crash
        return Diagnostic(Span(path, 1, 1), "E001", f"cannot read this file: {e.orig_exc}")


def _too_deep(tree: Tree) -> Tree | None:
    """The first node, in source order, deeper than MAX_NESTING; found without recursion."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return node
        stack.extend((c, depth + 1) for c in reversed(node.children) if isinstance(c, Tree))
    return None


def _meta_span(path: str, meta) -> Span:
    if getattr(meta, "empty", True):
        return Span(path, 1, 1)
    return Span(path, meta.line, meta.column, meta.line,
                meta.end_column if meta.end_line == meta.line else meta.column + 1)


def _line(text: str, meta) -> str | None:
    if getattr(meta, "empty", True):
        return None
    lines = text.splitlines()
    return lines[meta.line - 1] if 0 < meta.line <= len(lines) else None


# ---- tree -> AST ----
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


@v_args(meta=True)
class _Build(Transformer):
    def __init__(self, path: str, text: str):
        super().__init__()
        self.path = path
        self.text = text

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.path, 1, 1)
        return Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> Span:
        return Span(self.path, tok.line, tok.column, tok.end_line, tok.end_column)

    # ---- declarations ----
    def file(self, meta, items):
        return A.File(self.path, self.text, tuple(items))

    def import_(self, meta, c):
        return A.Import(self._span(meta), _unquote(c[0]))

    def const(self, meta, c):
        return A.Const(self._span(meta), str(c[0]), c[1])

    def clusters(self, meta, c):
        return A.Clusters(self._span(meta), tuple(str(t) for t in c[0]))

    def name_list(self, meta, c):
        return list(c)

    def domains(self, meta, c):
        return [A.Domain(self._tspan(t), _unquote(t)) for t in c]

    def vhost(self, meta, c):
        name = c[0]
        rest = c[1:]
        domains: list[A.Domain] = []
        if rest and isinstance(rest[0], list):
            domains = rest[0]
            rest = rest[1:]
        return A.VHostDecl(self._span(meta), str(name), self._tspan(name), tuple(domains), tuple(rest))

    def rpc_block(self, meta, c):
        return A.RpcDecl(self._span(meta), str(c[0]), self._tspan(c[0]), tuple(c[1:]))

    def on_block(self, meta, c):
        return A.OnBlock(self._span(meta), str(c[0]), tuple(c[1:]))

    def route(self, meta, c):
        name = c[0]
        rest = list(c[1:])
        cond = None
        if rest and not isinstance(rest[0], _STMT_TYPES):
            cond = rest.pop(0)
        return A.RouteDecl(self._span(meta), str(name), self._tspan(name), cond, tuple(rest))

    # ---- statements ----
    def to(self, meta, c):
        return A.To(self._span(meta), str(c[0]))

    def weight(self, meta, c):
        return A.Weight(self._span(meta), str(c[0]), int(c[1]))

    def split(self, meta, c):
        return A.Split(self._span(meta), tuple(c))

    def timeout(self, meta, c):
        return A.Timeout(self._span(meta), self._duration(c[0]))

    def retry(self, meta, c):
        on: tuple = ()
        per_try = None
        for x in c[1:]:
            if isinstance(x, list):
                on = tuple(x)
            elif isinstance(x, A.Duration):
                per_try = x
        return A.Retry(self._span(meta), int(c[0]), on, per_try)

    def retry_on(self, meta, c):
        return list(c)

    def retry_name(self, meta, c):
        return A.RetryOn(self._span(meta), str(c[0]))

    def retry_5xx(self, meta, c):
        return A.RetryOn(self._span(meta), "5xx")

    def retry_status(self, meta, c):
        return A.RetryOn(self._span(meta), "retriable-status-codes", tuple(int(t) for t in c))

    def per_try(self, meta, c):
        return self._duration(c[0])

    def mirror(self, meta, c):
        pct = self._percent(c[1]) if len(c) > 1 and c[1] is not None else None
        return A.Mirror(self._span(meta), str(c[0]), pct)

    def host_rewrite(self, meta, c):
        return A.HostRewrite(self._span(meta), _unquote(c[0]))

    def rewrite_prefix(self, meta, c):
        return A.RewritePrefix(self._span(meta), _unquote(c[0]), _unquote(c[1]))

    def rewrite_regex(self, meta, c):
        return A.RewriteRegex(self._span(meta), A.Str(self._tspan(c[0]), _unquote(c[0])), _unquote(c[1]))

    def set_(self, meta, c):
        return A.Assign(self._span(meta), "set", c[0], c[1])

    def add(self, meta, c):
        return A.Assign(self._span(meta), "add", c[0], c[1])

    def remove(self, meta, c):
        return A.Remove(self._span(meta), c[0])

    def fault(self, meta, c):
        delay = next((x for x in c if isinstance(x, A.FaultDelay)), None)
        abort = next((x for x in c if isinstance(x, A.FaultAbort)), None)
        return A.Fault(self._span(meta), delay, abort)

    def fault_delay(self, meta, c):
        pct = self._percent(c[1]) if len(c) > 1 and c[1] is not None else None
        return A.FaultDelay(self._span(meta), self._duration(c[0]), pct)

    def fault_abort(self, meta, c):
        pct = self._percent(c[1]) if len(c) > 1 and c[1] is not None else None
        return A.FaultAbort(self._span(meta), A.Int(self._tspan(c[0]), int(c[0])), pct)

    def limit(self, meta, c):
        opts = dict(c[1:])
        return A.Limit(self._span(meta), str(c[0]), self._tspan(c[0]), opts.get("burst"),
                       opts.get("key"), opts.get("status"), bool(opts.get("queue")))

    def limit_burst(self, meta, c):
        return ("burst", int(c[0]))

    def limit_key(self, meta, c):
        return ("key", c[0])

    def limit_status(self, meta, c):
        return ("status", A.Int(self._tspan(c[0]), int(c[0])))

    def limit_queue(self, meta, c):
        return ("queue", True)

    def wasm(self, meta, c):
        return A.Wasm(self._span(meta), _unquote(c[0]))

    def respond(self, meta, c):
        status = A.Int(self._tspan(c[0]), int(c[0]))
        body = ""
        headers = []
        for x in c[1:]:
            if isinstance(x, Token):
                body = _unquote(x)
            elif isinstance(x, tuple):
                headers.append(x)
        return A.Respond(self._span(meta), status, body, tuple(headers))

    def header_opt(self, meta, c):
        return (c[0], _unquote(c[1]))

    def header_name(self, meta, c):
        return str(c[0]).lower()

    def header_name_str(self, meta, c):
        return _unquote(c[0]).lower()

    def redirect(self, meta, c):
        opts: dict = dict(x for x in c[1:])
        return A.Redirect(self._span(meta), A.Int(self._tspan(c[0]), int(c[0])), **opts)

    def redirect_prefix(self, meta, c):
        return ("prefix", _unquote(c[0]))

    def redirect_path(self, meta, c):
        return ("path", _unquote(c[0]))

    def redirect_host(self, meta, c):
        return ("host", _unquote(c[0]))

    def redirect_scheme(self, meta, c):
        return ("scheme", _unquote(c[0]))

    def redirect_strip_query(self, meta, c):
        return ("strip_query", True)

    def emit(self, meta, c):
        return A.Emit(self._span(meta), str(c[0]), tuple(c[1:]))

    def emit_field(self, meta, c):
        return A.EmitField(self._span(meta), str(c[0]), c[1])

    def when(self, meta, c):
        cond = c[0]
        body = list(c[1:])
        orelse: tuple = ()
        if body and isinstance(body[-1], _Else):
            orelse = body.pop().body
        return A.When(self._span(meta), cond, tuple(body), orelse)

    def trace_tag(self, meta, c):
        return A.TraceTag(self._span(meta), _unquote(c[0]), self._tspan(c[0]), c[1])

    def trace_sample(self, meta, c):
        return A.TraceSample(self._span(meta), self._percent(c[0]))

    def else_block(self, meta, c):
        return _Else(tuple(c))

    # ---- expressions ----
    def or_(self, meta, c):
        return A.Or(self._span(meta), c[0], c[1])

    def and_(self, meta, c):
        return A.And(self._span(meta), c[0], c[1])

    def not_(self, meta, c):
        return A.Not(self._span(meta), c[0])

    def compare(self, meta, c):
        return A.Compare(self._span(meta), str(c[1]), c[0], c[2])

    def word_op(self, meta, c):
        return str(c[0])

    def in_(self, meta, c):
        return A.In(self._span(meta), c[0], c[1])

    def call(self, meta, c):
        args = tuple(x for x in c[1:] if x is not None)
        return A.Call(self._span(meta), str(c[0]), args)

    def group(self, meta, c):
        return c[0]

    def ref(self, meta, c):
        key = None
        names = list(c)
        if names and names[-1].type == "STRING":
            key = _unquote(names.pop())
        return A.Ref(self._span(meta), ".".join(str(n) for n in names), key)

    def set_lit(self, meta, c):
        return A.SetLit(self._span(meta), tuple(x for x in c if x is not None))

    def string(self, meta, c):
        return A.Str(self._span(meta), _unquote(c[0]))

    def int(self, meta, c):
        return A.Int(self._span(meta), int(c[0]))

    def duration(self, meta, c):
        return self._duration(c[0])

    def percent(self, meta, c):
        return self._percent(c[0])

    def ip(self, meta, c):
        return A.Ip(self._span(meta), str(c[0]))

    def true(self, meta, c):
        return A.Bool(self._span(meta), True)

    def false(self, meta, c):
        return A.Bool(self._span(meta), False)

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
