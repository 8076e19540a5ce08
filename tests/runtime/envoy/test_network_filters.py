"""Network filters before a chain's last, translated: served (network RBAC),
recognised and left out with a warning (Istio's private ones, as a TypedStruct or as a
config dump names them), or rejecting the listener."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import L, msg  # noqa: E402
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.listeners import translate_listener  # noqa: E402

TCP = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
RBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
TCP_PROXY = {"name": "tcp", "typed_config": {"@type": TCP, "stat_prefix": "t", "cluster": "c"}}


def listener(before: list | None = None, **more) -> tuple:
    d = {"name": "l", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
         "filter_chains": [{"filters": [*(before or []), TCP_PROXY]}], **more}
    sink = Sink()
    return translate_listener(msg(L, d), Findings(L, "l", "", sink)), sink


def test_network_rbac_runs_before_the_last():
    rbac = {"name": "envoy.filters.network.rbac", "typed_config": {
        "@type": RBAC, "stat_prefix": "tcp.", "rules": {"action": "DENY", "policies": {
            "p": {"permissions": [{"destination_port": 22}], "principals": [{"any": True}]}}}}}
    lc, _ = listener([rbac])
    [nf] = lc.network_filters
    assert nf.kind == "rbac" and nf.name == "envoy.filters.network.rbac"


def test_istio_network_extensions_are_recognised_and_istio_stats_served():
    stats = {"name": "istio.stats", "typed_config": {
        "@type": TYPED_STRUCT, "type_url": "type.googleapis.com/stats.PluginConfig", "value": {}}}
    authn = {"name": "istio_authn", "typed_config": {
        "@type": TYPED_STRUCT, "type_url": "type.googleapis.com/io.istio.network.authn.Config", "value": {}}}
    mx = {"name": "istio.metadata_exchange", "typed_config": {
        "@type": TYPED_STRUCT, "type_url": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
        "value": {"protocol": "istio-peer-exchange"}}}
    lc, sink = listener([authn, mx, stats])
    assert lc.network_filters == ()
    assert [w.code for w in sink.warnings] == ["X001"]            # istio_authn
    assert lc.options["istio_stats"] == {}                        # Istio's TCP metrics (runtime.envoy.istio)
    assert lc.options["istio_mx"] == "istio-peer-exchange"        # the TCP metadata exchange, on its ALPN


def test_an_unknown_network_filter_rejects_the_listener():
    unknown = {"name": "mongo", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.mongo_proxy.v3.MongoProxy",
        "stat_prefix": "m"}}
    with pytest.raises(Rejected) as e:
        listener([unknown])
    assert e.value.rejection.field_path == "filter_chains[0].filters[0].typed_config"
    assert "MongoProxy" in str(e.value)


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
    assert lc.network_filters == () and lc.options["istio_stats"] == {} and not sink.warnings
