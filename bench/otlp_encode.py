#!/usr/bin/env python3
"""What exporting a sampled request's spans costs the proxy, apart from the request path:
spans per second encoded into OTLP ExportTraceServiceRequest bytes (proxy/tracing/otlp.py),
and the same records as Zipkin JSON for comparison.

The records are real: bench/h1_inprocess.py's request path (one HTTP/1.1 GET through a
traced listener, 100 % sampled) leaves them in a list, a server span and a client span
each. They are then encoded in batches of --batch spans (the exporter's batch_size),
best of --passes rounds. One CPU, no sockets, deterministic input; on a shared machine compare
runs back to back.

  bench/otlp_encode.py [--records 4096] [--batch 512] [--propagation w3c] [--passes 5] [--only otlp]

Instructions, which a busy machine does not disturb: the difference of two callgrind runs,
  valgrind --tool=callgrind --callgrind-out-file=/dev/null bench/otlp_encode.py --passes 0
  valgrind --tool=callgrind --callgrind-out-file=/dev/null bench/otlp_encode.py --passes 4 --only otlp
divided by 4 x the spans recorded (--records x 2).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop  # noqa: E402

import h1_inprocess  # noqa: E402  (the in-process request path)
from mosnx.proxy.tracing import otlp, zipkin  # noqa: E402
from mosnx.runtime.tracing.tracer import Tracer  # noqa: E402


async def records(n: int, propagation: str) -> list[Any]:
    sink: list[Any] = []
    bind = Tracer.bind

    def to_sink(self: Tracer, _: Any, store: Any) -> None:
        bind(self, sink.append, store)      # every record, where setup keeps the last 4096
    Tracer.bind = to_sink                   # type: ignore[method-assign]
    try:
        one, _, _, _ = await h1_inprocess.setup("", 1, 100.0, propagation)
    finally:
        Tracer.bind = bind                  # type: ignore[method-assign]
    del sink[:]                             # the warm-up's
    for _ in range(n):
        one()
    return sink


def rate(encode: Callable[[list[Any]], bytes], recs: list[Any], batch: int, passes: int) -> tuple[float, int]:
    """Spans per second (the best of `passes` passes), and bytes per span."""
    per = max(1, batch // recs[0].size)
    batches = [recs[i:i + per] for i in range(0, len(recs), per)]
    spans = sum(r.size for r in recs)
    best = float("inf")
    size = 0
    for _ in range(passes):
        t = time.perf_counter()
        size = sum(len(encode(b)) for b in batches)
        best = min(best, time.perf_counter() - t)
    return spans / best, size // spans


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=4096, help="requests recorded (1-100000)")
    ap.add_argument("--batch", type=int, default=512, help="spans per export call")
    ap.add_argument("--propagation", default="w3c")
    ap.add_argument("--passes", type=int, default=5,
                    help="timed passes over the records (0: record only; for callgrind, compare 0 with N)")
    ap.add_argument("--only", choices=["otlp", "zipkin"], help="encode in this format only")
    args = ap.parse_args()
    if not 1 <= args.records <= 100_000 or args.batch < 1:
        ap.error("--records must be 1-100000 and --batch at least 1")
    recs = await records(args.records, args.propagation)
    for name, enc in (("otlp", otlp.encode), ("zipkin", zipkin.encode)):
        if args.passes < 1 or args.only not in (None, name):
            continue
        r, b = rate(enc, recs, args.batch, args.passes)
        print(f"{name:7s} {r:10.0f} spans/s  {1e6 / r:5.2f} µs/span  {b} bytes/span")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
