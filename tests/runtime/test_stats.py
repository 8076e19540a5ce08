"""Merging workers' stats: each kind of stat by its own rule, the rule carried by the
dump (a gauge's declared mode), never guessed from the stat's name."""
from __future__ import annotations

import pytest

from mosnx.runtime.stats import ACCUMULATE, BUCKETS, PER_PROXY, Store, merge, merge_into, quantile


def workers(n: int) -> list[Store]:
    return [Store() for _ in range(n)]


def test_counters_add_up_across_workers():
    a, b = workers(2)
    a.inc("cluster.web.upstream_rq_total", 3)
    b.inc("cluster.web.upstream_rq_total", 4)
    b.inc("cluster.api.upstream_rq_total", 1)
    m = merge([a.dump(), b.dump()])
    assert m["counters"] == {"cluster.web.upstream_rq_total": 7, "cluster.api.upstream_rq_total": 1}


def test_accumulate_gauges_add_up_across_workers():
    # connections in flight: each worker holds its own, the proxy holds them all
    a, b = workers(2)
    a.gauge("http.ingress.downstream_cx_active", ACCUMULATE).set(2)
    b.gauge("http.ingress.downstream_cx_active").set(3)         # ACCUMULATE is the default
    m = merge([a.dump(), b.dump()])
    assert m["gauges"]["http.ingress.downstream_cx_active"] == 5


def test_per_proxy_gauges_are_reported_once_not_summed():
    # two endpoints seen by two workers are still two endpoints
    stores = workers(3)
    for s in stores:
        s.gauge("cluster.web.membership_total", PER_PROXY).set(2)
    m = merge([s.dump() for s in stores])
    assert m["gauges"]["cluster.web.membership_total"] == 2
    assert m["gauge_modes"] == {"cluster.web.membership_total": PER_PROXY}


def test_per_proxy_gauges_take_the_largest_while_workers_disagree():
    a, b = workers(2)
    a.gauge("cluster.web.outlier_detection.ejections_active", PER_PROXY).set(0)
    b.gauge("cluster.web.outlier_detection.ejections_active", PER_PROXY).set(1)
    for order in ([a, b], [b, a]):
        m = merge([s.dump() for s in order])
        assert m["gauges"]["cluster.web.outlier_detection.ejections_active"] == 1


def test_a_mode_known_from_any_worker_applies_whatever_the_order():
    # a worker that has not declared the gauge yet (its dump carries no mode for it)
    # does not turn the merge into a sum
    unsaid = {"counters": {}, "gauges": {"cluster.web.membership_healthy": 2}, "histograms": {}}
    b = Store()
    b.gauge("cluster.web.membership_healthy", PER_PROXY).set(2)
    for dumps in ([unsaid, b.dump()], [b.dump(), unsaid]):
        assert merge(dumps)["gauges"]["cluster.web.membership_healthy"] == 2


def test_histograms_add_their_buckets():
    a, b = workers(2)
    for v in (1, 3):
        a.histogram("cluster.web.upstream_rq_time").record(v)
    b.histogram("cluster.web.upstream_rq_time").record(40)
    h = merge([a.dump(), b.dump()])["histograms"]["cluster.web.upstream_rq_time"]
    assert h["count"] == 3 and h["sum"] == 44
    assert sum(h["counts"]) == 3


def test_merging_into_a_dump_keeps_the_rules():
    # the one-worker case: the supervisor's own stats are merged into the worker's dump
    worker, supervisor = workers(2)
    worker.gauge("cluster.web.membership_total", PER_PROXY).set(2)
    worker.inc("server.reload_success")
    supervisor.inc("server.supervisor_reload_success")
    into = merge_into(worker.dump(), supervisor.dump())
    assert into["gauges"]["cluster.web.membership_total"] == 2
    assert into["counters"] == {"server.reload_success": 1, "server.supervisor_reload_success": 1}
    # merging a merged dump again is the same merge: modes travel with it
    again = merge([into, worker.dump()])
    assert again["gauges"]["cluster.web.membership_total"] == 2


def test_a_gauge_keeps_the_mode_it_was_declared_with():
    s = Store()
    g = s.gauge("cluster.web.membership_total", PER_PROXY)
    assert s.gauge("cluster.web.membership_total", PER_PROXY) is g
    with pytest.raises(ValueError, match="declared per_proxy, not accumulate"):
        s.gauge("cluster.web.membership_total", ACCUMULATE)
    with pytest.raises(ValueError, match="unknown mode 'summed'"):
        s.gauge("cluster.web.other", "summed")


def test_a_read_gauge_carries_its_mode_into_the_dump():
    s = Store()
    count = [4]
    s.gauge_reading("cluster.web.upstream_rq_active", lambda: count[0], ACCUMULATE)
    s.gauge_reading("filter.limit", lambda: 9, PER_PROXY)
    d = s.dump()
    assert d["gauges"] == {"cluster.web.upstream_rq_active": 4, "filter.limit": 9}
    assert d["gauge_modes"] == {"filter.limit": PER_PROXY}


def test_stats_merge_and_quantile():
    a, b = Store(), Store()
    a.counter("x").inc(2)
    b.counter("x").inc(3)
    b.gauge("g").set(4)
    for v in (1, 2, 3, 4, 40):
        a.histogram("h").record(v)
    m = merge([a.dump(), b.dump()])
    assert m["counters"]["x"] == 5 and m["gauges"]["g"] == 4
    assert m["histograms"]["h"]["count"] == 5
    q50 = quantile(m["histograms"]["h"], 0.5)
    assert 1 <= q50 <= 5


def test_histogram_samples_kept_by_add_count_once_read_or_folded():
    now, later = Store(), Store()
    # every bound exactly (a bound's own bucket holds it), just above each, and beyond
    samples = (0.2, 3, 3, 7.5, 40, 1e9) + BUCKETS + tuple(b * 1.001 for b in BUCKETS)
    for v in samples:
        now.histogram("h").record(v)
        later.histogram("h").add(v)
    h = later.histogram("h")
    assert h.count == len(samples)              # reading buckets what add kept
    assert later.dump() == now.dump()
    h.add(2)
    later.fold()                                # what the worker's sweep does
    assert h._held == [] and h.count == len(samples) + 1
    h.add(2)                                    # add still feeds the same histogram
    assert h.counts[2] == now.histogram("h").counts[2] + 2
    assert abs(h.sum - (sum(samples) + 4)) < 1e-6 * h.sum


def test_a_family_makes_counters_on_first_use_and_dumps_the_rest_at_zero():
    s = Store()
    names = ("upstream_rq_retry", "upstream_cx_overflow", "upstream_rq_timeout")
    f = s.family("cluster.web.", names)
    assert not s.counters                           # nothing made yet
    assert s.dump()["counters"] == {"cluster.web.upstream_rq_retry": 0, "cluster.web.upstream_cx_overflow": 0,
                                    "cluster.web.upstream_rq_timeout": 0}
    f["upstream_cx_overflow"].value += 2
    assert f["upstream_cx_overflow"] is s.counters["cluster.web.upstream_cx_overflow"]
    assert list(s.counters) == ["cluster.web.upstream_cx_overflow"]
    d = s.dump()["counters"]
    assert d["cluster.web.upstream_cx_overflow"] == 2 and d["cluster.web.upstream_rq_retry"] == 0
    # merged across workers as any counter: one worker made it, the other did not
    other = Store()
    other.family("cluster.web.", names)["upstream_cx_overflow"].value += 1
    assert merge([s.dump(), other.dump()])["counters"]["cluster.web.upstream_cx_overflow"] == 3

