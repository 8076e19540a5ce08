"""`mosnx check`: lint .mdsl files and folders, and validate YAML configs, without serving.

Exit status: 0 clean, 1 findings (errors or warnings), 2 usage or internal error.
Rule files given together are checked as one set, so cross-file findings (a
domain served twice, a duplicate vhost) show. A YAML config is built with
runtime.build_snapshot, which runs the same rules front end with the config's
clusters and filters. Never prints a traceback for a problem in the input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from mosnx.runtime.diagnostics import ConfigError, Diagnostic, source_line

FORMATS = ("text", "json", "sarif", "github")
TOOL_URI = "https://github.com/mosnx/mosnx/blob/main/docs/mdsl.md"


class _Usage(Exception):
    pass


def main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    ap = argparse.ArgumentParser(prog="mosnx check", description="Lint .mdsl rules and mosnx YAML configs.")
    ap.add_argument("paths", nargs="+", help=".mdsl files, folders of them, or .yaml configs")
    ap.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:       # argparse has printed the usage already
        return 0 if e.code in (0, None) else 2
    try:
        diags = run(args.paths)
    except _Usage as e:
        print(f"mosnx check: {e}", file=err)
        return 2
    except Exception as e:  # an internal error: say so, exit 2, no traceback for the user
        print(f"mosnx check: internal error: {type(e).__name__}: {e}", file=err)
        return 2
    diags.sort(key=lambda d: (d.span.path, d.span.line, d.span.column) if d.span else ("", 0, 0))
    out.write(render(diags, args.format))
    return 1 if diags else 0


def run(paths: list[str]) -> list[Diagnostic]:
    from .compile import compile_program
    from .rules import analyze
    diags: list[Diagnostic] = []
    rules: list[str] = []
    for p in paths:
        if not os.path.exists(p):
            raise _Usage(f"{p}: no such file or folder")
        if p.endswith((".yaml", ".yml")):
            diags.extend(check_config(p))
        else:
            rules.append(p)
    if rules:
        prog, found = analyze(rules)
        diags.extend(found)
        if not any(d.severity == "error" for d in found):
            compile_program(prog)   # a rule set that checks clean must also compile
    return diags


def check_config(path: str) -> list[Diagnostic]:
    # the CLI (the composition root) has registered every front end and filter;
    # this package registers only its own rules loader
    import mosnx.dsl  # noqa: F401
    from mosnx.runtime import registry
    from mosnx.runtime.config import admin_exposure
    from mosnx.runtime.snapshot import build_snapshot

    # the build keeps only errors: the rules' warnings are taken as the rules loader
    # reports them, so each rule set is parsed and checked once
    warnings: dict[Diagnostic, None] = {}
    loader = registry.rules_loader("mdsl")

    def keep_warnings(paths, ctx):
        start = len(ctx.diagnostics)
        result = loader(paths, ctx)  # type: ignore[misc]  # this package registers "mdsl"
        warnings.update((d, None) for d in ctx.diagnostics[start:] if d.severity == "warning")
        return result

    if loader is not None:
        registry.register_rules_loader("mdsl", keep_warnings)
    try:
        snap = build_snapshot(path)
    except ConfigError as e:
        return [_with_source(d) for d in e.diagnostics]
    except ModuleNotFoundError as e:
        raise _Usage(f"{path}: cannot load YAML configs here ({e})") from None
    finally:
        if loader is not None:
            registry.register_rules_loader("mdsl", loader)
    found = list(warnings)
    exposed = admin_exposure(snap.config.admin)
    if exposed is not None:
        found.insert(0, _with_source(exposed))
    return found


def _with_source(d: Diagnostic) -> Diagnostic:
    if d.source_line is not None or d.span is None or d.span.line < 1:
        return d
    return Diagnostic(d.span, d.code, d.message, d.severity, source_line(d.span.path, d.span.line), d.fix)


# ---- output formats ----
def render(diags: list[Diagnostic], fmt: str) -> str:
    return {"text": _text, "json": _json, "sarif": _sarif, "github": _github}[fmt](diags)


def _text(diags: list[Diagnostic]) -> str:
    if not diags:
        return "All checks passed!\n"
    errors = sum(d.severity == "error" for d in diags)
    warnings = len(diags) - errors
    parts = [f"{errors} error{'s' if errors != 1 else ''}"] if errors else []
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    body = "\n".join(d.render() for d in diags)
    return f"{body}\nFound {' and '.join(parts)}.\n"


def _record(d: Diagnostic) -> dict:
    s = d.span
    return {
        "path": s.path if s else None, "line": s.line if s else None, "column": s.column if s else None,
        "end_line": (s.end_line or s.line) if s else None, "end_column": (s.end_column or s.column) if s else None,
        "code": d.code, "severity": d.severity, "message": d.message,
        **({"fix": d.fix} if d.fix else {}),
    }


def _json(diags: list[Diagnostic]) -> str:
    return json.dumps([_record(d) for d in diags], indent=2) + "\n"


def _sarif(diags: list[Diagnostic]) -> str:
    codes = sorted({d.code for d in diags})
    results = []
    for d in diags:
        r: dict = {"ruleId": d.code, "level": "warning" if d.severity == "warning" else "error",
                   "message": {"text": d.message}}
        if d.span:
            s = d.span
            region = {"startLine": s.line, "startColumn": s.column}
            if s.end_line:
                region.update(endLine=s.end_line, endColumn=s.end_column)
            r["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": s.path}, "region": region}}]
        results.append(r)
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "mosnx check", "informationUri": TOOL_URI,
                                "rules": [{"id": c, "helpUri": f"{TOOL_URI}#{c.lower()}"} for c in codes]}},
            "results": results,
        }],
    }
    return json.dumps(doc, indent=2) + "\n"


def _gh_escape(s: str, prop: bool = False) -> str:
    s = s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        s = s.replace(":", "%3A").replace(",", "%2C")
    return s


def _github(diags: list[Diagnostic]) -> str:
    lines = []
    for d in diags:
        kind = "warning" if d.severity == "warning" else "error"
        props = [f"title={_gh_escape(d.code, True)}"]
        if d.span:
            s = d.span
            props = [f"file={_gh_escape(s.path, True)}", f"line={s.line}", f"col={s.column}"]
            if s.end_line:
                props += [f"endLine={s.end_line}", f"endColumn={s.end_column}"]
            props.append(f"title={_gh_escape(d.code, True)}")
        lines.append(f"::{kind} {','.join(props)}::{_gh_escape(d.code + ' ' + d.message)}")
    return "".join(line + "\n" for line in lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
