"""proxy.stream.detail: per-route and per-endpoint series, made by name once, found
by the route or host object; and the stream class a listener's `stats:` picks."""
from __future__ import annotations

from types import SimpleNamespace

from mosnx.proxy.listener_stats import ListenerStats
from mosnx.proxy.stream import HttpStream
from mosnx.proxy.stream.detail import DetailedHttpStream, DetailStats, Series, stream_class
from mosnx.runtime.stats import Store


class Thing:
    """A route, vhost or host as the table holds it: attributes, hashed by identity."""

    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


def _listener(stats: dict | None) -> SimpleNamespace:
    options = {} if stats is None else {"stats": stats}
    return SimpleNamespace(config=SimpleNamespace(options=options))


def test_a_series_counts_by_class_and_times():
    store = Store()
    s = Series(store, "vhost.v.route.r.")
    for status in (200, 204, 302, 404, 503, 101):
        s.record(status, 12.0)
    c = store.dump()["counters"]
    assert c["vhost.v.route.r.upstream_rq_completed"] == 6
    assert (c["vhost.v.route.r.upstream_rq_2xx"], c["vhost.v.route.r.upstream_rq_3xx"],
            c["vhost.v.route.r.upstream_rq_4xx"], c["vhost.v.route.r.upstream_rq_5xx"]) == (2, 1, 1, 1)
    assert store.dump()["histograms"]["vhost.v.route.r.upstream_rq_time"]["count"] == 6


def test_a_series_counts_each_exact_status_as_the_cluster_does():
    store = Store()
    s = Series(store, "cluster.web.host.10.0.0.7_9000.")
    for status in (200, 200, 503, 404, 200, 999, 42):
        s.record(status, 3.0)
    c = store.dump()["counters"]
    p = "cluster.web.host.10.0.0.7_9000.upstream_rq_"
    assert {k[len(p):]: v for k, v in c.items() if k.startswith(p) and k[len(p):].isdigit()} == {
        "200": 3, "404": 1, "503": 1}
    # out of 100..599: no counter of its own, counted as 5xx and completed
    assert (c[p + "2xx"], c[p + "4xx"], c[p + "5xx"], c[p + "completed"]) == (3, 1, 3, 7)


def test_a_series_made_again_by_name_keeps_counting_the_same_statuses():
    """A new snapshot's route finds its name's series (DetailStats._named); a Series
    made afresh over the same store (another table) sums the same counters."""
    store = Store()
    Series(store, "vhost.v.route.r.").record(200, 1.0)
    again = Series(store, "vhost.v.route.r.")
    again.record(200, 1.0)
    again.record(500, 1.0)
    c = store.dump()["counters"]
    assert (c["vhost.v.route.r.upstream_rq_200"], c["vhost.v.route.r.upstream_rq_500"]) == (2, 1)
    assert (c["vhost.v.route.r.upstream_rq_2xx"], c["vhost.v.route.r.upstream_rq_completed"]) == (2, 3)


def test_routes_and_hosts_are_named_once_and_kept_by_name():
    store = Store()
    d = DetailStats(store)
    vh = Thing(name="shop.example.com")
    r1 = Thing(name="api:v1", index=0)
    unnamed = Thing(name="", index=3)
    assert d.route(vh, r1) is d.route(vh, r1)
    d.route(vh, r1).record(200, 1.0)
    d.route(vh, unnamed).record(200, 1.0)
    # a new snapshot's route of the same name finds the same series
    again = Thing(name="api:v1", index=0)
    assert d.route(vh, again) is d.route(vh, r1)
    host = Thing(address="10.0.0.7:9000")
    d.host("web", host).record(503, 2.0)
    c = store.dump()["counters"]
    assert c["vhost.shop_example_com.route.api_v1.upstream_rq_completed"] == 1
    assert c["vhost.shop_example_com.route.3.upstream_rq_completed"] == 1
    assert c["cluster.web.host.10.0.0.7_9000.upstream_rq_5xx"] == 1


def test_a_listener_that_asks_for_nothing_keeps_plain_streams():
    ls = ListenerStats(Store(), "edge")
    assert stream_class(_listener(None), ls) is HttpStream
    assert stream_class(_listener({"per_route": False, "per_host": False}), ls) is HttpStream
    assert ls.detail is None


def test_a_listener_that_asks_gets_detailed_streams_and_can_stop():
    ls = ListenerStats(Store(), "edge")
    assert stream_class(_listener({"per_route": True, "per_host": False}), ls) is DetailedHttpStream
    assert ls.detail is not None and (ls.detail.per_route, ls.detail.per_host) == (True, False)
    # a reload that turns them off: plain streams again, and a stream still in flight records nothing more
    assert stream_class(_listener({"per_route": False}), ls) is HttpStream
    assert (ls.detail.per_route, ls.detail.per_host) == (False, False)
