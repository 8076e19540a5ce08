#!/usr/bin/env python3
"""Throughput with an xDS-delivered config against the same config from mosnx YAML (`make bench-xds-yaml`).

One listener, one route (`/` to cluster `up`, timeout 15 s), one static cluster of one
endpoint: an nginx upstream answering `hello world\\n`, as in bench/run.py. Two ways to
give mosnx that config:

* yaml: `mosnx run -c mosnx.yaml --workers 1` (the file bench/run.py writes);
* xds:  `mosnx run -c bootstrap.yaml --workers 1`, an Envoy v3 bootstrap whose LDS and CDS
  come over ADS from go-control-plane (xds-fileserver, built by tests/interop/build.sh):
  a Listener whose HttpConnectionManager takes RouteConfiguration `bench` over RDS, and a
  STATIC Cluster.

Pinning as bench/run.py: wrk (`-t1`), the nginx upstream and the control plane on CPU 0
(`--load-cpu`), mosnx alone on CPU 1 (`--proxy-cpu`). Each run starts the proxy afresh,
warms up, waits for a quiet machine, then runs `wrk -t1 -c N -d D`; the two ways
alternate (yaml, xds, yaml, xds, ...) so drift on a shared machine hits both alike.
The median req/s of `--runs` runs (3) is reported for each, with their ratio; also the proxy's CPU
time per request (its process tree's utime+stime over the run, the figure a busy machine disturbs
least) and the share of requests that took the HTTP/1.1 express path (`fastpath.express_rq`). Every wrk
run is bounded (duration + 20 s), every server is stopped at the end. Only 127.0.0.1.

  bench/xds_vs_yaml.py [--runs 3] [--duration 5] [--connections 32] [--json]
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shlex
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "tests" / "interop"))

import run as wrkbench  # noqa: E402  (bench/run.py: servers, wrk, quiet machine)
import xdsharness  # noqa: E402  (tests/interop: the go-control-plane build, bootstrap and resources)


def resources(port: int, upstream_port: int) -> dict:
    """The same listener, route and cluster as bench/run.py's mosnx.yaml, as xDS resources."""
    T = xdsharness.T
    return {"version": "bench-1", "resources": [
        xdsharness.http_listener("bench", port, "bench"),
        {"@type": T + "config.route.v3.RouteConfiguration", "name": "bench",
         "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
             {"match": {"prefix": "/"}, "route": {"cluster": "up", "timeout": "15s"}}]}]},
        {"@type": T + "config.cluster.v3.Cluster", "name": "up", "type": "STATIC", "connect_timeout": "1s",
         "load_assignment": {"cluster_name": "up", "endpoints": [{"lb_endpoints": [{"endpoint": {
             "address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}}}]}]}},
    ]}


def start_proxy(way: str, workdir: Path, mosnx: str, upstream_port: int, cpu: int | None,
                load_cpu: int | None, ready: float) -> tuple[list[wrkbench.Server], int]:
    """The proxy (and for xds, its control plane after it), started and answering GET /;
    and the proxy's admin port."""
    port, admin = wrkbench.free_port(), wrkbench.free_port()
    run_args = [*shlex.split(os.environ.get("MOSNX_RUN_ARGS", "")), "--workers", "1"]
    if way == "yaml":
        conf = wrkbench.mosnx_conf(workdir, port, upstream_port)
        conf.write_text(conf.read_text() + f"admin: {{ address: 127.0.0.1:{admin} }}\n")
        proxy = wrkbench.Server("mosnx-yaml", [mosnx, "run", "-c", str(conf), *run_args], port, cpu, workdir)
        proxy.start(ready)
        return [proxy], admin
    xds_port = wrkbench.free_port()
    doc = xdsharness.write_json(workdir / "resources.json", resources(port, upstream_port))
    cp = wrkbench.Server("xds-fileserver", [str(xdsharness.xds_bin("xds-fileserver")), "-addr",
                                            f"127.0.0.1:{xds_port}", "-config", str(doc), "-ads=true",
                                            "-poll", "1s", "-v=false"], xds_port, load_cpu, workdir)
    cp.start_listening(ready)
    boot = xdsharness.write_json(workdir / "bootstrap.yaml", xdsharness.bootstrap(
        node_id="bench", xds_port=xds_port, admin_port=admin))
    proxy = wrkbench.Server("mosnx-xds", [mosnx, "run", "-c", str(boot), *run_args], port, cpu, workdir)
    proxy.start(ready)
    return [proxy, cp], admin


def express_requests(admin: int) -> float:
    """How many requests took the HTTP/1.1 express path (fastpath.express_rq in /stats)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?format=json", timeout=5) as r:
        stats = json.load(r)["stats"]
    return next((float(x["value"]) for x in stats if x.get("name") == "fastpath.express_rq"), 0.0)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--mosnx", default=str(REPO / ".venv" / "bin" / "mosnx"))
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--quiet-threshold", type=float, default=15)
    ap.add_argument("--quiet-timeout", type=float, default=20)
    ap.add_argument("--ready-timeout", type=float, default=30)
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = ap.parse_args(argv)
    args.mosnx = os.path.abspath(args.mosnx)          # the servers run in a temporary directory
    if not 1 <= args.runs <= 20 or not 1 <= args.duration <= 60:
        ap.error("--runs must be 1-20 and --duration 1-60 s")
    pin = (os.cpu_count() or 1) >= 2
    load_cpu, proxy_cpu = (args.load_cpu, args.proxy_cpu) if pin else (None, None)

    wrk, nginx = wrkbench.ensure_apt_tools()
    xdsharness.xds_bin("xds-fileserver")          # builds go-control-plane once, if missing
    atexit.register(wrkbench.stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    workdir = Path(tempfile.mkdtemp(prefix="mosnx-xds-vs-yaml-"))
    up_port = wrkbench.free_port()
    upstream = wrkbench.Server("upstream", [nginx, "-c", str(wrkbench.upstream_conf(workdir, up_port)),
                                            "-p", str(workdir)], up_port, load_cpu, workdir)
    upstream.start(args.ready_timeout)

    ways = ("yaml", "xds")
    rps: dict[str, list[float]] = {w: [] for w in ways}
    cpu_us: dict[str, list[float]] = {w: [] for w in ways}
    express: dict[str, list[float]] = {w: [] for w in ways}
    errors: dict[str, int] = {w: 0 for w in ways}
    for i in range(args.runs):
        for way in ways:
            servers, admin = start_proxy(way, workdir, args.mosnx, up_port, proxy_cpu, load_cpu, args.ready_timeout)
            try:
                wrkbench.run_wrk(wrk, servers[0].port, args.connections, args.warmup, load_cpu)
                wrkbench.wait_quiet(args.quiet_timeout, args.quiet_threshold)
                cpu0, fast0 = wrkbench.tree_cpu_s(servers[0].pid), express_requests(admin)
                res, _ = wrkbench.run_wrk(wrk, servers[0].port, args.connections, args.duration, load_cpu)
                cpu1, fast1 = wrkbench.tree_cpu_s(servers[0].pid), express_requests(admin)
            finally:
                for s in servers:
                    s.stop()
            n = max(res["requests"], 1)
            rps[way].append(res["rps"])
            cpu_us[way].append(1e6 * (cpu1 - cpu0) / n)
            express[way].append((fast1 - fast0) / n)
            errors[way] += res["socket_errors"] + res["non_2xx"]
            print(f"run {i + 1}/{args.runs} {way:4s}: {res['rps']:9.0f} req/s  {cpu_us[way][-1]:6.1f} CPU us/req  "
                  f"p50 {res['p50_s'] * 1e3:.2f} ms  p99 {res['p99_s'] * 1e3:.2f} ms  "
                  f"express {100 * express[way][-1]:.0f} %  errors {res['socket_errors'] + res['non_2xx']}", flush=True)
    med = {w: statistics.median(v) for w, v in rps.items()}
    med_cpu = {w: statistics.median(v) for w, v in cpu_us.items()}
    print()
    print(f"| config from | conns | req/s, median of {args.runs} | the runs | CPU µs/req, median | express path | errors |")
    print("|---|---|---|---|---|---|---|")
    for w, label in (("yaml", "mosnx YAML"), ("xds", "xDS (go-control-plane, ADS)")):
        print(f"| {label} | {args.connections} | {med[w]:.0f} | {', '.join(f'{r:.0f}' for r in rps[w])} | "
              f"{med_cpu[w]:.1f} | {100 * min(express[w]):.0f} % | {errors[w]} |")
    print(f"\nxds / yaml: req/s {med['xds'] / med['yaml']:.3f}, CPU per request {med_cpu['xds'] / med_cpu['yaml']:.3f}")
    if args.json:
        print(json.dumps({"rps": rps, "cpu_us_per_request": cpu_us, "express_share": express, "errors": errors,
                          "connections": args.connections, "duration": args.duration}))
    return 0 if not any(errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
