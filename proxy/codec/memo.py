"""Bounded memos for results that repeat: heads, header blocks, checked fields.

Each memo is a plain dict (a lookup stays a dict lookup on the hot path); only a
miss goes through remember(). A full memo forgets everything and starts again:
cheaper than tracking use, and traffic that repeats fills it again at once.
"""
from __future__ import annotations

from typing import Hashable, TypeVar

V = TypeVar("V")


def remember(memo: dict, limit: int, key: Hashable, value: V) -> V:
    """memo[key] = value, emptying the memo first when it holds `limit` entries;
    returns `value`."""
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value
    return value
