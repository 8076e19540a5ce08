#!/usr/bin/env python3
"""A WASM filter's own cost per request, without sockets.

    python bench/wasm/inprocess.py [--requests 20000] [--repeats 7] [--inflight 32] [--filters noop,header]

Drives the filter through the hooks the core calls for a proxied GET (request
headers, the empty request body, response headers, a one-chunk response body,
log), as bench/wasm/run.py's wrk load does, and reports µs per request per hook:
the best of `repeats` rounds, since a shared machine only ever adds time. The
difference between this and the CPU per request run.py measures is what the
server around the filter pays (cold caches, wake-ups of the other side).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import deque

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


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--filters", default=",".join(FILTERS))
    ap.add_argument("--inflight", type=int, default=32,
                    help="streams open at once (wrk's connections in run.py; 1: one after another)")
    args = ap.parse_args(argv)
    os.environ.setdefault("MOSNX_CACHE_DIR", tempfile.mkdtemp(prefix="mosnx-wasm-cache-"))
    print(f"{args.inflight} stream(s) open at a time")
    print(f"{'filter':<8} {'total':>7} " + " ".join(f"{h:>17}" for h in HOOKS) + "   (µs/request)")
    for name in args.filters.split(","):
        f = make(*FILTERS[name])
        run(f, 2000, args.inflight)
        best = None
        for _ in range(args.repeats):
            t = run(f, args.requests, args.inflight)
            if best is None or sum(t) < sum(best):
                best = t
        us = [x / args.requests / 1000 for x in best]
        print(f"{name:<8} {sum(us):7.2f} " + " ".join(f"{u:17.2f}" for u in us), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
