"""Load balancers: how picks spread over a cluster's hosts, and what moves when hosts change."""
from __future__ import annotations

import collections
import random

import pytest

from mosnx.proxy.upstream import lb as lbs
from mosnx.proxy.upstream.cluster import Cluster
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.model import ClusterConfig, Endpoint
from mosnx.runtime.routes import Route, RouteAction
from mosnx.runtime.stats import Store


def cluster(lb: str, weights=(1, 1, 1), **options) -> Cluster:
    eps = tuple(Endpoint("10.0.0.%d" % (i + 1), 8080, w) for i, w in enumerate(weights))
    return Cluster(ClusterConfig("c", eps, lb=lb, options=options), Store())


def ctx(headers=(), source="192.0.2.1") -> StreamContext:
    h = Headers([(k.encode(), v.encode()) for k, v in headers])
    return StreamContext(RequestHead("GET", "/", h), source=(source, 40000))


def spread(c: Cluster, n: int, make_ctx=lambda i: None) -> collections.Counter:
    return collections.Counter(c.pick(make_ctx(i)).address for i in range(n))


def shares(counts: collections.Counter) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


# ------------------------------------------------------------------ round robin
def test_round_robin_spreads_evenly_and_by_weight():
    c = cluster("round_robin", (1, 1, 1))
    assert sorted(spread(c, 300).values()) == [100, 100, 100]
    c = cluster("round_robin", (1, 3))
    assert spread(c, 400) == {"10.0.0.1:8080": 100, "10.0.0.2:8080": 300}


def test_weighted_round_robin_ring_is_smooth_from_any_start():
    # one heavy host among nine light ones (a canary's inverse): wherever a worker's
    # ring starts, light hosts never come twice in a row and the heavy one keeps its share
    c = cluster("round_robin", (50,) + (1,) * 9)
    heavy = c.hosts[0]
    for start in range(59):
        c.lb.i = start
        picks = [c.pick(None) for _ in range(59)]
        assert picks.count(heavy) == 50
        assert all(a is heavy or b is heavy for a, b in zip(picks, picks[1:]))
    assert len(c.lb.ring) == 59


def test_weights_too_large_for_a_ring_are_picked_by_schedule():
    # a control plane may send any uint32 weight: no ring of billions of places
    c = cluster("round_robin", (1, 3_000_000_000))
    assert c.lb.ring == [] and c.lb.edf is not None
    picks = collections.Counter(c.pick(None).address for _ in range(1000))
    assert picks["10.0.0.2:8080"] >= 999


def test_round_robin_skips_unhealthy_and_a_retry_avoids_the_last_host():
    c = cluster("round_robin")
    c.hosts[1].healthy = False
    assert set(spread(c, 30)) == {"10.0.0.1:8080", "10.0.0.3:8080"}
    first = c.pick(None)
    assert c.pick(None, exclude=first) is not first


# ------------------------------------------------------------------ weighted round robin (EDF)
def test_weighted_round_robin_is_exact_and_smooth():
    c = cluster("weighted_round_robin", (1, 2, 3))
    picks = [c.pick(None).address for _ in range(600)]
    assert collections.Counter(picks) == {"10.0.0.1:8080": 100, "10.0.0.2:8080": 200, "10.0.0.3:8080": 300}
    # smooth: every full cycle of 6 picks holds each host its weight's worth, never a burst
    for i in range(12, 600 - 6, 6):
        window = collections.Counter(picks[i:i + 6])
        assert all(1 <= window[a] <= 4 for a in ("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080")), window
    runs = max(len(list(g)) for _, g in __import__("itertools").groupby(picks))
    assert runs <= 3, "a weight-3 host should not take more than its share in a row"


def test_weighted_round_robin_skips_unhealthy_hosts():
    c = cluster("weighted_round_robin", (1, 2, 3))
    c.hosts[2].healthy = False
    counts = spread(c, 300)
    assert counts == {"10.0.0.1:8080": 100, "10.0.0.2:8080": 200}
    for h in c.hosts:
        h.healthy = False
    assert c.pick(None) is None


# ------------------------------------------------------------------ random
def test_random_follows_weights():
    random.seed(7)
    c = cluster("random", (1, 3))
    s = shares(spread(c, 4000))
    assert 0.20 <= s["10.0.0.1:8080"] <= 0.30
    assert 0.70 <= s["10.0.0.2:8080"] <= 0.80


# ------------------------------------------------------------------ least request
def test_least_request_avoids_the_busy_host():
    random.seed(3)
    c = cluster("least_request", (1, 1, 1))
    c.hosts[0].rq_active = 10
    counts = spread(c, 900)
    # with two choices out of three, the busy host only wins when it is compared with itself: never
    assert counts["10.0.0.1:8080"] == 0
    assert 350 <= counts["10.0.0.2:8080"] <= 550


def test_least_request_with_weights_shares_by_weight_and_load():
    c = cluster("least_request", (1, 3))
    light, heavy = c.hosts
    counts = spread(c, 400)
    assert counts == {light.address: 100, heavy.address: 300}, "idle hosts share by weight"
    heavy.rq_active = 5          # 3 / (5 + 1) = 0.5 against 1 / 1: the light host takes two in three
    s = shares(spread(c, 300))
    assert 0.6 <= s[light.address] <= 0.72, s


def test_least_request_balances_outstanding_requests_over_time():
    random.seed(5)
    c = cluster("least_request", (1, 1, 1, 1))
    inflight: list = []
    for i in range(2000):
        h = c.pick(None)
        h.rq_active += 1
        inflight.append(h)
        if len(inflight) > 20:
            done = inflight.pop(random.randrange(len(inflight)))
            done.rq_active -= 1
    active = [h.rq_active for h in c.hosts]
    assert max(active) - min(active) <= 4, active


# ------------------------------------------------------------------ peak EWMA
def test_peak_ewma_prefers_the_fast_host():
    random.seed(11)
    c = cluster("peak_ewma", (1, 1, 1))
    slow, fast1, fast2 = c.hosts
    for _ in range(5):
        slow.observe(200, 80.0)
        fast1.observe(200, 2.0)
        fast2.observe(200, 3.0)
    counts = spread(c, 600)
    assert counts[slow.address] == 0
    assert counts[fast1.address] > 200 and counts[fast2.address] > 100


def test_peak_ewma_reacts_to_a_peak_at_once_and_counts_load():
    c = cluster("peak_ewma", (1, 1))
    a, b = c.hosts
    a.observe(200, 5.0)
    b.observe(200, 5.0)
    b.observe(200, 100.0)           # one slow answer: b's cost jumps to the peak
    assert all(c.pick(None) is a for _ in range(20))
    a.rq_active = 50                # a is now far busier: 5ms × 51 > 100ms × 1
    assert all(c.pick(None) is b for _ in range(20))
    a.rq_active = 0
    a.observe_failure("connect_failure")
    assert all(c.pick(None) is b for _ in range(20)), "a failure counts as a slow answer"


# ------------------------------------------------------------------ consistent hashing
KEYS = [f"user-{i}" for i in range(3000)]


def keyed(c: Cluster, header: str = "x-user") -> dict[str, str]:
    return {k: c.pick(ctx([(header, k)])).address for k in KEYS}


@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_hashing_is_sticky_and_spreads_evenly(lb):
    c = cluster(lb, (1, 1, 1), hash_key='request.headers["x-user"]')
    first = keyed(c)
    assert keyed(c) == first, "the same key must always reach the same host"
    other = cluster(lb, (1, 1, 1), hash_key='request.headers["x-user"]')
    assert keyed(other) == first, "another worker (another balancer) must agree"
    s = shares(collections.Counter(first.values()))
    low, high = (0.25, 0.42) if lb == "ring_hash" else (0.30, 0.37)
    assert len(s) == 3 and all(low <= v <= high for v in s.values()), s


@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_hashing_follows_weights(lb):
    c = cluster(lb, (1, 3), hash_key='request.headers["x-user"]')
    s = shares(collections.Counter(keyed(c).values()))
    assert 0.65 <= s["10.0.0.2:8080"] <= 0.85, s


@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_adding_a_host_moves_only_its_share(lb):
    key = 'request.headers["x-user"]'
    before = keyed(cluster(lb, (1, 1, 1), hash_key=key))
    after = keyed(cluster(lb, (1, 1, 1, 1), hash_key=key))
    moved = [k for k in KEYS if before[k] != after[k]]
    assert 0.15 <= len(moved) / len(KEYS) <= 0.35, len(moved)
    to_new = sum(1 for k in moved if after[k] == "10.0.0.4:8080")
    # a ring moves keys only to the new host; maglev nearly only
    assert to_new / len(moved) >= (1.0 if lb == "ring_hash" else 0.9)


@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_an_unhealthy_host_gives_up_only_its_keys(lb):
    c = cluster(lb, (1, 1, 1), hash_key='request.headers["x-user"]')
    before = keyed(c)
    c.hosts[0].healthy = False
    after = keyed(c)
    for k in KEYS:
        if before[k] != "10.0.0.1:8080":
            assert after[k] == before[k]
        else:
            assert after[k] != "10.0.0.1:8080"
    c.hosts[0].healthy = True
    assert keyed(c) == before, "a host back in rotation gets its keys back"


@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_hash_by_cookie_and_source_address(lb):
    c = cluster(lb, (1, 1, 1), hash_key='request.cookies["session"]')
    hosts = {c.pick(ctx([("cookie", f"a=1; session=s{i % 7}")])).address for i in range(70)}
    assert 1 <= len(hosts) <= 3
    for i in range(7):
        got = {c.pick(ctx([("cookie", f"session=s{i}")])).address for _ in range(10)}
        assert len(got) == 1
    c = cluster(lb, (1, 1, 1), hash_key="source.address")
    for ip in ("192.0.2.1", "192.0.2.2", "198.51.100.9"):
        assert len({c.pick(ctx(source=ip)).address for _ in range(10)}) == 1
    seen = {c.pick(ctx(source=f"10.1.{i}.1")).address for i in range(60)}
    assert len(seen) == 3


@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_route_hash_key_wins_and_no_key_spreads(lb):
    random.seed(1)
    c = cluster(lb, (1, 1, 1), hash_key='request.headers["x-user"]')
    route = Route("r", RouteAction(cluster="c", hash_key='request.headers["x-tenant"]'))
    picks = set()
    for i in range(30):
        x = ctx([("x-user", f"u{i}"), ("x-tenant", "acme")])
        x.route = route
        picks.add(c.pick(x).address)
    assert len(picks) == 1, "the route's key (one tenant) decides, not the cluster's"
    # without the header there is nothing to hash: picks spread
    assert len(spread(c, 60, lambda i: ctx())) == 3


def test_maglev_rejects_a_table_size_that_is_not_prime():
    with pytest.raises(ValueError):
        cluster("maglev", maglev_lb_config={"table_size": 1000})


def test_every_policy_name_in_the_schema_has_a_balancer():
    from mosnx.runtime.config.document import LB_POLICIES
    assert set(LB_POLICIES) == set(lbs.BALANCERS)
