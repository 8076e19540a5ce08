"""The `rules:` front end: load, check and compile .mdsl files for one listener.

load_rules is what runtime's registry calls from build_snapshot(). It re-reads
every file on each call (a reload must see the current text), reports every
finding with its position into the BuildContext, and returns None when any is an
error, so the previous snapshot keeps serving.
"""
from __future__ import annotations

import os
from typing import Iterable

from mosnx.runtime.config.rpc import RPC_PROTOCOLS
from mosnx.runtime.diagnostics import Diagnostic
from mosnx.runtime.registry import BuildContext, RulesResult

from .check import check
from .compile import compile_program
from .load import Program, load


def analyze(paths: Iterable[str], clusters: set[str] | None = None,
            filters: set[str] | None = None,
            overlay: dict[str, str] | None = None, tracing: bool | None = None,
            rpc: bool | None = None) -> tuple[Program, list[Diagnostic]]:
    """Load and check `paths`; the Program and every finding (errors and warnings).
    `overlay` holds text to read instead of some files (dsl.load.load); `tracing`
    and `rpc` say what the listener is, when known (dsl.check.check)."""
    prog = load(tuple(paths), overlay)
    diags = list(prog.diagnostics)
    if not any(d.severity == "error" for d in diags):
        diags.extend(check(prog, clusters, filters, tracing, rpc))
    return prog, diags


def load_rules(paths: tuple[str, ...], ctx: BuildContext) -> RulesResult | None:
    lc = ctx.listener
    tracing = rpc = None
    if lc is not None:
        tracing = getattr(lc, "tracing", None) is not None
        rpc = getattr(lc, "protocol", None) in RPC_PROTOCOLS
    prog, diags = analyze(paths, set(ctx.clusters), set(ctx.filters), tracing=tracing, rpc=rpc)
    ctx.sources.extend(prog.sources)
    # a folder's own mtime changes when a rule file is added or removed there
    ctx.sources.extend(p for p in paths if os.path.isdir(p))
    ctx.diagnostics.extend(diags)
    if any(d.severity == "error" for d in diags):
        return None
    return compile_program(prog, ctx.filters, ctx.services)
