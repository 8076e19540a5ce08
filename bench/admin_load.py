#!/usr/bin/env python3
"""What admin queries cost the data plane, two ways.

    python bench/admin_load.py                # both parts
    python bench/admin_load.py --part lag     # in process: loop lag while /stats renders
    python bench/admin_load.py --part proxy --clusters 400 --rounds 6

`lag`: a uvloop loop measures how late a 1 ms timer fires (its lag is what every
proxied request waits on top of its own work) while filtered Prometheus renderings of
a 1,600-stat dump run back to back on the same loop: never (idle), each whole (the
admin before), or in slices with pauses between them (admin.render).

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
import multiprocessing as mp
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


def admin_loop(port: int, stop, answered, bad) -> None:
    """In a process of its own: reading big admin answers in this process would take
    the GIL from the thread that times the proxied requests."""
    i = 0
    while not stop.is_set():
        path = ADMIN_QUERIES[i % len(ADMIN_QUERIES)]
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=30) as r:
            r.read()
            with answered.get_lock():
                answered.value += 1
            if r.status != 200:
                with bad.get_lock():
                    bad.value += 1
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
    pattern = fmt.compile_filter("(a+)+$|upstream")

    def whole() -> None:
        fmt.prometheus(fmt.select(dump, pattern))

    t0 = time.perf_counter()
    whole()
    print(f"one filtered Prometheus rendering of {len(dump['counters']) + len(dump['histograms'])} stats: "
          f"{(time.perf_counter() - t0) * 1000:.1f} ms")

    async def lag(how: str) -> list[float]:
        loop = asyncio.get_running_loop()
        stop = False

        async def admin_queries() -> None:       # one query after another, as a scraper loop would
            while not stop:
                if how == "whole":
                    whole()
                    await asyncio.sleep(0)
                else:
                    await admin.render(fmt.stats_pieces(dump, pattern, False, "prometheus"))

        task = loop.create_task(admin_queries()) if how != "idle" else None
        out: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            out.append((time.perf_counter() - t - 0.001) * 1000)
        stop = True
        if task is not None:
            await task
        return out

    print("lag of a 1 ms timer on the loop while the admin renders back to back:")
    for how, name in (("idle", "no admin work"), ("whole", "each answer rendered whole (before)"),
                      ("slices", f"in {admin.SLICE * 1000:g} ms slices, {admin.PAUSE * 1000:g} ms apart (admin.render)")):
        out = sorted(uvloop.run(lag(how)))
        print(f"  {name:<40} p50={statistics.median(out):6.3f}  p99={out[int(len(out) * 0.99)]:6.3f}  "
              f"max={out[-1]:6.3f} ms")


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
            for path in ADMIN_QUERIES:
                t0 = time.perf_counter()
                with urllib.request.urlopen(f"http://{HOST}:{admin}{path}", timeout=30) as r:
                    size = len(r.read())
                print(f"  admin {path:<40} {size / 1024:7.0f} KiB in {(time.perf_counter() - t0) * 1000:6.1f} ms")
            p99s: dict[str, list[float]] = {"idle": [], "admin": []}
            for _ in range(args.rounds):
                idle = run_requests(port, args.requests, args.seconds)
                print("  " + describe("no admin traffic", idle))
                p99s["idle"].append(p99(idle))
                stop, answered, bad = mp.Event(), mp.Value("i", 0), mp.Value("i", 0)
                hammer = mp.Process(target=admin_loop, args=(admin, stop, answered, bad), daemon=True)
                hammer.start()
                time.sleep(0.3)
                loaded = run_requests(port, args.requests, args.seconds)
                stop.set()
                hammer.join(60)
                print("  " + describe("admin queries looping", loaded) + f"  ({answered.value} admin answers, "
                      f"{bad.value} not 200)")
                p99s["admin"].append(p99(loaded))
            print(f"median p99: idle {statistics.median(p99s['idle']):.3f} ms, "
                  f"under admin load {statistics.median(p99s['admin']):.3f} ms")
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)


if __name__ == "__main__":
    sys.exit(main())
