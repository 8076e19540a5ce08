"""Shared data across worker processes: two spawned processes of one parent see
each other's writes and CAS versions."""
from __future__ import annotations

import multiprocessing
import os

from mosnx.wasm import abi, shared_db


# run in the spawned children with exec (a test module is not importable there)
WRITER = """
from mosnx.wasm import shared
q.put(shared.set_data("vm", b"k", b"from-writer", 0))
got = shared.get_data("vm", b"k")
q.put(shared.set_data("vm", b"k", b"second", got[1]))
"""
READER = """
from mosnx.wasm import shared
q.put(shared.get_data("vm", b"k"))
q.put(shared.set_data("vm", b"k", b"stale", 1))     # version 1 is gone: a mismatch
"""


def test_spawned_workers_share_data():
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    path = shared_db.path_for(os.getpid())
    try:
        w = ctx.Process(target=exec, args=(WRITER, {"q": q}))
        w.start()
        w.join(30)
        assert (q.get(timeout=5), q.get(timeout=5)) == (abi.OK, abi.OK)
        r = ctx.Process(target=exec, args=(READER, {"q": q}))
        r.start()
        r.join(30)
        assert q.get(timeout=5) == (b"second", 2)
        assert q.get(timeout=5) == abi.CAS_MISMATCH
    finally:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass


def test_outside_a_worker_the_data_is_per_process():
    assert shared_db.supervisor_pid() is None
    assert shared_db.open_for_worker() is None
