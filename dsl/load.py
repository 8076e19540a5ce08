"""Read rule files and folders, follow imports, and collect what each file can see.

A folder means every *.mdsl directly in it, sorted by name. An import brings the
imported file's declarations (consts, clusters) into scope; its vhosts and routes
are served only when the file is itself loaded. Files are read afresh on every
call, so a reload sees the current text; nothing is cached across calls.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from mosnx.runtime.diagnostics import Diagnostic, Span

from . import ast as A
from .parse import parse


@dataclass
class Program:
    roots: list[A.File] = field(default_factory=list)        # files loaded, in order
    files: dict[str, A.File] = field(default_factory=dict)   # every file parsed, by path
    # per file: const name -> (Const, path of the file that defines it)
    scopes: dict[str, dict[str, tuple[A.Const, str]]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)         # every file read
    diagnostics: list[Diagnostic] = field(default_factory=list)

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


def load(paths: tuple[str, ...] | list[str]) -> Program:
    prog = Program()
    files, diags = expand(paths)
    prog.diagnostics.extend(diags)
    for path in dict.fromkeys(files):
        f = _read(prog, path, None)
        if f is not None:
            prog.roots.append(f)
    for path in list(prog.files):
        _scope(prog, path, ())
    return prog


def _read(prog: Program, path: str, at: A.Import | None) -> A.File | None:
    if path in prog.files:
        return prog.files[path]
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        span = at.span if at is not None else Span(path, 1, 1)
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        prog.diagnostics.append(prog.diag(span, "E003", f'cannot read "{path}": {why}'))
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
