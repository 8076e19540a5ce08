"""`mosnx fmt`: one canonical layout for .mdsl files, comments kept where they were.

The layout is printed from the AST (dsl.parse), so it depends only on what the
file means, never on how it was spaced: two-space indentation, one statement
per line, single spaces between tokens, `{ stmt }` kept on one line only where
the source wrote a one-statement block on one line, one blank line at most
where the source had some, long `when` conditions broken before top-level
`and`/`or`. Nothing the user ordered is reordered; parentheses the user wrote
are kept, and added only where precedence needs them.

The parser drops comments, so they are read from the source text (outside
string literals) and put back by line: a comment on a line of its own goes
before the next statement (at that statement's indentation); one after code
goes at the end of the printed line of the statement or brace it followed.

Invariants: format() never returns text it has not re-parsed to the same AST
(positions aside); a file that does not parse yields its diagnostic and no
text, so the command never writes a file it could not read.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Iterator, TextIO

from mosnx.runtime.diagnostics import Diagnostic, Span

from . import ast as A
from .parse import parse

INDENT = "  "
WIDTH = 100
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")
_PREC = {A.Or: 1, A.And: 2, A.Not: 3, A.Compare: 4, A.In: 4}
_ATOM = 5


class FormatBug(Exception):
    """The printed text does not mean what the source meant: never written."""


@dataclass(frozen=True, slots=True)
class Comment:
    line: int
    offset: int          # of the "#" in the text
    text: str            # from "#" to the end of the line, trailing spaces removed
    own_line: bool       # nothing but blanks before it on its line


# ---- the source, as the printer reads it ----
class _Source:
    """The text with strings and comments blanked out, for finding braces and
    parentheses, plus the comments found on the way."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.starts: list[int] = []
        pos = 0
        for ln in self.lines:
            self.starts.append(pos)
            pos += len(ln) + 1
        masked: list[str] = []
        pos_of_line = self.starts
        self.comments: list[Comment] = []
        for n, ln in enumerate(self.lines, 1):
            out = []
            i = 0
            in_str = False
            while i < len(ln):
                ch = ln[i]
                if in_str:
                    if ch == "\\" and i + 1 < len(ln):
                        out.append("  ")
                        i += 2
                        continue
                    if ch == '"':
                        in_str = False
                    out.append(" ")
                elif ch == '"':
                    in_str = True
                    out.append(" ")
                elif ch == "#":
                    self.comments.append(Comment(n, pos_of_line[n - 1] + i, ln[i:].rstrip(),
                                                 not ln[:i].strip()))
                    out.append(" " * (len(ln) - i))
                    break
                else:
                    out.append(ch)
                i += 1
            masked.append("".join(out))
        self.masked = "\n".join(masked)

    def offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col - 1

    def line_of(self, off: int) -> int:
        lo, hi = 0, len(self.starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.starts[mid] <= off:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def find(self, ch: str, start: int) -> int:
        """Offset of the next `ch` outside strings and comments, from `start`."""
        i = self.masked.find(ch, start)
        return i if i >= 0 else len(self.masked)

    def grouped(self, e: Any, before: int = 0, after: int = 0) -> bool:
        """Whether the source wrote parentheses right around this expression, beyond
        `before` and `after` that belong to something else (a call's own)."""
        s = e.span
        if not s.end_line:
            return False
        m = self.masked
        a = self.offset(s.line, s.column) - 1
        b = self.offset(s.end_line, s.end_column)
        opened = closed = 0
        while a >= 0 and (m[a].isspace() or m[a] == "("):
            opened += m[a] == "("
            a -= 1
        while b < len(m) and (m[b].isspace() or m[b] == ")"):
            closed += m[b] == ")"
            b += 1
        return opened > before and closed > after

    def blank_between(self, after_line: int, before_line: int) -> bool:
        return any(not self.lines[n - 1].strip() for n in range(after_line + 1, before_line))

    def has_comment(self, a: int, b: int) -> bool:
        return any(a <= c.offset <= b for c in self.comments)


# ---- literals and expressions ----
def quote(s: str) -> str:
    """The shortest "..." that dsl.parse reads back as `s`: a backslash is doubled
    only where it would otherwise start an escape, so regexes stay as written."""
    out = ['"']
    for i, ch in enumerate(s):
        if ch == "\\":
            nxt = s[i + 1] if i + 1 < len(s) else ""
            out.append("\\\\" if nxt in ("", "n", "t", "r", '"', "\\") else "\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class _Printer:
    def __init__(self, src: _Source) -> None:
        self.src = src
        self.out: list[str] = []
        self.ci = 0                      # next comment not yet printed
        self.last_line = 0               # last source line printed
        self.block_start = True          # nothing printed yet in the current block

    # -- expressions --
    def expr(self, e: Any, need: int = 1, before: int = 0, after: int = 0) -> str:
        p = _PREC.get(type(e), _ATOM)
        s = self._expr(e)
        if p < need or self.src.grouped(e, before, after):
            return f"({s})"
        return s

    def _expr(self, e: Any) -> str:
        if isinstance(e, A.Or):
            return f"{self.expr(e.left, 1)} or {self.expr(e.right, 2)}"
        if isinstance(e, A.And):
            return f"{self.expr(e.left, 2)} and {self.expr(e.right, 3)}"
        if isinstance(e, A.Not):
            return f"not {self.expr(e.operand, 3)}"
        if isinstance(e, A.Compare):
            return f"{self.expr(e.left, _ATOM)} {e.op} {self.expr(e.right, _ATOM)}"
        if isinstance(e, A.In):
            return f"{self.expr(e.left, _ATOM)} in {self.expr(e.right, _ATOM)}"
        if isinstance(e, A.Ref):
            return e.name + (f"[{quote(e.key)}]" if e.key is not None else "")
        if isinstance(e, A.Str):
            return quote(e.value)
        if isinstance(e, A.Int):
            return str(e.value)
        if isinstance(e, A.Bool):
            return "true" if e.value else "false"
        if isinstance(e, (A.Duration, A.Percent, A.Ip)):
            return e.text
        if isinstance(e, A.SetLit):
            return "{" + ", ".join(self.expr(x, _ATOM) for x in e.items) + "}"
        if isinstance(e, A.Call):
            n = len(e.args)
            return f"{e.name}(" + ", ".join(self.expr(x, 1, i == 0, i == n - 1)
                                            for i, x in enumerate(e.args)) + ")"
        raise FormatBug(f"no layout for {type(e).__name__}")

    def cond_lines(self, head: str, cond: Any, tail: str, indent: str) -> list[str]:
        """`head cond tail` on one line, or, when that is too long, broken before
        each `and`/`or` outside parentheses (line breaks are blanks to the parser)."""
        text = self.expr(cond)
        one = f"{indent}{head}{text}{tail}"
        if len(one) <= WIDTH:
            return [one]
        parts = _top_level_split(text)
        lines = [f"{indent}{head}{parts[0]}"] + [f"{indent}{INDENT * 2}{p}" for p in parts[1:]]
        lines[-1] += tail
        return lines

    # -- statements --
    def simple(self, s: Any) -> str:
        x = self.expr
        if isinstance(s, A.To):
            return f"to {s.cluster}"
        if isinstance(s, A.Split):
            return "split { " + ", ".join(f"{w.cluster}: {w.weight}" for w in s.weights) + " }"
        if isinstance(s, A.Timeout):
            return f"timeout {s.duration.text}"
        if isinstance(s, A.Retry):
            out = f"retry {s.count}"
            if s.on:
                out += " on " + ", ".join(
                    "status {" + ", ".join(map(str, r.statuses)) + "}" if r.name == "retriable-status-codes"
                    else r.name for r in s.on)
            if s.per_try is not None:
                out += f" per_try {s.per_try.text}"
            return out
        if isinstance(s, A.Mirror):
            return f"mirror {s.cluster}" + (f" {s.percent.text}" if s.percent else "")
        if isinstance(s, A.HostRewrite):
            return f"host_rewrite {quote(s.host)}"
        if isinstance(s, A.RewritePrefix):
            return f"rewrite prefix {quote(s.old)} => {quote(s.new)}"
        if isinstance(s, A.RewriteRegex):
            return f"rewrite regex {quote(s.pattern.value)} => {quote(s.substitution)}"
        if isinstance(s, A.Assign):
            return f"{s.mode} {x(s.target)} = {x(s.value)}"
        if isinstance(s, A.Remove):
            return f"remove {x(s.target)}"
        if isinstance(s, A.Fault):
            specs = sorted((f for f in (s.delay, s.abort) if f is not None),
                           key=lambda f: (f.span.line, f.span.column))
            return "fault " + ", ".join(
                (f"delay {f.duration.text}" if isinstance(f, A.FaultDelay) else f"abort {f.status.value}")
                + (f" {f.percent.text}" if f.percent else "") for f in specs)
        if isinstance(s, A.Limit):
            out = f"limit rate {s.rate}"
            if s.burst is not None:
                out += f" burst {s.burst}"
            if s.key is not None:
                out += f" key {x(s.key)}"
            if s.status is not None:
                out += f" else {s.status.value}"
            return out + (" queue" if s.queue else "")
        if isinstance(s, A.Wasm):
            return f"wasm {quote(s.name)}"
        if isinstance(s, A.Respond):
            out = f"respond {s.status.value}" + (f" {quote(s.body)}" if s.body else "")
            for name, value in s.headers:
                out += f" header {name if _NAME.match(name) else quote(name)} = {quote(value)}"
            return out
        if isinstance(s, A.Redirect):
            out = f"redirect {s.status.value}"
            for opt in ("prefix", "path", "host", "scheme"):
                v = getattr(s, opt)
                if v is not None:
                    out += f" {opt} {quote(v)}"
            return out + (" strip_query" if s.strip_query else "")
        if isinstance(s, A.Emit):
            return f"emit {s.stream} {{ " + ", ".join(
                f"{f.name}: {x(f.value)}" for f in s.fields) + " }"
        if isinstance(s, A.TraceTag):
            return f"trace tag {quote(s.key)} = {x(s.value)}"
        if isinstance(s, A.TraceSample):
            return f"trace sample {s.percent.text}"
        if isinstance(s, A.Import):
            return f"import {quote(s.path)}"
        if isinstance(s, A.Const):
            return f"const {s.name} = {x(s.value)}"
        if isinstance(s, A.Clusters):
            return "clusters " + ", ".join(s.names)
        raise FormatBug(f"no layout for {type(s).__name__}")

    # -- output with comments --
    def _emit(self, text: str, src_line: int) -> None:
        if not self.block_start and self.last_line and self.src.blank_between(self.last_line, src_line):
            self.out.append("")
        self.out.append(text)
        self.last_line = max(self.last_line, src_line)
        self.block_start = False

    def comments_before(self, line: int, indent: str) -> None:
        cs = self.src.comments
        while self.ci < len(cs) and cs[self.ci].line < line:
            c = cs[self.ci]
            self.ci += 1
            if not c.own_line and self.out and not self.block_start and "#" not in self.out[-1]:
                self.out[-1] += "  " + c.text      # after code the printer moved: keep it on that line
                self.last_line = max(self.last_line, c.line)
            else:
                self._emit(indent + c.text, c.line)

    def _take_through(self, line: int) -> list[Comment]:
        cs = self.src.comments
        got = []
        while self.ci < len(cs) and cs[self.ci].line <= line:
            got.append(cs[self.ci])
            self.ci += 1
        return got

    def put(self, lines: list[str], first: int, last: int, limit: int, indent: str) -> None:
        """Print a statement's lines (source lines first..last); comments up to `last`
        (but before `limit`, the line the next statement starts on) ride with it."""
        self.comments_before(first, indent)
        extra = self._take_through(min(last, limit - 1))
        # a comment after the statement's last code stays at the end of its line; those
        # inside a statement that spans lines go before it, in their order
        trailing = extra.pop() if extra and not extra[-1].own_line and extra[-1].line == last else None
        for c in extra:
            self._emit(indent + c.text, c.line)
        self._emit(lines[0], first)
        self.out.extend(lines[1:])
        if trailing:
            self.out[-1] += "  " + trailing.text
        self.last_line = max(self.last_line, last)

    def block(self, items: tuple, indent: str, close_off: int) -> None:
        close_line = self.src.line_of(close_off)
        saved = self.block_start
        self.block_start = True
        for i, s in enumerate(items):
            nxt = items[i + 1].span.line if i + 1 < len(items) else close_line
            if i + 1 == len(items) and s.span.end_line == close_line:
                nxt = close_line       # a comment after the closing brace belongs to the brace
            self.node(s, indent, nxt)
        self.comments_before(close_line, indent)
        self.block_start = saved

    def node(self, s: Any, indent: str, limit: int) -> None:
        sp = s.span
        if isinstance(s, (A.RouteDecl, A.VHostDecl, A.RpcDecl, A.OnBlock, A.When)):
            self.block_node(s, indent, limit)
            return
        self.put([indent + self.simple(s)], sp.line, sp.end_line or sp.line, limit, indent)

    def block_node(self, s: Any, indent: str, limit: int) -> None:
        src = self.src
        start = src.offset(s.span.line, s.span.column)
        end = src.offset(s.span.end_line, s.span.end_column)
        cond = None
        body: tuple[Any, ...]
        if isinstance(s, A.RouteDecl):
            head, cond = f"route {s.name}", s.cond
            body = s.body
            after = s.name_span
        elif isinstance(s, A.VHostDecl):
            head = f"vhost {s.name}" + (
                " domains " + ", ".join(quote(d.name) for d in s.domains) if s.domains else "")
            body = s.items
            after = s.domains[-1].span if s.domains else s.name_span
        elif isinstance(s, A.RpcDecl):
            head, body, after = f"rpc {s.name}", s.routes, s.name_span
        elif isinstance(s, A.OnBlock):
            head, body, after = f"on {s.phase}", s.body, s.span
        else:
            head, cond, body = "when", s.cond, s.body
            after = s.cond.span
        if cond is not None:
            after = cond.span
        from_off = src.offset(after.end_line, after.end_column) if after is not s.span else start
        open_off = src.find("{", from_off)
        if isinstance(s, A.When) and s.orelse:
            last = body[-1].span if body else None
            close_off = src.find("}", src.offset(last.end_line, last.end_column) if last else open_off + 1)
        else:
            close_off = end - 1
        open_line = src.line_of(open_off)
        if cond is not None:
            lines = self.cond_lines(f"{head} when " if not isinstance(s, A.When) else "when ", cond, " {", indent)
        else:
            lines = [f"{indent}{head} {{"]
        # a one-statement block the source wrote on one line stays on one line
        if (len(body) == 1 and not isinstance(body[0], (A.When, A.OnBlock, A.RouteDecl))
                and not (isinstance(s, A.When) and s.orelse) and len(lines) == 1
                and src.line_of(open_off) == src.line_of(close_off) == s.span.line
                and not src.has_comment(open_off, close_off - 1)
                and not isinstance(s, (A.VHostDecl, A.RpcDecl, A.OnBlock))):
            one = f"{lines[0]} {self.simple(body[0])} }}"
            if len(one) <= WIDTH:
                self.put([one], s.span.line, s.span.end_line, limit, indent)
                return
        self.put(lines, s.span.line, open_line, _after_open(open_line, body, close_off, src), indent)
        self.block(body, indent + INDENT, close_off)
        else_open = src.find("{", close_off + 1) if isinstance(s, A.When) and s.orelse else 0
        # a comment between `}` and `else` goes after `else {`
        self._close(indent + "}", src.line_of(close_off), src.line_of(close_off) if else_open else limit, indent)
        if isinstance(s, A.When) and s.orelse:
            self.out[-1] += " else {"
            self.last_line = else_line = src.line_of(else_open)
            self._trail(else_line, _after_open(else_line, s.orelse, end - 1, src), indent)
            self.block(s.orelse, indent + INDENT, end - 1)
            self._close(indent + "}", s.span.end_line, limit, indent)

    def _close(self, text: str, line: int, limit: int, indent: str) -> None:
        self.out.append(text)
        self.last_line = max(self.last_line, line)
        self._trail(line, limit, indent)

    def _trail(self, line: int, limit: int, indent: str) -> None:
        got = self._take_through(min(line, limit - 1))
        trailing = got.pop() if got and not got[-1].own_line else None
        for c in got:       # own-line comments between `}` and `else`: before the line
            self.out.insert(len(self.out) - 1, indent + INDENT + c.text)
        if trailing:
            self.out[-1] += "  " + trailing.text

    def file(self, f: A.File) -> str:
        items = f.items
        big = 1 << 30
        for i, it in enumerate(items):
            self.node(it, "", items[i + 1].span.line if i + 1 < len(items) else big)
        self.comments_before(big, "")
        return "\n".join(self.out).rstrip("\n") + "\n" if self.out else ""


def _after_open(open_line: int, body: tuple, close_off: int, src: _Source) -> int:
    """The line before which a comment goes with a block's opening line: a comment
    on that line after code of the body belongs to that code instead."""
    first = body[0].span.line if body else src.line_of(close_off)
    return open_line + 1 if first > open_line else open_line


def _top_level_split(text: str) -> list[str]:
    """`text` cut before each ` and `/` or ` outside strings, parentheses and braces."""
    parts: list[str] = []
    depth = 0
    in_str = False
    start = i = 0
    while i < len(text):
        ch = text[i]
        if in_str:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        elif depth == 0 and ch == " ":
            for op in ("and ", "or "):
                if text.startswith(op, i + 1):
                    parts.append(text[start:i])
                    start = i + 1
                    break
        i += 1
    parts.append(text[start:])
    return parts


# ---- the entry points ----
def strip(node: Any) -> Any:
    """The AST without positions (and without the text and path of a File)."""
    if isinstance(node, A.File):
        return tuple(strip(i) for i in node.items)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__,) + tuple(
            strip(getattr(node, f.name)) for f in dataclasses.fields(node)
            if not isinstance(getattr(node, f.name), Span))
    if isinstance(node, tuple):
        return tuple(strip(x) for x in node)
    return node


def format_text(text: str, path: str = "<string>") -> str | Diagnostic:
    """The canonical layout of `text`, or the diagnostic that stops it parsing."""
    tree = parse(text, path)
    if isinstance(tree, Diagnostic):
        return tree
    out = _Printer(_Source(text)).file(tree)
    again = parse(out, path)
    if isinstance(again, Diagnostic) or strip(again) != strip(tree):
        raise FormatBug(f"{path}: the formatted text would not mean what the file means; left unchanged")
    return out


def _files(paths: list[str]) -> Iterator[str]:
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                for n in sorted(names):
                    if n.endswith(".mdsl"):
                        yield os.path.join(root, n)
        else:
            yield p


def main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Exit status: 0 done (or nothing to change), 1 --check found a file to change,
    2 a file that does not parse, cannot be read, or a usage error."""
    from .lint import render
    out = out or sys.stdout
    err = err or sys.stderr
    ap = argparse.ArgumentParser(prog="mosnx fmt", description="Rewrite .mdsl files in the canonical layout.")
    ap.add_argument("paths", nargs="+", help=".mdsl files or folders of them; - reads standard input "
                    "and writes the result to standard output")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    ap.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of the changes")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code in (0, None) else 2
    status = 0
    for path in _files(a.paths):
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as e:
            print(f"mosnx fmt: {path}: {e.strerror if isinstance(e, OSError) else e}", file=err)
            status = 2
            continue
        name = "<stdin>" if path == "-" else path
        try:
            new = format_text(text, name)
        except FormatBug as e:
            print(f"mosnx fmt: {e}", file=err)
            status = 2
            continue
        if isinstance(new, Diagnostic):
            err.write(render([new], "text"))
            status = 2
            continue
        if path == "-" and not (a.check or a.diff):
            out.write(new)
            continue
        if new == text:
            continue
        if a.diff:
            out.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                f"{name} (original)", f"{name} (formatted)"))
        if a.check:
            print(f"would reformat {name}", file=err)
            status = max(status, 1)
        elif not a.diff:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(new)
            print(f"reformatted {name}", file=err)
    return status
