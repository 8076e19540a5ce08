"""Writes gathered over one loop pass: made together at its end, in order per
transport, never after a close, and at once when no loop runs."""
import asyncio

from mosnx.proxy import write_batch


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
        a, b = Transport(log, "a"), Transport(log, "b")
        write_batch.write(a, b"1")
        write_batch.write(b, b"x")
        write_batch.write(a, b"2")
        assert log == []                  # nothing yet: the pass is not over
        await asyncio.sleep(0)
        assert log == [("a", b"1"), ("b", b"x"), ("a", b"2")]
        write_batch.write(a, b"3")        # a later pass gets a flush of its own
        await asyncio.sleep(0)
        assert log[-1] == ("a", b"3")
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
