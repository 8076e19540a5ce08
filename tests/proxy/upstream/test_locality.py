"""Locality-weighted load balancing: a locality by weight x availability (overprovisioning
1.4), then a host in it by the cluster's policy; zero-weight localities take nothing;
the whole level when no locality has weight up; one balancer per priority level; a
cluster that does not ask for it builds none. Shares over a fixed seed, generous
tolerances."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from mosnx.proxy.upstream.cluster import ClusterManager
from mosnx.proxy.upstream.locality import Localities
from mosnx.runtime.config import load_config_text
from mosnx.runtime.model import ClusterConfig, Endpoint
from mosnx.runtime.stats import Store

PICKS = 6000


def cluster(localities: dict[str, tuple[int, int]], *, lb: str = "round_robin", weighted: bool = True,
            priority_of: dict[str, int] | None = None):
    """`localities`: name -> (its weight, how many hosts)."""
    eps = []
    port = 10000
    for loc, (w, n) in localities.items():
        for _ in range(n):
            port += 1
            eps.append(Endpoint("127.0.0.1", port, locality=loc, locality_weight=w,
                                priority=(priority_of or {}).get(loc, 0)))
    m = ClusterManager(Store())
    m.update({"web": ClusterConfig("web", tuple(eps), lb=lb,
                                   options={"locality_weighted": True} if weighted else {})})
    return m.get("web")


def down(c, loc: str, n: int) -> None:
    for h in [h for h in c.hosts if h.endpoint.locality == loc][:n]:
        h.hc_failed = True
    c.rotation()


def shares(c) -> dict[str, float]:
    random.seed(11)
    got = Counter(c.pick(None).endpoint.locality for _ in range(PICKS))
    return {loc: got[loc] / PICKS for loc in sorted(got)}


def test_localities_take_traffic_by_weight():
    c = cluster({"eu/a/": (1, 2), "eu/b/": (3, 2)})
    assert isinstance(c.lb, Localities)
    got = shares(c)
    assert got["eu/a/"] == pytest.approx(0.25, abs=0.04) and got["eu/b/"] == pytest.approx(0.75, abs=0.04)


def test_envoys_example_half_healthy_locality_keeps_seventy_percent_of_its_weight():
    # Envoy's docs: X weight 1 all healthy, Y weight 2 half healthy: 2 x 0.7 = 1.4, so X 1/2.4
    c = cluster({"X": (1, 4), "Y": (2, 4)})
    down(c, "Y", 2)
    assert c.lb.shares() == pytest.approx({"X": 1 / 2.4, "Y": 1.4 / 2.4})
    got = shares(c)
    assert got["X"] == pytest.approx(1 / 2.4, abs=0.04) and got["Y"] == pytest.approx(1.4 / 2.4, abs=0.04)
    # no pick reaches a host that is down
    random.seed(3)
    assert all(not c.pick(None).hc_failed for _ in range(500))


def test_three_of_four_up_keeps_the_whole_weight():
    c = cluster({"X": (1, 4), "Y": (1, 4)})
    down(c, "Y", 1)                                   # 75% x 1.4 > 100%
    assert c.lb.shares() == pytest.approx({"X": 0.5, "Y": 0.5})


def test_a_locality_of_weight_zero_takes_nothing():
    c = cluster({"X": (0, 2), "Y": (5, 2)})
    assert shares(c) == {"Y": 1.0}


def test_a_locality_all_down_takes_nothing_and_its_share_moves():
    c = cluster({"X": (1, 2), "Y": (1, 2), "Z": (2, 2)})
    down(c, "Z", 2)
    got = shares(c)
    assert "Z" not in got and got["X"] == pytest.approx(0.5, abs=0.04)


def test_no_weighted_locality_up_falls_back_to_the_whole_level():
    c = cluster({"X": (0, 2), "Y": (1, 2)})
    down(c, "Y", 2)
    got = shares(c)
    assert set(got) == {"X"}


def test_the_hosts_in_a_locality_follow_the_clusters_policy():
    c = cluster({"X": (1, 3), "Y": (1, 1)}, lb="round_robin")
    random.seed(5)
    in_x = Counter(h.port for h in (c.pick(None) for _ in range(PICKS)) if h.endpoint.locality == "X")
    assert len(in_x) == 3 and max(in_x.values()) - min(in_x.values()) <= 2      # round robin inside X


def test_each_priority_level_balances_its_own_localities():
    c = cluster({"X": (1, 2), "Y": (3, 2), "Z": (1, 2)}, priority_of={"Z": 1})
    assert c.levels is not None and all(isinstance(b, Localities) for _, _, b in c.levels.levels)
    got = shares(c)
    assert "Z" not in got and got["Y"] == pytest.approx(0.75, abs=0.04)
    down(c, "X", 2)
    down(c, "Y", 2)                                   # level 0 all down: level 1 takes it
    assert shares(c) == {"Z": 1.0}


def test_a_cluster_that_does_not_ask_builds_no_localities():
    c = cluster({"X": (1, 2), "Y": (9, 2)}, weighted=False)
    assert not isinstance(c.lb, Localities) and c.pick == c.lb.pick
    got = shares(c)
    assert got["X"] == pytest.approx(0.5, abs=0.04)


def test_mosnx_yaml_endpoints_carry_locality_and_turn_it_on():
    cfg = load_config_text("""
clusters:
- name: web
  endpoints:
  - {address: 127.0.0.1:9001, locality: eu/a, locality_weight: 1}
  - {address: 127.0.0.1:9002, locality: eu/b, locality_weight: 3}
- name: plain
  endpoints: [127.0.0.1:9003]
""", "<test>")
    web, plain = cfg.clusters
    assert web.options.get("locality_weighted") is True and "locality_weighted" not in plain.options
    assert [(e.locality, e.locality_weight) for e in web.endpoints] == [("eu/a", 1), ("eu/b", 3)]


def test_a_negative_locality_weight_is_refused_at_its_field():
    from mosnx.runtime.diagnostics import ConfigError
    with pytest.raises(ConfigError) as e:
        load_config_text("clusters:\n- name: web\n  endpoints:\n  - {address: 127.0.0.1:9001, locality_weight: -1}\n",
                         "<test>")
    assert "locality_weight" in str(e.value)
