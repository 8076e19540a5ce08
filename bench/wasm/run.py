#!/usr/bin/env python3
"""WASM filter overhead, mosnx beside Envoy, with the same .wasm files.

    python bench/wasm/run.py [--duration 10] [--connections 32] [--mosnx PATH] [--envoy PATH]

For each proxy, three configurations in front of the same nginx upstream:
no filter, the no-op filter (examples/wasm/filters/noop.wasm) and the
header-adding filter (add_header.wasm, a request and a response header).
Reports req/s, latency, the proxy's CPU per request, and each filter's
throughput as a fraction of the same proxy without filters.

Reuses bench/run.py for tool setup (wrk, nginx, Envoy from PyPI), server
processes and wrk parsing; wrk and the upstream run on one CPU, the proxy on
the other.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import common

VARIANTS = {
    "none": None,
    "noop": ("noop", "noop.wasm", "noop", None),
    "header": ("ah", "add_header.wasm", "add_header", {"value": "bench"}),
}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--proxies", default="mosnx,envoy")
    ap.add_argument("--mosnx", default=shutil.which("mosnx") or str(common.REPO / ".venv" / "bin" / "mosnx"))
    ap.add_argument("--envoy", default=None)
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--proxy-cpu", type=int, default=1)
    args = ap.parse_args(argv)
    # the servers run in a scratch directory: a relative path would not find mosnx there
    args.mosnx = os.path.abspath(args.mosnx)
    br = common.bench_run()
    wrk, nginx = br.ensure_apt_tools()
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    envoy = (args.envoy or str(br.ensure_envoy())) if "envoy" in proxies else None
    allowed = os.sched_getaffinity(0)
    pinned = args.load_cpu in allowed and args.proxy_cpu in allowed and args.load_cpu != args.proxy_cpu
    load_cpu, proxy_cpu = (args.load_cpu, args.proxy_cpu) if pinned else (None, None)
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})

    work = Path(tempfile.mkdtemp(prefix="mosnx-wasm-bench-"))
    up_port = br.free_port()
    upstream = br.Server("upstream", [nginx, "-p", str(work), "-e", str(work / "upstream.error.log"),
                                      "-c", str(br.upstream_conf(work, up_port))], up_port, load_cpu, work)
    results = []
    try:
        upstream.start(20)
        for proxy in proxies:
            for variant, spec in VARIANTS.items():
                name = f"{proxy}-{variant}"
                port, admin = br.free_port(), br.free_port()
                filters = []
                if spec is not None:
                    inst, module, root_id, cfg = spec
                    make = common.mosnx_filter if proxy == "mosnx" else common.envoy_filter
                    filters.append(make(inst, module, root_id, cfg))
                listeners = {"bench": (port, filters)}
                clusters = {"up": up_port}
                if proxy == "mosnx":
                    conf = work / f"{name}.yaml"
                    conf.write_text(common.mosnx_config(listeners, clusters))
                    argv_ = [args.mosnx, "run", "-c", str(conf), "--workers", "1"]
                else:
                    conf = work / f"{name}.json"
                    conf.write_text(common.envoy_config(listeners, clusters, admin))
                    argv_ = [envoy, "-c", str(conf), "--concurrency", "1", "--disable-hot-restart",
                             "--log-level", "warn"]
                server = br.Server(name, argv_, port, proxy_cpu, work)
                try:
                    server.start(40)
                except br.StartError as e:
                    print(f"{name}: did not start: {e}", flush=True)
                    continue
                try:
                    if args.warmup:
                        br.run_wrk(wrk, port, args.connections, args.warmup, load_cpu)
                    cpu0 = br.tree_cpu_s(server.pid)
                    res, _ = br.run_wrk(wrk, port, args.connections, args.duration, load_cpu)
                    cpu = br.tree_cpu_s(server.pid) - cpu0
                finally:
                    server.stop()
                point = {"proxy": proxy, "filter": variant, "rps": res["rps"],
                         "p50_us": res["p50_s"] * 1e6, "p99_us": res["p99_s"] * 1e6,
                         "cpu_us_per_req": cpu / res["requests"] * 1e6 if res["requests"] else None,
                         "errors": res["socket_errors"] + res["non_2xx"]}
                results.append(point)
                print(f"{name:<14} {point['rps']:>9,.0f} req/s  p50 {point['p50_us']:7.0f} µs  "
                      f"p99 {point['p99_us']:7.0f} µs  CPU {point['cpu_us_per_req'] or 0:6.1f} µs/req  "
                      f"errors {point['errors']}", flush=True)
    finally:
        br.stop_all()
    md = report(results, args, pinned)
    print("\n" + md)
    out = common.HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stamp}.md").write_text(md)
    return 0


def report(results: list[dict], args, pinned: bool) -> str:
    base = {r["proxy"]: r["rps"] for r in results if r["filter"] == "none"}
    lines = [f"# WASM filter overhead, {time.strftime('%Y-%m-%d %H:%M')}", "",
             f"wrk -t1 -c{args.connections}, {args.duration}s per point after {args.warmup}s warm-up; "
             + ("wrk and upstream on one CPU, the proxy on the other" if pinned else "unpinned"), "",
             "| proxy | filter | req/s | vs no filter | p50 | p99 | CPU µs/req |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        ratio = r["rps"] / base[r["proxy"]] if base.get(r["proxy"]) else None
        lines.append(f"| {r['proxy']} | {r['filter']} | {r['rps']:,.0f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}'} | {r['p50_us']:.0f} µs | "
                     f"{r['p99_us']:.0f} µs | {r['cpu_us_per_req'] or 0:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
