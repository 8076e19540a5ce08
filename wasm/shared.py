"""Shared data and shared queues, keyed by vm_id.

Shared data is shared by every worker of one mosnx (shared_db.py) as Envoy
shares it across its worker threads; outside a spawned worker (tests, the
supervisor) it is a dict of this process. Queues are per process: a queue's
registrant is told of new items by a callback on its own event loop.
CAS values are never reused for a key, so a stale cas always mismatches.
"""
from __future__ import annotations

import itertools
import weakref
from collections import deque

from . import abi, shared_db

_data: dict[tuple[str, bytes], tuple[bytes, int]] = {}
_cas = itertools.count(1)


def get_data(vm_id: str, key: bytes) -> tuple[bytes, int] | None:
    db = shared_db.open_for_worker()
    if db is not None:
        return db.get(vm_id, key)
    return _data.get((vm_id, key))


def set_data(vm_id: str, key: bytes, value: bytes, cas: int) -> int:
    db = shared_db.open_for_worker()
    if db is not None:
        return abi.OK if db.set(vm_id, key, value, cas) else abi.CAS_MISMATCH
    k = (vm_id, key)
    cur = _data.get(k)
    if cas and cur is not None and cur[1] != cas:
        return abi.CAS_MISMATCH
    _data[k] = (value, next(_cas))
    return abi.OK


class Queue:
    __slots__ = ("items", "owner", "root_id")

    def __init__(self) -> None:
        self.items: deque[bytes] = deque()
        self.owner: weakref.ref | None = None  # weakref to the VM whose root context is told of new items
        self.root_id = 0


_queues: dict[int, Queue] = {}
_queue_ids: dict[tuple[str, bytes], int] = {}
_next_queue = itertools.count(1)


def register_queue(vm_id: str, name: bytes, vm: object, root_id: int) -> int:
    qid = _queue_ids.get((vm_id, name))
    if qid is None:
        qid = _queue_ids[(vm_id, name)] = next(_next_queue)
        _queues[qid] = Queue()
    q = _queues[qid]
    q.owner = weakref.ref(vm)
    q.root_id = root_id
    return qid


def resolve_queue(vm_id: str, name: bytes) -> int | None:
    return _queue_ids.get((vm_id, name))


def enqueue(qid: int, value: bytes) -> int:
    q = _queues.get(qid)
    if q is None:
        return abi.NOT_FOUND
    q.items.append(value)
    vm = q.owner() if q.owner is not None else None
    if vm is not None:
        vm.notify_queue(q.root_id, qid)
    return abi.OK


def dequeue(qid: int) -> tuple[int, bytes]:
    q = _queues.get(qid)
    if q is None:
        return abi.NOT_FOUND, b""
    if not q.items:
        return abi.EMPTY, b""
    return abi.OK, q.items.popleft()


def reset() -> None:
    """Forget everything (tests)."""
    _data.clear()
    _queues.clear()
    _queue_ids.clear()
