#!/usr/bin/env python3
"""What tracing costs the HTTP/1.1 request path in process, measured two ways that
the proxy-level bench (bench/tracing.py) cannot resolve below about 1 %.

The path is bench/h1_inprocess.py's: a real worker, codecs, stream and pool, fake
transports, one W3C-traced listener whose records go to an OTLP exporter's queue
(each kept as otlp.item makes it, a batch encoded every 512 spans; no send).

    python bench/tracing_inprocess.py                      # paired rounds: off, 0 %, 1 %
    python bench/tracing_inprocess.py --modes off,0%,1%,10%,100% --rounds 40
    python bench/tracing_inprocess.py --modes off,0%,1%,1%drop     # 1%drop: records dropped
    python bench/tracing_inprocess.py --after 1            # request by request at 1 %

Paired rounds (the default): one process, one worker; between rounds only the
listener's tracer is swapped (none for off, one per sampling percentage), so every
mode runs on the same heap, the same memos and the same hash seed, and each round
of each mode is compared with the same round of off. Two processes running the
same code differ by about 1 % from their layouts alone, which is the size of what
is measured here. Reported per mode: the median µs per request over the rounds, and
the median and quartiles of the round-against-round difference with off; and the
cost a sampled request carries, (mode − 0 %) / rate.

`--after P`: 100,000 requests timed one by one at P %, each marked as sampled or
not (and at 0 %, where the pool of drawn contexts is refilled). Reported: the
sampled (or refilling) request's own time, then the median time of the requests at
each distance after it, against the median of those far from any: what a rare
request's cold work costs the ones that follow, as the processor's caches and
predictors fill again with the request path.

Pin it (`taskset -c 1`); timings on a shared machine move by a few per cent from
run to run, the paired differences much less.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import h1_inprocess  # noqa: E402  (the in-process request path)
from tracing import parse_modes, percent_of  # noqa: E402  (bench/tracing.py's modes)

from mosnx.runtime.tracing.tracer import Tracer  # noqa: E402

WARMUP = 300


SUFFIXES = ("", "drop")        # P%drop: the records dropped as they come


def tracers(listener, modes: list[str], stats) -> dict[str, Tracer | None]:
    """A tracer per mode, each sending its records where the listener's does."""
    sink = listener.tracer.sink
    out: dict[str, Tracer | None] = {}
    for m in modes:
        p = percent_of(m, SUFFIXES)
        if p is None:
            out[m] = None
            continue
        t = Tracer("bench", ("w3c",), random_sampling=p)
        t.bind((lambda record: None) if m.endswith("drop") else sink, stats)
        out[m] = t
    return out


def use(listener, tracer: Tracer | None) -> None:
    object.__setattr__(listener, "tracer", tracer)       # a snapshot's listener is frozen


def paired(one, listener, stats, modes: list[str], rounds: int, requests: int) -> None:
    ts = tracers(listener, modes, stats)
    us: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        k = r % len(modes)
        for m in modes[k:] + modes[:k]:          # the order rotates from round to round
            use(listener, ts[m])
            for _ in range(WARMUP):
                one()
            t = time.perf_counter()
            for _ in range(requests):
                one()
            us[m].append((time.perf_counter() - t) / requests * 1e6)
    off = us["off"]
    zero = statistics.median(us["0%"]) if "0%" in us else None
    print(f"{rounds} rounds of {requests} requests per mode, W3C, an OTLP exporter's queue")
    print("| tracing | µs/request (median) | against off, round by round: median (quartiles) | per sampled request |")
    print("|---|---|---|---|")
    for m in modes:
        v = us[m]
        med = statistics.median(v)
        if m == "off":
            print(f"| off | {med:.3f} | | |")
            continue
        d = [100.0 * (a / b - 1.0) for a, b in zip(v, off)]
        q = statistics.quantiles(d, n=4)
        p = percent_of(m, SUFFIXES) or 0.0
        per = f"{(med - zero) / (p / 100.0):.1f} µs over 0 %" if zero is not None and p > 0 else ""
        print(f"| {m} | {med:.3f} | {statistics.median(d):+.2f} % ({q[0]:+.2f} to {q[2]:+.2f} %) | {per} |")


def after(one, listener, stats, p: float, n: int) -> None:
    t = tracers(listener, [f"{p:g}%"], stats)[f"{p:g}%"]
    assert t is not None
    use(listener, t)
    for _ in range(2000):
        one()
    pc = time.perf_counter_ns
    marks: list[bool] = []
    times: list[int] = []
    counted = t.sampled_total
    pool = t.pool
    for _ in range(n):
        if p > 0:
            s0 = counted.value
            a = pc()
            one()
            b = pc()
            marks.append(counted.value != s0)
        else:
            refill = pool is not None and not pool
            a = pc()
            one()
            b = pc()
            marks.append(refill)
        times.append(b - a)
    what = "sampled" if p > 0 else "refilling the pool of drawn contexts"
    at = [i for i, m in enumerate(marks) if m]
    if not at:
        print(f"no request was {what}")
        return
    far = []
    last = -10**9           # the last marked request
    for i, m in enumerate(marks):
        if m:
            last = i
        elif i - last > 100:
            far.append(times[i])
    base = statistics.median(far or times) / 1e3
    print(f"{n} requests at {p:g} %: {len(at)} {what}; a request far from any: {base:.2f} µs (median)")
    print("| requests after it | median µs | over the far ones, µs each | in all, µs |")
    print("|---|---|---|---|")
    total = 0.0
    for lo, hi in ((0, 1), (1, 2), (2, 3), (3, 5), (5, 10), (10, 30), (30, 60)):
        v = [times[i + k] for i in at for k in range(lo, hi)
             if i + k < n and not any(marks[i + j] for j in range(1, k + 1))]
        if not v:
            continue
        med = statistics.median(v) / 1e3
        extra = (med - base) * (hi - lo)
        total += extra
        label = "itself" if lo == 0 else (f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}")
        print(f"| {label} | {med:.2f} | {med - base:+.2f} | {extra:+.1f} |")
    print(f"in all, by the medians: {total:.1f} µs for each {what.split(' ')[0]} request")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="off,0%,1%",
                    help="off and sampling percentages (P%%, or P%%drop: records dropped), off among them")
    ap.add_argument("--rounds", type=int, default=30, help="rounds of paired runs (2-1000)")
    ap.add_argument("--requests", type=int, default=4000, help="requests per mode and round (100-1000000)")
    ap.add_argument("--after", type=float, metavar="PCT", help="time requests one by one at PCT %% (0-100)")
    ap.add_argument("--count", type=int, default=100_000, help="requests --after times (1000-10000000)")
    args = ap.parse_args()
    try:
        modes = parse_modes(args.modes, SUFFIXES)
    except ValueError as e:
        ap.error(f"--modes: {e}")
    if not 2 <= args.rounds <= 1000 or not 100 <= args.requests <= 1_000_000 or not 1000 <= args.count <= 10_000_000:
        ap.error("--rounds 2-1000, --requests 100-1000000, --count 1000-10000000")
    if args.after is not None and not 0.0 <= args.after <= 100.0:
        ap.error("--after takes a percentage, 0-100")
    one, _, _, worker = await h1_inprocess.setup("", 1, 1.0, "w3c", False, True)
    listener = worker.snapshot.listeners["bench"]
    if args.after is not None:
        after(one, listener, worker.stats, args.after, args.count)
    else:
        paired(one, listener, worker.stats, modes, args.rounds, args.requests)
    return 0


if __name__ == "__main__":
    uvloop.install()
    sys.exit(asyncio.run(main()))
