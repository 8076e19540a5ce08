"""Transparent interception in the translator: a listener's use_original_dst,
original_dst filter, bind_to_port, transparent and socket_options; network filters
before the last (served, recognised and left out, rejected); ORIGINAL_DST clusters
and upstream_bind_config."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import C, L, msg  # noqa: E402
from mosnx.runtime.envoy.clusters import translate_cluster  # noqa: E402
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.listeners import translate_listener  # noqa: E402

TCP = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
RBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
TCP_PROXY = {"name": "tcp", "typed_config": {"@type": TCP, "stat_prefix": "t", "cluster": "c"}}
ORIGINAL_DST = {"name": "envoy.filters.listener.original_dst", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}}


def listener(before: list | None = None, **more) -> tuple:
    d = {"name": "l", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
         "filter_chains": [{"filters": [*(before or []), TCP_PROXY]}], **more}
    sink = Sink()
    return translate_listener(msg(L, d), Findings(L, "l", "", sink)), sink


def test_capture_listener_fields():
    lc, sink = listener(use_original_dst=True, transparent=True, listener_filters=[ORIGINAL_DST],
                        socket_options=[{"level": 1, "name": 36, "int_value": 1337}])
    assert lc.use_original_dst and lc.original_dst and lc.transparent and lc.bind_to_port
    assert [(o.level, o.name, o.value) for o in lc.socket_options] == [(1, 36, 1337)]
    assert not sink.warnings


def test_bind_to_port_false_is_kept_and_defaults_hold():
    lc, _ = listener(bind_to_port=False)
    assert not lc.bind_to_port and not lc.use_original_dst and not lc.original_dst and not lc.transparent


def test_interception_belongs_to_the_listener_not_its_chains():
    d = {"name": "vo", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
         "use_original_dst": True,
         "filter_chains": [{"name": "a", "filter_chain_match": {"destination_port": 15001}, "filters": [TCP_PROXY]},
                           {"name": "b", "filters": [TCP_PROXY]}]}
    lc = translate_listener(msg(L, d), Findings(L, "vo"))
    assert lc.protocol == "chains" and lc.use_original_dst
    assert not any(c.stack.use_original_dst for c in lc.filter_chains)


def test_network_rbac_runs_before_the_last():
    rbac = {"name": "envoy.filters.network.rbac", "typed_config": {
        "@type": RBAC, "stat_prefix": "tcp.", "rules": {"action": "DENY", "policies": {
            "p": {"permissions": [{"destination_port": 22}], "principals": [{"any": True}]}}}}}
    lc, _ = listener([rbac])
    [nf] = lc.network_filters
    assert nf.kind == "rbac" and nf.name == "envoy.filters.network.rbac"


def test_istio_network_extensions_are_recognised_and_left_out():
    stats = {"name": "istio.stats", "typed_config": {
        "@type": TYPED_STRUCT, "type_url": "type.googleapis.com/stats.PluginConfig", "value": {}}}
    authn = {"name": "istio_authn", "typed_config": {
        "@type": TYPED_STRUCT, "type_url": "type.googleapis.com/io.istio.network.authn.Config", "value": {}}}
    mx = {"name": "istio.metadata_exchange", "typed_config": {
        "@type": TYPED_STRUCT, "type_url": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
        "value": {"protocol": "istio-peer-exchange"}}}
    lc, sink = listener([authn, mx, stats])
    assert lc.network_filters == ()
    assert [w.code for w in sink.warnings] == ["X001"] * 3
    assert "istio.stats" in sink.warnings[2].message


def test_an_unknown_network_filter_rejects_the_listener():
    unknown = {"name": "mongo", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.mongo_proxy.v3.MongoProxy",
        "stat_prefix": "m"}}
    with pytest.raises(Rejected) as e:
        listener([unknown])
    assert e.value.rejection.field_path == "filter_chains[0].filters[0].typed_config"
    assert "MongoProxy" in str(e.value)


def cluster(d: dict) -> tuple:
    sink = Sink()
    return translate_cluster(msg(C, {"name": "c", **d}), Findings(C, "c", "", sink)), sink


def test_original_dst_cluster():
    c, sink = cluster({"type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "cleanup_interval": "30s",
                       "original_dst_lb_config": {"use_http_header": True, "upstream_port_override": 8080},
                       "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}})
    assert c.lb == "cluster_provided" and c.endpoints == ()
    assert c.options["original_dst"] == {"cleanup_interval": 30.0, "http_header": "x-envoy-original-dst-host",
                                         "port_override": 8080}
    assert c.options["source_address"] == ("127.0.0.6", 0)
    assert not sink.warnings


def test_cluster_provided_needs_original_dst_and_back():
    with pytest.raises(Rejected) as e:
        cluster({"type": "STATIC", "lb_policy": "CLUSTER_PROVIDED"})
    assert e.value.rejection.field_path == "lb_policy"
    with pytest.raises(Rejected):
        cluster({"type": "ORIGINAL_DST", "lb_policy": "ROUND_ROBIN"})


def test_black_hole_cluster_is_static_without_endpoints():
    c, _ = cluster({"name": "BlackHoleCluster", "type": "STATIC"})
    assert c.endpoints == () and c.lb == "round_robin"


def test_bad_source_address():
    with pytest.raises(Rejected) as e:
        cluster({"upstream_bind_config": {"source_address": {"address": "nowhere", "port_value": 0}}})
    assert "not an IP address" in str(e.value)


def test_istio_filters_as_a_config_dump_shows_them_are_recognised_too():
    """In a config dump the TypedStruct is unwrapped: the Any names Istio's own type."""
    d = {"name": "l", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
         "filter_chains": [{"filters": [{"name": "istio.stats", "typed_config": {
             "@type": TYPED_STRUCT, "type_url": "x", "value": {}}}, TCP_PROXY]}]}
    m = msg(L, d)
    m.filter_chains[0].filters[0].typed_config.type_url = "type.googleapis.com/stats.PluginConfig"
    m.filter_chains[0].filters[0].typed_config.value = b""
    sink = Sink()
    lc = translate_listener(m, Findings(L, "l", "", sink))
    assert lc.network_filters == () and [w.code for w in sink.warnings] == ["X001"]
