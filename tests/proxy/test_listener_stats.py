"""A listener's counters: a local reply counted by its cause, and a reply the
connection writes itself counted as a request answered, whatever protocol."""
from __future__ import annotations

from mosnx.proxy.listener_stats import ListenerStats
from mosnx.runtime.stats import Store


def test_local_replies_count_by_cause_under_the_listener():
    store = Store()
    ls = ListenerStats(store, "edge")
    ls.local_reply("route_not_found")
    ls.local_reply("route_not_found")
    ls.local_reply("upstream_overflow")
    counters = store.dump()["counters"]
    assert counters["http.edge.local_reply.route_not_found"] == 2
    assert counters["http.edge.local_reply.upstream_overflow"] == 1


def test_a_refused_request_counts_as_a_request_answered_with_its_status():
    store = Store()
    ls = ListenerStats(store, "edge")
    ls.refused(400, "invalid_path")
    ls.refused(431, "request_headers_too_large")
    ls.refused(408, "request_header_timeout")
    counters = store.dump()["counters"]
    assert counters["http.edge.downstream_rq_total"] == 3
    assert counters["http.edge.downstream_rq_4xx"] == 3
    assert counters["http.edge.local_reply.invalid_path"] == 1


def test_the_class_counters_are_the_named_ones():
    store = Store()
    ls = ListenerStats(store, "l")
    assert ls.class_counters[2] is ls.by_class["2xx"] and ls.class_counters[5] is ls.by_class["5xx"]
    assert ls.class_counters[0] is None and ls.class_counters[6] is None
