"""The memo registry: every memo of the proxy is registered by name with its bound,
counts hits, misses and evictions in /stats, and the switch empties and disables
them all."""
from __future__ import annotations

import pytest

from mosnx.proxy.fastpath import memo
from mosnx.proxy.worker import Worker  # noqa: F401  (imports every module that registers a memo)
import mosnx.proxy.upstream.http1  # noqa: F401
from mosnx.runtime.stats import Store


def test_every_memo_of_the_proxy_is_registered():
    assert {"http1.request_head", "http1.response_head", "http1.downstream_head", "http1.upstream_head",
            "http1.upstream_head_by_decoded", "http2.request_parts", "http2.response_parts",
            "http2.response_fields", "hpack.huffman", "hpack.decoded_block", "hpack.encoded_block",
            "path.target", "response.end_to_end", "express.response_head"} <= set(memo.KINDS)
    for k in memo.KINDS.values():
        assert k.bound > 0 and k.doc


def test_remember_counts_and_bounds():
    k = memo.MemoKind("test.bounded", 2, "a test memo")
    t = {}
    for i in range(5):
        assert memo.remember(t, k, i, i * 10) == i * 10
    assert len(t) <= 2 and k.misses == 5 and k.evictions == 4


def test_a_kind_is_registered_once():
    with pytest.raises(ValueError):
        memo.kind("http1.request_head", 1, "again")


def test_counts_show_in_a_stats_store_even_for_kinds_registered_later():
    store = Store()
    memo.register_stats(store)
    k = memo.kind("test.later", 4, "registered after the store")
    try:
        t = k.table()
        memo.remember(t, k, "a", 1)
        k.hits += 3
        dump = store.dump()
        assert dump["counters"]["fastpath.memo.test.later.hits"] == 3
        assert dump["counters"]["fastpath.memo.test.later.misses"] == 1
        assert dump["gauges"]["fastpath.enabled"] == 1
    finally:
        memo.KINDS.pop("test.later")
        memo._stores.remove(store)


def test_the_switch_off_empties_every_shared_table_and_keeps_nothing(monkeypatch):
    k = memo.KINDS["response.end_to_end"]
    t = k.tables[0]
    memo.remember(t, k, ("x",), ("y",))
    try:
        memo.configure(False)
        assert not memo.enabled() and not t and k.limit == 0
        memo.remember(t, k, ("x",), ("y",))
        assert not t
        monkeypatch.setenv(memo.ENV, "0")
        memo.configure(True)            # the environment wins over the config
        assert not memo.enabled()
    finally:
        monkeypatch.delenv(memo.ENV, raising=False)
        memo.configure(True)
    assert memo.enabled() and k.limit == k.bound


def test_a_lent_table_counts_under_the_registry_and_is_one_per_kind():
    t = memo.lend("test.lent", 2, "a table lent to a filter")
    try:
        assert memo.lend("test.lent", 2, "again, on a reload") is t
        assert t.get("a") is None and t.put("a", 1) == 1 and t.get("a") == 1
        k = memo.KINDS["test.lent"]
        assert (k.hits, k.misses) == (1, 1)
        memo.configure(False)
        assert t.get("a") is None and t.put("b", 2) == 2 and t.get("b") is None     # off: nothing kept
    finally:
        memo.configure(True)
        memo.KINDS.pop("test.lent")
        memo._lent.pop("test.lent")
