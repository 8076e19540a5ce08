"""proxy/codec/memo.py: a bounded memo; a full one forgets everything and starts again."""
from __future__ import annotations

from mosnx.proxy.codec.memo import remember


def test_remember_stores_and_returns_the_value():
    memo: dict = {}
    value = ("a", 1)
    assert remember(memo, 4, "k", value) is value and memo == {"k": value}


def test_a_full_memo_is_emptied_before_the_next_entry():
    memo: dict = {}
    for i in range(3):
        remember(memo, 3, i, i * 10)
    assert memo == {0: 0, 1: 10, 2: 20}
    remember(memo, 3, "new", 1)
    assert memo == {"new": 1}
    for i in range(10_000):                 # bounded however much comes
        remember(memo, 3, i, i)
        assert len(memo) <= 3
