#!/usr/bin/env python3
"""HTTP/2 (h2c) and TCP proxy benchmark: mosnx against nginx, HAProxy and Envoy.

One run measures:

* h2c with h2load, prior knowledge, against each proxy fronting the same HTTP/1.1
  upstream (nginx returning a 12-byte body): 32 streams on 1 connection, and 1
  stream on each of 32 connections;
* h2c to an HTTP/2 upstream (nginx `listen ... http2`, prior knowledge): mosnx with a
  `protocol: http2` cluster against Envoy with `http2_protocol_options`, the same two
  shapes (nginx and HAProxy do not proxy HTTP/2 to an upstream);
* TCP throughput: bytes pushed through a `protocol: tcp` listener (HAProxy `mode
  tcp`, Envoy `tcp_proxy`) to a sink, and straight to the sink (the ceiling).

Pinning is the HTTP/1.1 bench's (bench/run.py, whose helpers this imports): load
generator and upstream on one CPU, the proxy under test on another. Every proxy
runs one worker. Results land in bench/results/h2-<time>.{json,md}.

    python bench/h2_bench.py                      # everything that is installed (mosnx: this interpreter's)
    python bench/h2_bench.py --targets mosnx,haproxy --duration 5
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  (bench/run.py: servers, pinning, upstream, noise)

H2_TARGETS = ("mosnx", "nginx", "haproxy", "envoy")
TCP_TARGETS = ("direct", "mosnx", "haproxy", "envoy")
SHAPES = (("32 streams x 1 conn", 1, 32), ("1 stream x 32 conns", 32, 1))
MIB = 1024 * 1024


class H2Server(base.Server):
    """Ready when the port accepts and one h2c request through it succeeds."""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "port never opened"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise base.StartError(f"exited with status {self.proc.returncode}\n{self.log_tail()}")
            try:
                r = subprocess.run(["h2load", "-n", "1", "-c", "1", f"http://127.0.0.1:{self.port}/"],
                                   capture_output=True, text=True, timeout=10)
                if "1 succeeded" in r.stdout and "1 2xx" in r.stdout:
                    return
                last = r.stdout[-300:]
            except (OSError, subprocess.TimeoutExpired) as e:
                last = repr(e)
            time.sleep(0.2)
        raise base.StartError(f"not ready after {timeout:.0f}s: {last}\n{self.log_tail()}")


class TcpServer(base.Server):
    """Ready when the port accepts a connection."""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise base.StartError(f"exited with status {self.proc.returncode}\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise base.StartError(f"port {self.port} not accepting after {timeout:.0f}s\n{self.log_tail()}")


# ------------------------------------------------------------------ configs
def mosnx_h2_conf(workdir: Path, port: int, up: int, h2_upstream: bool = False) -> list[str]:
    path = base.mosnx_conf(workdir, port, up)      # `protocol: http` serves h2c by the preface
    if h2_upstream:
        text = path.read_text().replace("    connect_timeout: 1s\n", "    connect_timeout: 1s\n    protocol: http2\n")
        path = workdir / "mosnx-h2-upstream.yaml"
        path.write_text(text)
    return [sys.executable, "-m", "mosnx", "run", "-c", str(path), "--workers", "1"]


def h2_upstream_conf(workdir: Path, port: int, nginx: str) -> list[str]:
    """The HTTP/1.1 bench upstream's answer, served over h2c (prior knowledge)."""
    conf = base.upstream_conf(workdir, port)
    path = workdir / "upstream-h2.conf"
    path.write_text(conf.read_text().replace(f"listen 127.0.0.1:{port};", f"listen 127.0.0.1:{port} http2;")
                    .replace(f"{workdir}/upstream.pid", f"{workdir}/upstream-h2.pid"))
    return [nginx, "-c", str(path), "-p", str(workdir)]


def nginx_h2_conf(workdir: Path, port: int, up: int, nginx: str) -> list[str]:
    conf = base.nginx_proxy_conf(workdir, port, up)
    text = conf.read_text().replace(f"listen 127.0.0.1:{port};", f"listen 127.0.0.1:{port} http2;")
    text = text.replace("events {", "events { multi_accept on;", 1) if "multi_accept" not in text else text
    conf.write_text(text)
    return [nginx, "-c", str(conf), "-p", str(workdir)]


def haproxy_conf(workdir: Path, port: int, up: int, haproxy: str, tcp: bool = False) -> list[str]:
    mode = "tcp" if tcp else "http"
    bind = f"bind 127.0.0.1:{port}" + ("" if tcp else " proto h2")
    text = f"""\
# Generated by bench/h2_bench.py
global
    nbthread 1
    maxconn 4096
defaults
    mode {mode}
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    {"" if tcp else "http-reuse always"}
frontend fe
    {bind}
    default_backend be
backend be
    server s1 127.0.0.1:{up}
"""
    path = workdir / f"haproxy-{mode}.cfg"
    path.write_text(text)
    return [haproxy, "-f", str(path), "-db"]


def envoy_args(workdir: Path, port: int, up: int, envoy: str, tcp: bool = False,
               h2_upstream: bool = False) -> list[str]:
    admin = base.free_port()
    if not tcp:
        path = base.envoy_conf(workdir, port, up, admin)
        if h2_upstream:
            boot = json.loads(path.read_text())
            boot["static_resources"]["clusters"][0]["typed_extension_protocol_options"] = {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}}}
            path = workdir / "envoy-h2-upstream.json"
            path.write_text(json.dumps(boot))
    else:
        def addr(p: int) -> dict:
            return {"socket_address": {"address": "127.0.0.1", "port_value": p}}
        boot = {"admin": {"address": addr(admin)},
                "static_resources": {
                    "listeners": [{"name": "tcp", "address": addr(port), "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.tcp_proxy",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network."
                                                  "tcp_proxy.v3.TcpProxy", "stat_prefix": "tcp", "cluster": "up"}}]}]}],
                    "clusters": [{"name": "up", "type": "STATIC", "connect_timeout": "1s",
                                  "load_assignment": {"cluster_name": "up", "endpoints": [
                                      {"lb_endpoints": [{"endpoint": {"address": addr(up)}}]}]}}]}}
        path = workdir / "envoy-tcp.json"
        path.write_text(json.dumps(boot))
    return [envoy, "-c", str(path), "--concurrency", "1", "--log-level", "error",
            "--base-id", str(os.getpid() % 1000 + (7 if tcp else 3))]


def mosnx_tcp_conf(workdir: Path, port: int, up: int) -> list[str]:
    path = workdir / "mosnx-tcp.yaml"
    path.write_text(f"""\
# Generated by bench/h2_bench.py
listeners:
  - name: tcp
    address: 127.0.0.1:{port}
    protocol: tcp
    route: {{ cluster: sink }}
clusters:
  - name: sink
    endpoints: ["127.0.0.1:{up}"]
""")
    return [sys.executable, "-m", "mosnx", "run", "-c", str(path), "--workers", "1"]


# ------------------------------------------------------------------ h2load
def run_h2load(port: int, conns: int, streams: int, duration: int, cpu: int | None) -> dict:
    argv = (["taskset", "-c", str(cpu)] if cpu is not None else []) + [
        "h2load", "-c", str(conns), "-m", str(streams), "-t", "1", "-D", str(duration),
        "--warm-up-time", "1", f"http://127.0.0.1:{port}/"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    out = r.stdout
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    ok = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    lat = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out)
    if not m or not ok:
        raise RuntimeError(f"h2load output not understood:\n{out[-1500:]}\n{r.stderr[-500:]}")
    unit = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
    return {"rps": float(m.group(1)), "total": int(ok.group(1)), "succeeded": int(ok.group(3)),
            "failed": int(ok.group(4)), "2xx": int(codes.group(1)) if codes else 0,
            "mean_ms": float(lat.group(5)) * unit[lat.group(6)] if lat else None}


# ------------------------------------------------------------------ TCP throughput
SINK = r"""
import socket, sys, threading
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(64)
def drain(s):
    buf = bytearray(1 << 20)
    try:
        while s.recv_into(buf):
            pass
    finally:
        s.close()
while True:
    s, _ = ls.accept()
    threading.Thread(target=drain, args=(s,), daemon=True).start()
"""


def push(port: int, seconds: float, conns: int = 4) -> float:
    """Bytes per second sent through `port` over `conns` connections for `seconds`."""
    block = os.urandom(256 * 1024)
    total = [0] * conns
    stop = time.monotonic() + seconds

    def one(i: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            while time.monotonic() < stop:
                s.sendall(block)
                total[i] += len(block)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return sum(total) / (time.monotonic() - t0)


def push_pinned(port: int, seconds: float, cpu: int | None) -> float:
    argv = (["taskset", "-c", str(cpu)] if cpu is not None else []) + [
        sys.executable, str(Path(__file__).resolve()), "--push", str(port), "--duration", str(seconds)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    return float(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the run
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default=",".join(H2_TARGETS), help="proxies to measure")
    p.add_argument("--duration", type=int, default=10, help="seconds per point")
    p.add_argument("--load-cpu", type=int, default=0)
    p.add_argument("--proxy-cpu", type=int, default=1)
    p.add_argument("--no-tcp", action="store_true", help="skip the TCP throughput run")
    p.add_argument("--no-h2", action="store_true", help="skip the h2load runs to an HTTP/1.1 upstream")
    p.add_argument("--no-h2-upstream", action="store_true", help="skip the h2load runs to an HTTP/2 upstream")
    p.add_argument("--quiet-threshold", type=float, default=30.0,
                   help="wait until others use less than this %% of a core")
    p.add_argument("--push", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def tools(targets: list[str], skipped: dict[str, str]) -> dict:
    found = {}
    for name, exe in (("nginx", "nginx"), ("haproxy", "haproxy")):
        if name in targets:
            path = base.find_exe(exe)
            if path:
                found[name] = path
            else:
                skipped[name] = f"{exe} is not installed (apt-get install -y {exe})"
    if "envoy" in targets:
        try:
            found["envoy"] = str(base.ensure_envoy())
        except (base.SetupError, OSError, subprocess.SubprocessError) as e:
            skipped["envoy"] = f"envoy unavailable: {e}"
    if not shutil.which("h2load"):
        raise SystemExit("h2load is not installed (apt-get install -y nghttp2-client)")
    return found


def h2_points(section: str, makers: dict, work: Path, args, load_cpu, proxy_cpu, skipped: dict) -> list[dict]:
    """Each SHAPE through each proxy `makers` starts (target -> argv for a port)."""
    points = []
    for t, make in makers.items():
        port = base.free_port()
        srv = H2Server(t, make(port), port, proxy_cpu, work)
        try:
            srv.start(60)
        except base.StartError as e:
            skipped[f"{section} {t}"] = f"did not start: {e}"
            continue
        for label, conns, streams in SHAPES:
            noise = base.wait_quiet(60, args.quiet_threshold)
            cpu0 = base.tree_cpu_s(srv.pid)
            point = run_h2load(port, conns, streams, args.duration, load_cpu)
            point.update(target=t, shape=label, conns=conns, streams=streams,
                         proxy_cpu_s=round(base.tree_cpu_s(srv.pid) - cpu0, 2),
                         idle_before_pct=round(noise, 1))
            base.log(f"{section} {t:8} {label:22} {point['rps']:>10.0f} req/s  failed {point['failed']}")
            points.append(point)
        srv.stop()
    return points


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.push:
        print(push(args.push, args.duration))
        return 0
    targets = [t for t in args.targets.split(",") if t]
    skipped: dict[str, str] = {}
    exes = tools(targets, skipped)
    _, nginx = base.ensure_apt_tools()
    warnings: list[str] = []
    load_cpu, proxy_cpu = base.choose_cpus(args, warnings)
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": base.host_info(),
              "revision": base.mosnx_revision(), "duration_s": args.duration,
              "pinning": {"load_cpu": load_cpu, "proxy_cpu": proxy_cpu},
              "h2": [], "h2_upstream": [], "tcp": [], "skipped": skipped, "warnings": warnings}
    with tempfile.TemporaryDirectory(prefix="mosnx-h2-bench-") as tmp:
        work = Path(tmp)
        try:
            if not args.no_h2:
                up_port = base.free_port()
                upstream = base.Server("upstream", [nginx, "-c", str(base.upstream_conf(work, up_port)),
                                                    "-p", str(work)], up_port, load_cpu, work)
                upstream.start(30)
                makers = {"mosnx": lambda p: mosnx_h2_conf(work, p, up_port),
                          "nginx": lambda p: nginx_h2_conf(work, p, up_port, exes["nginx"]),
                          "haproxy": lambda p: haproxy_conf(work, p, up_port, exes["haproxy"]),
                          "envoy": lambda p: envoy_args(work, p, up_port, exes["envoy"])}
                report["h2"] = h2_points("h2c", {t: makers[t] for t in targets if t == "mosnx" or t in exes},
                                         work, args, load_cpu, proxy_cpu, skipped)
                upstream.stop()
            if not args.no_h2_upstream:
                up_port = base.free_port()
                upstream = H2Server("upstream-h2", h2_upstream_conf(work, up_port, nginx), up_port, load_cpu, work)
                upstream.start(30)
                makers = {"mosnx": lambda p: mosnx_h2_conf(work, p, up_port, h2_upstream=True),
                          "envoy": lambda p: envoy_args(work, p, up_port, exes["envoy"], h2_upstream=True)}
                report["h2_upstream"] = h2_points(
                    "h2c to h2", {t: makers[t] for t in targets if t in makers and (t == "mosnx" or t in exes)},
                    work, args, load_cpu, proxy_cpu, skipped)
                upstream.stop()
            if not args.no_tcp:
                sink_port = base.free_port()
                sink = TcpServer("sink", [sys.executable, "-c", SINK, str(sink_port)], sink_port, load_cpu, work)
                sink.start(30)
                for t in TCP_TARGETS:
                    if t not in ("direct", "mosnx") and (t not in targets or t not in exes):
                        continue
                    if t == "direct":
                        port = sink_port
                        srv = None
                    else:
                        port = base.free_port()
                        argv_ = {"mosnx": lambda: mosnx_tcp_conf(work, port, sink_port),
                                 "haproxy": lambda: haproxy_conf(work, port, sink_port, exes["haproxy"], tcp=True),
                                 "envoy": lambda: envoy_args(work, port, sink_port, exes["envoy"], tcp=True)}[t]()
                        srv = TcpServer(t, argv_, port, proxy_cpu, work)
                        try:
                            srv.start(60)
                        except base.StartError as e:
                            skipped[f"tcp-{t}"] = f"did not start: {e}"
                            continue
                    base.wait_quiet(60, args.quiet_threshold)
                    cpu0 = base.tree_cpu_s(srv.pid) if srv else 0.0
                    bps = push_pinned(port, args.duration, load_cpu)
                    point = {"target": t, "MiB_per_s": round(bps / MIB, 1),
                             "proxy_cpu_s": round(base.tree_cpu_s(srv.pid) - cpu0, 2) if srv else None}
                    base.log(f"tcp {t:8} {point['MiB_per_s']:>10.1f} MiB/s")
                    report["tcp"].append(point)
                    if srv:
                        srv.stop()
                sink.stop()
        finally:
            base.stop_all()
    md = markdown(report)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base.RESULTS_DIR.mkdir(exist_ok=True)
    (base.RESULTS_DIR / f"h2-{stamp}.json").write_text(json.dumps(report, indent=2))
    (base.RESULTS_DIR / f"h2-{stamp}.md").write_text(md)
    print(md)
    return 0


def _h2_table(points: list[dict], title: str, against: tuple[str, ...]) -> list[str]:
    if not points:
        return []
    lines = [f"## {title}", "",
             "| shape | target | req/s | " + " | ".join(f"vs {a}" for a in against) + " | mean ms | failed | proxy CPU s |",
             "|---|---|---:|" + "---:|" * len(against) + "---:|---:|---:|"]
    for shape, _, _ in SHAPES:
        pts = {p["target"]: p for p in points if p["shape"] == shape}
        for t, p in pts.items():
            vs = []
            for other in against:
                o = pts.get(other)
                vs.append(f"{p['rps'] / o['rps']:.2f}x" if o and o["rps"] else "-")
            lines.append(f"| {shape} | {t} | {p['rps']:.0f} | " + " | ".join(vs) + " | "
                         f"{p['mean_ms'] if p['mean_ms'] is not None else '-'} | {p['failed']} | "
                         f"{p['proxy_cpu_s']} |")
    return lines + [""]


def markdown(report: dict) -> str:
    lines = [f"# h2c and TCP proxy bench, {report['when']}", "",
             f"one worker each; load on CPU {report['pinning']['load_cpu']}, proxy on CPU "
             f"{report['pinning']['proxy_cpu']}; {report['duration_s']} s per point", ""]
    lines += _h2_table(report["h2"], "h2c (h2load, HTTP/1.1 upstream)", ("nginx", "haproxy"))
    lines += _h2_table(report.get("h2_upstream", []), "h2c to an HTTP/2 upstream (h2load, nginx h2c upstream)",
                       ("envoy",))
    if report["tcp"]:
        pts = {p["target"]: p for p in report["tcp"]}
        lines += ["## TCP throughput (4 connections, 256 KiB writes)", "",
                  "| target | MiB/s | vs haproxy | vs direct | proxy CPU s |", "|---|---:|---:|---:|---:|"]
        for t, p in pts.items():
            def ratio(other):
                o = pts.get(other)
                return f"{p['MiB_per_s'] / o['MiB_per_s']:.2f}x" if o and o["MiB_per_s"] else "-"
            lines.append(f"| {t} | {p['MiB_per_s']} | {ratio('haproxy')} | {ratio('direct')} | "
                         f"{p['proxy_cpu_s'] if p['proxy_cpu_s'] is not None else '-'} |")
        lines.append("")
    for k, v in report["skipped"].items():
        lines.append(f"- skipped {k}: {v.splitlines()[0] if v else ''}")
    for w in report["warnings"]:
        lines.append(f"- warning: {w}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
