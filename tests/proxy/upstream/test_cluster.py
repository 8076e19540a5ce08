"""proxy/upstream/cluster.py with N workers: circuit-breaker counts held per proxy.

Two ClusterManagers, each on its own attachment of one shared segment, stand for
two worker processes; the checks are the ones streams and pools make
(`count >= cluster.cb.max_*`, then the count goes up)."""
from __future__ import annotations

import pytest

from mosnx.proxy.upstream.cluster import ClusterManager, Resources, SharedBreakers
from mosnx.runtime import shared as sh
from mosnx.runtime.model import CircuitBreakers, ClusterConfig, Endpoint
from mosnx.runtime.stats import Store


def config(name="web", **limits) -> ClusterConfig:
    return ClusterConfig(name=name, endpoints=(Endpoint("127.0.0.1", 9),),
                         circuit_breakers=CircuitBreakers(**limits))


@pytest.fixture
def workers():
    seg = sh.Segment.create(2)
    views = [sh.Segment.attach(seg.path, i) for i in range(2)]
    managers = [ClusterManager(Store(), v) for v in views]
    yield seg, managers
    for m in managers:
        m.close()
    for s in views + [seg]:
        s.close()


def admit(cluster) -> bool:
    """What stream._forward and _attach do for one request."""
    if cluster.res.rq_active >= cluster.cb.max_requests:
        return False
    cluster.res.rq_active += 1
    return True


def test_one_worker_keeps_plain_counts_and_the_config():
    m = ClusterManager(Store())
    m.update({"web": config(max_requests=1)})
    c = m.get("web")
    assert type(c.res) is Resources and c.cb is c.config.circuit_breakers and not c.shared


def test_max_requests_holds_across_workers(workers):
    _, (a, b) = workers
    for m in (a, b):
        m.update({"web": config(max_requests=1)})
    ca, cb = a.get("web"), b.get("web")
    assert isinstance(ca.cb, SharedBreakers) and ca.shared
    assert admit(ca)
    assert not admit(cb), "the proxy's one request is in worker a"
    ca.res.rq_active -= 1
    assert admit(cb)
    assert ca.describe()["circuit_breakers"]["max_requests"] == 1


def test_each_resource_has_its_own_count(workers):
    _, (a, b) = workers
    for m in (a, b):
        m.update({"web": config(max_connections=1, max_pending_requests=1, max_retries=1)})
    ca, cb = a.get("web"), b.get("web")
    assert ca.cx_active < ca.cb.max_connections
    ca.cx_active += 1
    assert not cb.cx_active < cb.cb.max_connections
    assert cb.rq_pending < cb.cb.max_pending_requests
    cb.rq_pending += 1
    assert not ca.rq_pending < ca.cb.max_pending_requests
    assert ca.retries_active < ca.cb.max_retries


def test_a_reload_keeps_the_share_and_applies_the_new_limit(workers):
    _, (a, b) = workers
    for m in (a, b):
        m.update({"web": config(max_requests=1)})
    assert admit(a.get("web"))
    for m in (a, b):
        m.update({"web": config(max_requests=2)})
    assert a.get("web").res is a.resources["web"]
    assert admit(b.get("web")), "the new limit has room for one more"
    assert not admit(b.get("web"))


def test_a_removed_cluster_coming_back_finds_its_counts(workers):
    _, (a, b) = workers
    for m in (a, b):
        m.update({"web": config(max_requests=1)})
    held = a.get("web")
    assert admit(held)
    for m in (a, b):
        m.update({})
        m.update({"web": config(max_requests=1)})
    assert a.get("web").res is held.res
    assert not admit(b.get("web")), "the request in flight on the removed version still counts"
    held.res.rq_active -= 1
    assert admit(b.get("web"))


def test_the_sweep_gives_back_a_share_no_count_followed(workers):
    _, (a, b) = workers
    for m in (a, b):
        m.update({"web": config(max_requests=1)})
    ca = a.get("web")
    assert ca.res.rq_active < ca.cb.max_requests      # checked, then no healthy host: never counted
    assert not admit(b.get("web"))
    a.sweep(0.0)
    assert admit(b.get("web"))


def test_the_sweep_visits_only_the_clusters_this_worker_leased(workers):
    _, (a, b) = workers
    names = [f"c{i}" for i in range(200)]
    for m in (a, b):
        m.update({n: config(max_requests=1) for n in names})
    assert a.shared.in_use == set()
    c7 = a.get("c7")
    assert admit(c7)
    assert a.shared.in_use == {c7.res} and b.shared.in_use == set()
    assert not admit(b.get("c7"))
    c7.res.rq_active -= 1
    a.sweep(0.0)
    # an exact limit: the lease went back with the count, so nothing is left to visit
    assert a.shared.in_use == set()
    assert admit(b.get("c7"))


def test_a_dead_workers_counts_are_freed(workers):
    seg, (a, b) = workers
    for m in (a, b):
        m.update({"web": config(max_requests=1, max_connections=1)})
    ca = a.get("web")
    assert admit(ca)
    ca.cx_active += 1
    seg.zero_worker(0)
    cb = b.get("web")
    assert admit(cb) and cb.cx_active < cb.cb.max_connections


def test_a_full_shared_file_is_found_out_once(caplog):
    # room for the five regions (4 leases and a board, 16 bytes each with 2 workers) of two clusters
    seg = sh.Segment.create(2, size=sh.DATA_AT + 2 * 5 * 16)
    view = sh.Segment.attach(seg.path, 0)
    m = ClusterManager(Store(), view)
    try:
        m.update({f"c{i}": config(f"c{i}") for i in range(5)})
        assert [m.get(f"c{i}").shared for i in range(5)] == [True, True, False, False, False]
        assert m.full and sum("shared limits file is full" in r.message for r in caplog.records) == 1
        # a cluster that has its share keeps it through a change; the others stay per worker
        m.update({f"c{i}": config(f"c{i}", max_requests=7) for i in range(5)})
        assert m.get("c0").shared and not m.get("c4").shared
    finally:
        m.close()
        view.close()
        seg.close()


def test_a_cluster_lists_every_envoy_counter_before_any_is_bumped():
    # its counters are made on first use (most stay at zero), and /stats shows them all
    from mosnx.proxy.upstream.cluster import CLUSTER_STATS
    s = Store()
    m = ClusterManager(s)
    m.update({"web": ClusterConfig(name="web", endpoints=(Endpoint("127.0.0.1", 9),))})
    counters = s.dump()["counters"]
    assert all(counters[f"cluster.web.{n}"] == 0 for n in CLUSTER_STATS)
    assert len([k for k in s.counters if k.startswith("cluster.web.")]) < len(CLUSTER_STATS)
    m.get("web").c["upstream_rq_retry"].value += 1
    assert s.dump()["counters"]["cluster.web.upstream_rq_retry"] == 1


def test_responses_count_by_exact_status_and_the_classes_are_their_sums():
    s = Store()
    m = ClusterManager(s)
    cfg = ClusterConfig(name="web", endpoints=(Endpoint("127.0.0.1", 9),))
    m.update({"web": cfg})
    web = m.get("web")
    for status in (200, 200, 204, 302, 404, 503, 101, 999, 0):
        web.count_status(status)
    c = s.dump()["counters"]
    assert (c["cluster.web.upstream_rq_200"], c["cluster.web.upstream_rq_204"], c["cluster.web.upstream_rq_302"],
            c["cluster.web.upstream_rq_404"], c["cluster.web.upstream_rq_503"], c["cluster.web.upstream_rq_101"]) == (
        2, 1, 1, 1, 1, 1)
    # a status outside 100..599 has no counter of its own and counts as 5xx; 1xx has no class
    assert not [k for k in c if k.startswith("cluster.web.upstream_rq_") and k[-3:] in ("999", "_0")]
    assert (c["cluster.web.upstream_rq_2xx"], c["cluster.web.upstream_rq_3xx"], c["cluster.web.upstream_rq_4xx"],
            c["cluster.web.upstream_rq_5xx"], c["cluster.web.upstream_rq_completed"]) == (3, 1, 1, 3, 8)
    # the cluster's next version counts on, and sums, the same counters
    m.update({"web": ClusterConfig(name="web", endpoints=(Endpoint("127.0.0.1", 10),))})
    assert m.get("web") is not web
    m.get("web").count_status(200)
    m.get("web").count_status(500)
    c = s.dump()["counters"]
    assert (c["cluster.web.upstream_rq_200"], c["cluster.web.upstream_rq_2xx"], c["cluster.web.upstream_rq_5xx"],
            c["cluster.web.upstream_rq_completed"]) == (3, 4, 4, 10)
