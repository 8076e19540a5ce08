"""The mosnx command line: run, check, demo-upstream, version."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from mosnx import __version__


def _run(args) -> int:
    from mosnx import plugins
    plugins.load()
    import uvloop
    from mosnx.proxy.supervisor import Supervisor
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s [main] %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ["MOSNX_LOG_LEVEL"] = args.log_level.upper()
    if not os.path.exists(args.config):
        print(f"mosnx: {args.config}: no such file", file=sys.stderr)
        return 2
    sup = Supervisor(args.config, args.workers, plugins.worker_entry)
    uvloop.install()
    return asyncio.run(sup.run())


def _check(args) -> int:
    from mosnx import plugins
    plugins.load()
    from mosnx.dsl import lint
    return lint.main(args.rest)


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="mosnx", description="A programmable cloud-native network proxy.")
    p.add_argument("--version", action="version", version=f"mosnx {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="serve a configuration")
    r.add_argument("-c", "--config", required=True, help="the YAML configuration file")
    r.add_argument("--workers", type=int, default=None, help="worker processes (default: config, else one per core)")
    r.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    r.set_defaults(fn=_run)
    c = sub.add_parser("check", help="lint .mdsl rules and validate YAML configs without serving",
                       add_help=False)
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(fn=_check)
    d = sub.add_parser("demo-upstream", help="run the demo upstream HTTP server")
    d.add_argument("--listen", action="append", default=[], help="host:port (repeatable)")
    d.set_defaults(fn=_demo)
    v = sub.add_parser("version", help="print the version")
    v.set_defaults(fn=lambda a: print(f"mosnx {__version__}") or 0)
    if argv[:1] == ["check"]:
        # the linter owns its own flags (--format, ...)
        args = argparse.Namespace(rest=argv[1:], fn=_check)
    else:
        args = p.parse_args(argv)
        if args.cmd == "demo-upstream" and not args.listen:
            args.listen = ["127.0.0.1:9000"]
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
