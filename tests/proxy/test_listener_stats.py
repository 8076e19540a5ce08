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


def test_envoys_listener_address_stats_read_the_listeners_own_counts():
    store = Store()
    ls = ListenerStats(store, "edge")
    ls.by_address("127.0.0.1", 8080)
    ls6 = ListenerStats(store, "edge6")
    ls6.by_address("::1", 8443)
    ls.cx_total.value += 2
    ls.cx_active.value += 1
    ls.rq_total.value += 1
    ls.by_class["2xx"].value += 1
    dump = store.dump()
    assert dump["counters"]["listener.127.0.0.1_8080.downstream_cx_total"] == 2
    assert dump["gauges"]["listener.127.0.0.1_8080.downstream_cx_active"] == 1
    assert dump["counters"]["listener.[__1]_8443.downstream_cx_total"] == 0
    assert dump["counters"]["http.edge.downstream_rq_completed"] == 1


def test_an_address_a_filter_chain_listener_counts_is_left_to_it():
    store = Store()
    kept = store.counter("listener.127.0.0.1_8080.downstream_cx_total")
    kept.value = 5
    ls = ListenerStats(store, "chain_a")
    ls.by_address("127.0.0.1", 8080)
    ls.cx_total.value += 1
    assert store.dump()["counters"]["listener.127.0.0.1_8080.downstream_cx_total"] == 5
