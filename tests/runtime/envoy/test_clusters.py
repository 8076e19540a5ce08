"""Envoy Cluster (+ ClusterLoadAssignment) -> ClusterConfig."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import (ASSIGNMENT, CLUSTER, LISTENER, ROUTES, C, E, L, R, ctx, msg, pick,  # noqa: E402,F401
                           table)
from mosnx.runtime.envoy.clusters import translate_cluster  # noqa: E402
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402


def test_eds_cluster_with_its_assignment():
    c = translate_cluster(msg(C, CLUSTER), Findings(C, "app"), msg(E, ASSIGNMENT))
    assert (c.lb, c.connect_timeout, c.circuit_breakers.max_connections) == ("least_request", 0.25, 7)
    assert [(e.address, e.weight) for e in c.endpoints] == [("127.0.0.1:9001", 3)]
    assert c.options["outlier_detection"].consecutive_5xx == 3
    hc = c.options["health_check"]
    assert (hc.interval, hc.http.path, hc.unhealthy_threshold) == (2.0, "/healthz", 2)
    assert translate_cluster(msg(C, CLUSTER), Findings(C, "app")).endpoints == ()


def test_eds_priorities_reach_the_endpoints_without_a_warning():
    two = {"cluster_name": "app-eps", "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9001}}}}]},
        {"priority": 1, "lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9002}}}}]}]}
    sink = Sink()
    c = translate_cluster(msg(C, CLUSTER), Findings(C, "app", "", sink), msg(E, two))
    assert [(e.port, e.priority) for e in c.endpoints] == [(9001, 0), (9002, 1)]
    assert not [w for w in sink.warnings if "priorit" in w.message]


def test_strict_dns_http2_and_envoy_defaults():
    c = translate_cluster(msg(C, {
        "name": "dns", "type": "STRICT_DNS", "dns_refresh_rate": "3s", "dns_lookup_family": "V4_ONLY",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": "dns", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "localhost", "port_value": 80}}}}]}]}}),
        Findings(C, "dns"))
    assert c.protocol == "http2" and c.connect_timeout == 5.0 and c.lb == "round_robin"
    assert c.options == {"type": "strict_dns", "dns_refresh_rate": 3.0, "dns_lookup_family": "v4_only"}
    assert [e.address for e in c.endpoints] == ["localhost:80"]


def test_unsupported_is_warned_and_unservable_rejected():
    sink = Sink()
    translate_cluster(msg(C, {"name": "a", "respect_dns_ttl": True}), Findings(C, "a", "", sink))
    [w] = sink.warnings
    assert w.severity == "warning" and 'Cluster "a" respect_dns_ttl' in w.message
    with pytest.raises(Rejected) as e:
        translate_cluster(msg(C, {"name": "a", "type": "ORIGINAL_DST"}), Findings(C, "a"))
    assert e.value.rejection.field_path == "lb_policy"     # ORIGINAL_DST takes CLUSTER_PROVIDED
    with pytest.raises(Rejected) as e:
        translate_cluster(msg(C, {"name": "a", "load_assignment": {"cluster_name": "a", "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": "/tmp/s"}}}}]}]}}), Findings(C, "a"))
    assert e.value.rejection.field_path == "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address"


# ---------------------------------------------------------------- ORIGINAL_DST, upstream_bind_config

def _cluster(d: dict) -> tuple:
    sink = Sink()
    return translate_cluster(msg(C, {"name": "c", **d}), Findings(C, "c", "", sink)), sink


def test_original_dst_cluster():
    c, sink = _cluster({"type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "cleanup_interval": "30s",
                       "original_dst_lb_config": {"use_http_header": True, "upstream_port_override": 8080},
                       "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}})
    assert c.lb == "cluster_provided" and c.endpoints == ()
    assert c.options["original_dst"] == {"cleanup_interval": 30.0, "http_header": "x-envoy-original-dst-host",
                                         "port_override": 8080}
    assert c.options["source_address"] == ("127.0.0.6", 0)
    assert not sink.warnings


def test_cluster_provided_needs_original_dst_and_back():
    with pytest.raises(Rejected) as e:
        _cluster({"type": "STATIC", "lb_policy": "CLUSTER_PROVIDED"})
    assert e.value.rejection.field_path == "lb_policy"
    with pytest.raises(Rejected):
        _cluster({"type": "ORIGINAL_DST", "lb_policy": "ROUND_ROBIN"})


def test_black_hole_cluster_is_static_without_endpoints():
    c, _ = _cluster({"name": "BlackHoleCluster", "type": "STATIC"})
    assert c.endpoints == () and c.lb == "round_robin"


def test_bad_source_address():
    with pytest.raises(Rejected) as e:
        _cluster({"upstream_bind_config": {"source_address": {"address": "nowhere", "port_value": 0}}})
    assert "not an IP address" in str(e.value)
