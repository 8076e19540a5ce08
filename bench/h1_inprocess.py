#!/usr/bin/env python3
"""The HTTP/1.1 proxy path in process: what one request costs in Python alone.

A real worker, codecs, stream and pool; fake transports on both sides, so no
kernel and no other process takes part. Three ways to read it:

    python bench/h1_inprocess.py                    # µs per request, best of 5 rounds
    python bench/h1_inprocess.py --opcodes          # bytecode operations per request, by function
    python bench/h1_inprocess.py --count 1000       # just run N requests (for callgrind:
        valgrind --tool=callgrind python bench/h1_inprocess.py --count 1000, minus --count 200)

`--filter nop` puts a Python filter with every hook doing nothing on the listener,
which shows what the generic pipeline costs over the short path; `--filter
rate_limit` a token bucket that admits everything. `--tracing PCT` traces the
listener (W3C, B3 and sw8 written upstream, or the formats `--propagation` names)
sampling PCT percent, its records handed to a sink that drops them; with `--export`
the sink is an OTLP exporter's queue: each record kept as otlp.item makes it, and
the batch encoded every 512 spans, as the export task does on the
same core (the gRPC send aside), so the figure is all the CPU tracing takes. `--detail-stats` turns on the listener's
per-route and per-host upstream stats (`stats: {per_route: true, per_host: true}`).
`--shared N` runs as worker
0 of N, with circuit breakers and rate limits in the shared segment
(runtime.shared), as a worker of `mosnx run --workers N` does. Opcode and
instruction counts are deterministic, so they compare changes on a busy machine
where timings do not.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from mosnx import plugins
from mosnx.proxy import write_batch
from mosnx.proxy.http1.server import Http1Server
from mosnx.proxy.tracing import otlp
from mosnx.proxy.upstream.http1 import UpstreamConnection
from mosnx.proxy.worker import Worker
from mosnx.runtime import HttpFilter, register_filter
from mosnx.runtime import shared

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18081\r\n\r\n"
# what nginx answers the benchmark's upstream request with
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 00:29:08 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n")

CONFIG = """
listeners:
  - name: bench
    address: 127.0.0.1:18091
    route: {{ cluster: up, timeout: 15s }}
    filters: [{filters}]{tracing}
clusters:
  - name: up
    endpoints: ["127.0.0.1:18080"]
"""


class Nop(HttpFilter):
    name = "nop"

    def on_request(self, ctx):
        return None

    def on_upstream_request(self, ctx):
        return None

    def on_request_body(self, ctx, data, end_stream):
        return None

    def on_response(self, ctx):
        return None

    def on_response_body(self, ctx, data, end_stream):
        return None

    def on_log(self, ctx):
        return None


class Transport:
    """Just enough of an asyncio transport: the last writes are kept, nothing is sent.
    (Keeping them all would grow the heap by every head written, and time the
    allocator's growth: a head over 512 bytes comes from malloc, not pymalloc.)"""

    def __init__(self):
        self.out: collections.deque[bytes] = collections.deque(maxlen=4)
        self.closing = False

    def write(self, data):
        self.out.append(data)

    def get_extra_info(self, key, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 18091)}.get(key, default)

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def get_write_buffer_size(self):
        return 0

    def is_closing(self):
        return self.closing

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def close(self):
        self.closing = True


BATCH_SPANS = 512           # an OTLP exporter's default batch_size
RATE_LIMIT = "{rate_limit: {token_bucket: {max_tokens: 1000000, tokens_per_fill: 1000000, fill_interval: 1s}}}"


async def setup(filters: str, workers: int = 1, tracing: float | None = None,
                propagation: str = "w3c,b3,sw8", detail: bool = False, export: bool = False):
    plugins.load()
    if workers > 1:
        seg = shared.Segment.create(workers)
        shared.set_current(shared.Segment.attach(seg.path, 0))
    register_filter("nop", lambda name, cfg, ctx: Nop())
    path = Path(tempfile.mkdtemp(prefix="mosnx-h1-inproc-")) / "mosnx.yaml"
    traced = ("" if tracing is None else
              f"\n    tracing: {{random_sampling: {tracing}%, propagation: [{propagation}]}}")
    if detail:
        traced += "\n    stats: {per_route: true, per_host: true}"
    path.write_text(CONFIG.format(filters=filters, tracing=traced))
    w = Worker(str(path))
    w.loop = asyncio.get_running_loop()
    await w.apply(w.build(1))
    if tracing is not None:
        if export:
            # an OTLP exporter's queue: each record kept as otlp.item makes it, the batch
            # encoded when it holds BATCH_SPANS spans (sending aside)
            kept: list = []
            spans = 0

            def sink(record) -> None:
                nonlocal spans
                kept.append(otlp.item(record))
                spans += record.size
                if spans >= BATCH_SPANS:
                    otlp.encode_items(kept)
                    kept.clear()
                    spans = 0
            w.snapshot.listeners["bench"].tracer.bind(sink, w.stats)
        else:
            w.snapshot.listeners["bench"].tracer.bind(lambda record: None, w.stats)
    down = Http1Server(w, "bench")
    dt = Transport()
    down.connection_made(dt)
    host = w.clusters.get("up").hosts[0]
    conn = UpstreamConnection(host.pool)
    ut = Transport()
    conn.connection_made(ut)
    host.pool.cx_active += 1
    host.cluster.cx_active += 1
    host.pool.idle = [*host.pool.idle, conn]     # the list a first opened connection makes

    served = 0

    def one():
        nonlocal served
        down.data_received(REQUEST)
        write_batch.flush()         # the loop pass ends
        conn.data_received(RESPONSE)
        write_batch.flush()
        served += 1
        if not served % 1024:
            w.stats.fold()          # what the worker does every 20 ms under load
    for _ in range(300):
        one()
    if not (dt.out and dt.out[-1].startswith(b"HTTP/1.1 200") and ut.out):
        raise SystemExit(f"the path did not answer: {dt.out[-1:]!r}")
    return one, dt, ut, w


def count_calls(one, n: int) -> dict[str, float]:
    """Bytecode operations per call of `one`, by function."""
    counts: collections.Counter = collections.Counter()

    def trace(frame, event, arg):
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            co = frame.f_code
            counts["/".join(Path(co.co_filename).parts[-2:]) + ":" + co.co_name] += 1
        return trace
    sys.settrace(trace)
    try:
        for _ in range(n):
            one()
    finally:
        sys.settrace(None)
    return collections.defaultdict(float, {k: v / n for k, v in counts.items()})


def opcodes(one, n: int, per_call: int = 1, top: int = 40) -> None:
    """Print bytecode operations per request by function; `one` answers `per_call` requests."""
    counts = count_calls(one, n)
    print(f"{sum(counts.values()) / per_call:.0f} bytecode operations per request")
    for name, c in sorted(counts.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{c / per_call:8.1f}  {name}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--filter", choices=["none", "nop", "rate_limit"], default="none")
    ap.add_argument("--shared", type=int, default=1, metavar="N", help="run as worker 0 of N (shared limits)")
    ap.add_argument("--opcodes", action="store_true", help="count bytecode operations by function")
    ap.add_argument("--count", type=int, help="run this many requests and stop (for callgrind)")
    ap.add_argument("--requests", type=int, default=20000, help="requests per timed round")
    ap.add_argument("--tracing", type=float, metavar="PCT", help="trace the listener, sampling PCT percent")
    ap.add_argument("--propagation", default="w3c,b3,sw8", help="the formats a traced listener reads and writes")
    ap.add_argument("--export", action="store_true",
                    help="with --tracing: encode the records as OTLP in batches of BATCH_SPANS spans, as an exporter does (no send)")
    ap.add_argument("--detail-stats", action="store_true", help="per-route and per-host upstream stats on")
    ap.add_argument("--top", type=int, default=40, help="functions listed by --opcodes")
    args = ap.parse_args()
    filters = {"nop": "{nop: {}}", "rate_limit": RATE_LIMIT}.get(args.filter, "")
    one, dt, ut, _ = await setup(filters, args.shared, args.tracing, args.propagation, args.detail_stats,
                              args.export)
    if args.count is not None:
        for _ in range(args.count):
            one()
        return
    if args.opcodes:
        random.seed(1)              # the same requests sampled each time (--tracing below 100)
        opcodes(one, 200, top=args.top)
        return
    best = float("inf")
    for _ in range(5):
        dt.out.clear()
        ut.out.clear()
        t = time.perf_counter()
        for _ in range(args.requests):
            one()
        best = min(best, time.perf_counter() - t)
    print(f"{best / args.requests * 1e6:.2f} µs per request (best of 5 rounds of {args.requests})")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
