"""Generated request ids: UUID-shaped, unique, not a visible count, new per worker."""
import os
import re

from mosnx.proxy.request_id import new_request_id

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_ids_are_uuid_shaped_unique_and_not_sequential():
    ids = [new_request_id() for _ in range(100_000)]
    assert all(UUID4.match(i) for i in ids[:1000])
    assert len(set(ids)) == len(ids)
    tails = [int(i[-12:], 16) for i in ids[:100]]
    assert sum(1 for a, b in zip(tails, tails[1:]) if b == a + 1) < 5


def test_a_forked_worker_draws_its_own_prefix():
    parent = new_request_id()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:        # the child reports its first id and leaves at once
        os.write(w, new_request_id().encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 100).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert UUID4.match(child)
    assert child[:24] != parent[:24]
