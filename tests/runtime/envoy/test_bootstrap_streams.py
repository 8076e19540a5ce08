"""What a bootstrap says about the streams: the ADS cluster's UpstreamTlsContext becomes
TLS to the control plane, static clusters (pipes among them) are the gRPC targets an
SDS config source may name, and a static listener whose secrets come over a stream
waits for them (with ADS, or with the SDS stream alone)."""
from __future__ import annotations

import base64
import textwrap

import pytest

from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.envoy.bootstrap import load_bootstrap_text

LISTENER_URL = "type.googleapis.com/envoy.config.listener.v3.Listener"
CA = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2Vy\n-----END CERTIFICATE-----\n"

LISTENER = """\
  listeners:
  - name: edge
    address: {{socket_address: {{address: 127.0.0.1, port_value: 18443}}}}
    filter_chains:
    - transport_socket:
        name: tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: default
              sds_config: {{api_config_source: {{api_type: GRPC, grpc_services: [{{envoy_grpc: {{cluster_name: {sds}}}}}]}}}}
      filters:
      - name: tcp
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: edge
          cluster: app
"""

CLUSTERS = """\
  clusters:
  - name: app
    type: STATIC
    load_assignment:
      cluster_name: app
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18080}}}}]}]
  - name: sds-grpc
    type: STATIC
    load_assignment:
      cluster_name: sds-grpc
      endpoints: [{lb_endpoints: [{endpoint: {address: {pipe: {path: /tmp/sds.sock}}}}]}]
"""


def no_ads(sds: str = "sds-grpc") -> str:
    return "node: {id: n1}\nstatic_resources:\n" + LISTENER.format(sds=sds) + CLUSTERS


def test_without_ads_a_listener_waits_for_the_sds_stream():
    cfg, warnings = load_bootstrap_text(no_ads(), "<b>")
    assert cfg.listeners == ()
    x = cfg.xds
    assert x is not None and not x.ads and not x.lds and not x.cds and x.node.id == "n1"
    assert x.grpc_targets == {"sds-grpc": "unix:/tmp/sds.sock", "app": "127.0.0.1:18080"}
    assert set(x.static_resources[LISTENER_URL]) == {"edge"}
    assert any('listener "edge" serves once Secret \'default\' comes over the SDS stream to sds-grpc' in d.message
               for d in warnings)
    assert all(d.severity == "warning" for d in warnings)


def test_a_source_naming_no_cluster_is_an_error_without_ads():
    with pytest.raises(ConfigError) as e:
        load_bootstrap_text(no_ads("nowhere"), "<b>")
    assert 'Secret "default" has not been received' in str(e.value)


def test_a_static_tcp_cluster_is_a_target_too():
    cfg, _ = load_bootstrap_text(no_ads("app"), "<b>")
    assert cfg.xds is not None and cfg.xds.grpc_targets["app"] == "127.0.0.1:18080" and cfg.listeners == ()


_TLS_ADS = textwrap.dedent("""\
        node: {{id: n1}}
        dynamic_resources:
          ads_config: {{api_type: GRPC, grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]}}
          lds_config: {{ads: {{}}}}
          cds_config: {{ads: {{}}}}
        static_resources:
          clusters:
          - name: xds
            type: STATIC
            typed_extension_protocol_options:
              envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                explicit_http_config: {{http2_protocol_options: {{}}}}
            transport_socket:
              name: tls
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
                sni: istiod.istio-system.svc
                common_tls_context:
                  validation_context: {{trusted_ca: {{inline_bytes: "{ca}"}}}}
            load_assignment:
              cluster_name: xds
              endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 15012}}}}}}}}]}}]
    """)


def test_the_ads_clusters_tls_becomes_tls_to_the_control_plane():
    ca = base64.b64encode(CA).decode()
    text = _TLS_ADS.format(ca=ca)
    cfg, _ = load_bootstrap_text(text, "<b>")
    t = cfg.xds.tls
    assert t is not None and t.ca == CA and t.sni == "istiod.istio-system.svc" and t.cert is None


def test_with_ads_a_static_listener_waits_for_its_secret_instead_of_failing():
    text = ("node: {id: n1}\ndynamic_resources:\n"
            "  ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: app}}]}\n"
            "static_resources:\n" + LISTENER.format(sds="sds-grpc") + CLUSTERS)
    cfg, warnings = load_bootstrap_text(text, "<b>")
    assert cfg.listeners == () and cfg.xds.ads and "sds-grpc" in cfg.xds.grpc_targets
    assert any("serves once Secret" in d.message for d in warnings)


def test_a_tls_file_of_the_ads_cluster_that_is_not_there_is_an_error():
    text = textwrap.dedent("""\
        dynamic_resources:
          ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}
        static_resources:
          clusters:
          - name: xds
            type: STATIC
            transport_socket:
              name: tls
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
                common_tls_context:
                  validation_context: {trusted_ca: {filename: /nonexistent/ca.pem}}
            load_assignment:
              cluster_name: xds
              endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 15012}}}}]}]
        """)
    with pytest.raises(ConfigError) as e:
        load_bootstrap_text(text, "<b>")
    assert "/nonexistent/ca.pem" in str(e.value) and "not there" in str(e.value)


def test_convert_says_inline_tls_to_the_control_plane_cannot_be_written():
    from mosnx.runtime.envoy.bootstrap import load_bootstrap_resources
    from mosnx.runtime.envoy.convert import convert
    ca = base64.b64encode(CA).decode()
    cfg, _msg, resources = load_bootstrap_resources(_TLS_ADS.format(ca=ca), "<b>")
    out = convert(cfg, resources)
    assert "tls" not in out.yaml["xds"] and any("xds.tls: left out" in n for n in out.notes)
