"""The export side of tracing: one bounded queue per exporter, drained by a task.

A finished stream's record (runtime.tracing.span.Record) is offered to every
exporter's queue; offering never blocks and never fails the request: when a queue
already holds max_queue spans, the record is dropped and counted
(tracing.<exporter>.spans_dropped). The queue keeps what the exporter's `item`
makes of the record: its wire format, or (OTLP, a stream's record) its facts, or
what an express stream's are made from, as one flat tuple that the batch encodes. Kept as it is, a record would hold the
stream's request, trace and attempts, container objects that every garbage
collection pass walks until the batch goes (at 10 % sampling, some 2 % of a busy
proxy's CPU); bytes, numbers and strings leave nothing for it to walk. The task
sends a batch when batch_size spans wait, or batch_delay after the first of them
came (spans that come while an export is under way wait for a full batch too,
rather than go in small ones). A failed export costs
tracing.<exporter>.export_failed and its spans, and a log line at most once a
minute per exporter; the task goes on. On stop, what is queued gets one last try.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Awaitable, Callable

from mosnx.runtime.model import TraceExporter, TracingConfig
from mosnx.runtime.stats import Store
from mosnx.runtime.tracing.span import Record

log = logging.getLogger("mosnx.tracing")

_monotonic = time.monotonic
LOG_EVERY = 60.0            # s between two log lines about one exporter's failures
Send = Callable[[list[Any]], Awaitable[None]]
Item = Callable[[Record], Any]


class ExportQueue:
    """`item`: what a record is kept as (None: the record itself); `send` takes a batch
    of those."""

    def __init__(self, name: str, send: Send, store: Store, max_queue: int, batch_size: int,
                 batch_delay: float, item: Item | None = None) -> None:
        self.name = name
        self.send = send
        self.item = item
        self.records: collections.deque[tuple[int, Any]] = collections.deque()     # (spans, item)
        self.queued = 0                 # spans in records
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.batch_delay = batch_delay
        p = f"tracing.{name}."
        self.dropped = store.counter(p + "spans_dropped")
        self.exported = store.counter(p + "spans_exported")
        self.failed = store.counter(p + "export_failed")
        self.wake = asyncio.Event()
        self.last_log = -LOG_EVERY
        self.task: asyncio.Task[None] | None = None

    def offer(self, record: Record) -> None:
        n = record.size
        if self.queued + n > self.max_queue:
            self.dropped.value += n
            return
        item = self.item
        if item is not None:
            try:
                record = item(record)
            except Exception as e:     # what the request carried could not be encoded: its spans only
                self.dropped.value += n
                self._log("could not encode a record (%d spans dropped; next report in a minute at most): %s", n, e)
                return
        self.records.append((n, record))
        self.queued += n
        if self.queued >= self.batch_size or len(self.records) == 1:
            self.wake.set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            deadline = _monotonic() + self.batch_delay
            while self.records:
                if self.queued < self.batch_size:
                    # a batch not yet full waits for the rest until its deadline; what came
                    # while an export was under way waits too, rather than go as a small
                    # batch each time a collector is slow to answer (a call costs the
                    # same for 10 spans as for 500)
                    left = deadline - _monotonic()
                    if left > 0:
                        try:
                            await asyncio.wait_for(self._full(), left)
                        except asyncio.TimeoutError:
                            pass
                started = _monotonic()
                behind = self.queued > self.batch_size
                await self.flush_one()
                if not behind:
                    # all that waits now came after this export started
                    deadline = started + self.batch_delay

    async def _full(self) -> None:
        while self.queued < self.batch_size:
            await self.wake.wait()
            self.wake.clear()

    def take(self) -> tuple[list[Any], int]:
        """The next batch, and its spans."""
        batch: list[Any] = []
        n = 0
        records, size = self.records, self.batch_size
        while records and n < size:
            k, r = records.popleft()
            batch.append(r)
            n += k
        self.queued -= n
        return batch, n

    async def flush_one(self) -> None:
        batch, n = self.take()
        if not batch:
            return
        try:
            await self.send(batch)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.failed.value += 1
            self.dropped.value += n
            self._log("export failed (%d spans dropped; next report in a minute at most): %s", n, e)
            return
        self.exported.value += n

    def _log(self, what: str, n: int, e: Exception) -> None:
        now = time.monotonic()
        if now - self.last_log >= LOG_EVERY:
            self.last_log = now
            log.warning("tracing: %s " + what, self.name, n, e)

    async def stop(self, timeout: float) -> None:
        # streams still in flight on a replaced snapshot may offer more: dropped and counted
        self.max_queue = 0
        if self.task is not None:
            self.task.cancel()
            self.task = None
        try:
            await asyncio.wait_for(self._drain(), timeout)
        except (asyncio.TimeoutError, Exception):
            pass

    async def _drain(self) -> None:
        while self.records:
            await self.flush_one()


def sender(exp: TraceExporter) -> tuple[Item, Send, Callable[[], Awaitable[None]] | None]:
    """What an exporter keeps a record as, its send function, and what closes it
    (None: nothing)."""
    if exp.kind == "otlp":
        from . import otlp
        if exp.endpoint.startswith("http://"):
            return otlp.item, otlp.otlp_http(exp.endpoint), None
        g = otlp.OtlpGrpc(exp.endpoint)
        return otlp.item, g.send, g.close
    if exp.kind == "zipkin":
        from . import zipkin
        return zipkin.item, zipkin.zipkin_http(exp.endpoint), None
    if exp.endpoint.startswith("http://"):
        from . import skywalking
        return skywalking.item, skywalking.skywalking_http(exp.endpoint), None
    from .skywalking_grpc import SkyWalkingGrpc
    s = SkyWalkingGrpc(exp.endpoint)
    return s.item, s.send, s.close


class TraceExport:
    """Every exporter of a tracing config, for one worker; `offer` is the tracers' sink."""

    def __init__(self, config: TracingConfig, store: Store) -> None:
        self.config = config
        self.queues: list[ExportQueue] = []
        self.closers: list[Callable[[], Awaitable[None]]] = []
        seen: dict[str, int] = {}
        for exp in config.exporters:
            seen[exp.kind] = seen.get(exp.kind, 0) + 1
            name = exp.kind if seen[exp.kind] == 1 else f"{exp.kind}_{seen[exp.kind]}"
            item, send, close = sender(exp)
            if close is not None:
                self.closers.append(close)
            self.queues.append(ExportQueue(name, send, store, config.max_queue, config.batch_size,
                                           config.batch_delay, item))
        queues = tuple(self.queues)

        def offer(record: Record) -> None:
            for q in queues:
                q.offer(record)
        # one exporter (the usual case): the tracers call its queue with no loop between
        self.offer: Callable[[Record], None] = queues[0].offer if len(queues) == 1 else offer

    def start(self) -> None:
        for q in self.queues:
            q.start()

    async def stop(self, timeout: float = 2.0) -> None:
        for q in self.queues:
            await q.stop(timeout)
        for close in self.closers:
            try:
                await close()
            except Exception:
                pass
