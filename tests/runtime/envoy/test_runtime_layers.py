"""The layered runtime: static layers from the bootstrap, RTDS layers over the stream,
later layers overriding earlier ones, read by runtime_fraction's runtime_key."""
from __future__ import annotations

import json
import os
import sys

from google.protobuf import json_format

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import ctx, msg  # noqa: E402
from mosnx.runtime.envoy.apply import Translations, apply, needed_names  # noqa: E402
from mosnx.runtime.envoy.bootstrap import load_bootstrap_text  # noqa: E402
from mosnx.runtime.envoy.protos import LISTENER as L, ROUTE as R, RUNTIME as RT  # noqa: E402
from mosnx.runtime.envoy.runtime_layers import fraction, layers_of, merged  # noqa: E402
from mosnx.runtime.snapshot import build_snapshot  # noqa: E402
from envoy.config.bootstrap.v3 import bootstrap_pb2  # noqa: E402
from envoy.type.v3 import percent_pb2  # noqa: E402


def _bootstrap(layers: list) -> str:
    ads = {"ads": {}}
    return json.dumps({
        "node": {"id": "n"},
        "dynamic_resources": {"ads_config": {"api_type": "GRPC", "transport_api_version": "V3", "grpc_services": [
            {"envoy_grpc": {"cluster_name": "xds"}}]}, "lds_config": ads, "cds_config": ads},
        "static_resources": {"clusters": [
            {"name": "xds", "type": "STATIC", "load_assignment": {"cluster_name": "xds", "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": 18000}}}}]}]}},
            {"name": "a", "type": "STATIC", "load_assignment": {"cluster_name": "a", "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": 18001}}}}]}]}}]},
        "layered_runtime": {"layers": layers}})


def _runtime(name: str, layer: dict):
    return msg(RT, {"name": name, "layer": layer})


def test_layers_merge_in_order_and_flatten_nested_keys():
    lr = json_format.ParseDict({"layers": [
        {"name": "base", "static_layer": {"a": {"b": 1}, "c": "x"}},
        {"name": "rt", "rtds_layer": {"name": "rt-0", "rtds_config": {"ads": {}}}},
        {"name": "admin", "admin_layer": {}}]}, bootstrap_pb2.LayeredRuntime())
    layers = layers_of(lr)
    assert merged(layers, {}) == {"a.b": 1, "c": "x"}
    assert merged(layers, {"rt-0": _runtime("rt-0", {"a": {"b": 7}, "d": True})}) == {"a.b": 7, "c": "x", "d": True}


def test_fraction_reads_a_number_or_a_fractional_percent():
    d = percent_pb2.FractionalPercent(numerator=30)
    assert fraction({}, "k", d) == 0.3
    assert fraction({"k": 100}, "k", d) == 1.0 and fraction({"k": 5}, "k", d) == 0.05
    assert fraction({"k": {"numerator": 50, "denominator": "TEN_THOUSAND"}}, "k", d) == 0.005
    assert fraction({"k": "not a number"}, "k", d) == 0.3 and fraction({"k": True}, "k", d) == 0.3


def _listener(port: int) -> dict:
    return {"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                         "HttpConnectionManager", "stat_prefix": "l",
                "rds": {"route_config_name": "r", "config_source": {"ads": {}}},
                "http_filters": [{"name": "router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}


ROUTES = {"name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
    {"match": {"prefix": "/", "runtime_fraction": {"default_value": {"numerator": 0}, "runtime_key": "canary"}},
     "direct_response": {"status": 299}},
    {"match": {"prefix": "/"}, "route": {"cluster": "a"}}]}]}


def _first(config) -> object:
    routes = build_snapshot(config).listeners["l"].routes
    return routes.vhost_of(ctx("/").request).match(ctx("/")).action


def test_an_rtds_layer_is_subscribed_and_its_values_reach_the_routes():
    base, warnings = load_bootstrap_text(_bootstrap([
        {"name": "static", "static_layer": {"canary": 0}},
        {"name": "rtds", "rtds_layer": {"name": "runtime-0", "rtds_config": {"ads": {}}}}]), "<envoy>")
    assert not [w for w in warnings if "layered_runtime" in w.message]
    assert needed_names({}, base)[RT] == {"runtime-0"}
    cache = Translations()
    resources = {L: {"l": msg(L, _listener(18620))}, R: {"r": msg(R, ROUTES)}}
    config, rejected = apply(base, resources, cache=cache)
    assert rejected == [] and getattr(_first(config), "cluster", None) == "a"      # canary off
    # the RTDS layer turns the key on: the same route message is translated again
    config, _ = apply(base, {**resources, RT: {"runtime-0": _runtime("runtime-0", {"canary": 100})}}, cache=cache)
    assert getattr(_first(config), "status", None) == 299


def test_unserved_layers_are_said():
    _, warnings = load_bootstrap_text(_bootstrap([{"name": "disk", "disk_layer": {"symlink_root": "/x"}}]), "<e>")
    assert any("disk_layer is not served" in w.message for w in warnings)
