"""Socket writes gathered over one pass of the event loop, then made together.

On a virtual machine, a write that wakes a peer sleeping on another CPU costs an
inter-processor interrupt, and a proxy that writes as it goes pays one for nearly
every message. Made together at the end of the pass (after every read the pass
delivered), the writes of all those messages wake each peer about once.

Order holds per transport as long as everything written to it goes through here;
whoever closes a transport calls flush() first, so nothing queued is lost.
"""
from __future__ import annotations

from asyncio import _get_running_loop

_pending: list = []
_loop = None        # the loop a flush is scheduled on, while one is


def write(transport, data: bytes) -> None:
    global _loop
    loop = _get_running_loop()
    if loop is None:
        transport.write(data)          # no loop to wait for: sans-I/O use, tests
        return
    if loop is not _loop:
        # (a loop that closed with writes queued never ran its flush: this one does,
        # and skips their transports, which are closed)
        _loop = loop
        loop.call_soon(flush)
    _pending.append((transport, data))


def flush() -> None:
    global _loop, _pending
    _loop = None
    pending = _pending
    if pending:
        _pending = []
        for t, d in pending:
            if not t.is_closing():
                try:
                    t.write(d)
                except RuntimeError:
                    pass        # its loop is gone (tests run loops one after another)
