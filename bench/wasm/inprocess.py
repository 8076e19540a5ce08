#!/usr/bin/env python3
"""A WASM filter's own cost per request, without sockets.

    python bench/wasm/inprocess.py [--requests 20000] [--repeats 7] [--inflight 32] [--filters noop,header]
    python bench/wasm/inprocess.py --opcodes [--requests 500]   # bytecode operations per request
    python bench/wasm/inprocess.py --server [--opcodes]        # the whole HTTP/1.1 path around it
    python bench/wasm/inprocess.py --filters header --count 2000   # N requests and stop, for
        valgrind --tool=callgrind (instructions per request: --count 2000 minus --count 1000, over 1000)

Drives the filter through the hooks the core calls for a proxied GET (request
headers, the empty request body, response headers, a one-chunk response body,
log), as bench/wasm/run.py's wrk load does, and reports µs per request per hook:
the best of `repeats` rounds, since a shared machine only ever adds time. The
difference between this and the CPU per request run.py measures is what the
server around the filter pays (cold caches, wake-ups of the other side).

`--opcodes` counts the Python bytecode operations the hooks run (host functions
called back from the guest included), by function and by hook, and the calls
into the guest. Unlike timings these counts are deterministic, so they compare
two versions of the host on a busy machine; the guest's own time does not
show in them (use `perf record` for that).

`--server` runs the whole HTTP/1.1 proxy path in process instead (bench/h1_inprocess.py's
fake transports, the filter on the listener), with no filter first: what the
filter costs there, pipeline included.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import common

FILTERS = {
    "noop": ("noop.wasm", "noop", None),
    "header": ("add_header.wasm", "add_header", {"value": "bench"}),
}
HOOKS = ("on_request", "on_request_body", "on_response", "on_response_body", "on_log")


def make(module: str, root_id: str, config: dict | None):
    from mosnx.runtime import Store
    from mosnx.runtime.registry import BuildContext, Services
    from mosnx.wasm import load
    ctx = BuildContext(config=None, listener=None, clusters=None, filters={},
                       services=Services(stats=Store()))
    opts = {"module": str(common.module_path(module)), "root_id": root_id}
    if config is not None:
        opts["config"] = json.dumps(config)
    return load("bench", opts, ctx, base_dir=str(common.REPO))


def run(f, n: int, inflight: int) -> list[int]:
    """ns spent in each hook over n requests, `inflight` streams open at a time: each
    request's log hook runs once `inflight - 1` later requests have started, as
    under a load of that many connections."""
    from mosnx.runtime import Headers, RequestHead, ResponseHead, StreamContext
    pc = time.perf_counter_ns
    t = [0] * len(HOOKS)
    req = [("host", "127.0.0.1:8080"), ("user-agent", "wrk"), ("accept", "*/*")]
    resp = [("server", "nginx"), ("content-type", "text/plain"), ("content-length", "6")]
    body = b"hello\n"
    live = deque()
    for _ in range(n):
        ctx = StreamContext(RequestHead("GET", "/", Headers.from_pairs(req)),
                            source=("127.0.0.1", 40000), destination=("127.0.0.1", 8080))
        ctx.request_bodyless = True
        a = pc()
        f.on_request(ctx)
        b = pc()
        f.on_request_body(ctx, b"", True)
        c = pc()
        ctx.response = ResponseHead(200, Headers.from_pairs(resp))
        d = pc()
        f.on_response(ctx)
        e = pc()
        f.on_response_body(ctx, body, True)
        g = pc()
        t[0] += b - a
        t[1] += c - b
        t[2] += e - d
        t[3] += g - e
        live.append(ctx)
        if len(live) == inflight:
            g = pc()
            f.on_log(live.popleft())
            t[4] += pc() - g
    while live:
        g = pc()
        f.on_log(live.popleft())
        t[4] += pc() - g
    return t


class Counting:
    """Wraps a filter: its hooks run under a bytecode tracer, counted by function and
    by hook; `guest` counts top-level and nested calls into wasm."""

    def __init__(self, f, skip=()):
        self.f = f
        self.by_func: collections.Counter = collections.Counter()
        self.by_hook: collections.Counter = collections.Counter()
        self.guest = 0
        counts = self.by_func
        hook = [""]
        by_hook = self.by_hook

        skip = {fn.__code__ for fn in skip}

        def trace(frame, event, arg):
            if frame.f_code in skip:
                return None
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            if event == "opcode":
                co = frame.f_code
                counts["/".join(Path(co.co_filename).parts[-2:]) + ":" + co.co_name] += 1
                by_hook[hook[0]] += 1
            return trace

        def wrap(name):
            fn = getattr(f, name)

            def traced(*args):
                hook[0] = name
                sys.settrace(trace)
                try:
                    return fn(*args)
                finally:
                    sys.settrace(None)
            return traced
        for h in HOOKS:
            setattr(self, h, wrap(h))


def opcodes(name: str, f, n: int, inflight: int) -> None:
    from mosnx.wasm import fastcall
    calls = [0]
    raw = fastcall._call_prebuilt

    def counted(*a):
        calls[0] += 1
        return raw(*a)
    c = Counting(f, skip=(counted,))
    run(c, 50, inflight)            # warm: first-time paths are not per request
    c.by_func.clear()
    c.by_hook.clear()
    # the generated callers captured the C function when they were made: restart
    # the VM with the counting one in place
    fastcall._call_prebuilt = counted
    try:
        f.vm.start()
        run(c, 50, inflight)
        c.by_func.clear()
        c.by_hook.clear()
        calls[0] = 0
        run(c, n, inflight)
    finally:
        fastcall._call_prebuilt = raw
    total = sum(c.by_func.values())
    print(f"{name}: {total / n:.0f} bytecode operations and {calls[0] / n:.1f} calls into wasm per request")
    print("  by hook: " + ", ".join(f"{h} {c.by_hook[h] / n:.0f}" for h in HOOKS))
    for fn, k in c.by_func.most_common(30):
        print(f"  {k / n:8.1f}  {fn}")


def h1_inprocess():
    import importlib.util
    spec = importlib.util.spec_from_file_location("mosnx_h1_inprocess", common.REPO / "bench" / "h1_inprocess.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def server(names: list[str], n: int | None, repeats: int, count_opcodes: bool) -> None:
    """The whole proxied GET in process, with no filter and with each filter."""
    h1 = h1_inprocess()
    for name in ["none"] + names:
        if name == "none":
            filters = ""
        else:
            module, root_id, config = FILTERS[name]
            filters = json.dumps(common.mosnx_filter(name, module, root_id, config))
        one, dt, ut = await h1.setup(filters)
        if count_opcodes:
            counts = h1.count_calls(one, n or 500)
            total = sum(counts.values())
            if name == "none":
                base = counts
                print(f"none: {total:.0f} bytecode operations per request")
                continue
            print(f"{name}: {total:.0f} bytecode operations per request, "
                  f"{total - sum(base.values()):+.0f} over none; by function, the difference:")
            diff = {k: counts[k] - base[k] for k in counts.keys() | base.keys()}
            for fn, k in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:40]:
                if abs(k) >= 1:
                    print(f"  {k:+8.1f}  {fn}")
            continue
        n_ = n or 20000
        best = float("inf")
        for _ in range(repeats):
            dt.out.clear()
            ut.out.clear()
            t = time.perf_counter()
            for _ in range(n_):
                one()
            best = min(best, time.perf_counter() - t)
        print(f"{name:<8} {best / n_ * 1e6:7.2f} µs per request", flush=True)


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, help="requests per round (default 20000; 500 with --opcodes)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--filters", default=",".join(FILTERS))
    ap.add_argument("--inflight", type=int, default=32,
                    help="streams open at once (wrk's connections in run.py; 1: one after another)")
    ap.add_argument("--opcodes", action="store_true",
                    help="count bytecode operations by function instead of timing (default 500 requests)")
    ap.add_argument("--count", type=int, help="run this many requests per filter and stop (for callgrind)")
    ap.add_argument("--server", action="store_true",
                    help="the whole HTTP/1.1 path in process, without and with each filter")
    args = ap.parse_args(argv)
    os.environ.setdefault("MOSNX_CACHE_DIR", tempfile.mkdtemp(prefix="mosnx-wasm-cache-"))
    if args.server:
        await server(args.filters.split(","), args.requests, args.repeats, args.opcodes)
        return 0
    if args.count is not None:
        for name in args.filters.split(","):
            f = make(*FILTERS[name])
            run(f, 100, args.inflight)
            if args.count:
                run(f, args.count, args.inflight)
        return 0
    if args.opcodes:
        for name in args.filters.split(","):
            opcodes(name, make(*FILTERS[name]), args.requests or 500, args.inflight)
        return 0
    n = args.requests or 20000
    print(f"{args.inflight} stream(s) open at a time")
    print(f"{'filter':<8} {'total':>7} " + " ".join(f"{h:>17}" for h in HOOKS) + "   (µs/request)")
    for name in args.filters.split(","):
        f = make(*FILTERS[name])
        run(f, 2000, args.inflight)
        best = None
        for _ in range(args.repeats):
            t = run(f, n, args.inflight)
            if best is None or sum(t) < sum(best):
                best = t
        us = [x / n / 1000 for x in best]
        print(f"{name:<8} {sum(us):7.2f} " + " ".join(f"{u:17.2f}" for u in us), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
