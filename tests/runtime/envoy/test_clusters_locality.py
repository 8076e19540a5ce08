"""Localities from EDS: each endpoint carries its LocalityLbEndpoints' locality and
load_balancing_weight, and common_lb_config.locality_weighted_lb_config turns
locality-weighted balancing on for the cluster (and only it does: istiod gives
localities weights either way)."""
from __future__ import annotations

from google.protobuf import json_format

from mosnx.runtime.envoy import eds
from mosnx.runtime.envoy.clusters import translate_cluster
from mosnx.runtime.envoy.findings import Findings
from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, RESOURCE_TYPES


def assignment():
    return json_format.ParseDict({"cluster_name": "web", "endpoints": [
        {"locality": {"region": "eu", "zone": "a"}, "load_balancing_weight": 1, "lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9001}}}}]},
        {"locality": {"region": "eu", "zone": "b", "sub_zone": "r1"}, "load_balancing_weight": 3, "priority": 1,
         "lb_endpoints": [
             {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9002}}}}]},
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                                          "port_value": 9003}}}}]},
    ]}, RESOURCE_TYPES[ENDPOINT]())


def eds_cluster(**extra):
    return json_format.ParseDict({"name": "web", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}},
                                  **extra}, RESOURCE_TYPES[CLUSTER]())


def test_endpoints_carry_their_locality_and_its_weight():
    eps = eds.check("web", assignment())
    assert [(e.port, e.locality, e.locality_weight, e.priority) for e in eps] == [
        (9001, "eu/a/", 1, 0), (9002, "eu/b/r1", 3, 1), (9003, "", 0, 0)]


def test_locality_weighted_lb_config_turns_it_on():
    on = translate_cluster(eds_cluster(common_lb_config={"locality_weighted_lb_config": {}}),
                           Findings(CLUSTER, "web", ""), assignment())
    off = translate_cluster(eds_cluster(), Findings(CLUSTER, "web", ""), assignment())
    assert on.options.get("locality_weighted") is True and "locality_weighted" not in off.options
    assert on.endpoints == off.endpoints and on.endpoints[1].locality_weight == 3
