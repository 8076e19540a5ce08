"""The supervisor: spawns workers, serves the admin API, reloads and drains.

It validates every config before telling workers to load it, so a broken file is
reported once (with file:line:col) and never reaches a worker; workers keep the
snapshot they have. Workers are separate processes (spawned, not forked, so no
event-loop state crosses the boundary); a worker that dies is replaced. With one
worker there is one process: the worker runs in the supervisor's loop.

Startup is all or nothing: every address the proxy serves (listeners, admin, demo
upstreams) is claimed and bound, or checked bindable, before any worker is spawned;
whatever stops a start (an address in use, another mosnx holding it, a worker that
fails, a bug, a signal) ends the process with one line and no worker left behind.
SIGINT/SIGTERM stop a start at once, drain a running proxy, and a second one during
the drain kills the workers and exits 128 + the signal.
SIGUSR1 has every worker reopen its access-log files (after logrotate moved them).

A reload never takes the supervisor down: whatever a build raises is reported (a
ConfigError as its findings, anything else as a bug naming the file), the old snapshot
keeps serving and the file watcher keeps watching.

Why one module: what is here is the one supervisor's lifecycle (claim, spawn,
watch, reload, drain, stop) over its one set of state (the workers, the current
snapshot, the claimed addresses); each step reads what the others set, in an
order only this class knows. What stands apart from it lives elsewhere: the handles
on its workers (proxy.worker_handles), what the admin API reads of the whole proxy
(proxy.admin_backend) and the API itself (proxy.admin), the control plane's stream
(proxy.xds.control), startup hints (proxy.hint), the shared limits (runtime.shared).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import itertools
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from mosnx.runtime.config import admin_exposure
from mosnx.runtime import shared
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.snapshot import build_snapshot, with_clusters
from mosnx.runtime.stats import Store

from . import sockets
from .admin_backend import AdminBackend
from .hint import curl_hint
from .worker_handles import LocalWorker, WorkerHandle

if TYPE_CHECKING:
    from mosnx.runtime.model import AdminConfig, Endpoint
    from mosnx.runtime.snapshot import Snapshot
    from .admin_access import Access

log = logging.getLogger("mosnx")
EXIT_BUG = 3
# endpoint changes larger than this go to worker processes by a private file, not the pipe
INLINE_ENDPOINTS = 2000


class StartupError(Exception):
    """The proxy cannot start: `str(self)` is the one line the user sees, `code` the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class Supervisor:
    def __init__(self, config_path: str, workers: int | None, entry, takeover: bool = False):
        self.config_path = os.path.abspath(config_path)
        self.requested_workers = workers
        self.entry = entry              # process entry: (config_path, idx, conn, version) -> None
        self.ids = itertools.count(1)
        self.snapshot: Snapshot = None  # type: ignore[assignment]  # built first thing in _start
        self.version = 1
        self.workers: list[WorkerHandle | LocalWorker] = []
        self.state = "PRE_INITIALIZING"
        self.started = time.time()
        self.stats = Store()
        self.reloads_ok = self.stats.counter("server.supervisor_reload_success")
        self.reloads_bad = self.stats.counter("server.supervisor_reload_failure")
        self.last_error: list[str] = []
        self.mtimes: dict[str, float] = {}
        self.stop_future: asyncio.Future = None  # type: ignore[assignment]  # made by run()
        self.demo_servers: list[asyncio.AbstractServer] = []
        self.admin: asyncio.AbstractServer | None = None
        self.admin_access: Access | None = None       # admin_access.Access, its token refreshed on reload
        # the AdminConfig the admin was bound with; read only when there is an admin
        self.admin_bound: AdminConfig = None  # type: ignore[assignment]
        self._reload_lock = asyncio.Lock()
        self.takeover = takeover        # join listeners another mosnx holds (--takeover)
        self.locks: list = []           # sockets.lock sockets held for every served address
        self._later: list[tuple[str, str, int]] = []   # --takeover: (what, host, port) to claim later
        self._startup: asyncio.Task | None = None
        self._force: asyncio.Future = None  # type: ignore[assignment]  # made by run(); a second stop signal while draining
        self._interrupted: int | None = None           # the signal that stopped the start
        self.xds: Any = None            # xds.control.XdsControl, with an xds: config
        self.drain_time: float | None = None    # --drain-time-s: a drain's wait, over the listeners' own

    # ----------------------------------------------------------- lifecycle
    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, drain; the exit status. A startup that
        cannot complete raises StartupError (one line for the user) or, for a bug,
        whatever it raised; either way no worker, admin or demo upstream is left."""
        loop = asyncio.get_running_loop()
        self.stop_future = loop.create_future()
        self._force = loop.create_future()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        loop.add_signal_handler(signal.SIGUSR1, self._on_sigusr1)
        try:
            self._startup = loop.create_task(self._start())
            try:
                code = await self._startup
            except asyncio.CancelledError:
                if self._interrupted is None:
                    raise
                log.warning("interrupted while starting (%s): stopped", signal.Signals(self._interrupted).name)
                return 128 + self._interrupted
            if code:
                return code
            self._announce()
            self._start_xds()
            watcher = loop.create_task(self._watch())
            later = loop.create_task(self._claim_later()) if self._later else None
            await self.stop_future
            watcher.cancel()
            if later is not None:
                later.cancel()
            if self.xds is not None:
                await self.xds.close()
            return await self._drain()
        finally:
            self._release()

    async def _start(self) -> int:
        """Build, claim and bind every address, spawn the workers and wait for them:
        0 when live, 1 for a config that does not build. Nothing is spawned before
        every address this proxy serves is known to be its own."""
        try:
            self.snapshot = build_snapshot(self.config_path, self.version)
        except ConfigError as e:
            for d in e.diagnostics:
                log.error("%s", d.render())
            return 1
        self._remember_mtimes()         # now: an edit made while workers start is seen
        cfg = self.snapshot.config
        n = self.requested_workers or cfg.workers or os.cpu_count() or 1
        self._claim(cfg)
        if cfg.admin is not None and not any(w == "admin" for w, _, _ in self._later):
            await self._bind_admin(cfg.admin)
        for lst in cfg.listeners:
            if lst.bind_to_port:            # bind_to_port false: never bound, nothing to probe
                self._probe(f"listener {lst.name}", lst.host, lst.port)
        from .demo import start_demo
        for host, port in cfg.demo_upstream:
            try:
                if not self.takeover and sockets.listening(host, port):
                    raise OSError(errno.EADDRINUSE, "in use")
                # SO_REUSEPORT so that a --takeover can join it; the lock keeps others out
                self.demo_servers.append(await start_demo(host, port, reuse_port=True))
            except OSError as e:
                raise StartupError(f"cannot listen on {sockets.show(host, port)} (demo upstream): "
                                   f"{sockets.reason(e)}") from None
            log.info("demo upstream listening on http://%s", sockets.show(host, port))
        start = time.perf_counter()
        self._share_limits(n)
        for i in range(n):
            h = LocalWorker(self) if n == 1 else WorkerHandle(self, i)
            self.workers.append(h)
            with _sigint_ignored():
                # a terminal's Ctrl-C reaches the whole process group; a worker starts
                # with SIGINT ignored (it survives exec), so it never dies half-imported
                # and only the supervisor decides when workers stop
                h.start(self.version)
        results = await asyncio.gather(*(h.ready for h in self.workers))
        if time.perf_counter() - start > 1.0:      # a large config: say where start-up time went
            log.info("%d worker%s started in %.1f s", n, "s" if n > 1 else "", time.perf_counter() - start)
        for h, r in zip(self.workers, results):
            if r.get("ok"):
                continue
            errors = r.get("errors") or ["no reason given"]
            kind = r.get("kind")
            if kind == "config":
                for err in errors:
                    log.error("%s", err)
                return 1
            if kind == "bug":
                raise StartupError(f"bug: {self.config_path}: worker {h.idx}: {errors[0]} \u2014 please report",
                                   EXIT_BUG)
            if kind == "listen":
                raise StartupError(errors[0])
            raise StartupError(f"worker {h.idx} failed to start: {'; '.join(errors)}")
        _freeze()
        self.state = "LIVE"
        return 0

    def _claim(self, cfg) -> None:
        """Lock every address this proxy will serve (sockets.lock). Another mosnx holding
        one refuses the start, unless --takeover: then this one joins its listeners and
        claims the locks once it is gone (the admin address too, bound then)."""
        wanted = [(f"listener {l.name}", l.host, l.port) for l in cfg.listeners if l.bind_to_port]
        if cfg.admin is not None:
            wanted.append(("admin", cfg.admin.host, cfg.admin.port))
        wanted += [("demo upstream", h, p) for h, p in cfg.demo_upstream]
        loop = asyncio.get_running_loop()
        for what, host, port in wanted:
            try:
                held = sockets.lock(host, port)
            except sockets.AddressInUse as e:
                if not self.takeover:
                    raise StartupError(f"cannot listen on {sockets.show(host, port)} ({what}): {e} "
                                       "(stop it first, or pass --takeover to share its listeners)") from None
                if what == "admin":
                    log.warning("admin %s is held by mosnx pid %s: it is bound here once that process exits",
                                sockets.show(host, port), e.pid)
                else:
                    log.warning("--takeover: %s on %s joins mosnx pid %s, which keeps a share of the "
                                "connections until it stops", what, sockets.show(host, port), e.pid)
                self._later.append((what, host, port))
                continue
            except OSError as e:
                raise StartupError(f"cannot listen on {sockets.show(host, port)} ({what}): "
                                   f"{sockets.reason(e)}") from None
            for s in held:
                loop.add_reader(s.fileno(), sockets.dismiss, s)
            self.locks.extend(held)

    async def _claim_later(self) -> None:
        """--takeover: claim what the other process held, as soon as it lets go."""
        loop = asyncio.get_running_loop()
        while self._later:
            await asyncio.sleep(0.5)
            for item in list(self._later):
                what, host, port = item
                try:
                    held = sockets.lock(host, port)
                except (sockets.AddressInUse, OSError):
                    continue
                if what == "admin":
                    try:
                        await self._bind_admin(self.snapshot.config.admin)
                    except StartupError as e:
                        log.debug("admin not bound yet: %s", e)
                        for s in held:
                            s.close()
                        continue
                    log.info("admin: http://%s/ (the other process has exited)", sockets.show(host, port))
                for s in held:
                    loop.add_reader(s.fileno(), sockets.dismiss, s)
                self.locks.extend(held)
                self._later.remove(item)

    async def _bind_admin(self, admin) -> None:
        from .admin import start_admin
        from .admin_access import Access
        access = Access.of(admin)
        try:
            # exclusive: no SO_REUSEPORT, so no other process can ever answer for this admin
            self.admin = await start_admin(admin.host, admin.port, AdminBackend(self), access)
        except OSError as e:
            raise StartupError(f"cannot listen on {sockets.show(admin.host, admin.port)} (admin): "
                               f"{sockets.reason(e)}") from None
        self.admin_access = access
        self.admin_bound = admin
        if (exposed := admin_exposure(admin)) is not None:
            log.warning("%s", exposed)

    def _probe(self, what: str, host: str, port: int) -> None:
        """A listener's address, bound here the way workers bind it (SO_REUSEPORT) and let
        go: a port another socket holds fails now, before any worker exists."""
        try:
            sockets.probe(host, port, reuse_port=True)
            busy = not self.takeover and sockets.listening(host, port)
        except OSError as e:
            raise StartupError(f"cannot listen on {sockets.show(host, port)} ({what}): "
                               f"{sockets.reason(e)}") from None
        if busy:
            raise StartupError(f"cannot listen on {sockets.show(host, port)} ({what}): address already in use "
                               "(another process listens on it with SO_REUSEPORT; pass --takeover to share it)")

    def _announce(self) -> None:
        cfg = self.snapshot.config
        n = len(self.workers)
        for lst in cfg.listeners:
            log.info("listener %s on %s://%s (%d workers)", lst.name, lst.protocol,
                     sockets.show(lst.host, lst.port), n)
        hint = curl_hint(self.snapshot)
        if hint is not None:
            log.info("try: %s", hint)
        if self.admin is not None:
            log.info("admin: http://%s/ (stats: /stats, config: /config_dump)",
                     sockets.show(self.admin_bound.host, self.admin_bound.port))

    def _on_stop_signal(self, sig: int) -> None:
        """SIGINT/SIGTERM: while starting, stop at once; while serving, drain; while
        draining, stop at once (the workers are killed)."""
        name = signal.Signals(sig).name
        if self.state == "LIVE" and not self.stop_future.done():
            log.info("draining (%s; send it again to stop at once)", name)
            self.state = "DRAINING"         # now: a second signal may come before run() resumes
            self.stop_future.set_result(sig)
        elif self.state == "DRAINING":
            if not self._force.done():
                self._force.set_result(sig)
        elif self._interrupted is None:
            self._interrupted = sig
            if self._startup is not None and not self._startup.done():
                self._startup.cancel()

    def stop(self, why: str) -> bool:
        """Drain and exit 0, as on SIGTERM (the admin's /quitquitquit); False unless serving."""
        if self.state != "LIVE" or self.stop_future.done():
            return False
        log.info("draining (%s)", why)
        self.state = "DRAINING"
        self.stop_future.set_result(signal.SIGTERM)
        return True

    def _on_sigusr1(self) -> None:
        """SIGUSR1 (logrotate's postrotate): every worker reopens its access-log files."""
        async def reopen() -> None:
            results = await asyncio.gather(*(h.ask("reopen_logs") for h in self.workers), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    log.warning("reopening access logs: a worker did not answer (%s)", type(r).__name__)
        asyncio.get_running_loop().create_task(reopen())

    def _on_sighup(self) -> None:
        if self.state == "LIVE":
            asyncio.get_running_loop().create_task(self.reload("SIGHUP"))
        else:
            log.warning("SIGHUP ignored: the proxy is %s", self.state.lower())

    async def _drain(self) -> int:
        """Drain every worker up to the listeners' drain timeout: 0. A second signal
        meanwhile kills them: 128 + that signal."""
        self.state = "DRAINING"
        timeout = self.drain_timeout()
        stopping = asyncio.ensure_future(self._stop_workers(timeout))
        await asyncio.wait({stopping, self._force}, return_when=asyncio.FIRST_COMPLETED)
        if not stopping.done():
            stopping.cancel()
            sig = self._force.result()
            log.warning("%s again: stopping without finishing the drain", signal.Signals(sig).name)
            self._kill_workers()
            return 128 + sig
        stopping.result()
        return 0

    def drain_timeout(self) -> float:
        """How long a drain waits for open connections: --drain-time-s, else the
        longest of the listeners' drain timeouts (5 s without listeners)."""
        if self.drain_time is not None:
            return self.drain_time
        return self.snapshot.listeners and max(l.config.timeouts.drain for l in self.snapshot.listeners.values()) or 5.0

    async def _stop_workers(self, timeout: float) -> None:
        await asyncio.gather(*(h.stop(timeout) for h in self.workers))

    def _kill_workers(self) -> None:
        for h in self.workers:
            proc = getattr(h, "proc", None)
            if proc is not None and proc.pid is not None and proc.exitcode is None:
                h.stopping = True
                proc.kill()
        for h in self.workers:
            proc = getattr(h, "proc", None)
            if proc is not None and proc.pid is not None:
                proc.join(timeout=2)

    def _release(self) -> None:
        """Whatever way run() ends: no worker process left, every socket closed."""
        self._kill_workers()
        self._unshare_limits()
        if self.xds is not None:
            self.xds.release()
        for h in self.workers:
            if isinstance(h, LocalWorker):
                h.close()
        if self.admin is not None:
            self.admin.close()
        for s in self.demo_servers:
            s.close()
        loop = asyncio.get_running_loop()
        for s in self.locks:
            try:
                loop.remove_reader(s.fileno())
            except (ValueError, OSError):
                pass
            s.close()
        self.locks.clear()

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
            if self.xds is not None:
                # it started from the file alone: the control plane's resources follow
                reply = await h.ready
                if reply.get("ok"):
                    gen = self.xds.generation()
                    r = await h.ask("reload", timeout=30.0, version=self.version, dynamic=self.xds.payload(),
                                    generation=gen)
                    h.generation = gen if r.get("ok") else None

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
        """The snapshot of the config as it is on disk now, with the control plane's
        resources; ConfigError if it is invalid."""
        if self.xds is None:
            return build_snapshot(self.config_path, version)
        # what validated the resources held was built last: only what changed since is built
        return build_snapshot(self.xds.config(), version, previous=self.xds.checked)

    def _start_xds(self) -> None:
        """With an xds: config (or an Envoy bootstrap's ADS), one stream for the whole
        proxy (xds.control); workers get what it brings as reloads."""
        x = self.snapshot.config.xds
        if x is None:
            return
        from .xds.control import XdsControl
        self.xds = XdsControl(self.config_path, x, self.stats, self.reload, lambda: self.version + 1,
                              self.reassign)
        self.xds.start()

    async def reassign(self, endpoints: dict[str, tuple[Endpoint, ...]]) -> bool:
        """EDS in place: these clusters' endpoints change and nothing else does, so the
        snapshot keeps its version, listeners and routes, and each worker changes
        those clusters' membership where they are (no build, no reload). After any
        reload under way, as a reload is ordered. True when every worker took it."""
        async with self._reload_lock:
            snap = self.snapshot
            changed = {n: dataclasses.replace(c, endpoints=eps) for n, eps in endpoints.items()
                       if (c := snap.clusters.get(n)) is not None and c.endpoints != eps}
            if not changed:
                return True
            self.snapshot = with_clusters(snap, changed)
            sent = {n: c.endpoints for n, c in changed.items()}
            path = None
            if sum(len(e) for e in sent.values()) > INLINE_ENDPOINTS and self.xds is not None \
                    and any(isinstance(h, WorkerHandle) for h in self.workers):
                path = self.xds.spill(sent, "endpoints")

            async def one(h: WorkerHandle | LocalWorker) -> list[str]:
                try:
                    r = await (h.ask("endpoints", timeout=30.0, endpoints_file=path)
                               if path is not None and isinstance(h, WorkerHandle)
                               else h.ask("endpoints", timeout=30.0, endpoints=sent))
                except (ConnectionError, TimeoutError, OSError) as e:
                    return [f"worker {h.idx}: {e}"]
                except Exception as e:
                    log.debug("endpoints: worker %d raised", h.idx, exc_info=e)
                    return [f"worker {h.idx}: bug: {type(e).__name__}: {e}"]
                return [] if r.get("ok") else list(r.get("errors", ["no reason given"]))
            errors = [e for errs in await asyncio.gather(*(one(h) for h in self.workers)) for e in errs]
            if errors:
                log.error("endpoints of %d cluster%s not changed in every worker: %s", len(sent),
                          "" if len(sent) == 1 else "s", "; ".join(errors))
                return False
            return True

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
            # the workers are given what changed; one that does not hold the generation
            # it changed from (new, or it missed one), every resource, as they are now
            delta: dict | None = None
            whole = None
            if self.xds is not None:
                delta = self.xds.delta()
                if any(h.generation != delta["base"] for h in self.workers):
                    whole = self.xds.payload()

            async def one(h: WorkerHandle | LocalWorker, **kw: Any) -> dict:
                try:
                    r = await h.ask("reload", timeout=30.0, version=version, **kw)
                except (ConnectionError, TimeoutError, OSError) as e:
                    r = {"ok": False, "errors": [f"worker {h.idx}: {e}"]}
                except Exception as e:
                    r = {"ok": False, "errors": [self._crashed(why, e, f"worker {h.idx}")]}
                held = kw.get("generation", delta["gen"] if delta is not None else None)
                h.generation = held if r.get("ok") else None
                return r

            def given(h: WorkerHandle | LocalWorker) -> dict:
                if delta is None:
                    return {}
                if h.generation == delta["base"]:
                    return {"delta": delta}
                return {"dynamic": whole, "generation": delta["gen"]}
            # all at once: each worker translates and builds on its own core
            replies = list(await asyncio.gather(*(one(h, **given(h)) for h in self.workers)))
            for i, h in enumerate(self.workers):
                if replies[i].get("stale") and self.xds is not None:
                    # it lost track (a build of its failed): everything, one at a time, as
                    # the file of the resources is replaced when they change
                    replies[i] = await one(h, dynamic=self.xds.payload(), generation=self.xds.generation())
            errors = [e for r in replies if not r.get("ok") for e in r.get("errors", [])]
            if errors:
                log.error("reload (%s) failed in a worker: %s", why, "; ".join(errors))
                return self._rejected(errors)
            self.snapshot = snap
            self.version = version
            self.last_error = []
            self.reloads_ok.value += 1
            _freeze(again=True, whole=why != "xds")     # an xDS update built only what changed
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


@contextlib.contextmanager
def _sigint_ignored():
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _freeze(again: bool = False, whole: bool = True) -> None:
    from .gc_freeze import freeze       # the same as a worker process does; see there
    freeze(again, whole)


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
