"""Priority levels: load by each level's health (overprovisioning 1.4), spill-over in
order, normalisation, panic; a cluster of one level never builds them."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from mosnx.proxy.upstream.cluster import ClusterManager
from mosnx.runtime.model import ClusterConfig, Endpoint
from mosnx.runtime.stats import Store

PICKS = 4000


def cluster(per_level: list[int], threshold: float = 50.0):
    eps = tuple(Endpoint("127.0.0.1", 10000 + 10 * p + i, priority=p)
                for p, n in enumerate(per_level) for i in range(n))
    m = ClusterManager(Store())
    m.update({"web": ClusterConfig("web", eps, options={
        "common_lb_config": {"healthy_panic_threshold": threshold}})})
    return m.get("web")


def down(c, level: int, n: int) -> None:
    for h in [h for h in c.hosts if h.endpoint.priority == level][:n]:
        h.hc_failed = True
    c.rotation()


def shares(c) -> dict[int, float]:
    random.seed(7)
    got = Counter(c.pick(None).endpoint.priority for _ in range(PICKS))
    return {p: got[p] / PICKS for p in sorted(got)}


def test_one_level_builds_no_levels_and_picks_as_before():
    c = cluster([3])
    assert c.levels is None and c.pick == c.lb.pick


def test_a_healthy_level_0_takes_everything():
    c = cluster([4, 4])
    assert c.levels is not None and c.levels.loads == [100.0, 0.0]
    assert shares(c) == {0: 1.0}


def test_three_of_four_up_is_still_all_of_the_load():
    c = cluster([4, 4])
    down(c, 0, 1)                        # 75% x 1.4 = 105%: capped at 100
    assert c.levels.loads == [100.0, 0.0]


def test_half_up_spills_thirty_percent_to_level_1():
    c = cluster([4, 4])
    down(c, 0, 2)                        # 50% x 1.4 = 70%
    assert c.levels.loads == pytest.approx([70.0, 30.0])
    got = shares(c)
    assert got[0] == pytest.approx(0.7, abs=0.05) and got[1] == pytest.approx(0.3, abs=0.05)
    picked = {c.pick(None) for _ in range(200)}
    assert not any(h.hc_failed for h in picked)          # no pick lands on a host that is down


def test_level_0_down_sends_everything_to_level_1():
    c = cluster([2, 2])
    down(c, 0, 2)
    assert c.levels.loads == [0.0, 100.0] and shares(c) == {1: 1.0}


def test_loads_are_normalised_when_the_levels_add_up_to_less_than_all():
    c = cluster([4, 4], threshold=10.0)
    down(c, 0, 3)
    down(c, 1, 3)                        # 35% + 35% = 70%: each gets half
    assert c.levels.loads == pytest.approx([50.0, 50.0]) and not c.panic


def test_below_the_panic_threshold_every_host_is_back_and_level_0_takes_it():
    c = cluster([2, 2])
    down(c, 0, 2)
    down(c, 1, 2)
    assert c.panic and all(h.healthy for h in c.hosts)
    assert c.levels.loads == [100.0, 0.0]
    c.pick(None)
    assert c.c["lb_healthy_panic"].value == 1


def test_a_reload_moving_an_endpoint_between_levels_keeps_its_host():
    c = cluster([1, 1])
    first = {h.address: h for h in c.hosts}
    eps = (Endpoint("127.0.0.1", 10000, priority=1), Endpoint("127.0.0.1", 10010, priority=0))
    c.set_endpoints(eps)
    assert {h.address: h for h in c.hosts} == first          # the same Host objects (pools kept)
    assert {h.address: h.endpoint.priority for h in c.hosts} == {"127.0.0.1:10000": 1, "127.0.0.1:10010": 0}
    assert shares(c) == {0: 1.0} and c.pick(None).address == "127.0.0.1:10010"
