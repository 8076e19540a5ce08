"""Request ids: the x-request-id a stream gets when the client sent none.

Cheap and unique per process, never a secret: nothing may rely on them being
unguessable.
"""
from __future__ import annotations

import os
import random

_getrandbits = random.getrandbits


def _id_state() -> list:
    h = "%020x" % _getrandbits(80)
    # prefix, counter, and an odd multiplier and a key that scramble the counter
    return [f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-", 0,
            _getrandbits(48) | 1, _getrandbits(48)]


# Request ids need uniqueness, not unpredictability: UUID-shaped, 80 random bits
# drawn once per process (again in a forked worker), then a 48-bit counter passed
# through a bijection, so ids do not show how many requests a worker has served.
_ids = _id_state()
os.register_at_fork(after_in_child=lambda: _ids.__setitem__(slice(None), _id_state()))


def new_request_id() -> str:
    st = _ids
    n = st[1] = st[1] + 1
    return st[0] + "%012x" % (((n * st[2]) ^ st[3]) & 0xFFFFFFFFFFFF)
