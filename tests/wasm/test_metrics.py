"""wasm/metrics.py: plugin-defined metrics in the worker's Store as wasm.<plugin>.<name>,
with proxy-wasm's statuses for a bad id or a bad use."""
from __future__ import annotations

from mosnx.runtime.stats import Store
from mosnx.wasm import abi
from mosnx.wasm.metrics import Metrics


def test_each_kind_lands_in_the_store_under_the_plugin():
    store = Store()
    m = Metrics(store, "authz")
    c, g, h = (m.define(abi.METRIC_COUNTER, "hits"), m.define(abi.METRIC_GAUGE, "open"),
               m.define(abi.METRIC_HISTOGRAM, "size"))
    assert (c, g, h) == (1, 2, 3)                          # ids start at 1
    assert m.define(abi.METRIC_COUNTER, "hits") == c       # defining again finds the same one
    assert m.increment(c, 2) == abi.OK and m.increment(g, -1) == abi.OK and m.increment(h, 7) == abi.OK
    assert m.record(g, 5) == abi.OK
    assert store.counter("wasm.authz.hits").value == 2 and store.gauge("wasm.authz.open").value == 5
    assert store.histogram("wasm.authz.size").count == 1
    assert m.get(c) == (abi.OK, 2) and m.get(g) == (abi.OK, 5)


def test_bad_ids_and_uses_get_statuses_not_exceptions():
    m = Metrics(Store(), "p")
    c = m.define(abi.METRIC_COUNTER, "n")
    h = m.define(abi.METRIC_HISTOGRAM, "h")
    assert m.increment(c, 0) == abi.BAD_ARGUMENT and m.increment(c, -3) == abi.BAD_ARGUMENT   # counters only grow
    assert m.get(h) == (abi.BAD_ARGUMENT, 0)
    for bad in (0, 99, -1):
        assert m.increment(bad, 1) == abi.NOT_FOUND and m.record(bad, 1) == abi.NOT_FOUND
        assert m.get(bad) == (abi.NOT_FOUND, 0)


def test_a_new_vm_keeps_counting_where_the_old_one_stopped():
    store = Store()
    first = Metrics(store, "p")
    first.increment(first.define(abi.METRIC_COUNTER, "n"), 3)
    second = Metrics(store, "p")                           # the VM was recreated
    second.increment(second.define(abi.METRIC_COUNTER, "n"), 1)
    assert store.counter("wasm.p.n").value == 4
