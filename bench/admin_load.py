#!/usr/bin/env python3
"""What admin queries cost the data plane, two ways.

    python bench/admin_load.py                # both parts
    python bench/admin_load.py --part lag     # in process: loop lag while /stats renders
    python bench/admin_load.py --part proxy --clusters 400 --rounds 6

`lag`: a uvloop loop measures how late a 1 ms timer fires (its lag is what every
proxied request waits on top of its own work) while the Prometheus rendering of a
5,000-stat dump runs: never (idle), on the loop itself (the admin before it moved
off the loop), on a thread at the interpreter's default GIL switch interval, and on
a thread at the admin's interval (admin.GIL_SWITCH_INTERVAL).

`proxy`: a one-worker mosnx (its admin shares the worker's loop) with many clusters;
rounds of a bounded sequential keep-alive request loop alternate between no admin
traffic and one thread looping over admin queries (the hostile `(a+)+$` filter, JSON
stats, Prometheus, the config dump). Cluster names are long runs of `a`, so a
backtracking engine would take 2^48 steps per name on that filter. Prints p50/p99/max
per round and the median p99 of each kind; the machine's own noise shows in the idle
rounds.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

HOST = "127.0.0.1"
ADMIN_QUERIES = ("/stats?filter=(a%2B)%2B%24", "/stats?format=json", "/stats?filter=upstream_rq&format=json",
                 "/config_dump", "/stats/prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


def run_requests(port: int, count: int, stop_after: float) -> list[float]:
    """`count` sequential GETs on one keep-alive connection; latency of each in seconds."""
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    out: list[float] = []
    deadline = time.monotonic() + stop_after
    with socket.create_connection((HOST, port), timeout=10) as s:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            s.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, _, body = buf.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += s.recv(65536)
            out.append(time.perf_counter() - t0)
    return out


def admin_loop(port: int, stop: threading.Event, answered: list[int]) -> None:
    i = 0
    while not stop.is_set():
        path = ADMIN_QUERIES[i % len(ADMIN_QUERIES)]
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=30) as r:
            r.read()
            answered.append(r.status)
        i += 1


def p99(lat: list[float]) -> float:
    ms = sorted(x * 1000 for x in lat)
    return ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def describe(name: str, lat: list[float]) -> str:
    ms = sorted(x * 1000 for x in lat)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{name:<22} n={len(ms):5d}  p50={statistics.median(ms):6.3f} ms  p99={p99:6.3f} ms  "
            f"max={ms[-1]:7.3f} ms")


def lag_part(seconds: float) -> None:
    import asyncio

    import uvloop

    from mosnx.proxy import admin, admin_format as fmt
    from mosnx.runtime.stats import Store

    store = Store()
    for i in range(200):
        for k in ("upstream_rq_total", "upstream_rq_2xx", "upstream_rq_5xx", "upstream_cx_total",
                  "upstream_cx_active"):
            store.inc(f"cluster.{'a' * 48}{i}.{k}", i)
        for h in ("upstream_rq_time", "upstream_cx_length", "upstream_cx_connect_ms"):
            store.histogram(f"cluster.{'a' * 48}{i}.{h}").record(i)
    dump = store.dump()

    def render() -> None:
        fmt.prometheus(fmt.select(dump))

    t0 = time.perf_counter()
    render()
    print(f"one Prometheus rendering of {len(dump['counters']) + len(dump['histograms'])} stats: "
          f"{(time.perf_counter() - t0) * 1000:.1f} ms")

    async def lag(on_loop: bool) -> list[float]:
        loop = asyncio.get_running_loop()

        def admin_query() -> None:           # what an on-loop admin does once per query
            render()
            handle[0] = loop.call_later(0.05, admin_query)

        handle = [loop.call_later(0.05, admin_query)] if on_loop else [None]
        out: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            out.append((time.perf_counter() - t - 0.001) * 1000)
        if handle[0] is not None:
            handle[0].cancel()
        return out

    def run(name: str, thread_interval: float | None, on_loop: bool = False) -> None:
        stop = threading.Event()
        t = None
        if thread_interval is not None:
            sys.setswitchinterval(thread_interval)
            t = threading.Thread(target=lambda: [render() for _ in iter(stop.is_set, True)])
            t.start()
        out = sorted(uvloop.run(lag(on_loop)))
        stop.set()
        if t is not None:
            t.join()
        print(f"  {name:<40} p50={statistics.median(out):6.3f}  p99={out[int(len(out) * 0.99)]:6.3f}  "
              f"max={out[-1]:6.3f} ms")

    print("loop lag of a 1 ms timer:")
    default = sys.getswitchinterval()
    run("idle", None)
    run("rendering on the loop every 50 ms", None, on_loop=True)
    run(f"rendering on a thread, switch {default * 1000:g} ms", default)
    run(f"rendering on a thread, switch {admin.GIL_SWITCH_INTERVAL * 1000:g} ms", admin.GIL_SWITCH_INTERVAL)
    sys.setswitchinterval(default)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("lag", "proxy", "both"), default="both")
    ap.add_argument("--clusters", type=int, default=200, help="clusters (each adds its stats)")
    ap.add_argument("--requests", type=int, default=2000, help="requests per round")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of each kind, alternating")
    ap.add_argument("--seconds", type=float, default=30, help="bound on each round")
    args = ap.parse_args()
    if args.part in ("lag", "both"):
        lag_part(2.0)
    if args.part in ("proxy", "both"):
        proxy_part(args)
    return 0


def proxy_part(args) -> None:
    up, port, admin = free_port(), free_port(), free_port()
    names = [f"{'a' * 48}{i}" for i in range(args.clusters)]
    config = {"admin": {"address": f"{HOST}:{admin}"},
              "listeners": [{"name": "ingress", "address": f"{HOST}:{port}", "route": {"cluster": names[0]}}],
              "clusters": [{"name": n, "endpoints": [f"{HOST}:{up}"]} for n in names]}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mosnx.yaml"
        path.write_text(yaml.safe_dump(config))
        # run from the temp folder: in the source tree, its mosnx/ would shadow the package
        env = dict(os.environ)
        procs = [subprocess.Popen([sys.executable, "-m", "mosnx", "demo-upstream", "--listen", f"{HOST}:{up}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=d),
                 subprocess.Popen([sys.executable, "-m", "mosnx", "run", "-c", str(path), "--workers", "1",
                                   "--log-level", "warning"], stdout=subprocess.DEVNULL, env=env, cwd=d)]
        try:
            wait_port(up)
            wait_port(admin)
            wait_port(port)
            run_requests(port, 500, args.seconds)                      # warm up
            with urllib.request.urlopen(f"http://{HOST}:{admin}/stats", timeout=30) as r:
                n_stats = r.read().count(b"\n")
            print(f"through mosnx, 1 worker, {args.clusters} clusters, {n_stats} stat lines:")
            p99s: dict[str, list[float]] = {"idle": [], "admin": []}
            for _ in range(args.rounds):
                idle = run_requests(port, args.requests, args.seconds)
                print("  " + describe("no admin traffic", idle))
                p99s["idle"].append(p99(idle))
                stop, answered = threading.Event(), []
                t = threading.Thread(target=admin_loop, args=(admin, stop, answered), daemon=True)
                t.start()
                time.sleep(0.1)
                loaded = run_requests(port, args.requests, args.seconds)
                stop.set()
                t.join(60)
                print("  " + describe("admin queries looping", loaded) + f"  ({len(answered)} admin answers, "
                      f"all 200: {set(answered) <= {200}})")
                p99s["admin"].append(p99(loaded))
            print(f"median p99: idle {statistics.median(p99s['idle']):.3f} ms, "
                  f"under admin load {statistics.median(p99s['admin']):.3f} ms")
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)


if __name__ == "__main__":
    sys.exit(main())
