"""Envoy bootstraps as configs: recognition, decoding errors at file:line:col,
warnings for what mosnx ignores, static and file-based resources, ads_config."""
from __future__ import annotations

import os
import sys
import textwrap

import pytest

from mosnx.runtime.config import load_config, load_config_text
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.envoy.bootstrap import is_bootstrap, load_bootstrap_text
from mosnx.runtime.snapshot import build_snapshot

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import STATIC  # noqa: E402




def test_recognised_by_top_level_keys():
    assert is_bootstrap({"static_resources": {}})
    assert is_bootstrap({"node": {"id": "x"}, "dynamic_resources": {}})
    assert not is_bootstrap({"listeners": [], "admin": {}})
    assert not is_bootstrap({"admin": {"address": "127.0.0.1:1"}})


def test_static_bootstrap_is_a_config_with_xds():
    cfg = load_config_text(STATIC, "<envoy>")
    assert [lc.name for lc in cfg.listeners] == ["web"]
    assert (cfg.listeners[0].host, cfg.listeners[0].port) == ("127.0.0.1", 18000)
    app, xds = cfg.clusters
    assert app.connect_timeout == 2.0 and app.protocol == "http1"
    assert xds.protocol == "http2" and xds.connect_timeout == 5.0      # Envoy's default
    assert (cfg.admin.host, cfg.admin.port) == ("127.0.0.1", 19000)
    x = cfg.xds
    assert (x.host, x.port, x.mode, x.cluster) == ("127.0.0.1", 18002, "delta", "xds")
    assert x.set_node_on_first_message_only and x.initial_fetch_timeout == 3.0 and x.lds and x.cds
    assert (x.node.id, x.node.cluster, x.node.metadata) == ("edge-1", "edge", {"zone": "a", "canary": True})
    snap = build_snapshot(cfg)
    table = snap.listeners["web"].routes
    assert table.vhosts[0].routes[0].action.cluster == "app"
    assert table.vhosts[0].routes[0].action.timeout == 2.0


def _error(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config_text(text, "<envoy>")
    return [str(d) for d in e.value.diagnostics]


def test_unknown_field_is_positioned():
    bad = STATIC.replace("          stat_prefix: web\n", "          stat_prefix: web\n          bogus: 1\n")
    msgs = _error(bad)
    assert len(msgs) == 1
    line = bad.splitlines().index("          bogus: 1") + 1
    assert msgs[0].startswith(f"<envoy>:{line}:11: X003") and 'unknown field "bogus"' in msgs[0]


def test_bad_enum_and_wrong_type_are_positioned():
    bad = STATIC.replace("api_type: DELTA_GRPC", "api_type: DELTA_GPRC")
    [msg] = _error(bad)
    assert msg.startswith("<envoy>:9:5:") and "DELTA_GPRC" in msg
    bad = STATIC.replace("port_value: 18001", "port_value: [1]")
    [msg] = _error(bad)
    line = bad.splitlines().index(next(s for s in bad.splitlines() if "[1]" in s)) + 1
    # json_format names no path for this one: the nearest key it names
    assert msg.startswith(f"<envoy>:{line - 1}:") and "lb_endpoints" in msg


def test_unsupported_fields_are_warnings():
    text = STATIC.replace("  - name: app\n", "  - name: app\n    respect_dns_ttl: true\n")
    cfg, warnings = load_bootstrap_text(text, "<envoy>")
    assert [c.name for c in cfg.clusters] == ["app", "xds"]
    [w] = [w for w in warnings if "respect_dns_ttl" in w.message]
    assert w.severity == "warning" and w.span is not None
    assert w.span.line == text.splitlines().index("    respect_dns_ttl: true") + 1


def test_a_rejected_listener_is_an_error_at_its_field():
    text = STATIC.replace("route: {cluster: app, timeout: 2s}", "route: {cluster_specifier_plugin: p}")
    msgs = _error(text)
    [msg] = [m for m in msgs if "X002" in m]
    line = text.splitlines().index(next(s for s in text.splitlines() if "cluster_specifier_plugin" in s)) + 1
    assert msg.startswith(f"<envoy>:{line}:") and "cluster_specifier_plugin is not supported" in msg


def test_mosnx_xds_block():
    cfg = load_config_text(textwrap.dedent("""\
        xds:
          address: 127.0.0.1:18003
          mode: delta
          initial_fetch_timeout: 2s
          node: {id: n1, cluster: c1, metadata: {a: 1}}
        """), "<mosnx>")
    x = cfg.xds
    assert (x.host, x.port, x.mode, x.initial_fetch_timeout) == ("127.0.0.1", 18003, "delta", 2.0)
    assert (x.node.id, x.node.cluster, x.node.metadata) == ("n1", "c1", {"a": 1})
    with pytest.raises(ConfigError) as e:
        load_config_text("xds:\n  address: 127.0.0.1:1\n  mode: grpc\n", "<mosnx>")
    assert str(e.value.diagnostics[0]).startswith("<mosnx>:3:9:")


# ---- Envoy's own integration-test files (conftest.envoy_testdata) ----

def test_envoy_integration_bootstrap_loads(envoy_testdata):
    path = envoy_testdata()
    cfg, warnings = load_bootstrap_text(path.read_text(), str(path))
    [lc] = cfg.listeners
    assert lc.name == "listener_0" and lc.route_config == "route_config_0" and lc.port == 18091
    [c] = cfg.clusters
    assert c.name == "cluster_1" and c.protocol == "http2" and c.connect_timeout == 5.0
    assert [e.address for e in c.endpoints] == ["127.0.0.1:18090"]
    assert [w.message for w in warnings if "access_log" in w.message]
    assert cfg.admin is not None and cfg.admin.port == 0
    snap = build_snapshot(cfg)
    route = snap.listeners["listener_0"].routes.vhosts[0].routes[0]
    assert route.path_prefix == "/test/long/url" and route.action.cluster == "cluster_1"


def test_envoy_unknown_field_is_positioned_in_its_file(envoy_testdata):
    path = envoy_testdata(lds="server_xds.lds.with_unknown_field.yaml")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    [d] = [d for d in e.value.diagnostics if d.severity == "error"]
    assert d.span.path.endswith("server_xds.lds.with_unknown_field.yaml")
    assert (d.span.line, d.span.column) == (26, 9) and 'unknown field "foo"' in d.message


def test_envoy_duplicate_key_is_an_error(envoy_testdata):
    path = envoy_testdata(cds="server_xds.cds.with_unknown_field.yaml")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert any(d.code == "C006" and d.span.line == 18 for d in e.value.diagnostics)


def test_envoy_typed_struct_listener_is_rejected_by_name(envoy_testdata):
    path = envoy_testdata(lds="server_xds.lds.typed_struct.yaml")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    [d] = [d for d in e.value.diagnostics if d.code == "X002"]
    assert "TypedStruct" in d.message and d.span.path.endswith("server_xds.lds.typed_struct.yaml")


PIPE_ADS = textwrap.dedent("""\
    node: {id: sidecar~1.2.3.4~foo~bar, cluster: istio-proxy}
    admin: {address: {socket_address: {address: 127.0.0.1, port_value: 15000}}}
    dynamic_resources:
      lds_config: {ads: {}}
      cds_config: {ads: {}}
      ads_config:
        api_type: DELTA_GRPC
        grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]
    static_resources:
      clusters:
      - name: xds-grpc
        type: STATIC
        load_assignment:
          cluster_name: xds-grpc
          endpoints: [{lb_endpoints: [{endpoint: {address: {pipe: {path: /tmp/XDS}}}}]}]
      - name: sds-grpc
        type: STATIC
        load_assignment:
          cluster_name: sds-grpc
          endpoints: [{lb_endpoints: [{endpoint: {address: {pipe: {path: ./sds.sock}}}}]}]
      - name: agent
        type: STATIC
        load_assignment:
          cluster_name: agent
          endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 15020}}}}]}]
      listeners:
      - name: stats
        traffic_direction: OUTBOUND
        address: {socket_address: {address: 127.0.0.1, port_value: 15090}}
        filter_chains:
        - filters:
          - name: hcm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
              stat_prefix: stats
              route_config:
                virtual_hosts: [{name: b, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: agent}}]}]
              http_filters:
              - name: envoy.filters.http.compressor.gzip
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
                  compressor_library:
                    name: gzip
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip}
              - name: envoy.filters.http.router
                typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
    """)


def test_ads_over_a_unix_socket_and_pipe_clusters_left_out_with_a_warning():
    cfg, warnings = load_bootstrap_text(PIPE_ADS, "<istio>")
    assert [c.name for c in cfg.clusters] == ["agent"]
    x = cfg.xds
    assert (x.unix_path, x.host, x.port, x.mode, x.cluster) == ("/tmp/XDS", "", 0, "delta", "xds-grpc")
    text = [d.message for d in warnings]
    assert any('Cluster "xds-grpc"' in m and "unix:/tmp/XDS" in m for m in text)
    assert any('Cluster "sds-grpc"' in m and "left out" in m for m in text)
    assert all(d.severity == "warning" for d in warnings)


def test_a_compressor_filter_is_skipped_with_a_warning_at_its_index():
    cfg, warnings = load_bootstrap_text(PIPE_ADS, "<istio>")
    (stats,) = cfg.listeners
    assert [f.name for f in stats.filters] == []
    hit = [d for d in warnings if "Compressor" in d.message]
    assert len(hit) == 1 and "http_filters[0]" in hit[0].message and "skipped" in hit[0].message


def test_traffic_direction_is_kept_for_the_admin():
    cfg, _ = load_bootstrap_text(PIPE_ADS, "<istio>")
    assert cfg.listeners[0].options == {"traffic_direction": "OUTBOUND"}


def test_a_route_to_a_pipe_cluster_is_an_error_naming_it():
    text = PIPE_ADS.replace("route: {cluster: agent}", "route: {cluster: sds-grpc}")
    with pytest.raises(ConfigError) as e:
        load_bootstrap_text(text, "<istio>")
    assert "sds-grpc" in str(e.value)


def test_node_metadata_that_has_no_json_form_is_an_error_at_it():
    text = textwrap.dedent("""\
        node: {id: a, cluster: b, metadata: {x: .nan}}
        dynamic_resources:
          ads_config:
            api_type: GRPC
            grpc_services: [{envoy_grpc: {cluster_name: xds}}]
          cds_config: {ads: {}}
        static_resources:
          clusters:
          - name: xds
            load_assignment:
              cluster_name: xds
              endpoints:
              - lb_endpoints:
                - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}
        """)
    msgs = _error(text)
    assert len(msgs) == 1 and msgs[0].startswith("<envoy>:1:27: X002") and "finite" in msgs[0]


def test_an_unnamed_static_listener_is_named_for_its_address():
    # Envoy accepts a static listener without a name (istioctl's dumps show Istio's
    # health listener so); mosnx names it <address>_<port>, or by its index when taken
    text = textwrap.dedent("""\
        static_resources:
          listeners:
          - address: {socket_address: {address: 127.0.0.1, port_value: 18021}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.tcp_proxy
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                  stat_prefix: t
                  cluster: app
          - name: 127.0.0.1_18022
            address: {socket_address: {address: 127.0.0.1, port_value: 18023}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.tcp_proxy
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                  stat_prefix: t
                  cluster: app
          - address: {socket_address: {address: 127.0.0.1, port_value: 18022}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.tcp_proxy
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                  stat_prefix: t
                  cluster: app
          clusters:
          - name: app
            load_assignment:
              cluster_name: app
              endpoints:
              - lb_endpoints:
                - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18080}}}
        """)
    cfg, warnings = load_bootstrap_text(text, "<envoy>")
    assert [lc.name for lc in cfg.listeners] == ["127.0.0.1_18021", "127.0.0.1_18022",
                                                 "static_resources.listeners[2]"]
    assert [lc.port for lc in cfg.listeners] == [18021, 18023, 18022]
    assert warnings == []
