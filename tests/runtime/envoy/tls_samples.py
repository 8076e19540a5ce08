"""Envoy TLS resources for the tests of runtime/envoy/tls.py and secrets.py: clusters
with UpstreamTlsContexts (inline, and Istio's ISTIO_MUTUAL by SDS), listeners with
DownstreamTlsContexts, and Secrets, with certificates from a PemCA."""
from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e"))
from pemkit import PemCA  # noqa: E402

from mosnx.runtime.config import load_config_text  # noqa: E402

UP = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWN = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
RAW = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
SPIFFE = "spiffe://cluster.local/ns/default/sa/reviews"
SDS_ADS = {"ads": {}, "resource_api_version": "V3"}


def _ep(port: int, match: dict | None = None) -> dict:
    e: dict = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
    if match is not None:
        e["metadata"] = {"filter_metadata": {"envoy.transport_socket_match": match}}
    return e


def _cluster(name: str = "reviews", **extra) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [_ep(9080)]}]}, **extra}


def _upstream(ca: PemCA, **ctx) -> dict:
    cert, key = ca.issue("client", uris=("spiffe://cluster.local/ns/default/sa/proxy",))
    common = {
        "tls_certificates": [{"certificate_chain": {"inline_bytes": _b64(cert)},
                              "private_key": {"inline_string": key.decode()}}],
        "validation_context": {"trusted_ca": {"inline_bytes": _b64(ca.pem)},
                               "match_typed_subject_alt_names": [
                                   {"san_type": "URI", "matcher": {"exact": SPIFFE}},
                                   {"san_type": "DNS", "matcher": {"suffix": ".svc.cluster.local"}},
                                   {"san_type": "URI", "matcher": {"safe_regex": {"regex": "spiffe://.*/sa/r.*"}}}]},
        "alpn_protocols": ["istio-peer-exchange", "istio"],
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
    }
    common.update(ctx.pop("common", {}))
    return {"name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": UP, "sni": "outbound_.9080_._.reviews.default.svc.cluster.local",
                             "common_tls_context": common, **ctx}}


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _listener(ts: dict, filt: str = "hcm") -> dict:
    if filt == "hcm":
        f = {"name": "hcm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "in", "route_config": {"virtual_hosts": [{"name": "a", "domains": ["*"], "routes": [
                {"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
            "http_filters": [{"name": "router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}
    else:
        f = {"name": "tcp", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "t", "cluster": "x"}}
    return {"name": "in", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15006}},
            "filter_chains": [{"filters": [f], "transport_socket": ts}]}


def _downstream(ca: PemCA, **ctx) -> dict:
    cert, key = ca.issue("server", dns=("reviews.default.svc.cluster.local",), uris=(SPIFFE,))
    common = {"tls_certificates": [{"certificate_chain": {"inline_bytes": _b64(cert)},
                                    "private_key": {"inline_bytes": _b64(key)}}],
              "validation_context": {"trusted_ca": {"inline_bytes": _b64(ca.pem)},
                                     "match_typed_subject_alt_names": [
                                         {"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/"}}]},
              "alpn_protocols": ["h2", "http/1.1"]}
    common.update(ctx.pop("common", {}))
    return {"name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": DOWN, "common_tls_context": common, **ctx}}


def _secret_cert(ca: PemCA, name: str = "default", serial: int | None = None) -> dict:
    cert, key = ca.issue("workload", uris=(SPIFFE,), serial=serial)
    return {"name": name, "tls_certificate": {"certificate_chain": {"inline_bytes": _b64(cert)},
                                              "private_key": {"inline_bytes": _b64(key)}}}


def _istio_upstream() -> dict:
    """Istio's ISTIO_MUTUAL: the certificate by SDS, a combined validation context
    whose CA is the ROOTCA secret and whose SAN matchers are inline."""
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UP, "sni": "outbound_.9080_._.reviews.default.svc.cluster.local",
        "common_tls_context": {
            "alpn_protocols": ["istio-peer-exchange", "istio"],
            "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": SDS_ADS}],
            "combined_validation_context": {
                "default_validation_context": {"match_typed_subject_alt_names": [
                    {"san_type": "URI", "matcher": {"exact": SPIFFE}}]},
                "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": SDS_ADS}}}}}


def _base():
    return load_config_text("clusters:\n- {name: web, endpoints: [127.0.0.1:9100]}\n", "<base>")
