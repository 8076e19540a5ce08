#!/usr/bin/env python3
"""mosnx's HTTP/2 stack against the `h2` library, per request, in process and socket-free.

Why mosnx keeps its own codec (proxy/codec/http2*.py) rather than python-hyper's
h2 is a claim about per-request cost; this script measures it. The stacks do the
same work on one warm connection, driven the way the proxy drives its codec:

* server role (proxy/http2/server.py + downstream.py): parse one read holding N
  client HEADERS frames (a GET with 8 typical headers, HPACK-encoded as nghttp2,
  curl and browsers encode them: indexed fields, and `:path` as a Huffman literal
  without indexing), turn each block into the request the application gets
  (method, path, authority, header items), then answer each stream with HEADERS
  (:status 200 + 3 headers) and DATA (12 bytes, END_STREAM), and take the bytes to
  write once.
* client role (proxy/upstream/http2.py): encode N requests (HEADERS, END_STREAM)
  and take the bytes, then parse one read of the N answers an upstream gives
  (HEADERS + DATA with END_STREAM), hand status, headers and body over,
  acknowledge the DATA, and take whatever that queued.

The head translation around the codec (proxy head to HTTP/2 fields:
`response_fields`, `request_block`) is shared code both stacks would need and is
run for all. Three stacks:
* `mosnx`: the project's codec; `request_parts`/`response_from_block` (its RFC 9113
  §8 checks and the split into the request the proxy routes on) included.
* `h2`: h2 checks the header blocks itself and a minimal split follows, lighter
  than what mosnx checks (authority syntax, host/:authority agreement), so the gap
  measured is, if anything, understated.
* `h2-lean`: h2's inbound and outbound header checks off; h2 frames, keeps HPACK
  and stream state, and mosnx's `request_parts`/`response_from_block` check the
  blocks: what a mosnx built on h2 would run.
h2 runs with header_encoding=None (bytes, what a proxy wants); the `h2` stack
leaves outbound validation and normalisation off unless --h2-defaults: the
proxy's fields are already lower-case and checked.

Workloads: `same` repeats one request (what load generators and RPC stubs send;
mosnx's HPACK and head memos then answer most of the work), `vary` gives every
request its own path (`/api/v1/items/<n>`), which misses those memos.

Every output is decoded by an independent peer (frames and the `hpack` package)
and must be the expected requests or 200 answers with the body, so an error path
cannot pass for speed. Figures: the median (and the least) µs per request over
interleaved rounds on a pinned CPU (--cpu, default 1, as `taskset -c 1`), and
Python bytecode operations per request (sys.settrace opcode events, as
h1_inprocess.py --opcodes counts them), which do not depend on machine noise.

    python bench/h2_codec.py              # every cell: about 30 s of CPU
    python bench/h2_codec.py --quick      # about 13 s, a smoke check
    python bench/h2_codec.py --top 12     # also the functions with most bytecode per request
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import time
from pathlib import Path

import h2
import h2.config
import h2.connection
import h2.events
import hpack
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

from mosnx.proxy.codec import http2_connection as mc
from mosnx.proxy.codec.http2 import request_block, request_parts, response_fields, response_from_block
from mosnx.proxy.http2.server import _limits
from mosnx.runtime.config.protocols import Http2Options
from mosnx.runtime.headers import Headers
from mosnx.runtime.model import Limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from h1_inprocess import count_calls  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
AUTHORITY = b"api.example.com"
PATH = b"/api/v1/items"
REQUEST_FIELDS = [                   # after the pseudo-headers; a browser's fetch()
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (b"accept", b"application/json, text/plain, */*"),
    (b"accept-language", b"en-US,en;q=0.5"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
    (b"referer", b"https://app.example.com/dashboard"),
    (b"sec-fetch-dest", b"empty"),
    (b"sec-fetch-mode", b"cors"),
    (b"sec-fetch-site", b"same-site"),
]
BODY = b"hello world\n"
# the answer's head as the proxy holds it; content-length comes from the body's length
RESPONSE_ITEMS = [(b"content-type", b"application/json"), (b"server", b"nginx/1.22.1")]
# what an upstream sends (the client role's input)
UPSTREAM_RESPONSE = [(b":status", b"200"), (b"content-type", b"application/json"),
                     (b"content-length", b"12"), (b"server", b"nginx/1.22.1")]
BIG_WINDOW = 2 ** 31 - 1
WARM_REQUESTS = 100

_huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode
_head = struct.Struct(">BHBBI").pack


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _head(n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def settings(*pairs: int) -> bytes:
    return frame(mc.SETTINGS, 0, 0, struct.pack(">" + "HI" * (len(pairs) // 2), *pairs))


SETTINGS_ACK = frame(mc.SETTINGS, mc.ACK, 0)


def path_of(workload: str, n: int) -> bytes:
    return PATH if workload == "same" else b"%s/%d" % (PATH, n)


# -------------------------------------------------------------- the application
class App:
    """What the stack hands requests and answers to: the same for both stacks."""

    def __init__(self):
        self.requests = 0
        self.bad = 0
        self.answers = 0
        self.body = 0

    def request(self, method: str, path: str, authority: str, items) -> tuple:
        self.requests += 1
        if method != "GET" or authority != "api.example.com" or len(items) != 9:
            self.bad += 1
        return 200, RESPONSE_ITEMS, BODY

    def answer(self, status: int, headers: Headers, body_len) -> None:
        self.answers += 1
        if status != 200 or body_len != 12 or len(headers.items) != 3:
            self.bad += 1

    def data(self, data: bytes) -> None:
        self.body += len(data)


def h2_request_parts(headers) -> tuple:
    """What the proxy needs of a request h2 validated: request_parts' shape, no more checks."""
    method = path = scheme = authority = None
    items = []
    for kv in headers:
        k = kv[0]
        if k[:1] == b":":
            if k == b":method":
                method = kv[1]
            elif k == b":path":
                path = kv[1]
            elif k == b":authority":
                authority = kv[1]
            else:
                scheme = kv[1]
        else:
            items.append(kv)
    items.insert(0, (b"host", authority))
    return (method.decode("ascii"), path.decode("ascii"), scheme.decode("ascii"),
            authority.decode("latin-1"), tuple(items), None, False)


def h2_response_parts(headers) -> tuple:
    status = None
    items = []
    cl = None
    for kv in headers:
        k = kv[0]
        if k == b":status":
            status = int(kv[1])
        else:
            if k == b"content-length":
                cl = int(kv[1])
            items.append(kv)
    return status, Headers(items), cl


# -------------------------------------------------------------- independent peers
class Peer:
    """Reads what a stack wrote, with the `hpack` package: HEADERS and DATA by stream."""

    def __init__(self, skip_preface: bool = False):
        self.dec = hpack.Decoder()
        self.buf = b""
        self.skip = len(PREFACE) if skip_preface else 0
        self.heads: dict[int, dict] = {}
        self.bodies: dict[int, bytes] = {}
        self.ended: list[int] = []

    def feed(self, data: bytes) -> None:
        buf = self.buf + data
        pos = 0
        if self.skip:
            if buf[:self.skip] != PREFACE[:self.skip]:
                raise SystemExit("the client stack did not send the preface")
            pos = self.skip
            self.skip = 0
        while len(buf) - pos >= 9:
            n = int.from_bytes(buf[pos:pos + 3], "big")
            if len(buf) - pos - 9 < n:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            payload = buf[pos + 9:pos + 9 + n]
            pos += 9 + n
            if ftype == mc.HEADERS:
                if not flags & mc.END_HEADERS or flags & (mc.PADDED | mc.PRIORITY_FLAG):
                    raise SystemExit(f"stream {sid}: a header block this peer does not expect")
                self.heads[sid] = dict(self.dec.decode(payload, raw=True))
            elif ftype == mc.DATA:
                self.bodies[sid] = self.bodies.get(sid, b"") + payload
            elif ftype in (mc.RST_STREAM, mc.GOAWAY):
                raise SystemExit(f"stream {sid} reset or connection gone away: {payload!r}")
            if flags & mc.END_STREAM and ftype in (mc.HEADERS, mc.DATA):
                self.ended.append(sid)
        self.buf = buf[pos:]

    def take_answers(self) -> int:
        """Streams answered 200 with the body, each checked and forgotten."""
        for sid in self.ended:
            h = self.heads.pop(sid, {})
            body = self.bodies.pop(sid, b"")
            if h.get(b":status") != b"200" or h.get(b"content-length") != b"12" or body != BODY:
                raise SystemExit(f"stream {sid}: {h!r} {body!r}")
        n = len(self.ended)
        self.ended.clear()
        return n

    def take_requests(self, expected: list) -> None:
        """The requests, in stream order, must be `expected` [(sid, path), ...]."""
        got = [(sid, self.heads.pop(sid).get(b":path")) for sid in self.ended]
        self.ended.clear()
        if got != expected:
            raise SystemExit(f"the requests sent were not the ones asked for: {got[:3]!r} vs {expected[:3]!r}")


class ClientBytes:
    """A client's frames for the server role: nghttp2's encoding choices with `hpack`."""

    def __init__(self, workload: str):
        self.workload = workload
        self.enc = hpack.Encoder()
        self.next_sid = 1
        self.n = 0

    def preface(self) -> bytes:
        return (PREFACE + settings(mc.ENABLE_PUSH, 0, mc.INITIAL_WINDOW_SIZE, BIG_WINDOW)
                + frame(mc.WINDOW_UPDATE, 0, 0, struct.pack(">I", BIG_WINDOW - mc.DEFAULT_WINDOW)))

    def block(self) -> bytes:
        # indexed once the table holds them; :path a literal without indexing (nghttp2's choice)
        path = path_of(self.workload, self.n)
        self.n += 1
        h = _huffman(path)
        lit = b"\x04" + bytes((0x80 | len(h),)) + h if len(h) < len(path) else b"\x04" + bytes((len(path),)) + path
        return (self.enc.encode([(b":method", b"GET"), (b":scheme", b"https"), (b":authority", AUTHORITY)])
                + lit + self.enc.encode(REQUEST_FIELDS))

    def batch(self, streams: int) -> bytes:
        out = []
        for _ in range(streams):
            out.append(frame(mc.HEADERS, mc.END_HEADERS | mc.END_STREAM, self.next_sid, self.block()))
            self.next_sid += 2
        return b"".join(out)


class UpstreamBytes:
    """An upstream's answers for the client role, encoded as `hpack` encodes them."""

    def __init__(self):
        self.enc = hpack.Encoder()

    def preface(self) -> bytes:
        return settings(mc.MAX_CONCURRENT_STREAMS, 1000, mc.INITIAL_WINDOW_SIZE, BIG_WINDOW) + \
            frame(mc.WINDOW_UPDATE, 0, 0, struct.pack(">I", BIG_WINDOW - mc.DEFAULT_WINDOW)) + SETTINGS_ACK

    def answers(self, sids) -> bytes:
        return b"".join(frame(mc.HEADERS, mc.END_HEADERS, sid, self.enc.encode(UPSTREAM_RESPONSE))
                        + frame(mc.DATA, mc.END_STREAM, sid, BODY) for sid in sids)


# -------------------------------------------------------------- the two stacks
class _Strict:
    """What both benchmark sinks answer alike: anything but the exchange under test
    ends the run."""

    def on_reset(self, sid, code):
        raise SystemExit(f"stream {sid} reset ({code})")

    def on_header_list_too_large(self, sid):
        raise SystemExit(f"stream {sid}: header list too large")

    def on_window(self, sid):
        pass

    def on_settings(self):
        pass

    def on_goaway(self, last, code):
        raise SystemExit("GOAWAY")


class _MosnxServerSink(_Strict):
    """proxy/http2/server.py's codec calls, reduced to what a GET asks of them."""

    def __init__(self):
        self.started: list = []

    def on_headers(self, sid, fields, end):
        parts = request_parts(fields)
        if not end and parts[5] is not None:
            self.h2.expect_length(sid, parts[5])
        self.started.append((sid, parts))

    def on_data(self, sid, data, n, end):
        raise SystemExit("the server role got DATA")

    def on_trailers(self, sid, fields):
        raise SystemExit("the server role got trailers")



def mosnx_server(app: App):
    """The listener's codec as Http2Server.connection_made builds it, and one read's work."""
    sink = _MosnxServerSink()
    opts, limits = Http2Options(), Limits()
    conn = mc.H2Connection(sink, False, {mc.MAX_CONCURRENT_STREAMS: opts.max_concurrent_streams,
                                         mc.MAX_HEADER_LIST_SIZE: limits.request_headers,
                                         mc.INITIAL_WINDOW_SIZE: opts.initial_stream_window_size},
                           opts.initial_connection_window_size, _limits(opts, limits))
    sink.h2 = conn
    conn.initiate()
    started = sink.started

    def read(data: bytes) -> bytes:
        conn.feed(data)
        for sid, parts in started:
            status, items, body = app.request(parts[0], parts[1], parts[3], parts[4])
            conn.send_headers(sid, response_fields(status, items, len(body)), False)
            conn.send_data(sid, body, True)
        started.clear()
        out = conn.data_to_send()
        conn.written()
        return out
    return read, conn.data_to_send()


def h2_config(client: bool, lean: bool, defaults: bool) -> h2.config.H2Configuration:
    if lean:
        return h2.config.H2Configuration(client_side=client, header_encoding=None,
                                         validate_outbound_headers=False, normalize_outbound_headers=False,
                                         validate_inbound_headers=False, normalize_inbound_headers=False)
    if defaults:
        return h2.config.H2Configuration(client_side=client, header_encoding=None)
    return h2.config.H2Configuration(client_side=client, header_encoding=None,
                                     validate_outbound_headers=False, normalize_outbound_headers=False)


def h2_server(app: App, lean: bool, defaults: bool):
    """h2 checks the blocks (and a minimal split follows), or, `lean`, h2 only frames and
    mosnx's request_parts checks them, as a mosnx built on h2 would run."""
    conn = h2.connection.H2Connection(h2_config(False, lean, defaults))
    parts_of = (lambda fields: request_parts(tuple(fields))) if lean else h2_request_parts
    conn.initiate_connection()
    RequestReceived = h2.events.RequestReceived
    StreamEnded = h2.events.StreamEnded

    def read(data: bytes) -> bytes:
        started = []
        for ev in conn.receive_data(data):
            t = type(ev)
            if t is RequestReceived:
                started.append((ev.stream_id, parts_of(ev.headers)))
            elif t is not StreamEnded and not isinstance(ev, (h2.events.RemoteSettingsChanged,
                                                              h2.events.SettingsAcknowledged,
                                                              h2.events.WindowUpdated)):
                raise SystemExit(f"unexpected {ev!r}")
        for sid, parts in started:
            status, items, body = app.request(parts[0], parts[1], parts[3], parts[4])
            conn.send_headers(sid, response_fields(status, items, len(body)))
            conn.send_data(sid, body, end_stream=True)
        return conn.data_to_send()
    return read, conn.data_to_send()


class _MosnxClientSink(_Strict):
    """proxy/upstream/http2.py's codec calls, reduced to one answer per stream."""

    def __init__(self, app: App):
        self.app = app

    def on_headers(self, sid, fields, end):
        status, headers, body = response_from_block(fields)
        if not end and body is not None:
            self.h2.expect_length(sid, body)
        self.app.answer(status, headers, body)

    def on_data(self, sid, data, n, end):
        self.app.data(data)
        self.h2.ack(sid, n)

    def on_trailers(self, sid, fields):
        raise SystemExit("the client role got trailers")



# the stream's request head as the upstream side gets it (host first, as request_parts makes it)
def _request_head() -> Headers:
    return Headers([(b"host", AUTHORITY)] + REQUEST_FIELDS)


def mosnx_client(app: App):
    """H2UpstreamConnection's codec; send = H2UpStream.on_request, receive = data_received."""
    sink = _MosnxClientSink(app)
    conn = mc.H2Connection(sink, True, {mc.ENABLE_PUSH: 0, mc.INITIAL_WINDOW_SIZE: 1024 * 1024}, 4 * 1024 * 1024)
    sink.h2 = conn
    conn.initiate()

    def send(paths) -> bytes:
        for path in paths:
            block = request_block("GET", path, _request_head(), "https", False)
            conn.send_headers(conn.next_stream_id(), block, True)
        return conn.data_to_send()

    def receive(data: bytes) -> bytes:
        conn.feed(data)
        return conn.data_to_send()
    return send, receive, conn.data_to_send()


def h2_client(app: App, lean: bool, defaults: bool):
    conn = h2.connection.H2Connection(h2_config(True, lean, defaults))
    answer_of = (lambda fields: response_from_block(tuple(fields))) if lean else h2_response_parts
    conn.initiate_connection()
    ResponseReceived = h2.events.ResponseReceived
    DataReceived = h2.events.DataReceived
    ignore = (h2.events.StreamEnded, h2.events.RemoteSettingsChanged, h2.events.SettingsAcknowledged,
              h2.events.WindowUpdated)

    def send(paths) -> bytes:
        for path in paths:
            block = request_block("GET", path, _request_head(), "https", False)
            conn.send_headers(conn.get_next_available_stream_id(), block, end_stream=True)
        return conn.data_to_send()

    def receive(data: bytes) -> bytes:
        for ev in conn.receive_data(data):
            t = type(ev)
            if t is ResponseReceived:
                app.answer(*answer_of(ev.headers))
            elif t is DataReceived:
                app.data(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif not isinstance(ev, ignore):
                raise SystemExit(f"unexpected {ev!r}")
        return conn.data_to_send()
    return send, receive, conn.data_to_send()


# -------------------------------------------------------------- drivers
class ServerCell:
    """One server-role connection of one stack: rounds of reads of N requests."""

    def __init__(self, stack: str, workload: str, streams: int, h2_defaults: bool):
        self.app = App()
        self.streams = streams
        self.client = ClientBytes(workload)
        self.peer = Peer()
        self.checked = 0                # requests the app saw by the last check
        if stack == "mosnx":
            self.read, first = mosnx_server(self.app)
        else:
            self.read, first = h2_server(self.app, stack == "h2-lean", h2_defaults)
        self.peer.feed(first)
        # the client's preface and its ACK of the server's SETTINGS, then warm requests
        self.peer.feed(self.read(self.client.preface() + SETTINGS_ACK))
        self.check(self.run(self.inputs(WARM_REQUESTS // streams)))

    def inputs(self, batches: int) -> list:
        return [self.client.batch(self.streams) for _ in range(batches)]

    def run(self, inputs: list) -> list:
        read = self.read
        return [read(data) for data in inputs]

    def check(self, outputs: list) -> int:
        self.peer.feed(b"".join(outputs))
        n = self.peer.take_answers()
        asked, self.checked = self.app.requests - self.checked, self.app.requests
        if n != asked or self.app.bad:
            raise SystemExit(f"{n} answers for {asked} requests, {self.app.bad} bad")
        return n


class ClientCell:
    """One client-role (upstream) connection of one stack: rounds of N requests out, N answers in."""

    def __init__(self, stack: str, workload: str, streams: int, h2_defaults: bool):
        self.app = App()
        self.workload = workload
        self.streams = streams
        self.upstream = UpstreamBytes()
        self.peer = Peer(skip_preface=True)
        self.checked = 0                # answers the app saw by the last check
        self.next_sid = 1
        self.n = 0
        self.expected: list = []
        if stack == "mosnx":
            self.send, self.receive, first = mosnx_client(self.app)
        else:
            self.send, self.receive, first = h2_client(self.app, stack == "h2-lean", h2_defaults)
        self.peer.feed(first)
        self.peer.feed(self.receive(self.upstream.preface()))
        self.check(self.run(self.inputs(WARM_REQUESTS // streams)))

    def inputs(self, batches: int) -> list:
        out = []
        for _ in range(batches):
            sids = range(self.next_sid, self.next_sid + 2 * self.streams, 2)
            self.next_sid += 2 * self.streams
            paths = []
            for sid in sids:
                p = path_of(self.workload, self.n)
                self.n += 1
                paths.append(p.decode("ascii"))
                self.expected.append((sid, p))
            out.append((paths, self.upstream.answers(sids)))
        return out

    def run(self, inputs: list) -> list:
        send, receive = self.send, self.receive
        out = []
        for paths, answers in inputs:
            out.append(send(paths))
            out.append(receive(answers))
        return out

    def check(self, outputs: list) -> int:
        self.peer.feed(b"".join(outputs))
        expected, self.expected = self.expected, []
        self.peer.take_requests(expected)
        n, self.checked = self.app.answers - self.checked, self.app.answers
        if n != len(expected) or self.app.bad or self.app.body != 12 * self.app.answers:
            raise SystemExit(f"{n} answers for {len(expected)} requests, {self.app.bad} bad")
        return n


# -------------------------------------------------------------- measuring
def measure(cells: dict, requests: int, rounds: int) -> dict:
    """Interleaved rounds (mosnx, h2, mosnx, ...): µs per request, median and least."""
    times: dict[str, list[float]] = {k: [] for k in cells}
    for _ in range(rounds):
        for name, cell in cells.items():
            inputs = cell.inputs(max(1, requests // cell.streams))
            t = time.perf_counter()
            outputs = cell.run(inputs)
            dt = time.perf_counter() - t
            n = cell.check(outputs)
            times[name].append(dt / n * 1e6)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def opcodes(cell, requests: int, top: int) -> tuple[float, list]:
    batches = max(1, requests // cell.streams)
    inputs = iter(cell.inputs(batches))
    outputs: list = []
    run = cell.run
    counts = count_calls(lambda: outputs.extend(run([next(inputs)])), batches)
    cell.check(outputs)
    n = batches * cell.streams
    total = sum(counts.values()) * batches / n
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return total, [(c * batches / n, name) for name, c in ranked]


def pin(cpu: int) -> str:
    if cpu < 0 or not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    if cpu not in os.sched_getaffinity(0) and cpu >= (os.cpu_count() or 1):
        return f"not pinned (no CPU {cpu})"
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


STACKS = ("mosnx", "h2", "h2-lean")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and requests: a smoke check")
    ap.add_argument("--rounds", type=int, help="timed rounds per cell (default 5, --quick 3)")
    ap.add_argument("--requests", type=int, help="requests per timed round (default 1000, --quick 200)")
    ap.add_argument("--roles", default="server,client")
    ap.add_argument("--workloads", default="same,vary")
    ap.add_argument("--streams", default="1,10", help="concurrent streams per read")
    ap.add_argument("--cpu", type=int, default=1, help="CPU to pin to (as taskset -c); -1: none")
    ap.add_argument("--no-opcodes", action="store_true", help="skip the bytecode counts")
    ap.add_argument("--top", type=int, default=0, help="print the N functions with most bytecode per request")
    ap.add_argument("--h2-defaults", action="store_true",
                    help="the h2 column with h2's outbound header validation and normalisation on")
    ap.add_argument("--least", action="store_true",
                    help="report the least µs of the rounds instead of the median (a busy machine)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    pick = 1 if args.least else 0
    rounds = args.rounds or (3 if args.quick else 5)
    requests = args.requests or (200 if args.quick else 1000)
    op_requests = 10 if args.quick else 20
    where = pin(args.cpu)
    print(f"h2 {h2.__version__}, hpack {hpack.__version__}, Python {sys.version.split()[0]}; {where}; "
          f"{'least' if args.least else 'median'} of {rounds} interleaved rounds of {requests} requests"
          + ("" if args.no_opcodes else f"; bytecode over {op_requests} requests")
          + ("; h2 outbound validation on" if args.h2_defaults else ""))
    print("h2: h2 checks header blocks, a minimal split follows; "
          "h2-lean: h2 frames only, mosnx's codec.http2 checks (a mosnx built on h2)\n")
    print("| role | workload | streams | µs/req mosnx | h2 | h2-lean | ops/req mosnx | h2 | h2-lean |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for role in args.roles.split(","):
        make = ServerCell if role == "server" else ClientCell
        for workload in args.workloads.split(","):
            for streams in [int(s) for s in args.streams.split(",")]:
                cells = {stack: make(stack, workload, streams, args.h2_defaults) for stack in STACKS}
                t = measure(cells, requests, rounds)
                ops = {} if args.no_opcodes else {k: opcodes(c, op_requests, args.top) for k, c in cells.items()}
                results.append({"role": role, "workload": workload, "streams": streams,
                                "us": {k: v[0] for k, v in t.items()}, "us_min": {k: v[1] for k, v in t.items()},
                                "ops": {k: v[0] for k, v in ops.items()}})
                m = t["mosnx"][pick]
                us = " | ".join([f"{m:.1f}"] + [f"{t[k][pick]:.1f} ({t[k][pick] / m:.1f}×)" for k in STACKS[1:]])
                if ops:
                    o = ops["mosnx"][0]
                    op = " | ".join([f"{o:.0f}"] + [f"{ops[k][0]:.0f} ({ops[k][0] / o:.1f}×)" for k in STACKS[1:]])
                else:
                    op = "– | – | –"
                print(f"| {role} | {workload} | {streams} | {us} | {op} |", flush=True)
                for stack, (_, ranked) in ops.items():
                    for c, name in ranked:
                        print(f"    {stack:7} {c:8.1f}  {name}")
    print(f"\nµs/req: the {'least' if args.least else 'median'} of the rounds (both are in --json); ops/req: Python bytecode operations "
          "per request; (n×): the cost against mosnx's.")
    if args.json:
        Path(args.json).write_text(json.dumps({"h2": h2.__version__, "hpack": hpack.__version__, "where": where,
                                               "rounds": rounds, "requests": requests, "results": results},
                                              indent=1))


if __name__ == "__main__":
    main()
