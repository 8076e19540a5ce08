"""A worker process: one uvloop loop serving every listener of the live snapshot.

Listeners are bound with SO_REUSEPORT so all workers accept on the same ports.
The supervisor talks to a worker over a pipe (stats, clusters, config dump,
reload, endpoints, drain, and for the admin: drain_listeners, log_levels). A
listener the admin drained stays unbound whatever later snapshots say. A reload
builds the new snapshot and swaps one reference: streams in flight keep the objects
they started with, connections stay open. An endpoints message (EDS in place) builds
nothing: the named clusters' membership changes where it is (ClusterManager.reassign)
and the snapshot reference is swapped for one with those clusters' configs replaced.
Reloads and endpoint changes are applied one at a time, in the order they came.
A reload with the control plane's resources brings either all of them or what
changed since the generation the worker holds (xds.dynamic.Decoded.take: a delta
that starts elsewhere is answered "stale", and the supervisor sends all); the
build is given the live snapshot, so listeners that did not change are kept as
they are (runtime.snapshot). A build that fails leaves the worker holding no
generation: the next reload brings every resource again.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
import signal
import sys
import time
import traceback
from typing import Any

from mosnx.runtime import registry
from mosnx.runtime import shared
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.model import Endpoint
from mosnx.runtime.snapshot import build_snapshot, with_clusters
from mosnx.runtime.stats import Store

from .access_log import AccessLogWriter
from .fastpath import memo as fastpath_memo
from .gc_freeze import freeze
from .listeners import listen
from .sockets import reason, show
from .listener_stats import ListenerStats
from .tracing.export import TraceExport
from .upstream.call import http_call
from .upstream import mirror as mirroring
from .upstream.cluster import ClusterManager

# how often kept histogram samples are bucketed, in s: while requests come, and not
FOLD_BUSY = 0.02
FOLD_IDLE = 0.25

log = logging.getLogger("mosnx.worker")


class Worker:
    def __init__(self, config_path: str, worker_id: int = 0, channel=None, version: int = 1):
        self.config_path = config_path
        self.worker_id = worker_id
        self.channel = channel
        self.version = version
        self.stats = Store()
        self.dynamic = False                # the control plane's resources are part of the config
        # (xds.dynamic.FileConfig, xds.dynamic.Decoded): the file, and the resources held,
        # decoded and translated, kept from one reload to the next
        self._decoded: Any = None
        fastpath_memo.register_stats(self.stats)
        # with N workers, circuit breakers and rate limits are held in the segment
        # the supervisor shares (runtime.shared); None with one worker
        self.clusters = ClusterManager(self.stats, shared.current())
        self.snapshot = None
        self.servers: dict[str, tuple[tuple, asyncio.AbstractServer]] = {}
        self.connections: set = set()
        self.access_logs: dict[str, AccessLogWriter] = {}
        self._lstats: dict[str, ListenerStats] = {}
        self.draining = False
        self.stopped_listeners: set[str] = set()      # drained by the admin: never bound again
        self.stopped: asyncio.Future | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # the loop run() or LocalWorker gives it
        self.reload_fail = self.stats.counter("server.reload_failure")
        self.reload_ok = self.stats.counter("server.reload_success")
        self.mirror_total = self.stats.counter("server.mirror_requests")
        self._changing = asyncio.Lock()     # one reload or endpoint change at a time, in order
        self.trace_export: TraceExport | None = None   # the span exporters of the live snapshot

    # ------------------------------------------------------------- snapshot
    def services(self) -> registry.Services:
        return registry.Services(stats=self.stats, http_call=self.http_call, worker_id=self.worker_id,
                                 emit=self.emit, endpoint=self.endpoint, memo=fastpath_memo.lend)

    def build(self, version: int):
        shared.begin_build(version)     # rate limits find their shared buckets by build order
        if not self.dynamic:
            return build_snapshot(self.config_path, version, self.services())
        from .xds.dynamic import held_config
        file_config, decoded = self.decoded()
        return build_snapshot(held_config(file_config(), decoded), version, self.services(), previous=self.snapshot)

    def decoded(self) -> Any:
        """(xds.dynamic.FileConfig, xds.dynamic.Decoded), made on first use."""
        if self._decoded is None:
            from .xds.dynamic import Decoded, FileConfig
            self._decoded = (FileConfig(self.config_path), Decoded())
        return self._decoded

    async def sweep(self) -> None:
        """Idle and header timeouts for every connection, and long route timeouts,
        four times a second (and, on a timer of its own, the stats fold)."""
        self.fold_stats()
        while True:
            await asyncio.sleep(0.25)
            try:
                now = self.loop.time()
                for c in list(self.connections):
                    c.check_deadline(now)
                self.clusters.sweep(time.monotonic())
            except Exception:
                # the sweep enforces every timeout of this worker: log, never stop it
                self.log_exception("sweep failed")

    def fold_stats(self) -> None:
        """Bucket the histogram samples the hot path kept (runtime.stats.Histogram.add):
        often while they come, so each fold is short; seldom when none came."""
        busy = self.stats.fold()
        self.loop.call_later(FOLD_BUSY if busy else FOLD_IDLE, self.fold_stats)

    async def apply(self, snap) -> None:
        """Swap in `snap`. New listeners are bound first, so a port that cannot be
        bound fails the reload with nothing changed; then clusters (routes may name
        new ones), the snapshot reference, and what left is closed."""
        bound: dict[str, tuple] = {}
        try:
            for name, lst in snap.listeners.items():
                if name in self.stopped_listeners:      # by /drain_listeners
                    continue
                cfg = lst.config
                if cfg.chain_of is not None:
                    continue                     # a filter chain's stack: its listener accepts for it
                addr = (cfg.host, cfg.port, cfg.protocol, cfg.bind_to_port, cfg.transparent, cfg.socket_options)
                have = self.servers.get(name)
                if have is None or have[0] != addr:
                    if have is not None and (have[0][0], have[0][1]) == (cfg.host, cfg.port):
                        have[1].close()          # same port, other protocol: free it first
                        self.servers.pop(name)
                    bound[name] = (addr, await self._listen(name, cfg))
        except BaseException:
            for _, srv in bound.values():
                srv.close()
            raise
        self.clusters.update(snap.clusters)
        await self.clusters.warm()          # strict_dns clusters: their first answer
        fastpath_memo.configure(snap.config.fast_path)
        self.snapshot = snap
        self.version = snap.version
        for name, entry in bound.items():
            old = self.servers.get(name)
            if old is not None:
                old[1].close()
            self.servers[name] = entry
        for name in list(self.servers):
            if name not in snap.listeners:
                self.servers.pop(name)[1].close()
        for name, lst in snap.listeners.items():
            al = lst.config.access_log
            cur = self.access_logs.get(name)
            if al is None:
                if cur is not None:
                    self.access_logs.pop(name).close()
            elif cur is None or cur.cfg != al:
                if cur is not None:
                    cur.close()
                self.access_logs[name] = AccessLogWriter(al, name)
        for name in list(self.access_logs):
            if name not in snap.listeners:
                self.access_logs.pop(name).close()
        self._bind_tracing(snap)

    def _bind_tracing(self, snap) -> None:
        """Exporters for the snapshot's tracing config (kept while it is unchanged), and
        its listeners' tracers bound to them and to this worker's stats."""
        cfg = snap.config.tracing
        old = self.trace_export
        if old is None or old.config != cfg:
            self.trace_export = None
            if cfg is not None and cfg.exporters:
                self.trace_export = TraceExport(cfg, self.stats)
                self.trace_export.start()
            if old is not None:
                self.loop.create_task(old.stop())
        sink = self.trace_export.offer if self.trace_export is not None else None
        for lst in snap.listeners.values():
            if lst.tracer is not None:
                lst.tracer.bind(sink, self.stats)

    async def _listen(self, name: str, cfg):
        try:
            return await listen(self, name, cfg)
        except OSError as e:
            raise ListenError(e.errno, f"cannot listen on {show(cfg.host, cfg.port)} (listener {name}): "
                                       f"{reason(e)}") from None

    def listener_stats(self, name: str) -> ListenerStats:
        s = self._lstats.get(name)
        if s is None:
            s = self._lstats[name] = ListenerStats(self.stats, name)
            lst = self.snapshot.listeners.get(name) if self.snapshot is not None else None
            if lst is not None and lst.config.chain_of is None and lst.config.protocol != "chains":
                s.by_address(lst.config.host, lst.config.port)      # Envoy's listener.<address>.
        return s

    # ------------------------------------------------------------- services
    async def http_call(self, cluster: str, headers, body: bytes, timeout: float):
        return await http_call(self.clusters, cluster, headers, body, timeout)

    def endpoint(self, cluster: str) -> tuple[str, int] | None:
        c = self.clusters.get(cluster)
        host = c.pick(None) if c is not None else None
        return (host.host, host.port) if host is not None else None

    def emit(self, ctx, kind: str, record: dict) -> None:
        al = self.access_logs.get(ctx.listener)
        if al is not None and kind == "access":
            al.emit(record)
        elif kind == "access":
            log.info("%s", record)

    def mirror(self, stream, mirrors) -> None:
        """Fire-and-forget copies of the request (and its body, within limits.retry_buffer)
        to shadow clusters; see upstream.mirror."""
        mirroring.start(self, stream, mirrors)

    def log_exception(self, what: str) -> None:
        log.error("%s\n%s", what, traceback.format_exc())

    def access_log_error(self, listener: str, peer, status: int, detail: str, protocol: str = "-") -> None:
        al = self.access_logs.get(listener)
        if al is not None:
            al.error(peer, status, detail, protocol)

    # ------------------------------------------------------------- control
    def handle(self, msg: dict) -> dict:
        op = msg.get("op")
        if op == "stats":
            return {"stats": self.stats.dump()}
        if op == "reopen_logs":         # SIGUSR1 at the supervisor: logrotate moved the files
            for al in self.access_logs.values():
                al.reopen()
            return {"ok": True}
        if op == "clusters":
            return {"clusters": self.clusters.describe()}
        if op == "config_dump":
            return {"dump": self.snapshot.dump() if self.snapshot else None}
        if op == "drain_listeners":
            return {"drained": self.drain_listeners(msg["names"], msg["graceful"], msg["after"])}
        if op == "log_levels":
            for name, level in msg["levels"].items():
                logging.getLogger(name).setLevel(level.upper())
            return {"ok": True}
        return {"error": f"unknown op {op!r}"}

    def drain_listeners(self, names: list[str], graceful: bool, timeout: float) -> list[str]:
        """Envoy's /drain_listeners: stop accepting on `names`, at once or (graceful)
        after `timeout`, their open connections told to close meanwhile. They stay
        stopped whatever a reload brings. The names that were listening."""
        wanted = set(names)
        self.stopped_listeners |= wanted
        if graceful:
            for c in list(self.connections):
                if getattr(c, "listener_name", None) in wanted:
                    c.drain()
            self.loop.call_later(timeout, self._close_listeners, wanted)
        else:
            self._close_listeners(wanted)
        return sorted(wanted & set(self.servers))

    def _close_listeners(self, names: set[str]) -> None:
        for name in names:
            entry = self.servers.pop(name, None)
            if entry is not None:
                entry[1].close()

    async def reassign(self, endpoints: dict[str, tuple[Endpoint, ...]]) -> dict:
        """EDS in place: these clusters' endpoints change, nothing else (a cluster this
        worker does not have is left alone: a reload will bring it)."""
        async with self._changing:
            snap = self.snapshot
            if snap is None:
                return {"ok": True, "changed": 0}
            changed = {n: dataclasses.replace(c, endpoints=eps) for n, eps in endpoints.items()
                       if (c := snap.clusters.get(n)) is not None and c.endpoints != eps}
            try:
                for cfg in changed.values():
                    self.clusters.reassign(cfg)
            except Exception as e:
                return {"ok": False, "errors": [_bug(e, "endpoints")]}
            if changed:
                self.snapshot = with_clusters(snap, changed)
            return {"ok": True, "changed": len(changed)}

    async def reload(self, version: int, dynamic: dict | None = None, delta: dict | None = None,
                     generation: int | None = None) -> dict:
        """Build `version` (the file, plus the control plane's resources when it sends
        them: `dynamic`, all of them, serialized by type URL and name, of `generation`;
        or `delta`, what changed of them) and swap it in."""
        async with self._changing:
            return await self._reload(version, dynamic, delta, generation)

    async def _reload(self, version: int, dynamic: dict | None, delta: dict | None = None,
                      generation: int | None = None) -> dict:
        if dynamic is not None:
            self.decoded()[1].load(dynamic, generation)
            self.dynamic = True
        elif delta is not None:
            if not self.decoded()[1].take(delta):
                return {"ok": False, "stale": True, "errors": ["the resources changed from a generation "
                                                               "this worker does not hold"]}
            self.dynamic = True
        try:
            snap = self.build(version)
        except ConfigError as e:
            self._forget()
            self.reload_fail.value += 1
            return {"ok": False, "errors": [str(d) for d in e.diagnostics]}
        except Exception as e:
            self._forget()
            self.reload_fail.value += 1
            return {"ok": False, "errors": [_bug(e, "reload")]}
        try:
            await self.apply(snap)
        except OSError as e:
            self._forget()
            self.reload_fail.value += 1
            return {"ok": False, "errors": [f"listen: {e}"]}
        except Exception as e:
            self._forget()
            self.reload_fail.value += 1
            return {"ok": False, "errors": [_bug(e, "reload")]}
        self.reload_ok.value += 1
        return {"ok": True, "version": version}

    def _forget(self) -> None:
        """What is held is not what serves: the next delta is answered stale."""
        if self._decoded is not None:
            self._decoded[1].generation = None

    async def drain(self, timeout: float) -> None:
        self.draining = True
        for _, srv in self.servers.values():
            srv.close()
        for c in list(self.connections):
            c.drain()
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in list(self.connections):
            c.transport.abort()
        for al in self.access_logs.values():
            al.flush()
        if self.trace_export is not None:
            await self.trace_export.stop()      # what is queued gets one last try
            self.trace_export = None
        self.clusters.close()

    def drain_timeout(self) -> float:
        if not self.snapshot or not self.snapshot.listeners:
            return 5.0
        return max(l.config.timeouts.drain for l in self.snapshot.listeners.values())


class ListenError(OSError):
    """A listener that cannot be bound; its text names the address and the listener."""


def _bug(e: BaseException, when: str) -> str:
    """One line for an exception no config should cause; the traceback at debug level."""
    log.debug("worker %s raised", when, exc_info=e)
    msg = " ".join(str(e).split())
    return f"bug: {type(e).__name__}: {msg}"


def start_failure(e: Exception) -> dict:
    """The `ready` answer of a worker whose start raised `e`: kind "config" (the
    diagnostics), "listen" (one line naming the address) or "bug"."""
    if isinstance(e, ConfigError):
        return {"op": "ready", "ok": False, "kind": "config", "errors": [str(d) for d in e.diagnostics]}
    if isinstance(e, ListenError):
        return {"op": "ready", "ok": False, "kind": "listen", "errors": [str(e)]}
    if isinstance(e, OSError):
        return {"op": "ready", "ok": False, "kind": "listen", "errors": [f"cannot listen: {reason(e)}"]}
    log.debug("worker start raised", exc_info=e)
    msg = " ".join(str(e).split())
    return {"op": "ready", "ok": False, "kind": "bug", "errors": [f"{type(e).__name__}: {msg}"]}


# ----------------------------------------------------------------- process entry
def run_worker(config_path: str, worker_id: int, conn, version: int) -> None:
    """Process entry: serve until told to drain. Exit 0 after a drain, 3 if start fails."""
    import uvloop
    logging.basicConfig(level=os.environ.get("MOSNX_LOG_LEVEL", "INFO"),
                        format=f"%(asctime)s [worker {worker_id}] %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the supervisor decides when we stop
    uvloop.install()
    asyncio.run(_serve(config_path, worker_id, conn, version))


async def _serve(config_path: str, worker_id: int, conn, version: int) -> None:
    loop = asyncio.get_running_loop()
    shared.attach_from_env(worker_id)
    w = Worker(config_path, worker_id, conn, version)
    w.loop = loop
    sweeper = loop.create_task(w.sweep())
    try:
        snap = w.build(version)
        await w.apply(snap)
    except Exception as e:
        conn.send(start_failure(e))
        return
    freeze()
    conn.send({"op": "ready", "ok": True, "pid": os.getpid()})
    stop = loop.create_future()
    w.stopped = stop

    def on_sigterm():
        if not stop.done():
            stop.set_result(w.drain_timeout())

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    # the supervisor passes SIGUSR1 on; one sent to the whole group must not kill us
    loop.add_signal_handler(signal.SIGUSR1, w.handle, {"op": "reopen_logs"})

    def readable():
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            if not stop.done():
                stop.set_result(w.drain_timeout())   # the supervisor is gone
            return
        op = msg.get("op")
        if op == "reload":
            async def do():
                dynamic, delta = None, msg.get("delta")
                if msg.get("dynamic_file"):
                    with open(msg["dynamic_file"], "rb") as f:
                        # written by this proxy's own supervisor, in its private folder
                        dynamic = pickle.load(f)
                if msg.get("delta_file"):
                    with open(msg["delta_file"], "rb") as f:
                        delta = pickle.load(f)      # the supervisor's, as dynamic_file
                reply = await w.reload(msg["version"], dynamic, delta, msg.get("generation"))
                if reply.get("ok"):
                    freeze(again=True, whole=delta is None)
                reply["id"] = msg.get("id")
                conn.send(reply)
            loop.create_task(do())
            return
        if op == "endpoints":
            async def eds():
                endpoints = msg.get("endpoints")
                if endpoints is None:
                    with open(msg["endpoints_file"], "rb") as f:
                        endpoints = pickle.load(f)      # the supervisor's, as dynamic_file above
                reply = await w.reassign(endpoints)
                reply["id"] = msg.get("id")
                conn.send(reply)
            loop.create_task(eds())
            return
        if op == "drain":
            if not stop.done():
                stop.set_result(msg.get("timeout", w.drain_timeout()))
            return
        reply = w.handle(msg)
        reply["id"] = msg.get("id")
        conn.send(reply)

    loop.add_reader(conn.fileno(), readable)
    timeout = await stop
    await w.drain(timeout)
    sweeper.cancel()
    try:
        conn.send({"op": "stopped", "stats": w.stats.dump()})
    except OSError:
        pass
