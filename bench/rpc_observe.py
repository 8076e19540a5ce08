#!/usr/bin/env python3
"""What observing an RPC call costs: calls through mosnx, plain and with per-method stats,
an access log and tracing, against the same calls made directly (bench/rpc.py compares
the plain path with Envoy's).

A Bolt (or Dubbo) provider and a load client run in this process on uvloop, on
loopback; mosnx runs as `mosnx run --workers 1` on a generated config. The client
keeps `--concurrency` calls in flight on one connection (the protocols multiplex)
and makes `--calls` calls per round; each target is run `--rounds` times and the
best round is reported, as calls per second and the median and p99 latency.

    python bench/rpc_observe.py                        # bolt: direct, mosnx, mosnx+observed
    python bench/rpc_observe.py --protocol dubbo --calls 5000 --concurrency 32

Targets: `direct` (the client straight at the provider: the ceiling of this
process), `mosnx` (a default route, nothing else), `observed` (the same with
rpc.method_stats, an access log to a file and tracing at 100% with W3C context
written upstream and an in-process Zipkin collector that drops what it gets;
`--observe stats,log` picks some of them, `--sampling 0%` carries the context
without recording spans).
The provider answers each call with the request's own body, so no encoding cost
is added on either side. Bounded: every round ends after `--calls` calls or 60 s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from mosnx.proxy.rpc import bolt, dubbo
from mosnx.proxy.rpc.codec import REQUEST, Codec

ROUND_LIMIT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(proto: str, rid: int) -> bytes:
    if proto == "bolt":
        return bolt.encode_request(rid, {"service": "com.example.Greeter:1.0", "sofa_head_method_name": "hello"},
                                   b"\x05hello")
    body = dubbo.request_body("com.example.Greeter", "hello", "1.0", b"\x05hello", "Ljava/lang/String;",
                              b"H\x05group\x04blueZ")
    return dubbo.encode_request(rid, body)


def response(proto: str, frame_raw: bytes, codec: Codec) -> bytes:
    f = codec.decode(frame_raw, 0, 1 << 24)
    assert f is not None
    if proto == "bolt":
        return bolt.encode_response(f.request_id, bolt.SUCCESS, b"\x05hello")
    return dubbo.encode(f.request_id, 0x02, dubbo.OK, b"\x91\x05hello")


class Provider(asyncio.Protocol):
    """Answers every request at once (heartbeats are not sent by this bench)."""

    def __init__(self, proto: str, codec: Codec):
        self.proto, self.codec = proto, codec
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = []
        start = 0
        while (f := self.codec.decode(buf, start, 1 << 24)) is not None:
            start += len(f.raw)
            if f.kind == REQUEST:
                out.append(response(self.proto, f.raw, self.codec))
        del buf[:start]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


class Client(asyncio.Protocol):
    def __init__(self, codec: Codec):
        self.codec = codec
        self.buf = bytearray()
        self.waiting: dict[int, tuple[float, asyncio.Future]] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        start = 0
        now = time.perf_counter()
        while (f := self.codec.decode(buf, start, 1 << 24)) is not None:
            start += len(f.raw)
            t0, fut = self.waiting.pop(f.request_id)
            fut.set_result(now - t0)
        del buf[:start]


async def run_round(proto: str, codec: Codec, port: int, calls: int, concurrency: int) -> tuple[float, list[float]]:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(codec), "127.0.0.1", port)
    latencies: list[float] = []
    next_id = 0
    deadline = time.perf_counter() + ROUND_LIMIT_S

    async def worker() -> None:
        nonlocal next_id
        while next_id < calls and time.perf_counter() < deadline:
            next_id += 1
            rid = next_id
            fut = loop.create_future()
            client.waiting[rid] = (time.perf_counter(), fut)
            client.transport.write(request(proto, rid))  # type: ignore[union-attr]
            latencies.append(await asyncio.wait_for(fut, 30))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    client.transport.close()  # type: ignore[union-attr]
    return len(latencies) / elapsed, latencies


async def zipkin_sink(port: int) -> asyncio.Server:
    """Accepts span exports and answers 202, reading and dropping the bodies."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":")[1])
                await reader.readexactly(n)
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", port)


def config(proto: str, port: int, admin: int, provider: int, observed: set[str], tmp: Path, zipkin: int,
           sampling: str = "100%") -> dict:
    lst: dict = {"name": "rpc_in", "address": f"127.0.0.1:{port}", "protocol": proto,
                 "route": {"cluster": "greeters", "timeout": "10s"}}
    cfg: dict = {"admin": {"address": f"127.0.0.1:{admin}"}, "listeners": [lst],
                 "clusters": [{"name": "greeters", "protocol": proto, "endpoints": [f"127.0.0.1:{provider}"]}]}
    if "stats" in observed:
        lst["rpc"] = {"method_stats": True}
    if "log" in observed:
        lst["access_log"] = {"path": str(tmp / "rpc.log"),
                             "format": "%rpc.service% %rpc.method% %rpc.request_id% %rpc.status% %duration_ms%\n"}
    if "trace" in observed:
        lst["tracing"] = {"propagation": ["w3c"], "random_sampling": sampling}
        cfg["tracing"] = {"service_name": "bench", "batch_delay": "200ms",
                          "exporters": [{"zipkin": {"endpoint": f"http://127.0.0.1:{zipkin}/api/v2/spans"}}]}
    return cfg


def start_mosnx(cfg: dict, tmp: Path, port: int, name: str) -> subprocess.Popen:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "mosnx", "run", "-c", str(path), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)  # not the source tree
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"mosnx exited with {proc.returncode} on {path}")
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("mosnx did not start listening within 20 s")


async def main(args: argparse.Namespace) -> None:
    proto = args.protocol
    codec: Codec = bolt.CODEC if proto == "bolt" else dubbo.CODEC
    loop = asyncio.get_running_loop()
    provider = await loop.create_server(lambda: Provider(proto, codec), "127.0.0.1", 0)
    pport = provider.sockets[0].getsockname()[1]
    zport = free_port()
    sink = await zipkin_sink(zport)
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for target in args.targets.split(","):
            proc = None
            port = pport
            if target != "direct":
                port, admin = free_port(), free_port()
                seen = set(args.observe.split(",")) if target == "observed" else set()
                proc = start_mosnx(config(proto, port, admin, pport, seen, tmp, zport, args.sampling), tmp, port,
                                   target)
            try:
                await run_round(proto, codec, port, min(args.calls, 500), args.concurrency)   # warm up
                best: tuple[float, list[float]] | None = None
                for _ in range(args.rounds):
                    r = await run_round(proto, codec, port, args.calls, args.concurrency)
                    if best is None or r[0] > best[0]:
                        best = r
                assert best is not None
                rate, lat = best
                lat.sort()
                results.append((target, rate, statistics.median(lat) * 1e6, lat[int(len(lat) * 0.99) - 1] * 1e6))
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)
    sink.close()
    provider.close()
    print(f"{proto}: {args.calls} calls per round, {args.concurrency} in flight on one connection, "
          f"best of {args.rounds}")
    print(f"{'target':<10} {'calls/s':>10} {'p50 µs':>10} {'p99 µs':>10}")
    for target, rate, p50, p99 in results:
        print(f"{target:<10} {rate:>10.0f} {p50:>10.0f} {p99:>10.0f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=("bolt", "dubbo"), default="bolt")
    ap.add_argument("--targets", default="direct,mosnx,observed")
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--observe", default="stats,log,trace",
                    help="what the `observed` target turns on: stats (rpc.method_stats), log, trace")
    ap.add_argument("--sampling", default="100%", help="the traced share of calls (0%%: context carried, "
                    "no span recorded)")
    a = ap.parse_args()
    if os.environ.get("MOSNX_BENCH_NO_UVLOOP"):
        asyncio.run(main(a))
    else:
        uvloop.run(main(a))
