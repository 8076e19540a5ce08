"""Outlier detection: ejections by consecutive errors, success rate and failure percentage,
their timing, their limits and their stats (Envoy's names)."""
from __future__ import annotations

from dataclasses import replace

from mosnx.proxy.upstream.cluster import Cluster
from mosnx.proxy.upstream.outlier import OutlierDetector
from mosnx.runtime.config.cluster import OutlierDetection
from mosnx.runtime.model import ClusterConfig, Endpoint
from mosnx.runtime.stats import Store

BASE = OutlierDetection(consecutive_5xx=3, interval=1.0, base_ejection_time=10.0,
                        max_ejection_time=300.0, max_ejection_percent=50)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def setup(n=3, **over):
    cfg = replace(BASE, **over)
    eps = tuple(Endpoint("10.0.0.%d" % (i + 1), 80) for i in range(n))
    stats = Store()
    c = Cluster(ClusterConfig("web", eps, options={"outlier_detection": cfg}), stats)
    clock = Clock()
    c.outlier = OutlierDetector(c, cfg, clock)
    return c, clock, stats


def stat(stats: Store, name: str) -> int:
    full = "cluster.web.outlier_detection." + name
    if full in stats.gauges:
        return stats.gauges[full].value
    return stats.counters[full].value if full in stats.counters else 0


def fail(h, n, status=500):
    for _ in range(n):
        h.observe(status, 1.0)


def test_consecutive_5xx_ejects_the_host_and_it_leaves_rotation():
    c, _, stats = setup()
    bad = c.hosts[0]
    fail(bad, 2)
    assert bad.healthy
    fail(bad, 1)
    assert not bad.healthy and bad.describe()["health"] == "ejected"
    assert all(c.pick(None) is not bad for _ in range(20))
    assert stat(stats, "ejections_active") == 1
    assert stat(stats, "ejections_enforced_total") == 1
    assert stat(stats, "ejections_enforced_consecutive_5xx") == 1
    assert stat(stats, "ejections_detected_consecutive_5xx") == 1
    assert stat(stats, "ejections_total") == 1


def test_a_success_resets_the_count():
    c, _, _ = setup()
    h = c.hosts[0]
    for _ in range(5):
        fail(h, 2)
        h.observe(200, 1.0)
    assert h.healthy


def test_local_failures_count_as_gateway_errors():
    c, _, stats = setup(consecutive_5xx=100, consecutive_gateway_failure=2,
                        enforcing_consecutive_gateway_failure=100)
    h = c.hosts[1]
    h.observe_failure("connect_failure")
    h.observe_failure("timeout")
    assert not h.healthy
    assert stat(stats, "ejections_enforced_consecutive_gateway_failure") == 1


def test_gateway_failure_detection_is_not_enforced_by_default():
    # Envoy's default enforcing_consecutive_gateway_failure is 0: detected, counted, not ejected
    c, _, stats = setup(consecutive_5xx=100, consecutive_gateway_failure=2)
    h = c.hosts[0]
    fail(h, 2, 503)
    assert h.healthy
    assert stat(stats, "ejections_detected_consecutive_gateway_failure") == 1
    assert stat(stats, "ejections_enforced_total") == 0


def test_max_ejection_percent_keeps_enough_hosts():
    c, _, stats = setup(n=3, max_ejection_percent=50)
    a, b, _ = c.hosts
    fail(a, 3)
    fail(b, 3)
    assert not a.healthy and b.healthy
    assert stat(stats, "ejections_overflow") == 1
    assert stat(stats, "ejections_active") == 1


def test_ejection_time_grows_with_repeat_ejections_and_the_multiplier_decays():
    c, clock, stats = setup()
    h = c.hosts[0]
    fail(h, 3)
    clock.now += 9.0
    c.outlier.sweep()
    assert not h.healthy, "base_ejection_time not over yet"
    clock.now += 1.0
    c.outlier.sweep()
    assert h.healthy and stat(stats, "ejections_active") == 0
    fail(h, 3)                          # ejected again right away: twice as long
    assert not h.healthy and h.ejections == 2
    clock.now += 15.0
    c.outlier.sweep()
    assert not h.healthy
    clock.now += 5.0
    c.outlier.sweep()
    assert h.healthy
    for _ in range(2):                  # each sweep in rotation takes one step off the multiplier
        c.outlier.sweep()
    assert h.ejections == 0
    fail(h, 3)
    clock.now += 10.0
    c.outlier.sweep()
    assert h.healthy, "back to the base time after a quiet period"


def test_ejection_time_is_capped_by_max_ejection_time():
    c, clock, _ = setup(max_ejection_time=15.0)
    h = c.hosts[0]
    h.ejections = 5
    fail(h, 3)
    clock.now += 15.0
    c.outlier.sweep()
    assert h.healthy


def test_success_rate_ejects_the_outlier():
    c, _, stats = setup(n=5, consecutive_5xx=1000, max_ejection_percent=100,
                        success_rate_minimum_hosts=5, success_rate_request_volume=100)
    for i, h in enumerate(c.hosts):
        for j in range(100):
            h.observe(500 if (i == 4 and j % 2) else 200, 1.0)
    c.outlier.sweep()
    assert [h.healthy for h in c.hosts] == [True, True, True, True, False]
    assert stat(stats, "ejections_enforced_success_rate") == 1
    assert c.hosts[0].describe()["success_rate"] == 100.0


def test_success_rate_needs_enough_hosts_with_enough_requests():
    c, _, stats = setup(n=5, consecutive_5xx=1000, max_ejection_percent=100)
    for i, h in enumerate(c.hosts):
        for j in range(99 if i == 0 else 100):    # one host short of the volume: four count
            h.observe(500 if (i == 4 and j % 2) else 200, 1.0)
    c.outlier.sweep()
    assert all(h.healthy for h in c.hosts)
    assert stat(stats, "ejections_detected_success_rate") == 0


def test_failure_percentage_ejects_when_enforced():
    c, _, stats = setup(n=3, consecutive_5xx=1000, max_ejection_percent=100,
                        enforcing_failure_percentage=100, failure_percentage_threshold=50,
                        failure_percentage_minimum_hosts=3, failure_percentage_request_volume=10)
    for i, h in enumerate(c.hosts):
        for j in range(20):
            h.observe(500 if (i == 2 and j < 12) else 200, 1.0)
    c.outlier.sweep()
    assert [h.healthy for h in c.hosts] == [True, True, False]
    assert stat(stats, "ejections_enforced_failure_percentage") == 1


def test_reload_keeps_ejections_and_removing_detection_clears_them():
    c, _, stats = setup()
    fail(c.hosts[0], 3)
    again = Cluster(c.config, c.stats, c)
    assert not again.hosts[0].healthy, "an ejection survives a cluster rebuild"
    assert stat(stats, "ejections_active") == 1
    plain = Cluster(replace(c.config, options={}), c.stats, again)
    assert plain.hosts[0].healthy
    assert stat(stats, "ejections_active") == 0


def test_outlier_detection_from_yaml_with_envoy_defaults():
    import pytest
    from mosnx.runtime.config import load_config_text
    from mosnx.runtime.diagnostics import ConfigError
    c = load_config_text("""\
clusters:
  - name: web
    endpoints: ["127.0.0.1:9081"]
    outlier_detection: {consecutive_5xx: 3, interval: 1s, base_ejection_time: 30s, max_ejection_percent: 50}
""")
    od = c.clusters[0].options["outlier_detection"]
    assert (od.consecutive_5xx, od.interval, od.base_ejection_time, od.max_ejection_percent) == (3, 1.0, 30.0, 50)
    assert od.enforcing_consecutive_gateway_failure == 0 and od.success_rate_stdev_factor == 1900
    with pytest.raises(ConfigError) as e:
        load_config_text("""\
clusters:
  - name: web
    endpoints: ["127.0.0.1:9081"]
    outlier_detection: {consecutive5xx: 3, max_ejection_percent: 150}
""")
    text = str(e.value)
    assert 'did you mean "consecutive_5xx"' in text and "150 is above the maximum 100" in text


def test_split_local_origin_errors_count_apart():
    c, _, stats = setup(consecutive_5xx=2, split_external_local_origin_errors=True,
                        consecutive_local_origin_failure=3)
    h = c.hosts[0]
    h.observe_failure("connect_failure")
    h.observe_failure("reset")
    assert h.healthy, "local failures no longer count as 5xx"
    h.observe(200, 1.0)                 # an answer: the connection works again
    for _ in range(2):
        h.observe_failure("timeout")
    assert h.healthy
    h.observe_failure("timeout")
    assert not h.healthy
    assert stat(stats, "ejections_enforced_consecutive_local_origin_failure") == 1
    assert stat(stats, "ejections_enforced_consecutive_5xx") == 0
