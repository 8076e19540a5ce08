"""Socket writes gathered over one pass of the event loop, then made together.

On a virtual machine, a write that wakes a peer sleeping on another CPU costs an
inter-processor interrupt, and a proxy that writes as it goes pays one for nearly
every message. Made together at the end of the pass (after every read the pass
delivered), the writes of all those messages wake each peer about once.

A pass with several writes means a busy proxy whose peers drain each batch and
fall asleep before the next: such writes wait one pass more, so the peers are
woken half as often. (Measured at 32 connections, this halved the interrupts and
cut the proxy's CPU per request by about 5%; the extra pass costs less latency
than the time the proxy no longer spends waking peers.)

A pass with a single write gains nothing from waiting, and waiting costs a loop
turn: after 16 such passes in a row, writes go out at once again, and every 16th
write probes (by waiting) whether passes carry more than one write once more.

Order holds per transport as long as everything written to it goes through here;
whoever closes a transport calls flush() first, so nothing queued is lost.

A shortcut of the fast path's (proxy.fastpath): switched off (MOSNX_FASTPATH=0,
`fast_path: false`), every write goes out at once. Counted in /stats as
fastpath.write_batch.flushes (passes that made queued writes) and
fastpath.write_batch.deferred (writes that waited for the end of their pass).

This defers writes to the end of a pass; it does not join them. Joining the pieces
of one message (a head and its body) is the writer's: the HTTP/1.1 server gathers
a response in its `out` list and hands over one buffer, so each message costs one
transport write either way.
"""
from __future__ import annotations

import asyncio
from asyncio import get_running_loop

from .fastpath import memo

_pending: list = []
_loop = None        # the loop a flush is scheduled on, while one is
_direct = False     # writes go out at once (recent passes had one write each)
_solo = 0           # flushes in a row that had a single write
_count = 0          # writes made at once, for the probe's rhythm
_held = False       # the due flush already waited one pass
_off = False        # the fast path is off: every write goes out at once

SOLO_PASSES = 16
_FLUSHES = memo.WRITE_FLUSHES
_DEFERRED = memo.WRITES_DEFERRED


def switch(on: bool) -> None:
    """The fast path went on or off (memo.configure): off, what waits goes out now
    and every later write at once."""
    global _off, _direct
    if not on:
        flush()
        _direct = True
    _off = not on


def write(transport: asyncio.WriteTransport, data: bytes) -> None:
    global _loop, _count
    loop = _loop
    if loop is not None and loop.is_running():
        # a flush is already due this pass (asking asyncio for the running loop
        # instead would cost a getpid() system call per write)
        _pending.append((transport, data))
        return
    if _direct:
        _count += 1
        if _count % SOLO_PASSES or _off:
            transport.write(data)
            return
        # this write waits: the pass it ends up in tells whether batching pays again
    try:
        loop = get_running_loop()
    except RuntimeError:
        transport.write(data)          # no loop to wait for: sans-I/O use, tests
        return
    # (a loop that stopped with writes queued never ran its flush: this one does,
    # and skips their transports, which are closed)
    _loop = loop
    loop.call_soon(_pass_ended)
    _pending.append((transport, data))


def _pass_ended() -> None:
    global _held
    if not _held and len(_pending) > 1 and _loop is not None:
        _held = True
        _loop.call_soon(_pass_ended)
        return
    flush()


def flush() -> None:
    """Make every queued write now (also what a protocol calls before closing)."""
    global _loop, _pending, _direct, _solo, _held
    _loop = None
    _held = False
    pending = _pending
    if pending:
        _pending = []
        _FLUSHES.value += 1
        _DEFERRED.value += len(pending)
        if len(pending) > 1:
            _solo = 0
            _direct = False
        else:
            _solo += 1
            if _solo >= SOLO_PASSES:
                _direct = True
        for t, d in pending:
            if not t.is_closing():
                try:
                    t.write(d)
                except RuntimeError:
                    pass        # its loop is gone (tests run loops one after another)


memo.on_switch(switch)
