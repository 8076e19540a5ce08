"""`mosnx lsp`: the .mdsl language server (pygls, JSON-RPC over standard input and output).

What it answers, all from the same front end `mosnx check` runs:
- diagnostics on open, change and save: dsl.rules.analyze over the document's
  current text (unsaved imported documents too, via load's overlay), so the codes
  and positions are the ones `mosnx check FILE` prints;
- hover: an attribute's type and meaning (runtime.attributes), a cluster's
  endpoints (from the mosnx.yaml found beside or above the file), a route's
  compiled summary (dsl.compile), a const's value;
- completion: attributes, keywords, cluster names, const names in scope;
- go to definition: consts (in this file or an imported one), imports (the
  file), clusters (their entry in mosnx.yaml);
- formatting: dsl.fmt; a document that does not parse gets no edits.

Invariants: a handler never lets an exception out to the client (a bad document
gets diagnostics, an internal error is logged and the request answered empty);
the server holds no analysis between requests, only pygls's open documents, so
every answer reflects the text as it is now.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, urlparse

from mosnx.runtime.attributes import ATTRIBUTES
from mosnx.runtime.diagnostics import Diagnostic, Span

from . import ast as A
from .fmt import FormatBug, format_text
from .rpc import RPC_FIELD_DOCS, RPC_FIELDS

log = logging.getLogger("mosnx.lsp")
CONFIG_NAMES = ("mosnx.yaml", "mosnx.yml")
KEYWORDS = ("import", "const", "clusters", "vhost", "domains", "route", "when", "else", "on", "request",
            "response", "log", "to", "split", "timeout", "retry", "per_try", "mirror", "host_rewrite",
            "rewrite", "prefix", "regex", "set", "add", "remove", "fault", "delay", "abort", "limit", "rate",
            "burst", "key", "queue", "wasm", "respond", "header", "redirect", "path", "host", "scheme",
            "strip_query", "emit", "and", "or", "not", "in", "suffix", "contains", "segment_prefix",
            "true", "false", "5xx", "status", "rpc", "trace", "tag", "sample")
_WORD = re.compile(r'[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)*(?:\["[^"\n]*"\])?|"(?:\\.|[^"\\\n])*"')


# ---- documents and positions ----
def uri_to_path(uri: str) -> str:
    return os.path.normpath(unquote(urlparse(uri).path))


def path_to_uri(path: str) -> str:
    from pathlib import Path
    return Path(os.path.abspath(path)).as_uri()


def word_at(text: str, line: int, col: int) -> tuple[str, int, int] | None:
    """The name, dotted attribute or string under (0-based) line/col, with its columns."""
    lines = text.split("\n")
    if not 0 <= line < len(lines):
        return None
    for m in _WORD.finditer(lines[line]):
        if m.start() <= col <= m.end():
            return m.group(), m.start(), m.end()
    return None


# ---- what a document means ----
@dataclass
class Analysis:
    path: str
    prog: Any                         # dsl.load.Program
    diagnostics: list[Diagnostic]


def analyze(path: str, text: str, overlay: dict[str, str]) -> Analysis:
    from .rules import analyze as run
    prog, diags = run([path], overlay={**overlay, path: text})
    return Analysis(path, prog, diags)


def find_config(path: str) -> str | None:
    """The mosnx.yaml beside the file or in a folder above it."""
    d = os.path.dirname(os.path.abspath(path))
    while True:
        for n in CONFIG_NAMES:
            if os.path.isfile(os.path.join(d, n)):
                return os.path.join(d, n)
        up = os.path.dirname(d)
        if up == d:
            return None
        d = up


def load_clusters(path: str) -> tuple[str | None, dict[str, Any]]:
    """(config path, clusters by name) of the config found for `path`; none if it does not load."""
    from mosnx.runtime.config import load_config
    from mosnx.runtime.diagnostics import ConfigError
    cfg = find_config(path)
    if cfg is None:
        return None, {}
    try:
        config = load_config(cfg)
    except (ConfigError, OSError, ValueError):
        return cfg, {}
    return cfg, {c.name: c for c in config.clusters}


def consts_in_scope(a: Analysis) -> dict[str, tuple[A.Const, str]]:
    return dict(a.prog.scopes.get(a.path, {}))


def declared_clusters(a: Analysis) -> set[str]:
    return set(a.prog.declared_clusters())


def routes_of(a: Analysis) -> list[tuple[A.RouteDecl, str | None]]:
    """Routes of this file with the vhost each sits in."""
    f = a.prog.files.get(a.path)
    out: list[tuple[A.RouteDecl, str | None]] = []
    for it in f.items if f is not None else ():
        if isinstance(it, A.RouteDecl):
            out.append((it, None))
        elif isinstance(it, A.VHostDecl):
            out += [(r, it.name) for r in it.items if isinstance(r, A.RouteDecl)]
        elif isinstance(it, A.RpcDecl):
            out += [(r, f"rpc {it.name}") for r in it.routes]
    return out


def _imports(a: Analysis) -> dict[str, Span]:
    """Files this one imports, resolved, with the span of each import."""
    from .load import _resolve
    f = a.prog.files.get(a.path)
    return {_resolve(a.path, it.path): it.span for it in (f.items if f is not None else ())
            if isinstance(it, A.Import)}


def route_summary(a: Analysis, route: A.RouteDecl) -> str:
    """The compiled route, as dsl.compile makes it (or why it cannot be compiled)."""
    if any(d.severity == "error" for d in a.diagnostics):
        return "not compiled: the file has errors"
    from .compile import compile_program
    try:
        result = compile_program(a.prog)
    except Exception as e:     # a rule set that checks clean compiles; say so if not
        return f"not compiled: {e}"
    table = result.routes
    if result.rpc is not None and route.span in result.rpc.spans:
        from .explain_rpc import _decision
        return "rpc route: " + _decision(result.rpc.routes[result.rpc.spans.index(route.span)][1])
    for vh in table.describe():
        for r in vh["routes"]:
            if r["name"] == route.name and r["source"] == str(route.span):
                where = f'vhost {vh["name"]} ({", ".join(vh["domains"]) or "any domain"})'
                return f"{where}\n\n```json\n{json.dumps(r['action'], indent=2, default=str)}\n```"
    return "not served: this file is imported, or the route is shadowed"


def attribute_hover(name: str) -> str | None:
    base = name.split("[", 1)[0]
    if base in RPC_FIELDS:
        keyed = ' (keyed: `' + base + '["…"]`)' if RPC_FIELDS[base] is None else ""
        return f"**{base}**: `string`{keyed}, read in an rpc block's routes\n\n{RPC_FIELD_DOCS[base]}"
    attr = ATTRIBUTES.get(base)
    if attr is None:
        return None
    keyed = ' (keyed: `' + base + '["…"]`)' if attr.keyed is not None else ""
    return f"**{base}**: `{attr.type}`{keyed}, known from the {attr.phase} phase\n\n{attr.doc}"


def cluster_hover(name: str, clusters: dict[str, Any], cfg: str | None) -> str | None:
    c = clusters.get(name)
    if c is None:
        return None
    eps = "\n".join(f"- `{e.host}:{e.port}`" + (f" weight {e.weight}" if e.weight != 1 else "")
                    for e in c.endpoints) or "- (no endpoints: filled by discovery)"
    return f"**cluster {name}** ({c.lb}) from `{cfg}`\n\n{eps}"


# ---- the server ----
def _lsp_range(types: Any, span: Span) -> Any:
    line, col = max(span.line - 1, 0), max(span.column - 1, 0)
    if span.end_line and (span.end_line, span.end_column) > (span.line, span.column):
        end = types.Position(line=span.end_line - 1, character=span.end_column - 1)
    else:
        end = types.Position(line=line, character=col + 1)
    return types.Range(start=types.Position(line=line, character=col), end=end)


def build_server() -> Any:
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from mosnx import __version__
    server = LanguageServer("mosnx-mdsl", __version__)

    def safe(default: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            def run(ls: Any, params: Any) -> Any:
                try:
                    return fn(ls, params)
                except Exception:      # never take the editor's server down
                    log.exception("mosnx lsp: %s failed", fn.__name__)
                    return default
            run.__name__ = fn.__name__
            return run
        return wrap

    def overlay(ls: Any) -> dict[str, str]:
        return {uri_to_path(u): d.source for u, d in ls.workspace.text_documents.items()}

    def current(ls: Any, uri: str) -> Analysis:
        doc = ls.workspace.get_text_document(uri)
        return analyze(uri_to_path(uri), doc.source, overlay(ls))

    def publish(ls: Any, uri: str) -> None:
        a = current(ls, uri)
        out = []
        imports = _imports(a)
        for d in a.diagnostics:
            if d.span is None:
                continue
            span, message = d.span, d.message
            where = os.path.normpath(d.span.path)
            if where != a.path:     # a finding in an imported file: shown on its import
                if where not in imports:
                    continue
                span = imports[where]
                message = f"{os.path.basename(where)}:{d.span.line}:{d.span.column}: {d.message}"
            sev = types.DiagnosticSeverity.Warning if d.severity == "warning" else types.DiagnosticSeverity.Error
            out.append(types.Diagnostic(range=_lsp_range(types, span), message=message, code=d.code,
                                        severity=sev, source="mosnx"))
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=out))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @safe(None)
    def did_open(ls: Any, params: types.DidOpenTextDocumentParams) -> None:
        publish(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @safe(None)
    def did_change(ls: Any, params: types.DidChangeTextDocumentParams) -> None:
        publish(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    @safe(None)
    def did_save(ls: Any, params: types.DidSaveTextDocumentParams) -> None:
        publish(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @safe(None)
    def hover(ls: Any, params: types.HoverParams) -> types.Hover | None:
        uri, pos = params.text_document.uri, params.position
        text = ls.workspace.get_text_document(uri).source
        w = word_at(text, pos.line, pos.character)
        if w is None:
            return None
        word = w[0]
        a = current(ls, uri)
        md = attribute_hover(word)
        if md is None:
            cfg, clusters = load_clusters(a.path)
            md = cluster_hover(word, clusters, cfg)
        if md is None:
            for r, vhost in routes_of(a):
                if r.name_span.line - 1 == pos.line and r.name == word:
                    md = f"**route {r.name}**" + (f" in vhost {vhost}" if vhost else "") + \
                        f" ({r.span})\n\n" + route_summary(a, r)
        if md is None and word in consts_in_scope(a):
            c, where = consts_in_scope(a)[word]
            f = a.prog.files.get(where)
            line = f.line(c.span.line) if f is not None else None
            md = f"**const {word}** ({os.path.basename(where)}:{c.span.line})\n\n```mdsl\n{(line or '').strip()}\n```"
        if md is None and word in declared_clusters(a):
            md = f"**cluster {word}**, declared by `clusters` (no mosnx.yaml beside or above this file names it)"
        if md is None:
            return None
        rng = types.Range(start=types.Position(line=pos.line, character=w[1]),
                          end=types.Position(line=pos.line, character=w[2]))
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=md), range=rng)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=[".", " "]))
    @safe(None)
    def completion(ls: Any, params: types.CompletionParams) -> types.CompletionList:
        uri = params.text_document.uri
        a = current(ls, uri)
        K = types.CompletionItemKind
        items = [types.CompletionItem(label=n, kind=K.Field, detail=at.type, documentation=at.doc)
                 for n, at in ATTRIBUTES.items()]
        items += [types.CompletionItem(label=n, kind=K.Field, detail="string (rpc block)", documentation=doc)
                  for n, doc in RPC_FIELD_DOCS.items()]
        items += [types.CompletionItem(label=k, kind=K.Keyword) for k in KEYWORDS]
        _, clusters = load_clusters(a.path)
        items += [types.CompletionItem(label=c, kind=K.Module, detail="cluster")
                  for c in sorted(set(clusters) | declared_clusters(a))]
        items += [types.CompletionItem(label=c, kind=K.Constant, detail="const")
                  for c in sorted(consts_in_scope(a))]
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    @safe(None)
    def definition(ls: Any, params: types.DefinitionParams) -> types.Location | None:
        uri, pos = params.text_document.uri, params.position
        text = ls.workspace.get_text_document(uri).source
        w = word_at(text, pos.line, pos.character)
        if w is None:
            return None
        word = w[0]
        a = current(ls, uri)
        f = a.prog.files.get(a.path)
        if word.startswith('"') and f is not None:
            for it in f.items:
                if isinstance(it, A.Import) and it.span.line - 1 == pos.line:
                    from .load import _resolve
                    target = _resolve(a.path, it.path)
                    zero = types.Position(line=0, character=0)
                    return types.Location(uri=path_to_uri(target), range=types.Range(start=zero, end=zero))
            return None
        scope = consts_in_scope(a)
        if word in scope:
            c, where = scope[word]
            return types.Location(uri=path_to_uri(where), range=_lsp_range(types, c.span))
        cfg, clusters = load_clusters(a.path)
        cl = clusters.get(word)
        if cl is not None and cl.span is not None:
            return types.Location(uri=path_to_uri(cfg or cl.span.path), range=_lsp_range(types, cl.span))
        return None

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    @safe(None)
    def formatting(ls: Any, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
        uri = params.text_document.uri
        text = ls.workspace.get_text_document(uri).source
        try:
            new = format_text(text, uri_to_path(uri))
        except FormatBug:
            return None
        if not isinstance(new, str) or new == text:
            return [] if isinstance(new, str) else None
        lines = text.split("\n")
        end = types.Position(line=len(lines), character=0)
        return [types.TextEdit(range=types.Range(start=types.Position(line=0, character=0), end=end),
                               new_text=new)]

    return server


def main(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="mosnx lsp", description="Serve the .mdsl language server on "
                                 "standard input and output (the editor starts it).")
    ap.add_argument("--log-file", help="write the server's log here (standard output is the protocol)")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code in (0, None) else 2
    try:
        import pygls  # noqa: F401
    except ImportError:
        print("mosnx lsp needs pygls: pip install 'mosnx[lsp]'", file=sys.stderr)
        return 2
    if a.log_file:
        logging.basicConfig(filename=a.log_file, level=logging.INFO)
    # the filters and front ends a config names, as `mosnx check` has them (the
    # composition root, outside the typed packages)
    importlib.import_module("mosnx.plugins").load()
    build_server().start_io()
    return 0
