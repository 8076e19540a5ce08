"""The control plane's resources as Envoy's typed /config_dump: envoy.admin.v3.ConfigDump
parses it, clusters come before listeners, and a refused resource carries its error
state beside the version that still serves."""
from __future__ import annotations

from google.protobuf import json_format

from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2 as shared

from mosnx.proxy.xds.dump import config_dump
from mosnx.runtime.envoy.protos import CLUSTER, LISTENER, RESOURCE_TYPES


def cluster(name: str, policy: str = "ROUND_ROBIN"):
    return json_format.ParseDict({"name": name, "type": "STATIC", "lb_policy": policy}, RESOURCE_TYPES[CLUSTER]())


def test_envoys_tools_read_it():
    failed = {(CLUSTER, "up"): (cluster("up", "CLUSTER_PROVIDED"), 1700000000.5, "lb_policy: not supported", "3"),
              (CLUSTER, "new"): (cluster("new", "CLUSTER_PROVIDED"), 1700000001.0, "lb_policy: not supported", "3")}
    dump = config_dump({CLUSTER: {"up": cluster("up")}, LISTENER: {}}, {CLUSTER: "2"}, {CLUSTER: 1700000000.0}, failed)
    parsed = json_format.ParseDict(dump, config_dump_pb2.ConfigDump())
    assert [c.type_url.rsplit(".", 1)[-1] for c in parsed.configs] == [
        "ClustersConfigDump", "ListenersConfigDump", "RoutesConfigDump", "EndpointsConfigDump"]
    cds = shared.ClustersConfigDump()
    parsed.configs[0].Unpack(cds)
    assert cds.version_info == "2"
    serving = [c for c in cds.dynamic_active_clusters if c.HasField("cluster")]
    assert len(serving) == 1 and serving[0].version_info == "2"
    assert serving[0].last_updated.seconds == 1700000000
    errors = sorted(c.error_state.details for c in cds.dynamic_active_clusters if c.HasField("error_state"))
    assert errors == ["lb_policy: not supported"] * 2
    refused = next(c for c in cds.dynamic_active_clusters if c.HasField("error_state"))
    back = RESOURCE_TYPES[CLUSTER]()
    refused.error_state.failed_configuration.Unpack(back)
    assert back.lb_policy == cluster("x", "CLUSTER_PROVIDED").lb_policy and refused.error_state.version_info == "3"


def test_secrets_are_dumped_with_their_private_keys_redacted():
    secret = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    key = "-----BEGIN PRIVATE KEY-----\nTOPSECRET\n-----END PRIVATE KEY-----\n"
    s = json_format.ParseDict({"name": "default", "tls_certificate": {
        "certificate_chain": {"inline_string": "-----BEGIN CERTIFICATE-----\nPUBLIC\n-----END CERTIFICATE-----\n"},
        "private_key": {"inline_string": key}}}, RESOURCE_TYPES[secret]())
    static = json_format.ParseDict({"name": "edge", "tls_certificate": {
        "certificate_chain": {"filename": "/etc/edge.crt"}, "private_key": {"inline_bytes": "c2VjcmV0"}}},
        RESOURCE_TYPES[secret]())
    failed = {(secret, "default"): (s, 1700000002.0, "not PEM", "9")}
    dump = config_dump({secret: {"default": s}}, {secret: "7"}, {secret: 1700000001.0}, failed,
                       static_secrets={"edge": static}, warming_secrets={"default", "ROOTCA"})
    text = json_format.MessageToJson(json_format.ParseDict(dump, config_dump_pb2.ConfigDump()))
    assert "TOPSECRET" not in text and "c2VjcmV0" not in text and "PUBLIC" in text
    parsed = json_format.ParseDict(dump, config_dump_pb2.ConfigDump())
    sds = config_dump_pb2.SecretsConfigDump()
    assert parsed.configs[-1].Unpack(sds)
    active = sds.dynamic_active_secrets[0]
    back = RESOURCE_TYPES[secret]()
    active.secret.Unpack(back)
    assert active.name == "default" and active.version_info == "7"
    assert back.tls_certificate.private_key.inline_string == "[redacted]"
    active.error_state.failed_configuration.Unpack(back)
    assert back.tls_certificate.private_key.inline_string == "[redacted]"
    sds.static_secrets[0].secret.Unpack(back)
    assert back.tls_certificate.private_key.inline_bytes == b"[redacted]"
    assert back.tls_certificate.certificate_chain.filename == "/etc/edge.crt"
    assert [w.name for w in sds.dynamic_warming_secrets] == ["ROOTCA"]


def test_an_opaque_extension_is_shown_as_a_typed_struct():
    """A typed config of a type this process does not know (Istio's stats plugin kept
    as opaque config), nested in a listener's HCM and in a route's per-filter config,
    is dumped as a TypedStruct naming it, and the dump still parses."""
    import base64

    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
    from google.protobuf import any_pb2
    from xds.type.v3 import typed_struct_pb2

    opaque = any_pb2.Any(type_url="type.googleapis.com/stats.PluginConfig", value=b"\x0a\x03abc")
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="in")
    hcm.http_filters.add(name="istio.stats").typed_config.CopyFrom(opaque)
    rc = hcm.route_config
    vh = rc.virtual_hosts.add(name="vh", domains=["*"])
    vh.typed_per_filter_config["istio.stats"].CopyFrom(opaque)
    lst = RESOURCE_TYPES[LISTENER](name="in")
    lst.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(hcm)
    dump = config_dump({LISTENER: {"in": lst}}, {LISTENER: "1"}, {LISTENER: 1700000000.0}, {})
    parsed = json_format.ParseDict(dump, config_dump_pb2.ConfigDump())
    lds = shared.ListenersConfigDump()
    parsed.configs[1].Unpack(lds)
    back = RESOURCE_TYPES[LISTENER]()
    lds.dynamic_listeners[0].active_state.listener.Unpack(back)
    got = hcm_pb2.HttpConnectionManager()
    back.filter_chains[0].filters[0].typed_config.Unpack(got)
    for a in (got.http_filters[0].typed_config, got.route_config.virtual_hosts[0].typed_per_filter_config["istio.stats"]):
        ts = typed_struct_pb2.TypedStruct()
        assert a.Unpack(ts)
        assert ts.type_url == "type.googleapis.com/stats.PluginConfig"
        assert base64.b64decode(ts.value["opaque"]) == b"\x0a\x03abc"


def test_a_route_configuration_with_vhds_shows_the_virtual_hosts_it_took():
    from envoy.config.route.v3 import route_pb2
    from mosnx.runtime.envoy.protos import ROUTE, VIRTUAL_HOST
    rc = json_format.ParseDict({"name": "rc", "vhds": {"config_source": {"ads": {}}}}, RESOURCE_TYPES[ROUTE]())
    vh = json_format.ParseDict({"name": "rc/one.test", "domains": ["one.test"]}, RESOURCE_TYPES[VIRTUAL_HOST]())
    dump = config_dump({ROUTE: {"rc": rc}, VIRTUAL_HOST: {"rc/one.test": vh}}, {ROUTE: "1"}, {}, {})
    parsed = json_format.ParseDict(dump, config_dump_pb2.ConfigDump())
    rds = shared.RoutesConfigDump()
    parsed.configs[2].Unpack(rds)
    shown = route_pb2.RouteConfiguration()
    rds.dynamic_route_configs[0].route_config.Unpack(shown)
    assert [v.name for v in shown.virtual_hosts] == ["rc/one.test"] and len(rc.virtual_hosts) == 0
