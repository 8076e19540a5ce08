"""Read rule files and folders, follow imports, and collect what each file can see.

A folder means every *.mdsl directly in it, sorted by name. An import brings the
imported file's declarations (consts, clusters) into scope; its vhosts and routes
are served only when the file is itself loaded. Files are read afresh on every
call, so a reload sees the current text; nothing is cached across calls.

A const used in a condition stands for its whole value, so a chain of consts
nests as deep as their values together: each const's depth, consts inlined, is
bounded by parse.MAX_NESTING too (E005), measured without recursion over the
chain, so the checker and the compiler never meet an expression deeper than
twice that bound.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from mosnx.runtime.attributes import ATTRIBUTES
from mosnx.runtime.diagnostics import Diagnostic, Span

from . import ast as A
from .gcpause import paused
from .parse import MAX_NESTING, parse, too_deep_message


@dataclass
class Program:
    roots: list[A.File] = field(default_factory=list)        # files loaded, in order
    files: dict[str, A.File] = field(default_factory=dict)   # every file parsed, by path
    # per file: const name -> (Const, path of the file that defines it)
    scopes: dict[str, dict[str, tuple[A.Const, str]]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)         # every file read
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # regexes the checker compiled, by text, for the compiler: re's own cache holds 512,
    # so a table of thousands of regex routes was otherwise compiled twice
    regexes: dict = field(default_factory=dict)
    # text to read instead of the file at that path: an editor's unsaved buffers
    overlay: dict[str, str] = field(default_factory=dict)

    def source_line(self, span: Span | None) -> str | None:
        if span is None:
            return None
        f = self.files.get(span.path)
        return f.line(span.line) if f is not None else None

    def diag(self, span: Span | None, code: str, message: str, severity: str = "error") -> Diagnostic:
        return Diagnostic(span, code, message, severity, self.source_line(span))

    def declared_clusters(self) -> set[str]:
        out: set[str] = set()
        for f in self.files.values():
            for it in f.items:
                if isinstance(it, A.Clusters):
                    out.update(it.names)
        return out


def expand(paths: tuple[str, ...] | list[str]) -> tuple[list[str], list[Diagnostic]]:
    """The .mdsl files named by `paths` (folders expanded), and errors for missing ones."""
    out: list[str] = []
    diags: list[Diagnostic] = []
    for p in map(os.path.normpath, paths):
        if os.path.isdir(p):
            out.extend(os.path.join(p, n) for n in sorted(os.listdir(p))
                       if n.endswith(".mdsl") and os.path.isfile(os.path.join(p, n)))
        elif os.path.isfile(p):
            out.append(p)
        else:
            diags.append(Diagnostic(Span(p, 1, 1), "E003", f"cannot read {p}: no such file or folder"))
    return out, diags


def load(paths: tuple[str, ...] | list[str], overlay: dict[str, str] | None = None) -> Program:
    """`overlay`: path -> text read in place of that file (the language server's
    open documents); every other file is read from disk."""
    with paused():
        return _load(paths, overlay or {})


def _load(paths: tuple[str, ...] | list[str], overlay: dict[str, str]) -> Program:
    prog = Program(overlay=overlay)
    files, diags = expand([p for p in paths if p not in overlay])
    files = [p for p in paths if p in overlay] + files
    prog.diagnostics.extend(diags)
    for path in dict.fromkeys(files):
        f = _read(prog, path, None)
        if f is not None:
            prog.roots.append(f)
    for path in list(prog.files):
        _scope(prog, path, ())
    _bound_const_depth(prog)
    return prog


def _read(prog: Program, path: str, at: A.Import | None) -> A.File | None:
    if path in prog.files:
        return prog.files[path]
    try:
        if path in prog.overlay:
            text = prog.overlay[path]
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except (OSError, ValueError) as e:     # ValueError: undecodable text, or a NUL in the path
        span = at.span if at is not None else Span(path, 1, 1)
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        shown = path.replace("\0", "\\0")
        prog.diagnostics.append(prog.diag(span, "E003", f'cannot read "{shown}": {why}'))
        return None
    prog.sources.append(path)
    tree = parse(text, path)
    if isinstance(tree, Diagnostic):
        prog.diagnostics.append(tree)
        return None
    prog.files[path] = tree
    for it in tree.items:
        if isinstance(it, A.Import):
            _read(prog, _resolve(path, it.path), it)
    return tree


def _resolve(importer: str, target: str) -> str:
    if os.path.isabs(target):
        return os.path.normpath(target)
    return os.path.normpath(os.path.join(os.path.dirname(importer), target))


def _scope(prog: Program, path: str, stack: tuple[str, ...]) -> dict[str, tuple[A.Const, str]]:
    """Consts visible in `path`: its own and those of its imports, transitively."""
    if path in prog.scopes:
        return prog.scopes[path]
    f = prog.files.get(path)
    if f is None:
        return {}
    scope: dict[str, tuple[A.Const, str]] = {}
    prog.scopes[path] = scope       # set first: an import cycle sees a partial scope
    for it in f.items:
        if isinstance(it, A.Import):
            target = _resolve(path, it.path)
            if target in stack or target == path:
                prog.diagnostics.append(prog.diag(it.span, "E003", f'import cycle: "{it.path}" imports this file back'))
                continue
            for name, entry in _scope(prog, target, stack + (path,)).items():
                if name in scope and scope[name][1] != entry[1]:
                    prog.diagnostics.append(prog.diag(
                        it.span, "D402", f'const "{name}" is defined both in {scope[name][1]} and {entry[1]}'))
                    continue
                scope[name] = entry
    for it in f.items:
        if isinstance(it, A.Const):
            prev = scope.get(it.name)
            if prev is not None:
                where = "above" if prev[1] == path else f"in {prev[1]}"
                prog.diagnostics.append(prog.diag(
                    it.span, "D402", f'const "{it.name}" is already defined {where} (line {prev[0].span.line})'))
                continue
            scope[it.name] = (it, path)
    return scope


# ---- const depth ----
Key = tuple[str, str]        # (path of the defining file, const name)


def _const_refs(e: A.Expr, scope: dict[str, tuple[A.Const, str]]) -> list[Key]:
    """The consts `e` names (as keys), from a walk bounded by parse's nesting limit."""
    out: list[Key] = []
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, A.Ref):
            if x.key is None and x.name not in ATTRIBUTES and x.name in scope:
                out.append((scope[x.name][1], x.name))
        else:
            stack.extend(_children(x))
    return out


def _children(e: A.Expr) -> tuple[A.Expr, ...]:
    if isinstance(e, (A.And, A.Or, A.Compare, A.In)):
        return (e.left, e.right)
    if isinstance(e, A.Not):
        return (e.operand,)
    if isinstance(e, A.Call):
        return tuple(e.args)
    if isinstance(e, A.SetLit):
        return tuple(e.items)
    return ()


def _depth(e: A.Expr, scope: dict, depths: dict[Key, int]) -> int:
    """Levels of `e` with each const counted as one more than its own depth."""
    if isinstance(e, A.Ref):
        if e.key is None and e.name not in ATTRIBUTES and e.name in scope:
            return 1 + depths.get((scope[e.name][1], e.name), 0)   # absent: a cycle, E004 elsewhere
        return 1
    return 1 + max((_depth(c, scope, depths) for c in _children(e)), default=0)


def _bound_const_depth(prog: Program) -> None:
    consts: dict[Key, A.Const] = {}
    for path, f in prog.files.items():
        for it in f.items:
            if isinstance(it, A.Const):
                consts.setdefault((path, it.name), it)
    depths: dict[Key, int] = {}
    for root in consts:
        stack, open_ = [root], set()
        while stack:                     # depth-first over the chain, without recursion
            k = stack[-1]
            if k in depths:
                stack.pop()
                continue
            scope = prog.scopes.get(k[0], {})
            todo = [d for d in _const_refs(consts[k].value, scope)
                    if d in consts and d not in depths and d not in open_]
            if todo and k not in open_:
                open_.add(k)
                stack.extend(todo)
                continue
            depths[k] = _depth(consts[k].value, scope, depths)
            open_.discard(k)
            stack.pop()
    for k, c in consts.items():
        if depths[k] <= MAX_NESTING:
            continue
        scope = prog.scopes.get(k[0], {})
        # report only where the chain first crosses the bound, not at every const above it
        if all(depths.get(d, 0) <= MAX_NESTING for d in _const_refs(c.value, scope)):
            prog.diagnostics.append(prog.diag(c.span, "E005", too_deep_message()))
