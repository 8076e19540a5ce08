"""Bookinfo-shaped traffic through two mosnx sidecars, each configured over ADS with
resources shaped as istiod generates them, all on 127.0.0.1.

productpage's client -> sidecar A (outbound `0.0.0.0_9080`, RDS route `9080`, EDS
cluster `outbound|9080||reviews.default.svc.cluster.local` whose endpoint says
`tlsMode: istio`) -> mutual TLS with SPIFFE certificates from SDS (`default`,
`ROOTCA`) -> sidecar B (a virtualInbound-like listener: tls_inspector, an mTLS chain
for Istio's ALPN protocols and a plaintext one) -> the reviews application.

Checked: the request succeeds; B's RBAC (ALLOW for productpage's principal) lets
productpage in and answers another identity 403 "RBAC: access denied";
istio_requests_total on both proxies, with both workloads from the metadata exchange,
both principals from the certificates and connection_security_policy as Istio reports
it (`unknown` at the source, `mutual_tls` at the destination); Istio's default
access-log line on both. PERMISSIVE takes plaintext and mTLS on one port (the
tls_inspector picks the chain); STRICT refuses plaintext.

The CA and the workload certificates are made for the run, in memory.
"""
from __future__ import annotations

import base64
import http.client
import re
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("envoy.config.listener.v3.listener_pb2")

from google.protobuf import json_format  # noqa: E402

import mosnx.runtime.envoy.istio  # noqa: E402,F401  (the Istio types mosnx describes)
from mosnx.runtime.envoy.protos import (  # noqa: E402
    CLUSTER, ENDPOINT, LISTENER, RESOURCE_TYPES, ROUTE, SECRET, ensure_type)
from mosnx.runtime.logformat import ISTIO_FORMAT  # noqa: E402

from .conftest import HOST, free_port, wait_until  # noqa: E402
from .test_xds_e2e import Control  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pemkit import PemCA  # noqa: E402

T = "type.googleapis.com/"
HCM = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
UP_TLS = T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWN_TLS = T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
RAW = {"name": "envoy.transport_sockets.raw_buffer",
       "typed_config": {"@type": T + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}
SDS = {"ads": {}, "resource_api_version": "V3"}
TRUST = "cluster.local"
PRODUCTPAGE_SA = f"spiffe://{TRUST}/ns/default/sa/bookinfo-productpage"
REVIEWS_SA = f"spiffe://{TRUST}/ns/default/sa/bookinfo-reviews"
OTHER_SA = f"spiffe://{TRUST}/ns/default/sa/bookinfo-ratings"
SERVICE = "reviews.default.svc.cluster.local"
OUTBOUND = f"outbound|9080||{SERVICE}"
OUTBOUND_H2 = f"outbound|9080|h2|{SERVICE}"       # the same endpoint, spoken to in HTTP/2
INBOUND = "inbound|9080||"
TCP_SERVICE = "tcp-echo.default.svc.cluster.local"
OUTBOUND_TCP = f"outbound|9090||{TCP_SERVICE}"
INBOUND_TCP = "inbound|9090||"
ISTIO_ALPN = ["istio-peer-exchange", "istio"]

PRODUCTPAGE_NODE = {
    "id": "sidecar~10.0.0.1~productpage-v1-6b746f74dc-9stp6.default~default.svc.cluster.local",
    "cluster": "productpage.default",
    "metadata": {"NAME": "productpage-v1-6b746f74dc-9stp6", "NAMESPACE": "default",
                 "WORKLOAD_NAME": "productpage-v1", "CLUSTER_ID": "Kubernetes", "MESH_ID": TRUST,
                 "ISTIO_VERSION": "1.24.0", "LABELS": {"app": "productpage", "version": "v1"}}}
REVIEWS_NODE = {
    "id": "sidecar~10.0.0.2~reviews-v2-7bf8c9648f-xk2bz.default~default.svc.cluster.local",
    "cluster": "reviews.default",
    "metadata": {"NAME": "reviews-v2-7bf8c9648f-xk2bz", "NAMESPACE": "default",
                 "WORKLOAD_NAME": "reviews-v2", "CLUSTER_ID": "Kubernetes", "MESH_ID": TRUST,
                 "ISTIO_VERSION": "1.24.0", "LABELS": {"app": "reviews", "version": "v2"}}}

# the HTTP filters istiod puts on sidecar listeners (tests/e2e/test_istio_telemetry.py has their shapes)
MX_WASM = {"name": "istio.metadata_exchange", "typed_config": {
    "@type": T + "envoy.extensions.filters.http.wasm.v3.Wasm",
    "config": {"vm_config": {"runtime": "envoy.wasm.runtime.null",
                             "code": {"local": {"inline_string": "envoy.wasm.metadata_exchange"}}},
               "configuration": {"@type": T + "envoy.tcp.metadataexchange.config.MetadataExchange"}}}}
ALPN = {"name": "istio.alpn", "typed_config": {
    "@type": T + "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
    "alpn_override": [{"upstream_protocol": "HTTP10", "alpn_override": ["istio-http/1.0", "istio", "http/1.0"]},
                      {"upstream_protocol": "HTTP11", "alpn_override": ["istio-http/1.1", "istio", "http/1.1"]},
                      {"upstream_protocol": "HTTP2", "alpn_override": ["istio-h2", "istio", "h2"]}]}}
# as istiod sends it when the proxy does not know the type: a TypedStruct naming it
STATS = {"name": "istio.stats", "typed_config": {"@type": T + "udpa.type.v1.TypedStruct",
                                                 "type_url": T + "stats.PluginConfig", "value": {}}}
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": T + "envoy.extensions.filters.http.router.v3.Router"}}
AUTHN = {"name": "istio_authn", "typed_config": {"@type": T + "udpa.type.v1.TypedStruct",
                                                 "type_url": T + "io.istio.network.authn.Config"}}
MX_TCP = {"name": "istio.metadata_exchange", "typed_config": {
    "@type": T + "envoy.tcp.metadataexchange.config.MetadataExchange", "protocol": "istio-peer-exchange"}}


def _istio_types() -> None:
    """Messages of Istio's own extensions, for the control plane's side of the test:
    xds-protos lacks them, and an Any of an unknown type cannot be written. Only
    those mosnx does not describe itself are added (field numbers as in Istio's
    protos; only the fields used here). Istio's stats plugin config is not one: other
    tests read real dumps holding it as an opaque Any, which a registered type would
    change."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    pool = descriptor_pool.Default()
    wanted = {"envoy.tcp.metadataexchange.config": ("MetadataExchange", [("protocol", 1)])}
    for package, (name, fields) in wanted.items():
        try:
            pool.FindMessageTypeByName(f"{package}.{name}")
            continue
        except KeyError:
            pass
        f = descriptor_pb2.FileDescriptorProto(name=f"mosnx_test/{package}.proto", package=package,
                                               syntax="proto3")
        m = f.message_type.add(name=name)
        for field, number in fields:
            m.field.add(name=field, number=number, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, json_name=field)
        pool.Add(f)


def _ensure_types(d: Any) -> None:
    if isinstance(d, dict):
        if "@type" in d:
            ensure_type(d["@type"])
        for v in d.values():
            _ensure_types(v)
    elif isinstance(d, list):
        for v in d:
            _ensure_types(v)


def res(type_url: str, d: dict) -> Any:
    _ensure_types(d)
    return json_format.ParseDict(d, RESOURCE_TYPES[type_url]())


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def secrets(ca: PemCA, spiffe: str, cn: str) -> list[Any]:
    """The agent's two secrets: the workload certificate `default` and the `ROOTCA` trust."""
    cert, key = ca.issue(cn, uris=(spiffe,))
    return [res(SECRET, {"name": "default", "tls_certificate": {
                "certificate_chain": {"inline_bytes": _b64(cert)}, "private_key": {"inline_bytes": _b64(key)}}}),
            res(SECRET, {"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_bytes": _b64(ca.pem)}}})]


def access_log(path: Path) -> list[dict]:
    return [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": T + "envoy.extensions.access_loggers.file.v3.FileAccessLog", "path": str(path),
        "log_format": {"text_format_source": {"inline_string": ISTIO_FORMAT}}}}]


def istio_mutual(san: str, alpn: list[str] = ISTIO_ALPN) -> dict:
    """The transport socket istiod gives an outbound cluster's `tlsMode: istio` endpoints."""
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UP_TLS, "sni": f"outbound_.9080_._.{SERVICE}",
        "common_tls_context": {
            "alpn_protocols": alpn,
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
            "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": SDS}],
            "combined_validation_context": {
                "default_validation_context": {"match_subject_alt_names": [{"exact": san}]},
                "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": SDS}}}}}


def inbound_tls(alpn: list[str]) -> dict:
    """The transport socket of an inbound mTLS chain: the workload certificate, a
    client certificate required and checked against the mesh's trust domain."""
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": DOWN_TLS, "require_client_certificate": True,
        "common_tls_context": {
            "alpn_protocols": alpn,
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
            "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": SDS}],
            "combined_validation_context": {
                "default_validation_context": {"match_subject_alt_names": [{"prefix": f"spiffe://{TRUST}/"}]},
                "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": SDS}}}}}


def rbac_allow(*principals: str) -> dict:
    """An AuthorizationPolicy ALLOW for these service accounts, as istiod writes it (the
    peer's principal from istio_authn's filter state)."""
    return {"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": T + "envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"policies": {"ns[default]-policy[reviews-viewer]-rule[0]": {
            "permissions": [{"and_rules": {"rules": [{"any": True}]}}],
            "principals": [{"and_ids": {"ids": [{"or_ids": {"ids": [
                {"filter_state": {"key": "io.istio.peer_principal", "string_match": {"exact": p}}}
                for p in principals]}}]}}]}}},
        "shadow_rules_stat_prefix": "istio_dry_run_allow_"}}


def inbound_hcm(log: Path, rbac: dict | None) -> dict:
    filters = [MX_WASM] + ([rbac] if rbac else []) + [STATS, ROUTER]
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM, "stat_prefix": "inbound_0.0.0.0_9080", "access_log": access_log(log),
        "route_config": {"name": INBOUND, "validate_clusters": False, "virtual_hosts": [
            {"name": "inbound|http|9080", "domains": ["*"], "routes": [
                {"name": "default", "match": {"prefix": "/"},
                 "route": {"cluster": INBOUND, "timeout": "0s"}}]}]},
        "http_filters": filters}}


def inbound_tcp(log: Path) -> list[dict]:
    """The network filters of an inbound TCP chain: Istio's TCP metrics, then tcp_proxy."""
    return [AUTHN, MX_TCP, STATS, {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": TCP_PROXY, "stat_prefix": INBOUND_TCP, "cluster": INBOUND_TCP, "access_log": access_log(log)}}]


def virtual_inbound(port: int, log: Path, mode: str, rbac: dict | None = None) -> Any:
    """B's inbound listener, shaped as istiod's virtualInbound: a tls_inspector picks by
    the client's ALPN the HTTP mTLS chain (istio.alpn's `istio-http/*`) or the TCP one
    (`istio-peer-exchange`, `istio`); PERMISSIVE adds the plaintext chain."""
    chains: list[dict] = [
        {"name": "0.0.0.0_9080",
         "filter_chain_match": {"transport_protocol": "tls", "application_protocols": [
             "istio-http/1.0", "istio-http/1.1", "istio-h2"]},
         "filters": [AUTHN, MX_TCP, inbound_hcm(log, rbac)],
         "transport_socket": inbound_tls(["h2", "http/1.1"])},
        {"name": "0.0.0.0_9080",
         "filter_chain_match": {"transport_protocol": "tls", "application_protocols": ISTIO_ALPN},
         "filters": inbound_tcp(log),
         "transport_socket": inbound_tls(["istio-peer-exchange", "h2", "http/1.1"])}]
    if mode == "PERMISSIVE":
        chains.append({"name": "0.0.0.0_9080", "filter_chain_match": {"transport_protocol": "raw_buffer"},
                       "filters": [AUTHN, MX_TCP, inbound_hcm(log, rbac)]})
    return res(LISTENER, {
        "name": "virtualInbound", "traffic_direction": "INBOUND",
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": T + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
        "listener_filters_timeout": "5s", "continue_on_listener_filters_timeout": True,
        "filter_chains": chains})


def outbound_listener(port: int, log: Path) -> Any:
    return res(LISTENER, {
        "name": "0.0.0.0_9080", "traffic_direction": "OUTBOUND",
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": HCM, "stat_prefix": "outbound_0.0.0.0_9080", "access_log": access_log(log),
            "rds": {"route_config_name": "9080", "config_source": SDS},
            "http_filters": [MX_WASM, ALPN, STATS, ROUTER]}}]}]})


def outbound_tcp_listener(port: int) -> Any:
    """An outbound TCP service as istiod writes it: istio.stats, then tcp_proxy."""
    return res(LISTENER, {
        "name": "0.0.0.0_9090", "traffic_direction": "OUTBOUND",
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "filter_chains": [{"filters": [STATS, {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
            "@type": TCP_PROXY, "stat_prefix": OUTBOUND_TCP, "cluster": OUTBOUND_TCP}}]}]})


def outbound_route() -> Any:
    return res(ROUTE, {"name": "9080", "validate_clusters": False, "virtual_hosts": [
        {"name": f"{SERVICE}:9080", "domains": [f"{SERVICE}", "reviews", "reviews:9080", f"{SERVICE}:9080"],
         "routes": [{"name": "h2", "match": {"prefix": "/h2/"}, "route": {"cluster": OUTBOUND_H2, "timeout": "0s"}},
                    {"name": "default", "match": {"prefix": "/"},
                     "route": {"cluster": OUTBOUND, "timeout": "0s"}}]}]})


def outbound_cluster(san: str = REVIEWS_SA, name: str = OUTBOUND, h2: bool = False) -> Any:
    """An outbound cluster: Istio's mTLS for `tlsMode: istio` endpoints, plaintext for
    the others, and the TCP metadata exchange as its upstream network filter."""
    more: dict = {"typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}} if h2 else {}
    return res(CLUSTER, {
        "name": name, "type": "EDS", "connect_timeout": "2s", **more,
        "eds_cluster_config": {"service_name": name, "eds_config": SDS},
        "filters": [MX_TCP],
        "transport_socket_matches": [
            {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": istio_mutual(san)},
            {"name": "tlsMode-disabled", "match": {}, "transport_socket": RAW}]})


def outbound_endpoints(port: int, tls_mode: str = "istio", name: str = OUTBOUND) -> Any:
    return res(ENDPOINT, {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
        "endpoint": {"address": {"socket_address": {"address": HOST, "port_value": port}}},
        "metadata": {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": tls_mode},
                                         "istio": {"workload": "reviews-v2;default;reviews;v2;Kubernetes"}}}}]}]})


def inbound_cluster(app_port: int, name: str = INBOUND) -> Any:
    return res(CLUSTER, {
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": app_port}}}}]}]}})


def _xds_config(control: Control, node: dict) -> dict:
    return {"listeners": [{"name": "static", "address": f"{HOST}:{free_port()}", "route": {"cluster": "unused"}}],
            "clusters": [{"name": "unused", "endpoints": [f"{HOST}:{free_port()}"]}],
            "xds": {"address": f"{HOST}:{control.port}", "node": node, "initial_fetch_timeout": "20s"}}


def series(text: str, metric: str) -> list[dict[str, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line[len(metric):line.rindex("}") + 1]))
            labels["value"] = line.rsplit(" ", 1)[1]
            out.append(labels)
    return out


def get(port: int, path: str, host: str = "reviews:9080",
        context: ssl.SSLContext | None = None) -> tuple[int, bytes, dict[str, str]]:
    conn = (http.client.HTTPSConnection(HOST, port, timeout=10, context=context) if context is not None
            else http.client.HTTPConnection(HOST, port, timeout=10))
    try:
        conn.request("GET", path, headers={"host": host})
        r = conn.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    except OSError:
        return 0, b"", {}
    finally:
        conn.close()


def mesh_client(ca: PemCA, spiffe: str, tmp: Path, alpn: list[str]) -> ssl.SSLContext:
    """A client that presents a workload certificate straight to B's inbound port."""
    cert, key = ca.issue(spiffe.rsplit("/", 1)[-1], uris=(spiffe,))
    name = spiffe.rsplit("/", 1)[-1]
    (tmp / f"{name}.crt").write_bytes(cert)
    (tmp / f"{name}.key").write_bytes(key)
    ctx = ssl.create_default_context(cadata=ca.pem.decode())
    ctx.check_hostname = False
    ctx.load_cert_chain(tmp / f"{name}.crt", tmp / f"{name}.key")
    ctx.set_alpn_protocols(alpn)
    return ctx


_istio_types()


def framed_echo_server() -> socket.socket:
    """A TCP application that reads a 4-byte length and that many bytes, sends them
    back and closes (it closes first: over TLS a client's half-close does not travel)."""
    import struct
    import threading
    lsock = socket.socket()
    lsock.bind((HOST, 0))
    lsock.listen(8)

    def serve(s: socket.socket) -> None:
        with s:
            buf = b""
            while len(buf) < 4 or len(buf) < 4 + struct.unpack_from("!I", buf)[0]:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            s.sendall(buf[4:])

    def accept() -> None:
        while True:
            try:
                s, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(s,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return lsock


class Mesh:
    """The two sidecars, their control planes, the application and the logs."""

    def __init__(self, mosnx, upstream, tmp: Path, mode: str = "PERMISSIVE", rbac: bool = True) -> None:
        self.ca = PemCA("cluster.local root")
        self.tmp = tmp
        self.app = upstream()
        self.echo = framed_echo_server()
        self.port_tcp = free_port()
        self.cp_a, self.cp_b = Control(), Control()
        self.port_a, self.port_b = free_port(), free_port()
        self.log_a, self.log_b = tmp / "productpage.log", tmp / "reviews.log"
        b = self.cp_b
        b.push(SECRET, "1", secrets(self.ca, REVIEWS_SA, "reviews"))
        b.push(CLUSTER, "1", [inbound_cluster(self.app.port),
                              inbound_cluster(self.echo.getsockname()[1], INBOUND_TCP)])
        b.push(LISTENER, "1", [virtual_inbound(self.port_b, self.log_b, mode,
                                               rbac_allow(PRODUCTPAGE_SA) if rbac else None)])
        a = self.cp_a
        a.push(SECRET, "1", secrets(self.ca, PRODUCTPAGE_SA, "productpage"))
        a.push(CLUSTER, "1", [outbound_cluster(), outbound_cluster(name=OUTBOUND_H2, h2=True),
                              outbound_cluster(name=OUTBOUND_TCP)])
        a.push(ENDPOINT, "1", [outbound_endpoints(self.port_b), outbound_endpoints(self.port_b, name=OUTBOUND_H2),
                               outbound_endpoints(self.port_b, name=OUTBOUND_TCP)])
        a.push(ROUTE, "1", [outbound_route()])
        a.push(LISTENER, "1", [outbound_listener(self.port_a, self.log_a), outbound_tcp_listener(self.port_tcp)])
        self.b = mosnx(config=_xds_config(b, REVIEWS_NODE))
        self.a = mosnx(config=_xds_config(a, PRODUCTPAGE_NODE))
        last: list[Any] = []

        def serving() -> bool:
            last[:] = [get(self.port_a, "/reviews/0")]
            return last[0][0] == 200
        try:
            wait_until(serving, what="the mesh serving", timeout=30)
        except TimeoutError:
            raise AssertionError(f"the mesh does not serve: last answer {last}; NACKs: "
                                 f"{[r.error for r in a.nacks(LISTENER) + a.nacks(CLUSTER) + b.nacks(LISTENER)]}; "
                                 f"listeners: A {self.a.admin('/listeners')[2]!r}, B {self.b.admin('/listeners')[2]!r}")

    def stop(self) -> None:
        self.echo.close()
        self.cp_a.stop()
        self.cp_b.stop()

    def prometheus(self, proxy) -> str:
        return proxy.admin("/stats/prometheus")[2].decode()


@pytest.fixture
def mesh_factory(mosnx, upstream, tmp_path):
    made: list[Mesh] = []

    def make(**kw) -> Mesh:
        m = Mesh(mosnx, upstream, tmp_path, **kw)
        made.append(m)
        return m
    yield make
    for m in made:
        m.stop()


def _log_lines(path: Path, need: int) -> list[str]:
    wait_until(lambda: path.exists() and len(path.read_text().splitlines()) >= need,
               what=f"{need} access-log lines in {path.name}", timeout=20)
    return path.read_text().splitlines()


ISTIO_LINE = re.compile(
    r'^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET (?P<path>\S+) (?P<protocol>HTTP/[12](?:\.[01])?)" '
    r'(?P<code>\d{3}) (?P<flags>\S+) '
    r'(?P<details>\S+) (?P<term>\S+) "(?P<tfr>[^"]*)" (?P<rx>\d+) (?P<tx>\d+) (?P<dur>\d+) \S+ '
    r'"(?P<xff>[^"]*)" "(?P<ua>[^"]*)" "(?P<rid>[^"]*)" "(?P<authority>[^"]*)" "(?P<uphost>[^"]*)" '
    r'(?P<cluster>\S+) (?P<uplocal>\S+) (?P<local>\S+) (?P<remote>\S+) (?P<sni>\S+) (?P<route>\S+)$')


def test_bookinfo_through_two_sidecars_over_mtls(mesh_factory, tmp_path):
    m = mesh_factory()
    for i in range(3):
        status, body, headers = get(m.port_a, f"/reviews/{i}")
        assert status == 200, body
        assert not any(k.startswith("x-envoy-peer-metadata") for k in headers)
    # the application got every request (4: the wait's one too), none with the exchange's headers
    assert len(m.app.requests) == 4
    assert not any(k.startswith("x-envoy-peer-metadata") for r in m.app.requests for k, _ in r.headers)

    # RBAC on B: another mesh identity is refused, productpage's (through A) is let in
    other = mesh_client(m.ca, OTHER_SA, tmp_path, ["istio-http/1.1", "istio", "http/1.1"])
    status, body, headers = get(m.port_b, "/reviews/9", context=other)
    assert (status, body) == (403, b"RBAC: access denied")
    assert len(m.app.requests) == 4
    as_productpage = mesh_client(m.ca, PRODUCTPAGE_SA, tmp_path, ["istio-http/1.1", "istio", "http/1.1"])
    assert get(m.port_b, "/reviews/8", context=as_productpage)[0] == 200
    denials = {k: v for k, v in m.b.stats().items() if k.endswith("rbac.denied")}
    assert sum(denials.values()) == 1, denials

    # the source's series: productpage's side from its node and certificate, reviews' from
    # the exchange and from the certificate the upstream presented
    [s] = series(m.prometheus(m.a), "istio_requests_total")
    assert (s["reporter"], s["source_workload"], s["source_app"], s["destination_workload"],
            s["destination_app"], s["destination_version"]) == \
        ("source", "productpage-v1", "productpage", "reviews-v2", "reviews", "v2")
    assert (s["source_principal"], s["destination_principal"]) == (PRODUCTPAGE_SA, REVIEWS_SA)
    assert (s["destination_service"], s["destination_service_name"], s["destination_service_namespace"]) == \
        (SERVICE, "reviews", "default")
    assert (s["response_code"], s["connection_security_policy"], s["value"]) == ("200", "unknown", "4")

    dst = {(d["source_workload"], d["response_code"]): d
           for d in series(m.prometheus(m.b), "istio_requests_total")}
    d = dst[("productpage-v1", "200")]
    assert (d["reporter"], d["source_app"], d["destination_workload"], d["destination_app"]) == \
        ("destination", "productpage", "reviews-v2", "reviews")
    assert (d["source_principal"], d["destination_principal"]) == (PRODUCTPAGE_SA, REVIEWS_SA)
    assert (d["connection_security_policy"], d["value"]) == ("mutual_tls", "4")
    # the direct clients sent no metadata: unknown workloads, yet their principals are known
    denied = dst[("unknown", "403")]
    assert (denied["source_principal"], denied["destination_principal"], denied["value"]) == \
        (OTHER_SA, REVIEWS_SA, "1")
    assert denied["connection_security_policy"] == "mutual_tls"
    assert dst[("unknown", "200")]["source_principal"] == PRODUCTPAGE_SA

    # Istio's default access-log line on both
    a_lines = _log_lines(m.log_a, 4)
    b_lines = _log_lines(m.log_b, 6)
    for line in a_lines + b_lines:
        assert ISTIO_LINE.match(line), line
    a_last = ISTIO_LINE.match(a_lines[-1])
    assert a_last is not None
    assert (a_last["path"], a_last["code"], a_last["cluster"], a_last["uphost"], a_last["authority"]) == \
        ("/reviews/2", "200", OUTBOUND, f"{HOST}:{m.port_b}", "reviews:9080")
    by_path = {mm["path"]: mm for mm in map(ISTIO_LINE.match, b_lines) if mm is not None}
    assert (by_path["/reviews/2"]["code"], by_path["/reviews/2"]["cluster"]) == ("200", INBOUND)
    assert (by_path["/reviews/9"]["code"], by_path["/reviews/9"]["details"]) == ("403", "rbac_access_denied_matched_policy[none]")
    assert not m.cp_b.nacks(LISTENER) and not m.cp_a.nacks(CLUSTER)
    # A's listeners may be NACKed once while the TCP service's EDS cluster still waits for
    # its endpoints (its tcp_proxy names a cluster not yet built); they serve once it has them
    assert all("unknown cluster" in r.error.message for r in m.cp_a.nacks(LISTENER))


def _plain_get(port: int) -> int:
    return get(port, "/plain", host="reviews")[0]


def test_permissive_takes_plaintext_and_mtls_on_one_port(mesh_factory):
    m = mesh_factory(mode="PERMISSIVE", rbac=False)
    # a client outside the mesh speaks plaintext to B's inbound port: the raw_buffer chain
    assert _plain_get(m.port_b) == 200
    # and A's mTLS goes on through the same port: the tls_inspector picked the TLS chain
    assert get(m.port_a, "/reviews/1")[0] == 200
    policies = {(d["source_workload"], d["connection_security_policy"], d["source_principal"])
                for d in series(m.prometheus(m.b), "istio_requests_total")}
    assert policies == {("unknown", "none", "unknown"), ("productpage-v1", "mutual_tls", PRODUCTPAGE_SA)}


def test_strict_refuses_plaintext(mesh_factory):
    m = mesh_factory(mode="STRICT", rbac=False)
    # no chain takes plaintext: the connection is closed, the application sees nothing of it
    before = len(m.app.requests)
    assert _plain_get(m.port_b) == 0
    with socket.create_connection((HOST, m.port_b), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n")
        assert s.recv(100) == b""
    assert len(m.app.requests) == before
    # mTLS still passes
    assert get(m.port_a, "/reviews/1")[0] == 200
    wait_until(lambda: m.b.stats().get("listener.virtualInbound.no_filter_chain_match", 0) >= 2
               or any(k.endswith("no_filter_chain_match") and v >= 2 for k, v in m.b.stats().items()),
               what="the refused connections counted", timeout=10)


def echo_once(port: int, payload: bytes) -> bytes:
    """Send `payload` through the TCP service and read back all it answers, to its close."""
    import struct
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(struct.pack("!I", len(payload)) + payload)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                return got
            got += d


def _closed(proxy, n: int) -> list[dict[str, str]]:
    def ready() -> list[dict[str, str]] | None:
        got = series(proxy.admin("/stats/prometheus")[2].decode(), "istio_tcp_connections_closed_total")
        return got if sum(int(float(g["value"])) for g in got) >= n else None
    try:
        return wait_until(ready, what=f"{n} closed TCP connections counted", timeout=20)
    except TimeoutError:
        text = proxy.admin("/stats/prometheus")[2].decode()
        raise AssertionError(f"{n} closed TCP connections not counted: "
                             f"{[ln for ln in text.splitlines() if 'istio_tcp' in ln and not ln.startswith('#')]}")


def test_tcp_metadata_exchange_between_two_sidecars(mesh_factory, tmp_path):
    """A TCP service through both sidecars: their TLS negotiates istio-peer-exchange, each
    writes its preamble first and strips the other's, so the application sees only the
    client's bytes and both sides' TCP metrics name both workloads."""
    m = mesh_factory(rbac=False)
    for payload in (b"hello", b"x" * 70000):
        assert echo_once(m.port_tcp, payload) == payload
    [src] = _closed(m.a, 2)
    assert (src["reporter"], src["source_workload"], src["destination_workload"], src["destination_app"],
            src["destination_version"]) == ("source", "productpage-v1", "reviews-v2", "reviews", "v2")
    assert (src["source_principal"], src["destination_principal"]) == (PRODUCTPAGE_SA, REVIEWS_SA)
    assert (src["destination_service"], src["request_protocol"], src["connection_security_policy"]) == \
        (TCP_SERVICE, "tcp", "unknown")
    opened = series(m.prometheus(m.a), "istio_tcp_connections_opened_total")
    assert [o["destination_workload"] for o in opened] == ["reviews-v2"] and opened[0]["value"] == "2"
    [dst] = _closed(m.b, 2)
    assert (dst["reporter"], dst["source_workload"], dst["source_app"], dst["destination_workload"]) == \
        ("destination", "productpage-v1", "productpage", "reviews-v2")
    assert (dst["source_principal"], dst["destination_principal"], dst["connection_security_policy"]) == \
        (PRODUCTPAGE_SA, REVIEWS_SA, "mutual_tls")
    # the application got exactly the client's bytes: both ends took their peer's preamble off
    text = m.prometheus(m.b)
    assert series(text, "istio_tcp_received_bytes_total")[0]["value"] != "0"

    # a client that negotiates istio-peer-exchange but sends no preamble: its bytes pass
    # on untouched (it reads B's preamble first), and the peer stays unknown
    from mosnx.runtime.filters.tcp_metadata_exchange import HEADER, MAGIC
    plain = mesh_client(m.ca, OTHER_SA, tmp_path, ISTIO_ALPN)
    with socket.create_connection((HOST, m.port_b), timeout=10) as raw, \
            plain.wrap_socket(raw, server_hostname="reviews") as s:
        assert s.selected_alpn_protocol() == "istio-peer-exchange"
        s.sendall(b"\x00\x00\x00\x10no preamble here")
        got = b""
        while len(got) < HEADER.size:
            got += s.recv(65536)
        magic, size = HEADER.unpack_from(got)
        assert magic == MAGIC
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        assert got[HEADER.size + size:] == b"no preamble here"
    closed = {d["source_workload"]: d for d in _closed(m.b, 3)}
    assert closed["unknown"]["source_principal"] == OTHER_SA


def test_istio_alpn_takes_an_http2_cluster_to_the_peers_http_chain_in_h2(mesh_factory):
    """An HTTP/2 cluster to an Istio peer offers istio-h2, istio, h2 (istio.alpn): the
    peer's tls_inspector picks its HTTP chain and the two sidecars speak HTTP/2."""
    m = mesh_factory(rbac=False)
    status, body, _ = get(m.port_a, "/h2/reviews/1")
    assert status == 200, body
    lines = {mm["path"]: mm for mm in map(ISTIO_LINE.match, _log_lines(m.log_b, 2)) if mm is not None}
    assert lines["/h2/reviews/1"]["protocol"] == "HTTP/2"
    assert lines["/reviews/0"]["protocol"] == "HTTP/1.1"
    dst = series(m.prometheus(m.b), "istio_requests_total")
    assert sum(int(d["value"]) for d in dst if d["source_workload"] == "productpage-v1") == 2
