"""Shared data across the worker processes of one mosnx: a SQLite table.

Envoy's workers are threads and share proxy_set_shared_data; mosnx's are
processes, so in a spawned worker the data lives in a small WAL-mode SQLite
file named after the supervisor's pid (in /dev/shm when it exists), which
every worker of that supervisor opens, and the supervisor removes at exit.
A CAS write is one IMMEDIATE transaction: read the version, compare, write
version + 1.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import sqlite3
import tempfile

log = logging.getLogger("mosnx.wasm")

_SCHEMA = ("CREATE TABLE IF NOT EXISTS kv (vm TEXT NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL, "
           "cas INTEGER NOT NULL, PRIMARY KEY (vm, k)) WITHOUT ROWID")


def path_for(supervisor_pid: int) -> str:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return os.path.join(base, f"mosnx-wasm-shared-{supervisor_pid}-{_start_time(supervisor_pid)}.db")


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot), so a reused pid names another file."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return "0"


def supervisor_pid() -> int | None:
    """The pid of the process that spawned this worker, or None outside a spawned worker."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else None


class SharedDB:
    def __init__(self, path: str):
        self.path = path
        self.db = sqlite3.connect(path, timeout=2.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute(_SCHEMA)

    def get(self, vm_id: str, key: bytes) -> tuple[bytes, int] | None:
        row = self.db.execute("SELECT v, cas FROM kv WHERE vm = ? AND k = ?", (vm_id, key)).fetchone()
        return None if row is None else (bytes(row[0]), row[1])

    def set(self, vm_id: str, key: bytes, value: bytes, cas: int) -> bool:
        """False on a CAS mismatch."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT cas FROM kv WHERE vm = ? AND k = ?", (vm_id, key)).fetchone()
            if cas and row is not None and row[0] != cas:
                db.execute("COMMIT")
                return False
            version = (row[0] + 1) if row is not None else 1
            db.execute("INSERT OR REPLACE INTO kv (vm, k, v, cas) VALUES (?, ?, ?, ?)",
                       (vm_id, key, value, version & 0xFFFFFFFF or 1))
            db.execute("COMMIT")
            return True
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def clear(self) -> None:
        self.db.execute("DELETE FROM kv")


_db: SharedDB | None = None
_db_pid = 0


def open_for_worker() -> SharedDB | None:
    """The shared database of this worker's supervisor, or None (not a worker, or unusable)."""
    global _db, _db_pid
    pid = os.getpid()
    if _db_pid == pid:
        return _db
    _db_pid = pid
    sup = supervisor_pid()
    _db = None
    if sup is not None:
        try:
            _db = SharedDB(path_for(sup))
        except sqlite3.Error as e:
            log.warning("wasm shared data stays per worker: cannot open %s: %s", path_for(sup), e)
    return _db


def _remove_files_of_this_process() -> None:
    # the supervisor outlives its workers: it removes the file they shared
    path = path_for(os.getpid())
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except OSError:
            pass


if supervisor_pid() is None:
    atexit.register(_remove_files_of_this_process)
