"""Actions: what a pipeline step may return instead of None (continue).

A step returns None on the fast path. It returns an Action to end the stream with
a local reply (LocalReply, or redirect() which builds one), or Pause to make the
executor await I/O (a WASM http_call, a queued rate limiter) before the next step.
The awaited value is itself None or an Action.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable


class Action:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class LocalReply(Action):
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    # x-mosnx-error detail; also names the stat counted for the reply
    detail: str = ""

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"local reply status {self.status} is outside 100..599")
        if isinstance(self.body, str):
            object.__setattr__(self, "body", self.body.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Pause(Action):
    """Await `awaitable`, then continue with its result: None (go on), an Action (a
    LocalReply answers the stream), or, for a body step, bytes (the chunk to go on with)."""
    awaitable: Awaitable[Any]


def redirect(status: int, location: str, detail: str = "") -> LocalReply:
    if status not in (301, 302, 303, 307, 308):
        raise ValueError(f"redirect status must be one of 301, 302, 303, 307, 308, not {status}")
    return LocalReply(status, b"", (("location", location),), detail)
