"""Istio's extensions in Envoy resources: an Any of a type xds-protos lacks decodes
(kept as its type URL and fields), from a file and from a control plane's bytes;
the ones mosnx serves become filters, the recognised ones warn, and a required
filter mosnx lacks rejects the listener naming its type."""
from __future__ import annotations

import pytest
from google.protobuf import any_pb2

import mosnx.runtime.filters  # noqa: F401  (registers the kinds)
from mosnx.runtime.envoy import protos
from mosnx.runtime.envoy.decode import OPAQUE, parse, read
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink
from mosnx.runtime.envoy.istio import alpn_overrides, opaque_config
from mosnx.runtime.envoy.listeners import translate_listener

T = "type.googleapis.com/"
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": T + "envoy.extensions.filters.http.router.v3.Router"}}
ROUTES = {"name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
    {"match": {"prefix": "/"}, "route": {"cluster": "a"}}]}]}


def listener(http_filters: list, network: list | None = None, direction: str | None = None) -> dict:
    out = {"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18700}},
           "filter_chains": [{"filters": (network or []) + [{"name": "hcm", "typed_config": {
               "@type": protos.HCM, "stat_prefix": "l", "route_config": ROUTES,
               "http_filters": http_filters + [ROUTER]}}]}]}
    if direction:
        out["traffic_direction"] = direction
    return out


def translate(data: dict):
    msg, errs = parse(data, protos.RESOURCE_TYPES[protos.LISTENER], None)
    assert msg is not None, [str(e) for e in errs]
    sink = Sink()
    return translate_listener(msg, Findings(protos.LISTENER, "l", "", sink)), [d.message for d in sink.warnings]


def test_an_any_of_an_unknown_type_decodes_as_its_type_url_and_fields():
    data = {"name": "x", "typed_config": {"@type": T + "acme.filters.Magic", "level": 3, "tags": ["a"]}}
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as h
    msg, errs = parse(data, h.HttpFilter, None)
    assert errs == [] and msg.typed_config.type_url == OPAQUE
    assert opaque_config(msg.typed_config) == ("acme.filters.Magic", {"level": 3.0, "tags": ["a"]})


def test_an_unknown_field_in_a_known_type_is_still_an_error():
    bad = listener([{"name": "f", "typed_config": {"@type": T + "envoy.extensions.filters.http.router.v3.Router",
                                                   "no_such_field": 1}}])
    msg, errs = parse(bad, protos.RESOURCE_TYPES[protos.LISTENER], None)
    assert msg is None and "no_such_field" in str(errs[0]) and errs[0].code == "X003"


def test_an_opaque_required_filter_rejects_the_listener_naming_its_type():
    with pytest.raises(Rejected) as e:
        translate(listener([{"name": "magic", "typed_config": {"@type": T + "acme.filters.Magic"}}]))
    assert "HTTP filter magic (type acme.filters.Magic) is not available" in str(e.value)
    assert e.value.rejection.field_path == "filter_chains[0].filters[0].typed_config.http_filters[0]"


def test_an_opaque_optional_filter_is_skipped_with_a_warning_naming_its_type():
    lc, warnings = translate(listener([{"name": "magic", "is_optional": True, "typed_config": {
        "@type": T + "udpa.type.v1.TypedStruct", "type_url": T + "acme.filters.Magic", "value": {"a": 1}}}]))
    assert lc.filters == ()
    assert any("magic (type acme.filters.Magic) is not available in mosnx; its config is kept opaque" in w
               for w in warnings)


def test_istios_http_filters_become_peer_metadata_and_istio_stats():
    mx = {"name": "istio.metadata_exchange", "typed_config": {
        "@type": T + "envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"vm_config": {"runtime": "envoy.wasm.runtime.null",
                                 "code": {"local": {"inline_string": "envoy.wasm.metadata_exchange"}}},
                   "configuration": {"@type": T + "envoy.tcp.metadataexchange.config.MetadataExchange"}}}}
    stats = {"name": "istio.stats", "typed_config": {"@type": T + "stats.PluginConfig",
                                                     "disable_host_header_fallback": True, "metrics": []}}
    grpc = {"name": "envoy.filters.http.grpc_stats", "typed_config": {
        "@type": T + "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig", "emit_filter_state": True}}
    lc, warnings = translate(listener([mx, grpc, stats], direction="OUTBOUND"))
    assert [(s.kind, s.name, s.config) for s in lc.filters] == [
        ("peer_metadata", "istio.metadata_exchange", {}),
        ("grpc_stats", "envoy.filters.http.grpc_stats", {"emit_filter_state": True}),
        ("istio_stats", "istio.stats", {"disable_host_header_fallback": True})]
    assert any("stats.PluginConfig metrics is not served" in w for w in warnings)


def test_another_null_vm_plugin_is_a_filter_mosnx_lacks():
    other = {"name": "istio.attributegen", "typed_config": {
        "@type": T + "envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"vm_config": {"runtime": "envoy.wasm.runtime.null",
                                 "code": {"local": {"inline_string": "envoy.wasm.attributegen"}}}}}}
    with pytest.raises(Rejected, match="null-VM Wasm plugin envoy.wasm.attributegen"):
        translate(listener([other]))


def test_istio_network_filters_warn_and_another_network_filter_rejects():
    authn = {"name": "istio_authn", "typed_config": {"@type": T + "udpa.type.v1.TypedStruct",
                                                     "type_url": T + "io.istio.network.authn.Config"}}
    mx = {"name": "istio.metadata_exchange", "typed_config": {
        "@type": T + "envoy.tcp.metadataexchange.config.MetadataExchange", "protocol": "istio-peer-exchange"}}
    stats = {"name": "istio.stats", "typed_config": {"@type": T + "stats.PluginConfig"}}
    lc, warnings = translate(listener([], network=[authn, mx, stats], direction="INBOUND"))
    # the metadata exchange serves tcp_proxy chains only (an HTTP one has the header exchange)
    assert lc.protocol == "http" and lc.options == {"traffic_direction": "INBOUND", "istio_stats": {}}
    assert sum("is recognised" in w for w in warnings) == 1
    magic = {"name": "acme.magic", "typed_config": {"@type": T + "acme.network.Magic"}}
    with pytest.raises(Rejected, match="Envoy has no optional network filters"):
        translate(listener([], network=[magic]))


def test_from_a_control_plane_an_unknown_type_stays_bytes_and_is_still_recognised():
    """xDS sends binary: the Any's bytes of stats.PluginConfig cannot be read, but its type URL decides."""
    msg, _ = parse(listener([]), protos.RESOURCE_TYPES[protos.LISTENER], None)
    hcm = protos.HttpConnectionManager()
    msg.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    router = type(hcm.http_filters[0])()
    router.CopyFrom(hcm.http_filters[0])
    del hcm.http_filters[:]
    stats = hcm.http_filters.add(name="istio.stats")
    stats.typed_config.CopyFrom(any_pb2.Any(type_url=T + "stats.PluginConfig", value=b"\x08\x01"))
    hcm.http_filters.append(router)
    msg.filter_chains[0].filters[0].typed_config.Pack(hcm)
    wire = type(msg).FromString(msg.SerializeToString())       # as the xDS client decodes it
    sink = Sink()
    lc = translate_listener(wire, Findings(protos.LISTENER, "l", "", sink))
    assert [s.kind for s in lc.filters] == ["istio_stats"]
    assert any("kept opaque: its settings cannot be read" in d.message for d in sink.warnings)
    # istiod's usual PluginConfig is empty: nothing to read, nothing to warn about
    assert opaque_config(any_pb2.Any(type_url=T + "stats.PluginConfig")) == ("stats.PluginConfig", {})


def test_alpn_overrides_are_read_by_upstream_protocol():
    value = {"alpn_override": [{"alpn_override": ["istio-http/1.0", "istio", "http/1.0"]},
                               {"upstream_protocol": "HTTP2", "alpn_override": ["istio-h2", "istio", "h2"]},
                               {"upstream_protocol": "SPDY", "alpn_override": ["x"]}, "junk"]}
    assert alpn_overrides(value) == {"HTTP10": ("istio-http/1.0", "istio", "http/1.0"),
                                     "HTTP2": ("istio-h2", "istio", "h2")}
    assert alpn_overrides(None) == {}


def test_a_bootstrap_file_with_istios_extensions_positions_its_warnings():
    text = """\
name: l
address: {socket_address: {address: 127.0.0.1, port_value: 18701}}
filter_chains:
- filters:
  - name: istio.stats
    typed_config: {"@type": type.googleapis.com/stats.PluginConfig, tcp_reporting_duration: 5s}
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: t
      cluster: a
"""
    data, positions, errs = read(text, "l.yaml")
    assert errs == []
    msg, errs = parse(data, protos.RESOURCE_TYPES[protos.LISTENER], positions)
    assert errs == []
    sink = Sink(locate=lambda p: positions.locate(p))
    lc = translate_listener(msg, Findings(protos.LISTENER, "l", "", sink))
    assert lc.protocol == "tcp"
    [w] = sink.warnings
    assert "tcp_reporting_duration is not served" in w.message
    assert w.code == "X001" and w.span is not None and w.span.line == 6
    assert lc.options == {"istio_stats": {}}


def test_convert_keeps_the_node_and_direction_of_istios_filters():
    import json

    import yaml

    from mosnx.runtime.config.loader import load_config_text
    from mosnx.runtime.envoy.bootstrap import load_bootstrap_resources
    from mosnx.runtime.envoy.convert import convert
    node = {"id": "sidecar~10.0.0.2~reviews-v2-1.default~default.svc.cluster.local",
            "metadata": {"WORKLOAD_NAME": "reviews-v2", "NAMESPACE": "default"}}
    mx = {"name": "istio.metadata_exchange", "typed_config": {
        "@type": T + "envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"vm_config": {"runtime": "envoy.wasm.runtime.null",
                                 "code": {"local": {"inline_string": "envoy.wasm.metadata_exchange"}}}}}}
    stats = {"name": "istio.stats", "typed_config": {"@type": T + "stats.PluginConfig"}}
    lst = listener([mx, stats], direction="INBOUND")
    boot = {"node": node, "static_resources": {"listeners": [lst], "clusters": [
        {"name": "a", "type": "STATIC", "load_assignment": {"cluster_name": "a", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 18702}}}}]}]}}]}}
    config, _, resources = load_bootstrap_resources(json.dumps(boot), "<envoy>")
    out = convert(config, resources)
    [pm, ist] = out.yaml["listeners"][0]["filters"]
    assert pm["peer_metadata"] == {"name": "istio.metadata_exchange", "node": node, "direction": "INBOUND"}
    assert ist["istio_stats"] == {"name": "istio.stats", "node": node, "reporter": "destination"}
    text = yaml.safe_dump(out.yaml)
    assert "&id" not in text                     # each filter has its own copy, no YAML anchors
    again = load_config_text(text)               # the converted file loads as mosnx.yaml
    assert [f.kind for f in again.listeners[0].filters] == ["peer_metadata", "istio_stats"]


ALPN = {"name": "istio.alpn", "typed_config": {
    "@type": T + "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
    "alpn_override": [{"upstream_protocol": "HTTP10", "alpn_override": ["istio-http/1.0", "istio", "http/1.0"]},
                      {"upstream_protocol": "HTTP11", "alpn_override": ["istio-http/1.1", "istio", "http/1.1"]},
                      {"upstream_protocol": "HTTP2", "alpn_override": ["istio-h2", "istio", "h2"]}]}}
WANT_ALPN = {"HTTP10": ("istio-http/1.0", "istio", "http/1.0"), "HTTP11": ("istio-http/1.1", "istio", "http/1.1"),
             "HTTP2": ("istio-h2", "istio", "h2")}


def test_istio_alpn_becomes_the_listeners_upstream_alpn_overrides():
    lc, warnings = translate(listener([ALPN], direction="OUTBOUND"))
    assert lc.filters == () and lc.options["istio_alpn"] == WANT_ALPN
    assert not any("alpn" in w for w in warnings)


def test_istio_alpn_from_a_control_plane_decodes_from_its_bytes():
    """mosnx describes istio.alpn's FilterConfig, so binary config from istiod is read too
    (HTTP10, the enum's zero, is absent on the wire and still read)."""
    msg, _ = parse(listener([ALPN]), protos.RESOURCE_TYPES[protos.LISTENER], None)
    wire = type(msg).FromString(msg.SerializeToString())
    lc = translate_listener(wire, Findings(protos.LISTENER, "l", "", Sink()))
    assert lc.options["istio_alpn"] == WANT_ALPN
    disabled = dict(ALPN, disabled=True)
    lc, _ = translate(listener([disabled]))
    assert "istio_alpn" not in lc.options


MX_TCP = {"name": "istio.metadata_exchange", "typed_config": {
    "@type": T + "envoy.tcp.metadataexchange.config.MetadataExchange", "protocol": "istio-peer-exchange"}}


def _cluster(filters: list) -> dict:
    return {"name": "outbound|9090||db.default.svc.cluster.local", "type": "STATIC", "filters": filters,
            "load_assignment": {"cluster_name": "db", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 18703}}}}]}]}}


def test_a_clusters_metadata_exchange_filter_is_its_istio_mx_option_and_others_reject():
    from mosnx.runtime.envoy.clusters import translate_cluster
    msg, _ = parse(_cluster([MX_TCP]), protos.RESOURCE_TYPES[protos.CLUSTER], None)
    wire = type(msg).FromString(msg.SerializeToString())           # as from a control plane
    cc = translate_cluster(wire, Findings(protos.CLUSTER, "c", "", Sink()))
    assert cc.options["istio_mx"] == "istio-peer-exchange"
    other = {"name": "x", "typed_config": {"@type": T + "acme.network.Magic"}}
    msg, _ = parse(_cluster([other]), protos.RESOURCE_TYPES[protos.CLUSTER], None)
    with pytest.raises(Rejected, match="upstream network filter x"):
        translate_cluster(msg, Findings(protos.CLUSTER, "c", "", Sink()))


def test_convert_says_what_istios_connection_options_become():
    import json

    from mosnx.runtime.envoy.bootstrap import load_bootstrap_resources
    from mosnx.runtime.envoy.convert import convert
    lst = listener([ALPN], direction="OUTBOUND")
    a = {"name": "a", "type": "STATIC", "load_assignment": {"cluster_name": "a", "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 18702}}}}]}]}}
    boot = {"static_resources": {"listeners": [lst], "clusters": [a, _cluster([MX_TCP])]}}
    config, _, resources = load_bootstrap_resources(json.dumps(boot), "<envoy>")
    out = convert(config, resources)
    assert all("istio_mx" not in c for c in out.yaml["clusters"])
    assert any("TCP metadata exchange has no mosnx.yaml form" in n for n in out.notes)
    assert any("istio.alpn's ALPN overrides have no mosnx.yaml form" in n for n in out.notes)
