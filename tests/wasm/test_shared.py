"""wasm/shared.py: shared data with compare-and-swap, and shared queues that tell their
registrant of new items; outside a spawned worker all of it is this process's."""
from __future__ import annotations

import pytest

from mosnx.wasm import abi, shared


@pytest.fixture(autouse=True)
def fresh():
    shared.reset()
    yield
    shared.reset()


def test_cas_accepts_the_current_version_only_and_never_reuses_one():
    assert shared.get_data("vm", b"k") is None
    assert shared.set_data("vm", b"k", b"v1", 0) == abi.OK
    value, cas = shared.get_data("vm", b"k")
    assert value == b"v1"
    assert shared.set_data("vm", b"k", b"v2", cas) == abi.OK
    assert shared.set_data("vm", b"k", b"stale", cas) == abi.CAS_MISMATCH
    value2, cas2 = shared.get_data("vm", b"k")
    assert value2 == b"v2" and cas2 > cas
    assert shared.set_data("vm", b"k", b"v3", 0) == abi.OK             # cas 0: unconditional
    assert shared.get_data("other-vm", b"k") is None                    # keyed by vm_id


def test_queues_deliver_in_order_and_notify_the_registrant():
    class VM:
        def __init__(self):
            self.told = []

        def notify_queue(self, root_id, qid):
            self.told.append((root_id, qid))
    vm = VM()
    qid = shared.register_queue("vm", b"jobs", vm, root_id=7)
    assert shared.resolve_queue("vm", b"jobs") == qid and shared.resolve_queue("vm", b"other") is None
    assert shared.register_queue("vm", b"jobs", vm, root_id=7) == qid   # registering again: the same queue
    assert shared.dequeue(qid) == (abi.EMPTY, b"")
    assert shared.enqueue(qid, b"a") == abi.OK and shared.enqueue(qid, b"b") == abi.OK
    assert vm.told == [(7, qid), (7, qid)]
    assert [shared.dequeue(qid) for _ in range(3)] == [(abi.OK, b"a"), (abi.OK, b"b"), (abi.EMPTY, b"")]
    assert shared.enqueue(999, b"x") == abi.NOT_FOUND and shared.dequeue(999) == (abi.NOT_FOUND, b"")


def test_a_queue_outlives_its_registrant_vm():
    class VM:
        def notify_queue(self, root_id, qid):
            raise AssertionError("a dead VM is not told")
    vm = VM()
    qid = shared.register_queue("vm", b"q", vm, 1)
    del vm                                        # the VM failed and was dropped
    assert shared.enqueue(qid, b"kept") == abi.OK and shared.dequeue(qid) == (abi.OK, b"kept")
