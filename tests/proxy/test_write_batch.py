"""Writes gathered over a loop pass (two when the first has several): made
together, in order per transport, never after a close, and at once when no loop
runs or when passes carry one write each."""
import asyncio

import pytest

from mosnx.proxy import write_batch


@pytest.fixture(autouse=True)
def batching(monkeypatch):
    """Each test starts batching, whatever traffic earlier tests in this process made."""
    monkeypatch.setattr(write_batch, "_direct", False)
    monkeypatch.setattr(write_batch, "_solo", 0)
    monkeypatch.setattr(write_batch, "_count", 0)


class Transport:
    def __init__(self, log, name):
        self.log = log
        self.name = name
        self.closed = False

    def write(self, data):
        self.log.append((self.name, data))

    def is_closing(self):
        return self.closed


def test_writes_wait_for_the_end_of_the_pass_and_keep_their_order():
    async def run():
        log = []
        a = Transport(log, "a")
        write_batch.write(a, b"1")
        assert log == []                  # nothing yet: the pass is not over
        await asyncio.sleep(0)
        assert log == [("a", b"1")]       # a pass with one write: out at its end
        write_batch.write(a, b"2")        # a later pass gets a flush of its own
        await asyncio.sleep(0)
        assert log[-1] == ("a", b"2")
    asyncio.run(run())


def test_a_pass_with_several_writes_waits_one_pass_more_and_keeps_order():
    async def run():
        log = []
        a, b = Transport(log, "a"), Transport(log, "b")
        write_batch.write(a, b"1")
        write_batch.write(b, b"x")
        write_batch.write(a, b"2")
        await asyncio.sleep(0)
        assert log == []                  # held for the next pass's writes
        write_batch.write(b, b"y")        # made in that next pass: same batch, after
        await asyncio.sleep(0)
        assert log == [("a", b"1"), ("b", b"x"), ("a", b"2"), ("b", b"y")]
        write_batch.write(a, b"3")
        write_batch.write(a, b"4")
        write_batch.flush()               # a close does not wait for the held pass
        assert log[-2:] == [("a", b"3"), ("a", b"4")]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(log) == 6              # and nothing is written twice
    asyncio.run(run())


def test_flush_before_close_and_nothing_written_to_a_closed_transport():
    async def run():
        log = []
        a, b = Transport(log, "a"), Transport(log, "b")
        write_batch.write(a, b"last words")
        write_batch.flush()               # what a protocol does before closing
        a.closed = True
        write_batch.write(b, b"queued")
        b.closed = True                   # closed by the peer before the pass ended
        await asyncio.sleep(0)
        assert log == [("a", b"last words")]
    asyncio.run(run())


def test_without_a_running_loop_a_write_is_made_at_once():
    log = []
    write_batch.write(Transport(log, "a"), b"now")
    assert log == [("a", b"now")]


def test_writes_left_by_a_loop_that_closed_do_not_block_the_next_one():
    stale_log, log = [], []
    stale = Transport(stale_log, "stale")

    async def leave_queued():
        write_batch.write(stale, b"never flushed")
        stale.closed = True
    loop = asyncio.new_event_loop()
    loop.run_until_complete(leave_queued())
    loop.close()                          # its flush never ran

    async def run():
        write_batch.write(Transport(log, "a"), b"fresh")
        await asyncio.sleep(0)
    asyncio.run(run())
    assert log == [("a", b"fresh")] and stale_log == []


def test_single_write_passes_go_direct_and_a_probe_brings_batching_back():
    async def run():
        log = []
        a, b = Transport(log, "a"), Transport(log, "b")
        for i in range(write_batch.SOLO_PASSES):
            write_batch.write(a, b"%d" % i)
            assert log[-1:] != [("a", b"%d" % i)]       # still waiting for the pass
            await asyncio.sleep(0)
        assert write_batch._direct
        write_batch.write(a, b"now")
        assert log[-1] == ("a", b"now")                 # one write a pass: no wait
        for _ in range(write_batch.SOLO_PASSES - 2):
            write_batch.write(a, b"direct")
        write_batch.write(a, b"probe")                  # every 16th write waits...
        write_batch.write(b, b"same pass")              # ...and what follows it queues behind
        assert log[-1] == ("a", b"direct")
        await asyncio.sleep(0)
        await asyncio.sleep(0)                          # two writes: one pass more
        assert log[-2:] == [("a", b"probe"), ("b", b"same pass")]
        assert not write_batch._direct                  # two writes in one pass: batching again
        write_batch.write(a, b"batched")
        assert log[-1] != ("a", b"batched")
        await asyncio.sleep(0)
        assert log[-1] == ("a", b"batched")
    asyncio.run(run())


def test_with_the_fast_path_off_every_write_goes_out_at_once():
    from mosnx.proxy.fastpath import memo

    async def run():
        log = []
        a = Transport(log, "a")
        write_batch.write(a, b"queued")
        memo.configure(False)          # what waited goes out, and nothing waits any more
        assert log == [("a", b"queued")]
        for i in range(40):
            write_batch.write(a, b"%d" % i)
            assert log[-1] == ("a", b"%d" % i)
        return log
    try:
        flushes = memo.WRITE_FLUSHES.value
        asyncio.run(run())
        assert memo.WRITE_FLUSHES.value == flushes + 1     # the one that emptied the queue
    finally:
        memo.configure(True)
    assert not write_batch._off


def test_flushes_and_deferred_writes_are_counted():
    from mosnx.proxy.fastpath import memo

    async def run():
        log = []
        a, b = Transport(log, "a"), Transport(log, "b")
        write_batch.write(a, b"1")
        write_batch.write(b, b"2")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return log
    flushes, deferred = memo.WRITE_FLUSHES.value, memo.WRITES_DEFERRED.value
    assert asyncio.run(run()) == [("a", b"1"), ("b", b"2")]
    assert (memo.WRITE_FLUSHES.value - flushes, memo.WRITES_DEFERRED.value - deferred) == (1, 2)
