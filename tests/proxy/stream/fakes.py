"""Fakes of the executor's Protocols (proxy/stream/contracts.py) for driving an
HttpStream without sockets: a Downstream and an Upstream that record what the
stream asks of them, a pool that hands out fake upstreams when told, and a loop
whose timers fire when the test says. Everything else is real: the snapshot is
built from YAML by the runtime, the clusters, hosts and balancers are the
proxy's own, and the listener's counters are real stats.
"""
from __future__ import annotations

import textwrap

import mosnx.dsl  # noqa: F401  (registers the .mdsl front end, as a worker has it)
import mosnx.runtime.filters  # noqa: F401  (registers the built-in filters, as a worker has them)
from mosnx.proxy.listener_stats import ListenerStats
from mosnx.proxy.stream import HttpStream
from mosnx.proxy.upstream.cluster import ClusterManager
from mosnx.proxy.upstream.pool import OVERFLOW
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.snapshot import build_snapshot
from mosnx.runtime.tracing.propagation import fields_of
from mosnx.runtime.stats import Store


class FakeDown:
    """Downstream: records each call as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.is_writable = True
        self.finished = 0

    def send_head(self, stream, status, headers, body_len, end) -> None:
        self.events.append(("head", status, list(headers.items), body_len, end))

    def send_data(self, stream, data) -> None:
        self.events.append(("data", data))

    def send_end(self, stream, trailers) -> None:
        self.events.append(("end", None if trailers is None else list(trailers.items)))

    def send_whole(self, stream, status, headers, body_len, body, memo=None) -> None:
        self.send_head(stream, status, headers, body_len, False)
        self.send_data(stream, body)
        self.send_end(stream, None)

    def flush(self) -> None:
        pass

    def send_continue(self, stream) -> None:
        self.events.append(("continue",))

    def send_raw(self, stream, data) -> None:
        self.events.append(("raw", data))

    def abort(self, stream) -> None:
        self.events.append(("abort",))

    def pause_body(self, stream) -> None:
        self.events.append(("pause_body",))

    def resume_body(self, stream) -> None:
        self.events.append(("resume_body",))

    def writable(self) -> bool:
        return self.is_writable

    def start_tunnel(self, stream) -> None:
        self.events.append(("tunnel",))

    def stream_finished(self, stream) -> None:
        self.finished += 1

    # what a test reads
    def status(self) -> int | None:
        return next((e[1] for e in self.events if e[0] == "head"), None)

    def head(self) -> dict[bytes, bytes]:
        return dict(next(e[2] for e in self.events if e[0] == "head"))

    def body(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")


class FakeUp:
    """Upstream: records the request the stream hands it."""

    def __init__(self, pool, reused: bool = False) -> None:
        self.pool = pool
        self.stream = None
        self.paused = False
        self.reused = reused
        self.tls = None            # cleartext
        self.sent: list[tuple] = []
        self.traceparent: bytes | None = None     # the trace context the request went with
        self.closed = False

    def send_request(self, req, source, body, upgrade, chunks, ended, trailers, decoded=None, wire=None,
                     wire_n=0) -> None:
        self.sent.append(("request", req.method, req.path, body, upgrade, list(chunks or ()), ended))
        if wire is not None and not wire_n:
            self.traceparent = dict(fields_of(wire)).get(b"traceparent")
        else:
            self.traceparent = req.headers.getb(b"traceparent")

    def send_body(self, data) -> None:
        self.sent.append(("body", data))

    def send_end(self, trailers) -> None:
        self.sent.append(("end", trailers))

    def send(self, data) -> None:
        self.sent.append(("raw", data))

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True

    # the upstream's side of the exchange, as a test plays it
    def answer(self, status: int, headers=(), body: bytes = b"", keep_alive: bool = True,
               trailers=None) -> None:
        s = self.stream
        s.on_upstream_head(status, Headers([(k.encode(), v.encode()) for k, v in headers]),
                           keep_alive, len(body) if trailers is None else None)
        if body and self.stream is s:
            s.on_upstream_data(body)
        if self.stream is s:
            self.stream = None
            s.on_upstream_end(trailers)


class FakePool:
    """A host's pool: acquire hands out a FakeUp at once, or (held) when the test
    calls ready(); `overflow` refuses."""

    def __init__(self, host, made: list | None = None) -> None:
        self.host = host
        self.made = made if made is not None else []     # every FakeUp of the rig, in order
        self.held = False
        self.overflow = False
        self.waiting: list = []
        self.conns: list[FakeUp] = []
        self.released: list[tuple[FakeUp, bool]] = []
        self.cancelled = 0
        self.reused = False

    def acquire(self, stream):
        if self.overflow:
            return OVERFLOW
        if self.held:
            self.waiting.append(stream)
            return None
        return self._new()

    def _new(self) -> FakeUp:
        up = FakeUp(self, self.reused)
        self.conns.append(up)
        self.made.append(up)
        return up

    def ready(self) -> FakeUp:
        s = self.waiting.pop(0)
        up = self._new()
        s.on_pool_ready(up)
        return up

    def fail(self, detail: str = "upstream_connect_failure", status: int = 503) -> None:
        self.waiting.pop(0).on_pool_failure(detail, status)

    def release(self, conn, reusable: bool) -> None:
        self.released.append((conn, reusable))

    def cancel(self, stream) -> None:
        if stream in self.waiting:
            self.waiting.remove(stream)
            self.cancelled += 1


class FakeTimer:
    def __init__(self, loop, at: float, fn) -> None:
        self.loop, self.at, self.fn, self.cancelled = loop, at, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """call_later and time() on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, fn, *args) -> FakeTimer:
        t = FakeTimer(self, self.now + delay, (lambda: fn(*args)) if args else fn)
        self.timers.append(t)
        return t

    def advance(self, seconds: float) -> None:
        """Move the clock and run the timers that fall due, in order."""
        self.now += seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.at <= self.now]
            if not due:
                return
            t = min(due, key=lambda t: t.at)
            self.timers.remove(t)
            t.fn()


class FakeWorker:
    """What a stream reads from its worker: real clusters and stats, a fake loop."""

    def __init__(self, snapshot) -> None:
        self.stats = Store()
        self.clusters = ClusterManager(self.stats)
        self.clusters.update(snapshot.clusters)
        self.snapshot = snapshot
        self.loop = FakeLoop()
        self.access_logs: dict = {}
        self.errors: list[str] = []
        self.mirrored: list = []

    def log_exception(self, what: str) -> None:
        self.errors.append(what)

    def mirror(self, stream, mirrors) -> None:
        self.mirrored.append(mirrors)


class Rig:
    """A snapshot built from `yaml` (a listener `l` and its clusters), with every
    host's pool a FakePool; `stream()` makes an HttpStream on it."""

    def __init__(self, tmp_path, yaml: str) -> None:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(textwrap.dedent(yaml))
        self.snapshot = build_snapshot(str(cfg))
        self.worker = FakeWorker(self.snapshot)
        self.listener = self.snapshot.listeners["l"]
        self.lstats = ListenerStats(self.worker.stats, "l")
        self.made: list[FakeUp] = []        # upstream handles, in the order they were given
        for cluster in self.worker.clusters.clusters.values():
            for host in cluster.hosts:
                host.pool = FakePool(host, self.made)

    def pool(self, cluster: str = "up", i: int = 0) -> FakePool:
        return self.worker.clusters.get(cluster).hosts[i].pool

    def stream(self, method: str = "GET", path: str = "/", headers=(), body: int | None = 0,
               keep_alive: bool = True, upgrade: bool = False, expect: bool = False,
               express: bool = False) -> tuple[HttpStream, FakeDown]:
        items = [(b"host", b"example.com")] + [(k.encode(), v.encode()) for k, v in headers]
        if body:
            items.append((b"content-length", str(body).encode()))
        req = RequestHead(method, path, Headers(items), "1.1")
        ctx = StreamContext(req, "l", "HTTP/1.1", ("127.0.0.1", 40000), ("127.0.0.1", 8080))
        down = FakeDown()
        s = HttpStream(down, self.worker, self.listener, self.lstats, ctx, body, keep_alive, upgrade,
                       expect, express)
        return s, down

    def counter(self, name: str) -> int:
        return self.worker.stats.dump()["counters"].get(name, 0)


def traced_yaml(rate: str) -> str:
    """A listener `l` writing W3C alone, sampling `rate` (fresh sampled contexts are
    drawn ahead), routing to cluster `up`."""
    return f"""
    listeners:
      - name: l
        address: 127.0.0.1:18080
        route: {{cluster: up}}
        tracing: {{propagation: [w3c], random_sampling: {rate}}}
    clusters:
      - {{name: up, endpoints: ["127.0.0.1:10001"]}}
    """


def cluster_yaml(route: str = "{cluster: up}", filters: str = "", extra: str = "", endpoints: int = 1) -> str:
    eps = ", ".join(f'"127.0.0.1:{10001 + i}"' for i in range(endpoints))
    return f"""
    listeners:
      - name: l
        address: 127.0.0.1:18080
        route: {route}
        filters: [{filters}]
    clusters:
      - {{name: up, endpoints: [{eps}]}}
    {extra}
    """
