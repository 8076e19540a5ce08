"""The lifecycle of a stream, as data: the request's and the response's states, the
upstream attempt's, and the transitions each may make.

States are IntEnums so the executor compares them as ints (`resp >= HEAD_SENT`:
the response has started) at the cost of an int comparison; the module-level
names below are the members themselves, read as globals on the hot path.

Request: PENDING (parsed, not yet admitted) → RECEIVING (its body is still coming)
→ COMPLETE; a request without a body is COMPLETE when it is admitted.

Response: WAITING (no head sent) → HEAD_SENT (the head is out, the body streams)
→ BODY_ENDED (the body's end has been through the body steps) → DONE (the end is
sent, or the response was cut short) → ENDED (logged; nothing more happens). A
head without a body goes from WAITING to BODY_ENDED (body steps are not called for
it); a local reply from WAITING straight to DONE; an upgrade to TUNNEL (raw bytes
both ways) and from there to DONE; a client that goes away ends any state.
The order is meaningful: every state from HEAD_SENT on has started the response,
every state from DONE on has finished it.

Attempt (the upstream side of the current try): IDLE → WAITING (asked the pool)
→ ACTIVE (holds a connection, counted on its host and cluster) → IDLE.
"""
from __future__ import annotations

from enum import IntEnum


class Req(IntEnum):
    PENDING = 0
    RECEIVING = 1
    COMPLETE = 2


class Resp(IntEnum):
    WAITING = 0
    HEAD_SENT = 1
    BODY_ENDED = 2
    TUNNEL = 3
    DONE = 4
    ENDED = 5


class Attempt(IntEnum):
    IDLE = 0
    WAITING = 1
    ACTIVE = 2


PENDING, RECEIVING, COMPLETE = Req.PENDING, Req.RECEIVING, Req.COMPLETE
WAITING, HEAD_SENT, BODY_ENDED, TUNNEL, DONE, ENDED = (
    Resp.WAITING, Resp.HEAD_SENT, Resp.BODY_ENDED, Resp.TUNNEL, Resp.DONE, Resp.ENDED)
A_IDLE, A_WAITING, A_ACTIVE = Attempt.IDLE, Attempt.WAITING, Attempt.ACTIVE

# Every transition a stream may make (a state may also be set to itself).
TRANSITIONS: dict[type, frozenset[tuple[IntEnum, IntEnum]]] = {
    Req: frozenset({
        (PENDING, RECEIVING), (PENDING, COMPLETE), (RECEIVING, COMPLETE),
    }),
    Resp: frozenset({
        (WAITING, HEAD_SENT), (WAITING, BODY_ENDED), (WAITING, DONE), (WAITING, TUNNEL),
        (WAITING, ENDED),
        (HEAD_SENT, BODY_ENDED), (HEAD_SENT, DONE), (HEAD_SENT, ENDED),
        (BODY_ENDED, DONE), (BODY_ENDED, ENDED),
        (TUNNEL, DONE), (TUNNEL, ENDED),
        (DONE, ENDED),
    }),
    Attempt: frozenset({
        (A_IDLE, A_WAITING), (A_WAITING, A_ACTIVE), (A_WAITING, A_IDLE), (A_ACTIVE, A_IDLE),
    }),
}


def allowed(old: IntEnum, new: IntEnum) -> bool:
    """Whether a stream may go from `old` to `new` (both of one enum)."""
    return old is new or (old, new) in TRANSITIONS[type(old)]
