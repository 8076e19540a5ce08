"""runtime/config/protocols.py: listener TLS, HTTP/2 and TCP options and cluster TLS and
HTTP/2 caps load from mosnx.yaml with Envoy's defaults, and bad values are ConfigErrors."""
from __future__ import annotations

import pytest

from mosnx.runtime.config import load_config_text
from mosnx.runtime.diagnostics import ConfigError


CONFIG = """
listeners:
  - name: edge
    address: 127.0.0.1:8443
    route: {cluster: api}
    tls: {cert: %(cert)s, key: %(key)s, alpn: [h2], client_ca: %(cert)s, require_client_cert: true}
    http2: {max_concurrent_streams: 50, initial_stream_window_size: 1MiB}
  - name: l4
    address: 127.0.0.1:9000
    protocol: tcp
    route: {cluster: api}
    tcp: {idle_timeout: 30s, original_dst: true, sni_routes: [{server_names: [a.test], cluster: grpc}]}
clusters:
  - name: api
    endpoints: [127.0.0.1:9001]
  - name: grpc
    protocol: http2
    max_concurrent_streams: 10
    endpoints: [127.0.0.1:9002]
    tls: {ca: %(cert)s, sni: grpc.internal}
"""


def test_protocol_settings_load(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    cfg = load_config_text(CONFIG % {"cert": cert, "key": cert}, str(tmp_path / "m.yaml"))
    edge, l4 = cfg.listeners
    tls = edge.options["tls"]
    assert tls.alpn == ("h2",) and tls.require_client_cert and tls.client_ca == str(cert)
    assert edge.options["http2"].max_concurrent_streams == 50
    assert edge.options["http2"].initial_stream_window_size == 1024 * 1024
    tcp = l4.options["tcp"]
    assert tcp.idle_timeout == 30 and tcp.original_dst and tcp.sni_routes[0].cluster == "grpc"
    grpc = cfg.clusters[1]
    assert grpc.protocol == "http2" and grpc.options["max_concurrent_streams"] == 10
    assert grpc.options["tls"].sni == "grpc.internal"


def test_http2_limits_load_with_envoy_defaults(tmp_path):
    text = ("listeners:\n  - name: l\n    address: 127.0.0.1:1\n    route: {cluster: api}\n"
            "    http2: {max_headers_count: 50, premature_reset_total_stream_count: 20,\n"
            "            premature_reset_min_stream_lifetime: 2s, max_outbound_control_frames: 10}\n"
            "  - name: m\n    address: 127.0.0.1:3\n    route: {cluster: api}\n"
            "clusters:\n  - name: api\n    endpoints: [127.0.0.1:2]\n")
    a, b = load_config_text(text, str(tmp_path / "m.yaml")).listeners
    h = a.options["http2"]
    assert (h.max_headers_count, h.premature_reset_total_stream_count) == (50, 20)
    assert (h.premature_reset_min_stream_lifetime, h.max_outbound_control_frames) == (2.0, 10)
    assert h.max_outbound_frames == 10000 and h.max_consecutive_inbound_frames_with_empty_payload == 1
    assert "http2" not in b.options


@pytest.mark.parametrize("bad,message", [
    ("http2: {max_headers_count: 0}", "below the minimum 1"),
    ("http2: {max_outbound_frames: lots}", "whole number"),
    ("tls: {cert: /nonexistent.pem, key: /nonexistent.key}", "no such file"),
    ("tls: {cert: %(cert)s, key: %(cert)s, require_client_cert: true}", "client_ca"),
    ("tls: {cert: %(cert)s, key: %(cert)s, alpn: [h3]}", "unknown value"),
    ("tcp: {sni_routes: [{server_names: ['a.*'], cluster: api}]}", "wildcard"),
    ("tcp: {sni_routes: [{server_names: [a.test], cluster: nope}]}", "unknown cluster"),
])
def test_protocol_settings_errors(tmp_path, bad, message):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    text = ("listeners:\n  - name: l\n    address: 127.0.0.1:1\n    route: {cluster: api}\n    "
            + (bad % {"cert": cert}) + "\nclusters:\n  - name: api\n    endpoints: [127.0.0.1:2]\n")
    with pytest.raises(ConfigError) as e:
        load_config_text(text, str(tmp_path / "m.yaml"))
    assert message in str(e.value) or any(message in str(d) for d in e.value.diagnostics)
