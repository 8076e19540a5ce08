"""The supervisor's handles on its workers, one interface for both kinds: a worker
process, spoken to over a pipe (WorkerHandle), or the one worker run in the
supervisor's own process and loop (LocalWorker).

Both answer `start(version)`, `ready` (a future: the worker's first answer),
`ask(op, ...)` (a reply), `tell(op, ...)` (no reply) and `stop(timeout)`. The ops
that change what a worker serves: "reload" (version, and with a control plane
either delta: what changed of its resources since the generation the worker holds,
or dynamic and generation: every resource; a worker that cannot apply a delta
answers {"ok": False, "stale": True}) and "endpoints" (endpoints: cluster name ->
its new endpoints, EDS in place). A message too large for the pipe (the control
plane's resources, a large delta or endpoint change) goes to a worker process by a
private file the supervisor writes (xds.control.XdsControl.spill): `dynamic_file`,
`delta_file`, `endpoints_file`.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from typing import TYPE_CHECKING

# a delta of at most this many bytes of resources goes in the message itself
INLINE_DELTA = 32 * 1024

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from .supervisor import Supervisor


class WorkerHandle:
    def __init__(self, sup: "Supervisor", idx: int):
        self.sup = sup
        self.idx = idx
        # made by start(), before any other use
        self.proc: BaseProcess = None  # type: ignore[assignment]
        self.conn: Connection = None  # type: ignore[assignment]
        self.pending: dict[int, asyncio.Future] = {}
        self.ready: asyncio.Future = None  # type: ignore[assignment]
        self.final_stats: dict | None = None
        self.stopping = False
        self.generation: int | None = None      # of the control plane's resources it holds

    def start(self, version: int) -> None:
        self.generation = None
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
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("worker exited"))
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
        dynamic = kw.pop("dynamic", None)
        if dynamic is not None:
            # the control plane's resources can be megabytes: more than the pipe takes
            # at once, and the loop's pipe does not block. They go by a private file.
            kw["dynamic_file"] = self.sup.xds.spill(dynamic)
        delta = kw.pop("delta", None)
        if delta is not None:
            if sum(len(b) for named in delta["set"].values() for b in named.values()) > INLINE_DELTA:
                kw["delta_file"] = self.sup.xds.spill(delta, "delta")
            else:
                kw["delta"] = delta
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
        self.ready: asyncio.Future = None  # type: ignore[assignment]  # made by start()
        self.stopping = False
        self.generation: int | None = None      # of the control plane's resources it holds
        self._sweeper: asyncio.Task | None = None
        self._starting: asyncio.Task | None = None

    def start(self, version: int) -> None:
        loop = asyncio.get_running_loop()
        self.worker.loop = loop
        self.ready = loop.create_future()
        self._starting = loop.create_task(self._start(version))

    async def _start(self, version: int) -> None:
        """Build and bind; `ready` always gets an answer, whatever is raised."""
        from .worker import start_failure
        w = self.worker
        try:
            await w.apply(w.build(version))
        except Exception as e:
            self.ready.set_result(start_failure(e))
            return
        self._sweeper = asyncio.get_running_loop().create_task(w.sweep())
        self.ready.set_result({"ok": True, "pid": os.getpid()})

    def close(self) -> None:
        """Stop at once, without draining: listeners closed, connections reset."""
        if self._starting is not None:
            self._starting.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for _, srv in self.worker.servers.values():
            srv.close()
        for c in list(self.worker.connections):
            c.transport.abort()

    async def ask(self, op: str, timeout: float = 10.0, **kw) -> dict:
        if op == "reload":
            return await self.worker.reload(kw["version"], kw.get("dynamic"), kw.get("delta"), kw.get("generation"))
        if op == "endpoints":
            return await self.worker.reassign(kw["endpoints"])
        return self.worker.handle({"op": op, **kw})

    def tell(self, op: str, **kw) -> None:
        pass

    async def stop(self, timeout: float) -> None:
        self.stopping = True
        await self.worker.drain(timeout)
        if self._sweeper is not None:
            self._sweeper.cancel()
