"""The supervisor: spawns workers, serves the admin API, reloads and drains.

It validates every config before telling workers to load it, so a broken file is
reported once (with file:line:col) and never reaches a worker; workers keep the
snapshot they have. Workers are separate processes (spawned, not forked, so no
event-loop state crosses the boundary); a worker that dies is replaced. With one
worker there is one process: the worker runs in the supervisor's loop.

A reload never takes the supervisor down: whatever a build raises is reported (a
ConfigError as its findings, anything else as a bug naming the file), the old snapshot
keeps serving and the file watcher keeps watching.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import signal
import time

from mosnx import __version__
from mosnx.runtime.config import admin_exposure
from mosnx.runtime import shared
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.snapshot import build_snapshot
from mosnx.runtime.stats import Store, merge, merge_into

log = logging.getLogger("mosnx")


class WorkerHandle:
    def __init__(self, sup: "Supervisor", idx: int):
        self.sup = sup
        self.idx = idx
        self.proc = None
        self.conn = None
        self.pending: dict[int, asyncio.Future] = {}
        self.ready: asyncio.Future | None = None
        self.final_stats = None
        self.stopping = False

    def start(self, version: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=self.sup.entry, args=(self.sup.config_path, self.idx, child, version),
                                name=f"mosnx-worker-{self.idx}", daemon=False)
        self.proc.start()
        child.close()
        self.conn = parent
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        loop.add_reader(parent.fileno(), self._readable)

    def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            loop.remove_reader(self.conn.fileno())
            for f in self.pending.values():
                if not f.done():
                    f.set_exception(ConnectionError("worker exited"))
            self.pending.clear()
            if self.ready is not None and not self.ready.done():
                self.ready.set_result({"ok": False, "errors": ["worker exited during start"]})
            loop.create_task(self.sup.worker_exited(self))
            return
        op = msg.get("op")
        if op == "ready":
            if not self.ready.done():
                self.ready.set_result(msg)
            return
        if op == "stopped":
            self.final_stats = msg.get("stats")
            return
        f = self.pending.pop(msg.get("id"), None)
        if f is not None and not f.done():
            f.set_result(msg)

    async def ask(self, op: str, timeout: float = 10.0, **kw) -> dict:
        rid = next(self.sup.ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        self.conn.send({"op": op, "id": rid, **kw})
        async with asyncio.timeout(timeout):
            return await fut

    def tell(self, op: str, **kw) -> None:
        try:
            self.conn.send({"op": op, **kw})
        except OSError:
            pass

    async def stop(self, timeout: float) -> None:
        """Drain, wait up to `timeout` (plus a grace period), then kill."""
        self.stopping = True
        self.tell("drain", timeout=timeout)
        deadline = time.monotonic() + timeout + 2.0
        while self.proc.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=1)


class LocalWorker:
    """The one worker, run inside the supervisor's own process and loop.

    With a single worker a second process buys no parallelism, only memory and a
    pipe hop per admin query; so the worker's objects live here and are called
    directly. Same interface as WorkerHandle.
    """

    def __init__(self, sup: "Supervisor"):
        from .worker import Worker
        self.sup = sup
        self.idx = 0
        self.worker = Worker(sup.config_path, 0, None, sup.version)
        self.ready: asyncio.Future | None = None
        self.stopping = False
        self._sweeper = None

    def start(self, version: int) -> None:
        loop = asyncio.get_running_loop()
        self.worker.loop = loop
        self.ready = loop.create_future()
        loop.create_task(self._start(version))

    async def _start(self, version: int) -> None:
        w = self.worker
        try:
            await w.apply(w.build(version))
        except ConfigError as e:
            self.ready.set_result({"ok": False, "errors": [str(d) for d in e.diagnostics]})
            return
        except OSError as e:
            self.ready.set_result({"ok": False, "errors": [f"listen: {e}"]})
            return
        self._sweeper = asyncio.get_running_loop().create_task(w.sweep())
        self.ready.set_result({"ok": True, "pid": os.getpid()})

    async def ask(self, op: str, timeout: float = 10.0, **kw) -> dict:
        if op == "reload":
            return await self.worker.reload(kw["version"])
        return self.worker.handle({"op": op})

    def tell(self, op: str, **kw) -> None:
        pass

    async def stop(self, timeout: float) -> None:
        self.stopping = True
        await self.worker.drain(timeout)
        if self._sweeper is not None:
            self._sweeper.cancel()


class Supervisor:
    def __init__(self, config_path: str, workers: int | None, entry):
        self.config_path = os.path.abspath(config_path)
        self.requested_workers = workers
        self.entry = entry              # process entry: (config_path, idx, conn, version) -> None
        self.ids = itertools.count(1)
        self.snapshot = None
        self.version = 1
        self.workers: list[WorkerHandle] = []
        self.state = "PRE_INITIALIZING"
        self.started = time.time()
        self.stats = Store()
        self.reloads_ok = self.stats.counter("server.supervisor_reload_success")
        self.reloads_bad = self.stats.counter("server.supervisor_reload_failure")
        self.last_error: list[str] = []
        self.mtimes: dict[str, float] = {}
        self.stop_future: asyncio.Future | None = None
        self.demo_servers = []
        self.admin = None
        self.admin_access = None        # admin_access.Access, its token refreshed on reload
        self.admin_bound = None         # the AdminConfig the admin was bound with
        self._reload_lock = asyncio.Lock()

    # ----------------------------------------------------------- lifecycle
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            self.snapshot = build_snapshot(self.config_path, self.version)
        except ConfigError as e:
            for d in e.diagnostics:
                log.error("%s", d.render())
            return 1
        cfg = self.snapshot.config
        n = self.requested_workers or cfg.workers or os.cpu_count() or 1
        from .demo import start_demo
        for host, port in cfg.demo_upstream:
            self.demo_servers.append(await start_demo(host, port))
            log.info("demo upstream listening on http://%s:%d", host, port)
        self.stop_future = loop.create_future()
        start = time.perf_counter()
        self._share_limits(n)
        for i in range(n):
            h = LocalWorker(self) if n == 1 else WorkerHandle(self, i)
            h.start(self.version)
            self.workers.append(h)
        results = await asyncio.gather(*(h.ready for h in self.workers))
        if time.perf_counter() - start > 1.0:      # a large config: say where start-up time went
            log.info("%d worker%s started in %.1f s", n, "s" if n > 1 else "", time.perf_counter() - start)
        bad = [r for r in results if not r.get("ok")]
        if bad:
            for e in bad[0].get("errors", []):
                log.error("%s", e)
            await self._stop_workers(1.0)
            self._unshare_limits()
            return 1
        if cfg.admin is not None:
            from .admin import start_admin
            from .admin_access import Access
            self.admin_access = Access.of(cfg.admin)
            self.admin_bound = cfg.admin
            self.admin = await start_admin(cfg.admin.host, cfg.admin.port, AdminBackend(self), self.admin_access)
            if (exposed := admin_exposure(cfg.admin)) is not None:
                log.warning("%s", exposed)
        self.state = "LIVE"
        for lst in cfg.listeners:
            log.info("listener %s on %s://%s:%d (%d workers)", lst.name, lst.protocol, lst.host, lst.port, n)
        first = next((l for l in cfg.listeners if l.protocol == "http"), None)
        if first is not None:
            host = f"[{first.host}]" if ":" in first.host else first.host
            log.info("try: curl -i http://%s:%d/", host, first.port)
        if cfg.admin is not None:
            log.info("admin: http://%s:%d/ (stats: /stats, config: /config_dump)", cfg.admin.host, cfg.admin.port)
        self._remember_mtimes()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("SIGHUP")))
        loop.add_signal_handler(signal.SIGTERM, self._request_stop)
        loop.add_signal_handler(signal.SIGINT, self._request_stop)
        watcher = loop.create_task(self._watch())
        await self.stop_future
        watcher.cancel()
        self.state = "DRAINING"
        timeout = self.snapshot.listeners and max(l.config.timeouts.drain for l in self.snapshot.listeners.values()) or 5.0
        await self._stop_workers(timeout)
        self._unshare_limits()
        if self.admin is not None:
            self.admin.close()
        for s in self.demo_servers:
            s.close()
        return 0

    def _request_stop(self) -> None:
        if self.stop_future is not None and not self.stop_future.done():
            log.info("draining")
            self.stop_future.set_result(None)

    async def _stop_workers(self, timeout: float) -> None:
        await asyncio.gather(*(h.stop(timeout) for h in self.workers))

    def _share_limits(self, n: int) -> None:
        """With N workers, the segment that makes circuit breakers and rate limits
        per proxy (runtime.shared); workers find it through the environment."""
        self.shared = shared.Segment.create(n) if n > 1 else None
        if self.shared is not None:
            os.environ[shared.ENV] = self.shared.path

    def _unshare_limits(self) -> None:
        seg = getattr(self, "shared", None)
        if seg is not None:
            os.environ.pop(shared.ENV, None)
            seg.unlink()
            seg.close()
            self.shared = None

    async def worker_exited(self, h: WorkerHandle) -> None:
        seg = getattr(self, "shared", None)
        if seg is not None:
            h.proc.join(timeout=1)
            if not h.proc.is_alive():
                seg.zero_worker(h.idx)      # what the dead worker held is free again
        if h.stopping or self.state != "LIVE":
            return
        h.proc.join(timeout=1)
        log.error("worker %d exited with %s; starting a new one", h.idx, h.proc.exitcode)
        await asyncio.sleep(0.5)
        if self.state == "LIVE":
            h.start(self.version)

    # ----------------------------------------------------------- reload
    def _remember_mtimes(self) -> None:
        self.mtimes = {p: _mtime(p) for p in _watched(self.snapshot)}

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                if any(_mtime(p) != m for p, m in self.mtimes.items()):
                    await asyncio.sleep(0.1)      # let an editor finish writing
                    await self.reload("file change")
            except Exception:
                # reload() reports its own failures; this is the last guard that keeps
                # later edits noticed
                log.exception("config watcher: checking for changes failed; still watching")

    def build(self, version: int):
        """The snapshot of the config as it is on disk now; ConfigError if it is invalid."""
        return build_snapshot(self.config_path, version)

    async def reload(self, why: str) -> tuple[bool, dict]:
        """Build, validate and hand the new snapshot to every worker. Never raises:
        (True, {"version"}) when live, else (False, {"errors", "version"}) with the
        version still serving; the errors are also /config_dump's last_reload_error."""
        async with self._reload_lock:
            version = self.version + 1
            try:
                snap = self.build(version)
            except ConfigError as e:
                for d in e.diagnostics:
                    log.error("reload (%s) rejected, still serving version %d:\n%s", why, self.version, d.render())
                return self._rejected([str(d) for d in e.diagnostics])
            except Exception as e:
                return self._rejected([self._crashed(why, e)])
            replies = []
            for h in self.workers:
                try:
                    replies.append(await h.ask("reload", timeout=30.0, version=version))
                except (ConnectionError, TimeoutError, OSError) as e:
                    replies.append({"ok": False, "errors": [f"worker {h.idx}: {e}"]})
                except Exception as e:
                    replies.append({"ok": False, "errors": [self._crashed(why, e, f"worker {h.idx}")]})
            errors = [e for r in replies if not r.get("ok") for e in r.get("errors", [])]
            if errors:
                log.error("reload (%s) failed in a worker: %s", why, "; ".join(errors))
                return self._rejected(errors)
            self.snapshot = snap
            self.version = version
            self.last_error = []
            self.reloads_ok.value += 1
            self._remember_mtimes()
            self._refresh_admin(snap.config.admin)
            log.info("reloaded (%s): version %d live", why, version)
            return True, {"version": version}

    def _rejected(self, errors: list[str]) -> tuple[bool, dict]:
        self.reloads_bad.value += 1
        self.last_error = errors
        # watch the files of the failed attempt too, so fixing any of them retries
        self.mtimes.update({p: _mtime(p) for p in _watched(self.snapshot)})
        self.mtimes[self.config_path] = _mtime(self.config_path)
        return False, {"errors": errors, "version": self.version}

    def _crashed(self, why: str, e: Exception, who: str = "") -> str:
        """Report a build that raised something other than ConfigError: a bug in mosnx,
        set off by this config. One error line; the traceback at debug level."""
        where = _position(e) or self.config_path
        message = (f"{where}: mosnx failed to build this configuration ({type(e).__name__}: {e}); "
                   "this is a bug, please report it with the files")
        if who:
            message = f"{who}: {message}"
        log.error("reload (%s) rejected, still serving version %d: %s", why, self.version, message)
        log.debug("reload (%s): the build raised", why, exc_info=e)
        return message

    def _refresh_admin(self, admin) -> None:
        """A reload re-reads the admin token; the admin's address is bound once, at start."""
        if self.admin_access is None or admin is None:
            return
        self.admin_access.update(admin)
        bound = self.admin_bound
        if (admin.host, admin.port) != (bound.host, bound.port):
            log.warning("admin.address changed to %s:%d: it applies at restart; the admin stays on %s:%d",
                        admin.host, admin.port, bound.host, bound.port)

    # ----------------------------------------------------------- admin queries
    async def gather(self, op: str) -> list[dict]:
        out = []
        for h in self.workers:
            try:
                out.append(await h.ask(op, timeout=5.0))
            except (ConnectionError, TimeoutError, OSError):
                continue
        return out


def _watched(snapshot) -> list[str]:
    """The files whose change triggers a reload: the snapshot's sources and the admin token."""
    paths = list(snapshot.sources)
    admin = snapshot.config.admin
    if admin is not None and admin.token is not None:
        paths.append(admin.token.path)
    return paths


def _position(e: BaseException) -> str | None:
    """file[:line[:col]] when the exception says where it happened (an OSError's file,
    a SyntaxError's line), else None."""
    path = getattr(e, "filename", None)
    if not isinstance(path, str) or not path:
        return None
    line, col = getattr(e, "lineno", None), getattr(e, "offset", None)
    if isinstance(line, int) and line > 0:
        return f"{path}:{line}:{col}" if isinstance(col, int) and col > 0 else f"{path}:{line}"
    return path


def _mtime(path: str) -> float:
    try:
        st = os.stat(path)
        return st.st_mtime_ns + st.st_size
    except OSError:
        return -1.0


class AdminBackend:
    def __init__(self, sup: Supervisor):
        self.sup = sup

    async def stats(self) -> dict:
        dumps = [r["stats"] for r in await self.sup.gather("stats") if "stats" in r]
        if len(dumps) == 1:
            # One worker shares this loop: its dump is already a copy, so the
            # supervisor's few stats are added to it rather than copying it whole.
            return merge_into(dumps[0], self.sup.stats.dump())
        dumps.append(self.sup.stats.dump())
        return merge(dumps)

    async def clusters(self) -> dict:
        replies = [r["clusters"] for r in await self.sup.gather("clusters") if "clusters" in r]
        return merge_clusters(replies)

    async def config_dump(self) -> dict:
        replies = await self.sup.gather("config_dump")
        dump = self.sup.snapshot.dump()
        dump["worker_versions"] = [r.get("dump", {}).get("version") for r in replies if r.get("dump")]
        dump["last_reload_error"] = self.sup.last_error
        return dump

    def server_info(self) -> dict:
        s = self.sup
        return {"version": __version__, "state": s.state, "uptime_s": int(time.time() - s.started),
                "workers": len(s.workers), "pid": os.getpid(), "config_path": s.config_path,
                "snapshot_version": s.version}

    async def reload(self) -> tuple[bool, dict]:
        return await self.sup.reload("admin")

    def ready(self) -> bool:
        return self.sup.state == "LIVE"


def merge_clusters(replies: list[dict]) -> dict:
    """One /clusters answer from the workers'. Only the numbers each worker keeps of
    its own traffic (CLUSTER_TRAFFIC, HOST_TRAFFIC) add up; everything else (the
    endpoint list, weights, settings, flags) describes the proxy and is reported
    once, from the first worker that names it; an endpoint's health is the worst any
    worker saw."""
    from .upstream.cluster import CLUSTER_TRAFFIC, HOST_TRAFFIC     # what a worker counts: the describe()s
    out: dict = {}
    for rep in replies:
        for name, c in rep.items():
            cur = out.get(name)
            if cur is None:
                out[name] = {k: v for k, v in c.items()}
                out[name]["endpoints"] = [dict(e) for e in c.get("endpoints", ())]
                continue
            for k in CLUSTER_TRAFFIC:
                if k in c:
                    cur[k] = cur.get(k, 0) + c[k]
            by_addr = {e["address"]: e for e in cur["endpoints"]}
            for e in c.get("endpoints", ()):
                m = by_addr.get(e["address"])
                if m is None:
                    cur["endpoints"].append(dict(e))
                    continue
                for k in HOST_TRAFFIC:
                    if k in e:
                        m[k] = m.get(k, 0) + e[k]
                if e.get("health", "healthy") != "healthy":
                    m["health"] = e["health"]
    return out
