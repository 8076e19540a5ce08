"""RPC proxying cost: Bolt, Dubbo and Thrift calls through mosnx (one worker) against
the same calls made to the provider directly, and through Envoy's dubbo_proxy and
thrift_proxy where an Envoy binary is given or found.

    .venv/bin/python bench/rpc.py [--calls 20000] [--seconds 20] [--callers 32] [--envoy PATH]
    make bench-rpc [BENCH_ARGS="--calls 5000"]

For each protocol: a provider process (asyncio, answering every call at once with a
canned response under the call's id, so the provider is never the bottleneck), then
for each path (direct, mosnx, envoy) `--callers` connections, each a closed loop of
one call in flight, until `--calls` calls are answered or `--seconds` pass (after a
warm-up of 300). Reported per path: calls/s, p50 and p99 latency, and the proxy's CPU
per call (user + system time of its process tree over the run, divided by calls).
Every loop is bounded in count and time; nothing runs in parallel with another path.

The client is Python too (uvloop). Pinning as bench/run.py: on two or more cores the
client and the provider share one CPU (`--load-cpu`, 0) and the proxy has another to
itself (`--proxy-cpu`, 1), so every path gives the client and provider the same CPU and
"via a proxy" adds only the proxy's own work and hop; `--no-pin` runs unpinned. Read
calls/s between paths of one run, and CPU per call as the proxy's own cost. The requests are the codecs' own encodings (bolt.encode_request, dubbo's
request_body, a framed binary Thrift CALL), bodies a few dozen bytes.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mosnx.proxy.rpc import bolt, codec as rc, dubbo, thrift
from mosnx.proxy.rpc.hessian import write_string
from mosnx.proxy.rpc.thrift_wire import CALL, REPLY

HERE = Path(__file__).resolve().parent
PROTOS = ("bolt", "dubbo", "thrift")
WARMUP = 300
_CLK = os.sysconf("SC_CLK_TCK")

REQUESTS = {
    "bolt": bolt.encode_request(1, {"service": "com.example.Greeter:1.0", "sofa_head_method_name": "hello"},
                                b"\x05hello"),
    "dubbo": dubbo.encode_request(1, dubbo.request_body("com.example.Greeter", "hello", "1.0.0",
                                                        write_string("mosnx"), "Ljava/lang/String;")),
    "thrift": thrift.encode_message("hello", CALL, 1, b"\x0b\x00\x01\x00\x00\x00\x05mosnx\x00"),
}
RESPONSES = {
    "bolt": bolt.encode_response(1, bolt.SUCCESS, write_string("hello, mosnx")),
    "dubbo": dubbo.encode(1, 0x02, dubbo.OK, b"\x91" + write_string("hello, mosnx")),
    "thrift": thrift.encode_message("hello", REPLY, 1, b"\x0b\x00\x00\x00\x00\x00\x0chello, mosnx\x00"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ provider
def provider_main(proto: str, port: int) -> None:
    codec = rc.get(proto)
    assert codec is not None
    template = codec.decode(RESPONSES[proto], 0, 1 << 20)
    assert template is not None

    class Provider(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t: asyncio.Transport = transport  # type: ignore[assignment]
            self.buf = bytearray()

        def data_received(self, data: bytes) -> None:
            buf = self.buf
            buf += data
            pos = 0
            out = []
            while (f := codec.decode(buf, pos, 1 << 20)) is not None:
                pos += len(f.raw)
                if f.kind == rc.REQUEST:
                    out.append(codec.with_id(template, f.request_id))
                elif f.kind == rc.HEARTBEAT:
                    out.append(codec.heartbeat_reply(f))
            del buf[:pos]
            if out:
                self.t.write(b"".join(out))

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Provider, "127.0.0.1", port, backlog=1024)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    _uvloop()
    asyncio.run(main())


def _uvloop() -> None:
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


# ------------------------------------------------------------------ client
class Caller(asyncio.Protocol):
    """One connection with one call in flight at a time."""

    def __init__(self, codec: rc.Codec, request: rc.Frame):
        self.codec = codec
        self.request = request
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.next_id = 0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        f = self.codec.decode(self.buf, 0, 1 << 20)
        if f is not None:
            del self.buf[:len(f.raw)]
            if f.request_id != self.next_id or not self.codec.is_success(f):
                self.waiter.set_exception(RuntimeError(f"bad answer {f}"))  # type: ignore[union-attr]
            else:
                self.waiter.set_result(None)  # type: ignore[union-attr]

    def call(self) -> asyncio.Future[None]:
        self.next_id = self.next_id + 1 if self.next_id < 2 ** 30 else 1
        self.waiter = asyncio.get_running_loop().create_future()
        self.t.write(self.codec.with_id(self.request, self.next_id))
        return self.waiter


async def load(port: int, proto: str, callers: int, calls: int, seconds: float,
               cpu_pid: int | None) -> dict[str, float]:
    codec = rc.get(proto)
    assert codec is not None
    request = codec.decode(REQUESTS[proto], 0, 1 << 20)
    assert request is not None
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(callers):
        _, c = await loop.create_connection(lambda: Caller(codec, request), "127.0.0.1", port)
        conns.append(c)
    lat: list[float] = []
    state = {"left": WARMUP, "errors": 0}

    async def run(c: Caller, record: bool, deadline: float) -> None:
        clock = time.perf_counter
        while state["left"] > 0 and clock() < deadline:
            state["left"] -= 1
            t0 = clock()
            try:
                await asyncio.wait_for(c.call(), 10)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                state["errors"] += 1
                if c.lost:
                    return
                continue
            if record:
                lat.append(clock() - t0)

    await asyncio.gather(*(run(c, False, time.perf_counter() + seconds) for c in conns))
    state["left"] = calls
    cpu0 = tree_cpu(cpu_pid) if cpu_pid else 0.0
    t0 = time.perf_counter()
    await asyncio.gather(*(run(c, True, t0 + seconds) for c in conns))
    wall = time.perf_counter() - t0
    cpu = (tree_cpu(cpu_pid) - cpu0) if cpu_pid else 0.0
    for c in conns:
        c.t.close()
    lat.sort()
    n = len(lat)
    return {"calls": n, "errors": state["errors"], "rate": n / wall if wall else 0.0,
            "p50_ms": lat[n // 2] * 1000 if n else 0.0, "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
            "cpu_us": cpu / n * 1e6 if n and cpu_pid else 0.0}


def tree_cpu(pid: int) -> float:
    """User + system seconds of `pid` and every process below it."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(d)] = int(fields[1])
        times[int(d)] = (int(fields[11]) + int(fields[12])) / _CLK
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo.extend(c for c, pp in parents.items() if pp == p)
    return total


# ------------------------------------------------------------------ proxies
def start(argv: list[str], ready_port: int, log: Path, timeout: float = 30.0,
          cpu: int | None = None) -> subprocess.Popen:
    # taskset execs the program: the pid is the program's own
    argv = (["taskset", "-c", str(cpu)] if cpu is not None else []) + argv
    p = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", ready_port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise RuntimeError(f"{argv[0]} did not listen on {ready_port} in {timeout}s")


def mosnx_config(proto: str, port: int, up: int) -> str:
    return (f"listeners:\n  - name: {proto}_in\n    address: 127.0.0.1:{port}\n    protocol: {proto}\n"
            f"    route: {{cluster: up, timeout: 10s}}\n"
            f"clusters:\n  - name: up\n    protocol: {proto}\n    endpoints: [\"127.0.0.1:{up}\"]\n"
            f"    rpc: {{connections: 1}}\n")


def envoy_config(proto: str, port: int, up: int) -> str | None:
    if proto == "dubbo":
        filt = ("      - name: envoy.filters.network.dubbo_proxy\n        typed_config:\n"
                "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.v3.DubboProxy\n"
                "          stat_prefix: dubbo\n          route_config:\n          - name: local\n"
                "            interface: \"*\"\n            routes:\n"
                "            - match: {method: {name: {safe_regex: {regex: \".*\"}}}}\n"
                "              route: {cluster: up}\n          dubbo_filters:\n"
                "          - name: envoy.filters.dubbo.router\n")
        cluster_extra = ""
    elif proto == "thrift":
        filt = ("      - name: envoy.filters.network.thrift_proxy\n        typed_config:\n"
                "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.thrift_proxy.v3.ThriftProxy\n"
                "          stat_prefix: thrift\n          transport: FRAMED\n          protocol: BINARY\n"
                "          route_config:\n            name: local\n            routes:\n"
                "            - match: {method_name: \"\"}\n              route: {cluster: up}\n")
        cluster_extra = ""
    else:
        return None                    # Envoy has no Bolt filter
    return ("static_resources:\n  listeners:\n  - name: rpc\n"
            f"    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}\n"
            "    filter_chains:\n    - filters:\n" + filt +
            "  clusters:\n  - name: up\n    connect_timeout: 1s\n" + cluster_extra +
            "    load_assignment:\n      cluster_name: up\n      endpoints: [{lb_endpoints: [{endpoint: {address: "
            f"{{socket_address: {{address: 127.0.0.1, port_value: {up}}}}}}}}}]}}]\n")


def find_envoy(given: str | None) -> str | None:
    if given:
        return given
    for cand in (HERE / ".envoy-venv", ):
        for p in cand.glob("lib/python*/site-packages/envoy/_bin/envoy"):
            return str(p)
    return shutil.which("envoy")


def envoy_extensions(envoy: str) -> set[str]:
    """Which of dubbo_proxy and thrift_proxy this Envoy build has (a config naming each validates)."""
    have = set()
    with tempfile.TemporaryDirectory() as d:
        for proto in ("dubbo", "thrift"):
            path = Path(d) / f"{proto}.yaml"
            path.write_text(envoy_config(proto, 1, 2) or "")
            r = subprocess.run([envoy, "--mode", "validate", "-c", str(path)], capture_output=True, timeout=60)
            if r.returncode == 0:
                have.add(proto)
    return have


def bench(args: argparse.Namespace) -> list[tuple[str, str, dict[str, float]]]:
    mosnx_bin = str(Path(sys.executable).parent / "mosnx")
    envoy = find_envoy(args.envoy)
    has = envoy_extensions(envoy) if envoy else set()
    if envoy:
        print(f"envoy: {envoy}; dubbo_proxy {'yes' if 'dubbo' in has else 'no'}, "
              f"thrift_proxy {'yes' if 'thrift' in has else 'no'}", flush=True)
    else:
        print("envoy: none found (--envoy PATH, or bench/.envoy-venv as `make bench` installs it)", flush=True)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench-rpc-"))
    for proto in args.protocols:
        up = free_port()
        provider = start([sys.executable, __file__, "--provider", proto, str(up)], up, work / f"{proto}-provider.log",
                         cpu=args.load_cpu)
        try:
            paths: list[tuple[str, int, subprocess.Popen | None]] = [("direct", up, None)]
            port = free_port()
            cfg = work / f"{proto}-mosnx.yaml"
            cfg.write_text(mosnx_config(proto, port, up))
            paths.append(("mosnx", port, None))
            for name, port_, _ in paths:
                proc = None
                if name == "mosnx":
                    proc = start([mosnx_bin, "run", "-c", str(cfg), "--workers", "1", "-l", "warning"], port_,
                                 work / f"{proto}-mosnx.log", cpu=args.proxy_cpu)
                rows.append((proto, name, _measure(port_, proto, args, proc)))
                _stop(proc)
            if envoy and proto in has:
                port = free_port()
                ecfg = work / f"{proto}-envoy.yaml"
                ecfg.write_text(envoy_config(proto, port, up) or "")
                proc = start([envoy, "-c", str(ecfg), "--concurrency", "1", "-l", "error",
                              "--base-id", str(os.getpid() % 1000 + 100)], port, work / f"{proto}-envoy.log",
                             cpu=args.proxy_cpu)
                rows.append((proto, "envoy", _measure(port, proto, args, proc)))
                _stop(proc)
        finally:
            _stop(provider)
    return rows


def _measure(port: int, proto: str, args: argparse.Namespace, proc: subprocess.Popen | None) -> dict[str, float]:
    _uvloop()
    r = asyncio.run(load(port, proto, args.callers, args.calls, args.seconds, proc.pid if proc else None))
    print(f"  {proto:6} {('via ' + _name(proc)) if proc else 'direct':12} {r['rate']:9.0f} calls/s  "
          f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
          + (f"proxy CPU {r['cpu_us']:6.1f} us/call" if proc else "") + (f"  errors {r['errors']}" if r["errors"] else ""),
          flush=True)
    return r


def _name(proc: subprocess.Popen) -> str:
    return "envoy" if "envoy" in str(proc.args[0]) else "mosnx"  # type: ignore[index]


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--provider":
        return provider_main(sys.argv[2], int(sys.argv[3]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20000, help="calls measured per path (after a warm-up)")
    ap.add_argument("--seconds", type=float, default=20.0, help="at most this long per path")
    ap.add_argument("--callers", type=int, default=32, help="concurrent callers (connections)")
    ap.add_argument("--envoy", help="an Envoy binary for dubbo_proxy and thrift_proxy")
    ap.add_argument("--protocols", nargs="+", default=list(PROTOS), choices=PROTOS)
    ap.add_argument("--load-cpu", type=int, default=0, help="the CPU of the client and the provider")
    ap.add_argument("--proxy-cpu", type=int, default=1, help="the CPU of the proxy")
    ap.add_argument("--no-pin", action="store_true", help="run every process on any CPU")
    args = ap.parse_args()
    if args.no_pin or (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        args.load_cpu = args.proxy_cpu = None
    else:
        os.sched_setaffinity(0, {args.load_cpu})        # the client: this process
    print(f"{args.callers} callers, {args.calls} calls or {args.seconds:.0f} s per path, cores: {os.cpu_count()}, "
          f"pinned: {'no' if args.load_cpu is None else f'client+provider CPU {args.load_cpu}, proxy CPU {args.proxy_cpu}'}",
          flush=True)
    rows = bench(args)
    print("\n| protocol | path | calls/s | p50 ms | p99 ms | proxy CPU us/call |\n|---|---|---|---|---|---|")
    for proto, path, r in rows:
        cpu = f"{r['cpu_us']:.1f}" if path != "direct" else "-"
        print(f"| {proto} | {path} | {r['rate']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {cpu} |")


if __name__ == "__main__":
    main()
