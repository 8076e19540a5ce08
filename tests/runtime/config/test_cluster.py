"""runtime/config/cluster.py: a cluster's governance settings (health_check,
outlier_detection, balancer settings, DNS discovery) with Envoy's names and
defaults, frozen into ClusterConfig.options; what cannot work is a finding."""
from __future__ import annotations

import pytest

from mosnx.runtime.config.cluster import HealthCheck, HttpHealthCheck

from .conftest import findings, listener, load


def cluster(settings: str) -> str:
    return listener("    route: {cluster: api}\n",
                    "clusters:\n  - name: api\n    endpoints: [127.0.0.1:2]\n" + settings)


def options(settings: str) -> dict:
    return load(cluster(settings)).clusters[0].options


def test_an_http_check_with_envoy_defaults():
    hc = options("    health_check: {http: {path: /healthz, expected: [200, 204]}, interval: 2s}\n")["health_check"]
    assert hc == HealthCheck(interval=2.0, http=HttpHealthCheck("/healthz", frozenset({200, 204})))
    assert (hc.timeout, hc.unhealthy_threshold, hc.healthy_threshold, hc.kind) == (1.0, 3, 1, "http")


def test_expected_status_ranges_are_half_open_as_envoys():
    hc = options("    health_check: {http: {path: /h, expected_statuses: [{start: 200, end: 300}]}}\n")["health_check"]
    assert hc.http.expected == frozenset(range(200, 300))


def test_a_grpc_check_needs_an_http2_cluster():
    assert options("    protocol: http2\n    health_check: {grpc: {service_name: x}}\n")["health_check"].kind == "grpc"
    assert findings(cluster("    health_check: {grpc: {service_name: x}}\n")) == [
        ("C004", 8, 26, "clusters[0].health_check.grpc: a gRPC health check needs protocol: http2 "
                        "(this cluster speaks http1)")]


def test_a_check_is_of_exactly_one_kind():
    assert findings(cluster("    health_check: {http: {path: /h}, grpc: {}}\n")) == [
        ("C004", 8, 44, "clusters[0].health_check has both http: and grpc:; keep only one (the kind of check)")]
    assert findings(cluster("    health_check: {}\n")) == [
        ("C005", 8, 19, "clusters[0].health_check needs http: or grpc: or tcp: (the kind of check)")]
    with pytest.raises(ValueError):
        HealthCheck(interval=0)


def test_outlier_detection_defaults_are_envoys():
    od = options("    outlier_detection: {consecutive_5xx: 3}\n")["outlier_detection"]
    assert od.consecutive_5xx == 3
    assert (od.interval, od.base_ejection_time, od.max_ejection_percent, od.success_rate_stdev_factor) == (10.0, 30.0, 10, 1900)
    assert (od.enforcing_consecutive_5xx, od.enforcing_consecutive_gateway_failure) == (100, 0)


@pytest.mark.parametrize("settings,message", [
    ("    outlier_detection: {max_ejection_percent: 120}\n",
     "clusters[0].outlier_detection.max_ejection_percent: 120 is above the maximum 100"),
    ("    lb: maglev\n    maglev_lb_config: {table_size: 100}\n",
     "clusters[0].maglev_lb_config.table_size: 100 is not a prime number"),
    ("    type: dynamic\n", 'clusters[0].type: unknown value "dynamic"; expected one of static, strict_dns'),
])
def test_bad_settings(settings, message):
    (code, _, _, got), = findings(cluster(settings))
    assert code == "C004" and got == message


def test_balancer_and_dns_settings_land_in_options():
    assert options("    lb: maglev\n    maglev_lb_config: {table_size: 65537}\n") == {"maglev_lb_config": {"table_size": 65537}}
    assert options("    type: strict_dns\n    dns_lookup_family: v6_only\n") == {
        "type": "strict_dns", "dns_lookup_family": "v6_only"}
