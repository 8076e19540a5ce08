"""`mosnx explain` and `mosnx test`: the composition root's side of rule tooling.

Builds the snapshot exactly as `run` does (runtime.build_snapshot, every front end
and filter registered by plugins.load) and lends dsl.explain what only the proxy
core knows: the listener's path normalisation and the route's rewrite, the core's
own code, so an explanation never follows a second implementation of either.

Exit status: explain 0, or 2 for bad input (a request that cannot be parsed, a
config that does not build); test 0 all passed, 1 a failure (or, with
--fail-uncovered, something uncovered), 2 bad input. Never a traceback for input a
user wrote; an unexpected exception (a bug of mosnx) is one line and exit 3, as
`mosnx check` says it.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from types import SimpleNamespace

EXIT_FAIL, EXIT_USAGE = 1, 2


def core():
    from mosnx.dsl.explain import Core
    from mosnx.proxy.codec.path import PathError, PathNormalizer
    from mosnx.proxy.stream.decide import DecideMixin

    def normalize(listener, method: str, target: str):
        try:
            return PathNormalizer.of(listener.config.path_normalization).target(method, target)
        except PathError as e:
            raise ValueError(e.detail) from None

    def rewrite(ctx, action) -> None:
        DecideMixin._rewrite(SimpleNamespace(ctx=ctx), action)   # type: ignore[arg-type]
    return Core(normalize, rewrite)


def snapshot(path: str):
    """The snapshot `run` would serve, or the diagnostics that stop it."""
    from mosnx import plugins
    plugins.load()
    from mosnx.runtime.snapshot import build_snapshot
    return build_snapshot(path)


def _explain(argv: list[str]) -> int:
    from mosnx.dsl.explain import (Explainer, RequestError, UpstreamResponse, parse_header, parse_request,
                                   render_text)
    ap = argparse.ArgumentParser(prog="mosnx explain", description="Show what the compiled config does with "
                                 "one request: no sockets, no upstream.")
    ap.add_argument("-c", "--config", required=True, help="mosnx YAML or an Envoy bootstrap")
    ap.add_argument("request", help="'METHOD URL', e.g. 'GET https://shop.example.com/api/items?id=3'")
    ap.add_argument("-H", "--header", action="append", default=[], help="'name: value' (repeatable)")
    ap.add_argument("--source", default=None, help="the client's IP address (default 127.0.0.1)")
    ap.add_argument("--http2", action="store_true", help="the request comes over HTTP/2")
    ap.add_argument("--listener", default=None, help="the listener, when several could take it")
    ap.add_argument("--response", type=int, default=None, metavar="STATUS",
                    help="run the response phase as if the upstream answered STATUS")
    ap.add_argument("--response-header", action="append", default=[], help="a header of that response")
    ap.add_argument("--cluster", default=None, help="for a split: explain as if this arm were picked")
    ap.add_argument("--rpc", action="store_true", help="explain an RPC call on a bolt or dubbo listener: "
                    "the request is 'SERVICE METHOD', -H gives attachments (':version: 1.0', ':group: g')")
    ap.add_argument("--format", choices=("text", "json"), default="text")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code in (0, None) else EXIT_USAGE
    if a.rpc:
        return _explain_rpc(a)
    try:
        req = parse_request(a.request, a.header, a.source, a.http2)
        resp = None
        if a.response is not None:
            if not 100 <= a.response <= 599:
                raise RequestError(f"--response must be a status 100..599, not {a.response}", "--response")
            resp = UpstreamResponse(a.response, [parse_header(h, "--response-header") for h in a.response_header])
    except RequestError as e:
        print(f"mosnx explain: {e}", file=sys.stderr)
        return EXIT_USAGE
    snap, failed = _explain_snapshot(a)
    if snap is None:
        return failed
    try:
        ex = Explainer(snap, core()).explain(req, a.listener, resp, a.cluster)
    except RequestError as e:
        print(f"mosnx explain: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:      # not the input's fault: a bug, said in one line
        return _bug("explain", a.config, e)
    _write(json.dumps(ex.json(), indent=2) + "\n" if a.format == "json" else render_text(ex))
    return 0


def _explain_snapshot(a: argparse.Namespace) -> tuple[Any, int]:
    """The snapshot of the config explain reads, or None and the exit status (a config
    error shown as `mosnx check` shows it; a bug in one line)."""
    from mosnx.dsl import lint
    from mosnx.runtime.diagnostics import ConfigError
    try:
        return snapshot(a.config), 0
    except ConfigError as e:
        sys.stderr.write(lint.render(e.diagnostics, "text"))
        return None, EXIT_USAGE
    except Exception as e:
        return None, _bug("explain", a.config, e)


def _explain_rpc(a: argparse.Namespace) -> int:
    from mosnx.dsl.explain_rpc import call_headers, explain_call, render_call
    from mosnx.dsl.request import RequestError
    try:
        headers = call_headers(a.request, a.header)
    except RequestError as e:
        print(f"mosnx explain: {e}", file=sys.stderr)
        return EXIT_USAGE
    snap, failed = _explain_snapshot(a)
    if snap is None:
        return failed
    try:
        ex = explain_call(snap, a.listener, headers)
    except RequestError as e:
        print(f"mosnx explain: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        return _bug("explain", a.config, e)
    _write(json.dumps(ex, indent=2) + "\n" if a.format == "json" else render_call(ex))
    return 0


def _write(text: str) -> None:
    """Standard output, which a pager or `head` may close early: that is no error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _test(argv: list[str]) -> int:
    from mosnx.dsl import testing
    ap = argparse.ArgumentParser(prog="mosnx test", description="Run the rule tests of *_test.yaml files.")
    ap.add_argument("paths", nargs="*", default=["."], help="test files, or folders searched for *_test.yaml")
    ap.add_argument("--format", choices=("text", "json", "junit"), default="text")
    ap.add_argument("--coverage", action="store_true", help="list routes, when branches and split arms no "
                    "test reached")
    ap.add_argument("--fail-uncovered", action="store_true", help="exit 1 when --coverage finds anything unreached")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code in (0, None) else EXIT_USAGE
    try:
        run = testing.run_paths(a.paths, snapshot, core())
    except Exception as e:      # not the input's fault: a bug, said in one line
        return _bug("test", " ".join(a.paths), e)
    _write(testing.render(run, a.format, a.coverage))
    if run.errors:
        return EXIT_USAGE
    if run.failed or (a.coverage and a.fail_uncovered and run.uncovered()):
        return EXIT_FAIL
    return 0


def _bug(cmd: str, what: str, e: Exception) -> int:
    from mosnx.__main__ import _bug as said
    return said(cmd, what, e, False)


def add_commands(sub) -> None:
    """`explain` and `test` in mosnx's subcommands; each parses its own flags."""
    for name, fn, text in (("explain", _explain, "show what the config does with one request"),
                           ("test", _test, "run rule tests (*_test.yaml), with --coverage")):
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(fn=lambda args, fn=fn: fn(args.rest))


COMMANDS = {"explain": _explain, "test": _test}
