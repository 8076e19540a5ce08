#!/usr/bin/env python3
"""The HTTP/2 (h2c) downstream path in process: what one request costs in Python alone.

A real worker, HTTP/2 server, stream and HTTP/1.1 pool; fake transports on both
sides, so no kernel and no other process takes part. The client speaks as h2load
does (its preface, SETTINGS and window, then HEADERS with END_STREAM for GET /,
HPACK-indexed after the first), and the upstream answers as nginx does. One round
is one loop pass of client bytes, one of upstream answers, then the server's write.

    python bench/h2_inprocess.py                    # µs per request, best of 5 rounds
    python bench/h2_inprocess.py --streams 1        # 1 stream on each of 32 connections
    python bench/h2_inprocess.py --opcodes          # bytecode operations per request, by function
    python bench/h2_inprocess.py --count 1000       # just run N requests (for callgrind)

`--streams 32` (the default) keeps 32 streams in flight on one connection, all
arriving in one read; `--streams 1` spreads them over 32 connections of one
stream each. Every answer is decoded (frames and HPACK, independently of mosnx's
codec) and must be a 200 with the body, so an error path cannot pass for speed.
"""
from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import tempfile
import time
from pathlib import Path

import hpack
import uvloop

from mosnx import plugins
from mosnx.proxy import write_batch
from mosnx.proxy.http2.server import Http2Server
from mosnx.proxy.upstream.http1 import UpstreamConnection
from mosnx.proxy.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from h1_inprocess import CONFIG, RESPONSE, Transport, opcodes  # noqa: E402

BODY = b"hello world\n"
IN_FLIGHT = 32
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# h2load's defaults: -w 30 and -W 30, push off
CLIENT_WINDOW = 2 ** 30 - 1
_frame_head = struct.Struct(">HBBBI").pack     # 24-bit length as (high 16, low 8)


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _frame_head(n >> 8, n & 0xFF, ftype, flags, sid) + payload


class Client:
    """One h2load-like connection: request frames out, answers checked."""

    def __init__(self):
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.next_sid = 1
        self.consumed = 0          # DATA bytes taken since the last connection WINDOW_UPDATE
        self.buf = b""
        self.statuses: dict[int, bytes] = {}
        self.bodies: dict[int, bytes] = {}
        self.done = 0
        self.acks = b""            # what the client owes the server (SETTINGS ACKs, updates)

    def preface(self) -> bytes:
        settings = struct.pack(">HIHI", 2, 0, 4, CLIENT_WINDOW)
        return (PREFACE + frame(4, 0, 0, settings)
                + frame(8, 0, 0, struct.pack(">I", CLIENT_WINDOW - 65535)))

    def block(self) -> bytes:
        # the order and Huffman coding nghttp2 uses
        return self.enc.encode([(":path", "/"), (":scheme", "http"), (":authority", "127.0.0.1:18081"),
                                (":method", "GET"), ("user-agent", "h2load nghttp2/1.52.0")], huffman=True)

    def requests(self, n: int, block: bytes) -> bytes:
        sid = self.next_sid
        self.next_sid = sid + 2 * n
        k = len(block)
        if n == 1 and not self.acks:
            return _frame_head(k >> 8, k & 0xFF, 1, 0x5, sid) + block
        # HEADERS with END_STREAM | END_HEADERS
        out = [_frame_head(k >> 8, k & 0xFF, 1, 0x5, s) + block for s in range(sid, sid + 2 * n, 2)]
        if self.acks:
            out.insert(0, self.acks)
            self.acks = b""
        return out[0] if len(out) == 1 else b"".join(out)

    def receive(self, data: bytes) -> None:
        buf = self.buf + data
        pos = 0
        while len(buf) - pos >= 9:
            n = int.from_bytes(buf[pos:pos + 3], "big")
            if len(buf) - pos - 9 < n:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            payload = buf[pos + 9:pos + 9 + n]
            pos += 9 + n
            if ftype == 1:
                assert flags & 0x4, "CONTINUATION not expected here"
                fields = dict(self.dec.decode(payload, raw=True))
                self.statuses[sid] = fields[b":status"]
            elif ftype == 0:
                self.bodies[sid] = self.bodies.get(sid, b"") + payload
                self.consumed += n
                if self.consumed >= CLIENT_WINDOW // 2:
                    self.acks += frame(8, 0, 0, struct.pack(">I", self.consumed))
                    self.consumed = 0
            elif ftype == 4 and not flags & 1:
                self.acks += frame(4, 1, 0)
            elif ftype == 3 or ftype == 7:
                raise SystemExit(f"stream {sid} reset or connection gone away: {payload!r}")
            if flags & 1 and ftype in (0, 1):
                if self.statuses.get(sid) != b"200" or self.bodies.get(sid) != BODY:
                    raise SystemExit(f"stream {sid}: {self.statuses.get(sid)!r} {self.bodies.get(sid)!r}")
                del self.statuses[sid]
                del self.bodies[sid]
                self.done += 1
        self.buf = buf[pos:]


class Loop:
    """The worker's loop, except that call_soon callbacks wait for the bench to run
    them, where a loop pass would."""

    def __init__(self, real):
        self.soon: list = []
        self.call_soon = self.soon.append
        self.call_later = real.call_later
        self.time = real.time
        self.create_task = real.create_task


class Upstream(Transport):
    """An upstream socket: a write is a request nginx will answer."""

    def __init__(self, asked: list):
        super().__init__()
        self.asked = asked
        self.conn = None

    def write(self, data):
        self.out.append(data)
        self.asked.append(self.conn)


async def setup(streams: int):
    plugins.load()
    path = Path(tempfile.mkdtemp(prefix="mosnx-h2-inproc-")) / "mosnx.yaml"
    path.write_text(CONFIG.format(filters="", tracing=""))
    w = Worker(str(path))
    w.loop = loop = Loop(asyncio.get_running_loop())
    await w.apply(w.build(1))
    host = w.clusters.get("up").hosts[0]
    asked: list = []
    for _ in range(IN_FLIGHT):
        conn = UpstreamConnection(host.pool)
        ut = Upstream(asked)
        ut.conn = conn
        conn.connection_made(ut)
        host.pool.cx_active += 1
        host.cluster.cx_active += 1
        host.pool.idle = [*host.pool.idle, conn]     # the list a first opened connection makes

    conns = []
    for _ in range(IN_FLIGHT // streams):
        down = Http2Server(w, "bench")
        dt = Transport()
        down.connection_made(dt)
        client = Client()
        down.data_received(client.preface())
        conns.append((down, dt, client))
    soon = loop.soon
    first = conns[0][2].block()
    steady = conns[0][2].block()
    if conns[0][2].block() != steady:
        raise SystemExit("the client's header block does not settle")
    batches = [[down, client, first] for down, _, client in conns]
    answer = RESPONSE
    passes = 0

    def one():
        nonlocal passes
        # one pass: every connection's read (a single HEADERS each, or 32 in one read)
        for b in batches:
            b[0].data_received(b[1].requests(streams, b[2]))
        write_batch.flush()
        # the next: the upstream answers, then the server's write
        for conn in asked:
            conn.data_received(answer)
        asked.clear()
        write_batch.flush()
        for cb in soon:
            cb()
        soon.clear()
        passes += 1
        if not passes % 32:
            w.stats.fold()          # what the worker does every 20 ms under load

    def check():
        for down, dt, client in conns:
            for data in dt.out:
                client.receive(data)
            dt.out.clear()

    one()
    for b in batches:
        b[2] = steady
    for _ in range(100):
        one()
    check()
    total = sum(c.done for _, _, c in conns)
    if total != 101 * IN_FLIGHT:
        raise SystemExit(f"{total} answers for {101 * IN_FLIGHT} requests")
    return one, check, conns


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, choices=[1, 32], default=32,
                    help="streams per connection (32 connections of 1, or 1 of 32)")
    ap.add_argument("--opcodes", action="store_true", help="count bytecode operations by function")
    ap.add_argument("--count", type=int, help="run this many requests and stop (for callgrind)")
    ap.add_argument("--requests", type=int, default=20000, help="requests per timed round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    one, check, conns = await setup(args.streams)
    if args.count is not None:
        for _ in range(args.count // IN_FLIGHT):
            one()
        return
    if args.opcodes:
        opcodes(one, 50, IN_FLIGHT, 120)
        check()
        return
    passes = max(1, args.requests // IN_FLIGHT)
    best = float("inf")
    for _ in range(args.rounds):
        before = sum(c.done for _, _, c in conns)
        t = time.perf_counter()
        for _ in range(passes):
            one()
        best = min(best, time.perf_counter() - t)
        check()
        if sum(c.done for _, _, c in conns) - before != passes * IN_FLIGHT:
            raise SystemExit("some requests were not answered")
    n = passes * IN_FLIGHT
    print(f"{best / n * 1e6:.2f} µs per request (best of {args.rounds} rounds of {n}, "
          f"{args.streams} stream(s) per connection)")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
