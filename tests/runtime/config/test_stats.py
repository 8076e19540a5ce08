"""runtime.config.stats: mosnx.yaml's `stats:` (Prometheus naming, tags) and a
listener's `stats: {per_route, per_host}`."""
from __future__ import annotations

import pytest

from mosnx.runtime.config.loader import load_config_text
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.stat_tags import ENVOY, StatsConfig, StatTag


def test_mosnx_yaml_stats_block():
    config = load_config_text("""
stats:
  prometheus_names: envoy
  stats_tags: [{tag_name: zone, fixed_value: z1}]
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    route: {cluster: web}
    stats: {per_route: true}
clusters: [{name: web, endpoints: ["127.0.0.1:9000"]}]
""")
    assert config.stats == StatsConfig(ENVOY, (StatTag("zone", fixed_value="z1"),))
    assert config.listeners[0].options["stats"] == {"per_route": True, "per_host": False}
    assert load_config_text("listeners: []\n").stats is None


def test_mosnx_yaml_bad_stats_block_is_a_positioned_error():
    with pytest.raises(ConfigError) as e:
        load_config_text("stats:\n  prometheus_names: envoy\n  stats_tags: [{tag_name: t, regex: '(('}]\n")
    text = str(e.value)
    assert "<string>:3:" in text and "does not compile" in text


def test_a_listener_without_stats_keeps_no_switch():
    config = load_config_text("""
listeners:
  - {name: ingress, address: 127.0.0.1:8080, route: {cluster: web}}
clusters: [{name: web, endpoints: ["127.0.0.1:9000"]}]
""")
    assert "stats" not in config.listeners[0].options


@pytest.mark.parametrize("text, message", [
    ("stats: {prometheus_names: statsd}\n", "one of"),
    ("stats: {stats_tags: [{regex: '^a\\.((b)\\.)'}]}\n", "tag_name"),
    ("stats: {stats_tags: [{tag_name: t, fixed_value: x}, {tag_name: t, fixed_value: y}]}\n", "given twice"),
    ("listeners: [{name: l, address: 127.0.0.1:1, route: {cluster: c}, stats: {per_route: maybe}}]\n"
     "clusters: [{name: c, endpoints: []}]\n", "true or false"),
])
def test_bad_stats_settings_are_config_errors(text, message):
    with pytest.raises(ConfigError) as e:
        load_config_text(text)
    assert message in str(e.value)
