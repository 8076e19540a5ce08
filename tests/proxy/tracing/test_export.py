"""The export queue: bounded (overflow dropped and counted), batched by size and by
delay, failures counted and logged at most once a minute, the rest sent on stop."""
from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from mosnx.proxy.tracing.export import ExportQueue, TraceExport
from mosnx.runtime.model import TraceExporter, TracingConfig
from mosnx.runtime.stats import Store
from mosnx.runtime.tracing.span import Record, TraceRecord

from .spans_data import record, stream_record


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_overflow_is_dropped_and_counted() -> None:
    async def main() -> None:
        store = Store()
        sent: list[list[TraceRecord]] = []

        async def send(batch: list[TraceRecord]) -> None:
            sent.append(batch)
        q = ExportQueue("otlp", send, store, max_queue=4, batch_size=100, batch_delay=10.0)
        for _ in range(3):
            q.offer(record())           # two spans each: the third does not fit
        assert q.queued == 4 and store.counters["tracing.otlp.spans_dropped"].value == 2
        await q.stop(5)
        assert sum(len(b) for b in sent) == 2
        assert store.counters["tracing.otlp.spans_exported"].value == 4
        q.offer(record())               # after stop: nothing is kept
        assert q.queued == 0 and store.counters["tracing.otlp.spans_dropped"].value == 4
    run(main())


def test_a_stream_record_counts_its_spans_when_dropped() -> None:
    async def main() -> None:
        store = Store()

        async def send(batch: list[Record]) -> None:
            pass
        q = ExportQueue("otlp", send, store, max_queue=5, batch_size=100, batch_delay=10.0)
        retried = stream_record(attempts=((503, ""), (200, "")))
        assert retried.size == 3 and len(retried.spans) == 3
        q.offer(retried)
        q.offer(retried)                # 3 more do not fit in 5
        assert q.queued == 3 and store.counters["tracing.otlp.spans_dropped"].value == 3
        await q.stop(5)
        assert store.counters["tracing.otlp.spans_exported"].value == 3
    run(main())


def test_batches_by_size_then_by_delay() -> None:
    async def main() -> None:
        store = Store()
        sent: list[int] = []
        got = asyncio.Event()

        async def send(batch: list[TraceRecord]) -> None:
            sent.append(sum(len(r.spans) for r in batch))
            got.set()
        q = ExportQueue("zipkin", send, store, max_queue=100, batch_size=4, batch_delay=30.0)
        q.start()
        q.offer(record())
        q.offer(record())               # 4 spans: a full batch goes at once
        await asyncio.wait_for(got.wait(), 10)
        assert sent == [4]
        got.clear()
        q.batch_delay = 0.05
        q.offer(record())               # below the batch size: goes after the delay
        await asyncio.wait_for(got.wait(), 10)
        assert sent == [4, 2]
        await q.stop(1)
    run(main())


def test_spans_that_come_during_an_export_wait_for_a_full_batch() -> None:
    """A slow collector does not turn the stream of spans into many small exports."""
    async def main() -> None:
        store = Store()
        sent: list[int] = []
        release = asyncio.Event()
        got = asyncio.Event()

        async def send(batch: list[Record]) -> None:
            sent.append(sum(r.size for r in batch))
            got.set()
            await release.wait()
        q = ExportQueue("otlp", send, store, max_queue=100, batch_size=4, batch_delay=30.0)
        q.start()
        q.offer(record())
        q.offer(record())               # a full batch: its export starts and hangs
        await asyncio.wait_for(got.wait(), 10)
        got.clear()
        q.offer(record())               # comes while the export is under way
        release.set()
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert sent == [4] and q.queued == 2
        q.offer(record())               # the batch fills: it goes
        await asyncio.wait_for(got.wait(), 10)
        assert sent == [4, 4] and q.queued == 0
        await q.stop(1)
    run(main())


def test_failures_count_and_log_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = Store()

        async def send(batch: list[TraceRecord]) -> None:
            raise OSError("connection refused")
        q = ExportQueue("skywalking", send, store, max_queue=100, batch_size=1, batch_delay=0.01)
        for _ in range(3):
            q.offer(record())
            await q.flush_one()
        assert store.counters["tracing.skywalking.export_failed"].value == 3
        assert store.counters["tracing.skywalking.spans_dropped"].value == 6
    with caplog.at_level(logging.WARNING, logger="mosnx.tracing"):
        run(main())
    assert sum("skywalking export failed" in r.getMessage() for r in caplog.records) == 1


def test_trace_export_fans_out_and_names_duplicates() -> None:
    async def main() -> None:
        cfg = TracingConfig(exporters=(TraceExporter("zipkin", "http://127.0.0.1:1/a"),
                                       TraceExporter("zipkin", "http://127.0.0.1:1/b")))
        store = Store()
        te = TraceExport(cfg, store)
        assert [q.name for q in te.queues] == ["zipkin", "zipkin_2"]
        te.offer(record())
        assert [q.queued for q in te.queues] == [2, 2]
        for q in te.queues:
            q.records.clear()
            q.queued = 0
        await te.stop(1)
    run(main())


@pytest.mark.parametrize("kind, endpoint", [("otlp", "127.0.0.1:4317"), ("otlp", "http://127.0.0.1:4318/v1/traces"),
                                            ("zipkin", "http://127.0.0.1:9411/api/v2/spans"),
                                            ("skywalking", "http://127.0.0.1:12800")])
def test_a_queue_holds_nothing_the_collector_tracks_and_a_batch_is_the_records_encoded(
        kind: str, endpoint: str) -> None:
    """What waits for its batch holds none of the stream's objects: bytes, or for OTLP a
    stream's facts as flat tuples, which the garbage collector stops tracking (rules'
    tags and RPC attributes included); the batch sent is what the exporter's encode()
    makes of the records."""
    from mosnx.proxy.tracing import otlp, skywalking, zipkin
    encode = {"otlp": otlp.encode, "zipkin": zipkin.encode, "skywalking": skywalking.encode}[kind]
    encode_items = {"otlp": otlp.encode_items, "zipkin": zipkin.encode_items,
                    "skywalking": skywalking.encode_items}[kind]

    async def main() -> None:
        te = TraceExport(TracingConfig(exporters=(TraceExporter(kind, endpoint),)), Store())
        (q,) = te.queues
        records = [stream_record(), record(), stream_record(attempts=((503, ""), (200, ""))),
                   stream_record(tags={"tenant": "acme"}, rpc={"rpc.system": "dubbo"})]
        for r in records:
            te.offer(r)
        assert q.queued == 2 + 2 + 3 + 2
        kept = [item for _, item in q.records]
        # a pass stops tracking a tuple once what it holds is untracked: the header
        # pairs, their tuple, the facts, the (resource, facts) pair, the queue's entry
        for _ in range(5):
            gc.collect()
        assert not any(gc.is_tracked(entry) for entry in q.records)
        assert encode_items(kept) == encode(records)
        batch, n = q.take()
        assert n == 9 and batch == kept
        await te.stop(0.1)
    run(main())


def test_a_record_that_cannot_be_encoded_is_dropped_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def item(r: Record) -> bytes:
        raise ValueError("no")

    async def main() -> None:
        store = Store()

        async def send(batch: list[bytes]) -> None:
            raise AssertionError("nothing to send")
        q = ExportQueue("otlp", send, store, max_queue=100, batch_size=1, batch_delay=0.01, item=item)
        for _ in range(3):
            q.offer(record())           # the stream's end goes on
        assert q.queued == 0 and not q.records
        assert store.counters["tracing.otlp.spans_dropped"].value == 6
    with caplog.at_level(logging.WARNING, logger="mosnx.tracing"):
        run(main())
    assert sum("could not encode" in r.getMessage() for r in caplog.records) == 1
