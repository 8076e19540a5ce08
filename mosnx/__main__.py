"""The mosnx command line: run, check, convert, demo-upstream, docs, version.

No input a user can write makes this print a traceback. Every mistake in a
config or rule file is a positioned diagnostic from its front end; should an
unexpected exception still escape one (a bug of mosnx), `check` and `run` say
so in one line naming the file, and exit EXIT_BUG (the traceback only with
--debug, or for run also at --log-level debug).

Exit status of `check`: 0 clean, 1 findings (errors or warnings), 2 usage
error, 3 a bug. `run`: 0 after a drain, 1 a config that does not build or an
address (listener, admin, demo upstream) that cannot be bound or that another
mosnx serves, 2 usage error, 3 a bug, 128 + the signal when stopped by a signal
while starting or by a second one while draining (130 for Ctrl-C).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
import traceback

from mosnx import __version__

EXIT_FINDINGS, EXIT_USAGE, EXIT_BUG = 1, 2, 3
log = logging.getLogger("mosnx")


def _bug(cmd: str, what: str, e: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(e, file=sys.stderr)
    msg = " ".join(str(e).split())     # one line, whatever the exception's text holds
    print(f"mosnx {cmd}: bug: {what}: {type(e).__name__}: {msg} \u2014 please report", file=sys.stderr)
    return EXIT_BUG


def _run(args) -> int:
    from mosnx import envoy_flags
    try:
        flags = envoy_flags.take(args)
        if args.config is not None and not os.path.exists(args.config):
            print(f"mosnx: {args.config}: no such file", file=sys.stderr)
            return EXIT_USAGE
        args.config = envoy_flags.effective_config(args.config, flags)
    except envoy_flags.UsageError as e:
        print(f"mosnx run: {e}", file=sys.stderr)
        return EXIT_USAGE
    debug = args.debug or args.log_level == "debug"
    try:
        return _serve(args, debug, flags)
    except KeyboardInterrupt:     # Ctrl-C before the supervisor's own handler (importing)
        return 128 + signal.SIGINT


def _serve(args, debug: bool, flags) -> int:
    from mosnx import plugins
    plugins.load()
    import uvloop
    from mosnx.proxy.supervisor import StartupError, Supervisor
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s [main] %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ["MOSNX_LOG_LEVEL"] = args.log_level.upper()
    for name, level in flags.component_levels.items():
        logging.getLogger(f"mosnx.{name}").setLevel(level.upper())
    for note in flags.notes:
        log.debug("%s", note)
    try:
        empty = empty_config(args.config)
        if empty is not None:
            log.warning("%s", empty)
        for w in envoy_warnings(args.config):      # what an Envoy bootstrap sets that is not served
            log.warning("%s", w)
        sup = Supervisor(args.config, args.workers, plugins.worker_entry, takeover=args.takeover)
        sup.drain_time = flags.drain_time_s
        uvloop.install()
        return asyncio.run(sup.run())
    except StartupError as e:
        print(f"mosnx run: {e}", file=sys.stderr)
        return e.code
    except Exception as e:   # not a mistake in the config: those are diagnostics, exit 1
        return _bug("run", args.config, e, debug)


# ---- check ----
RULE_ITEMS = frozenset({"import", "const", "clusters", "vhost", "on", "route"})
_YAML_START = re.compile(r"""(---|%|\{|\[|-\s|["']?[\w.-]+["']?\s*:(\s|$))""")


def kind_of(path: str) -> str:
    """"config" or "rules", by content: a YAML or JSON document (a `key:`, `{`, `---`
    first) is a config; a file opening with an .mdsl item keyword is rules. Only a file
    that is neither, empty, or unreadable (its loader reports why) goes by extension."""
    if os.path.isdir(path):
        return "rules"
    ext = os.path.splitext(path)[1].lower()
    by_ext = "rules" if ext == ".mdsl" else "config" if ext in (".yaml", ".yml", ".json") else None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
    except OSError:
        return by_ext or "rules"
    for line in head.lstrip("\ufeff").splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        word = re.match(r"[A-Za-z_]\w*", s)
        if word and word.group() in RULE_ITEMS and not re.match(r"\w+\s*:(\s|$)", s):
            return "rules"
        if _YAML_START.match(s):
            return "config"
        return by_ext or "rules"
    return by_ext or "config"      # an empty file: a config that serves nothing, said in a warning


def empty_config(path: str):
    """The C205 warning for a config that loads but declares no listener (nor a control
    plane to send some), else None."""
    from mosnx.runtime.config.loader import load_config
    from mosnx.runtime.diagnostics import ConfigError, Diagnostic, Span
    try:
        cfg = load_config(path)
    except ConfigError:
        return None             # its errors are reported where it is built
    if cfg.listeners or cfg.xds is not None:
        return None
    return Diagnostic(Span(path, 1, 1), "C205", "this config declares no listeners: it serves nothing",
                      "warning")


def envoy_warnings(path: str) -> list:
    """What an Envoy bootstrap sets that mosnx does not serve (warnings), or [] for
    any other config."""
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    from mosnx.runtime.config.loader import _is_envoy
    if not _is_envoy(data):
        return []
    from mosnx.runtime.diagnostics import ConfigError
    from mosnx.runtime.envoy.bootstrap import load_bootstrap_text
    try:
        return load_bootstrap_text(text, path)[1]
    except ConfigError:
        return []


class Bug(Exception):
    """An unexpected exception while checking `what` (a file, or a rule set's files)."""

    def __init__(self, what: str, exc: Exception):
        super().__init__(f"{what}: {type(exc).__name__}: {exc}")
        self.what, self.exc = what, exc


def check_paths(paths: list[str]) -> list:
    """Every finding for `paths`: configs are built as `run` builds them, rule files are
    checked together as one set and, when clean, compiled. A mistake in the input is a
    Diagnostic; anything else that escapes is raised as Bug naming the file."""
    from mosnx.dsl import lint
    from mosnx.dsl.compile import compile_program
    from mosnx.dsl.rules import analyze
    diags: list = []
    rules: list[str] = []
    for p in paths:
        if p.endswith("_test.yaml") and os.path.isfile(p):     # rule tests (mosnx test)
            from mosnx.dsl.testing import check_file
            diags.extend(check_file(p))
            continue
        if kind_of(p) == "rules":
            rules.append(p)
            continue
        try:
            found = lint.check_config(p)
            if not any(d.severity == "error" for d in found):
                found.extend(envoy_warnings(p))
                found.extend(filter(None, [empty_config(p)]))
        except lint._Usage:
            raise
        except Exception as e:
            raise Bug(p, e) from e
        diags.extend(found)
    if rules:
        try:
            prog, found = analyze(rules)
            if not any(d.severity == "error" for d in found):
                compile_program(prog)   # a rule set that checks clean must also compile
        except Exception as e:
            raise Bug(", ".join(rules), e) from e
        diags.extend(found)
    return diags


def _check(args) -> int:
    from mosnx import plugins
    plugins.load()
    from mosnx.dsl import lint
    ap = argparse.ArgumentParser(prog="mosnx check",
                                 description="Lint .mdsl rules and validate mosnx configs (YAML or JSON).")
    ap.add_argument("paths", nargs="+", help=".mdsl files, folders of them, or configs")
    ap.add_argument("--format", choices=lint.FORMATS, default="text", help="output format (default: text)")
    ap.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    try:
        a = ap.parse_args(args.rest)
    except SystemExit as e:       # argparse has printed the usage already
        return 0 if e.code in (0, None) else EXIT_USAGE
    for p in a.paths:
        if not os.path.exists(p):
            print(f"mosnx check: {p}: no such file or folder", file=sys.stderr)
            return EXIT_USAGE
    try:
        diags = check_paths(a.paths)
    except lint._Usage as e:
        print(f"mosnx check: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Bug as b:
        return _bug("check", b.what, b.exc, a.debug)
    diags.sort(key=lambda d: (d.span.path, d.span.line, d.span.column) if d.span else ("", 0, 0))
    sys.stdout.write(lint.render(diags, a.format))
    return EXIT_FINDINGS if diags else 0


def _demo(args) -> int:
    import uvloop
    from mosnx.proxy.demo import start_demo

    async def main():
        for a in args.listen:
            host, _, port = a.rpartition(":")
            await start_demo(host or "127.0.0.1", int(port))
            print(f"demo upstream on http://{host or '127.0.0.1'}:{port}", flush=True)
        await asyncio.Event().wait()
    uvloop.install()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


# ---- convert ----
def _convert(args) -> int:
    """An Envoy bootstrap as mosnx.yaml (stdout, or -o FILE) and the .mdsl files its
    routes need (beside -o's file, else in the current folder)."""
    import yaml
    from mosnx.dsl import lint
    from mosnx.runtime.diagnostics import ConfigError
    from mosnx.runtime.envoy.bootstrap import load_bootstrap_resources
    from mosnx.runtime.envoy.convert import convert
    try:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print(f"mosnx convert: {args.file}: cannot read: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config, _msg, resources = load_bootstrap_resources(text, args.file)
    except ConfigError as e:
        sys.stderr.write(lint.render(e.diagnostics, "text"))
        return EXIT_FINDINGS
    except Exception as e:
        return _bug("convert", args.file, e, args.debug)
    out_dir = os.path.dirname(os.path.abspath(args.output)) if args.output else os.getcwd()
    stem = os.path.splitext(os.path.basename(args.output or args.file))[0]
    result = convert(config, resources, stem)
    for name, rules in result.rules.items():
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(rules)
        print(f"mosnx convert: wrote {path}", file=sys.stderr)
    text = f"# converted from {os.path.basename(args.file)} by mosnx convert\n" + \
        yaml.safe_dump(result.yaml, sort_keys=False, allow_unicode=True)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"mosnx convert: wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    for note in result.notes:
        print(f"mosnx convert: note: {note}", file=sys.stderr)
    return 0


# ---- docs ----
DOCS = ("config", "diagnostics", "metrics")


def _docs(args) -> int:
    """Print a reference document, generated from the declarations the code runs on."""
    from mosnx import plugins
    plugins.load()
    if args.doc == "config":
        from mosnx.runtime.config.reference import render
    elif args.doc == "diagnostics":
        from mosnx.reference.diagnostics import render
    else:
        from mosnx.reference.metrics import render
    sys.stdout.write(render())
    return 0


_TOOLS = {"fmt": "rewrite .mdsl files in the canonical layout (--check, --diff)",
          "lsp": "serve the .mdsl language server on standard input and output",
          "schema": "print the JSON Schema of mosnx's YAML config"}


def _tool(name: str, rest: list[str]) -> int:
    if name == "fmt":
        from mosnx.dsl.fmt import main as fmt_main
        return fmt_main(rest)
    if name == "lsp":
        from mosnx.dsl.lsp import main as lsp_main
        return lsp_main(rest)
    from mosnx.runtime.config.json_schema import main as schema_main
    return schema_main(rest)


def run_parser() -> argparse.ArgumentParser:
    """`mosnx run`'s flags: mosnx's own and Envoy's (envoy_flags)."""
    from mosnx import envoy_flags
    r = argparse.ArgumentParser(prog="mosnx run", description="Serve a configuration (mosnx YAML or an Envoy "
                                "bootstrap). Without a subcommand, `mosnx -c FILE ...` is `mosnx run`.",
                                allow_abbrev=False)
    r.add_argument("-c", "--config", "--config-path", dest="config", default=None,
                   help="the configuration file (mosnx YAML, or an Envoy bootstrap in YAML or JSON)")
    r.add_argument("--workers", type=int, default=None, help="worker processes (default: config, else one per core)")
    r.add_argument("-l", "--log-level", default="info",
                   help="debug, info, warning, error (and Envoy's trace, warn, critical, off)")
    r.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    r.add_argument("--takeover", action="store_true",
                   help="share the listeners of another mosnx that serves them (it keeps a share of the "
                        "connections until it stops) instead of refusing to start")
    envoy_flags.add_flags(r)
    return r


def _parse_run(argv: list[str]) -> argparse.Namespace | int:
    from mosnx import envoy_flags
    try:
        args, extra = run_parser().parse_known_args(argv)
    except SystemExit as e:       # argparse has printed the usage already
        return 0 if e.code in (0, None) else EXIT_USAGE
    if extra:
        print(f"mosnx run: {envoy_flags.unknown(extra)}", file=sys.stderr)
        return EXIT_USAGE
    if args.config is None and args.config_yaml is None:
        print("mosnx run: a config is needed: -c FILE (or --config-yaml)", file=sys.stderr)
        return EXIT_USAGE
    args.fn = _run
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"] or (argv[:1] and argv[0].startswith("-")
                               and argv[0] not in ("--version", "-h", "--help")):
        # `mosnx -c FILE ...` (Envoy's form, as Istio's agent starts it) is `mosnx run`
        parsed = _parse_run(argv[1:] if argv[:1] == ["run"] else argv)
        return parsed if isinstance(parsed, int) else _run(parsed)
    p = argparse.ArgumentParser(prog="mosnx", description="A programmable cloud-native network proxy.")
    p.add_argument("--version", action="version", version=f"mosnx {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="serve a configuration (mosnx run --help; Envoy's flags too)", add_help=False)
    c = sub.add_parser("check", help="lint .mdsl rules and validate YAML configs without serving",
                       add_help=False)
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(fn=_check)
    d = sub.add_parser("demo-upstream", help="run the demo upstream HTTP server")
    d.add_argument("--listen", action="append", default=[], help="host:port (repeatable)")
    d.set_defaults(fn=_demo)
    g = sub.add_parser("docs", help="print a generated reference: config, diagnostics or metrics")
    g.add_argument("doc", choices=DOCS)
    g.set_defaults(fn=_docs)
    cv = sub.add_parser("convert", help="rewrite an Envoy v3 bootstrap as mosnx YAML (+ .mdsl rules)")
    cv.add_argument("file", help="the Envoy bootstrap (YAML or JSON)")
    cv.add_argument("-o", "--output", default=None, help="write the YAML here (and the .mdsl files beside it) "
                    "instead of to standard output")
    cv.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    cv.set_defaults(fn=_convert)
    from mosnx import tooling
    tooling.add_commands(sub)
    for name, text in _TOOLS.items():   # each parses its own flags
        sub.add_parser(name, help=text, add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    v = sub.add_parser("version", help="print the version")
    v.set_defaults(fn=lambda a: print(f"mosnx {__version__}") or 0)
    if argv[:1] and argv[0] in _TOOLS:
        return _tool(argv[0], argv[1:])
    if argv[:1] == ["check"]:
        # the linter owns its own flags (--format, ...)
        args = argparse.Namespace(rest=argv[1:], fn=_check)
    elif argv[:1] and argv[0] in tooling.COMMANDS:      # explain, test: their own flags too
        return tooling.COMMANDS[argv[0]](argv[1:])
    else:
        args = p.parse_args(argv)
        if args.cmd == "demo-upstream" and not args.listen:
            args.listen = ["127.0.0.1:9000"]
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
