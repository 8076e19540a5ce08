"""Envoy Cluster (+ ClusterLoadAssignment) -> runtime.model.ClusterConfig.

STATIC and STRICT_DNS take their endpoints from load_assignment; EDS from the
ClusterLoadAssignment named by eds_cluster_config.service_name (or the cluster's
name), which the caller passes in (None: not received yet, no endpoints). Envoy's
defaults are kept where they differ from mosnx's (connect_timeout 5 s), so the
same file behaves the same.

TLS to the endpoints (tls.py): `transport_socket` becomes options["tls"];
`transport_socket_matches` becomes options["tls_matches"] ((criteria, TLS or None)
in order), and each endpoint's metadata picks one of them here, once, as
Endpoint.tls_match. A secret the sockets name that has not come yet raises Waiting.

ORIGINAL_DST (with lb_policy CLUSTER_PROVIDED, as Envoy insists) has no endpoints:
options["original_dst"] says how proxy.upstream.original_dst finds the host (header,
port override, cleanup_interval). upstream_bind_config's source_address becomes
options["source_address"], the local address of every upstream connection.
`filters` (upstream network filters) may hold Istio's TCP metadata exchange only:
options["istio_mx"], the ALPN protocol it runs on (runtime.envoy.istio.cluster_filters).
"""
from __future__ import annotations

import ipaddress
from typing import Any

from ..config.cluster import GrpcHealthCheck, HealthCheck, HttpHealthCheck, OutlierDetection
from ..model import CircuitBreakers, ClusterConfig, Endpoint
from .common import seconds, socket_address
from . import istio
from .findings import Findings
from .protos import HTTP_PROTOCOL_OPTIONS, http_protocol_options_pb2
from .secrets import SecretStore
from .tls import Matches, match_index, socket_matches, upstream_tls

LB = {0: "round_robin", 1: "least_request", 3: "random", 2: "ring_hash", 5: "maglev", 6: "cluster_provided"}
TYPES = {0: "static", 1: "strict_dns", 2: "logical_dns", 3: "eds", 4: "original_dst"}
DNS_FAMILY = {0: "auto", 1: "v4_only", 2: "v6_only", 3: "v4_preferred", 4: "all"}

SUPPORTED = frozenset({"name", "type", "connect_timeout", "lb_policy", "load_assignment", "eds_cluster_config",
                       "circuit_breakers", "outlier_detection", "health_checks", "typed_extension_protocol_options",
                       "http2_protocol_options", "dns_refresh_rate", "dns_lookup_family", "common_lb_config",
                       "alt_stat_name", "per_connection_buffer_limit_bytes", "max_requests_per_connection",
                       "transport_socket", "transport_socket_matches", "original_dst_lb_config", "cleanup_interval",
                       "upstream_bind_config", "filters"})


def eds_name(c: Any) -> str:
    """The ClusterLoadAssignment an EDS cluster asks for."""
    return c.eds_cluster_config.service_name or c.name


def is_eds(c: Any) -> bool:
    return c.WhichOneof("cluster_discovery_type") == "type" and c.type == 3


def locality_name(loc: Any) -> str:
    """An envoy.config.core.v3.Locality as one name: region/zone/sub_zone ("" for none)."""
    return f"{loc.region}/{loc.zone}/{loc.sub_zone}" if loc.region or loc.zone or loc.sub_zone else ""


def endpoints_of(cla: Any, f: Findings, matches: Matches = ()) -> tuple[Endpoint, ...]:
    """`matches`: the cluster's options["tls_matches"], which each endpoint's metadata picks from."""
    out: list[Endpoint] = []
    for i, loc in enumerate(cla.endpoints):
        fl = f.at("endpoints").at(i)
        fl.only(loc, {"lb_endpoints", "priority", "locality", "load_balancing_weight"})
        locality = locality_name(loc.locality)
        locality_weight = loc.load_balancing_weight.value if loc.HasField("load_balancing_weight") else 0
        for j, lbe in enumerate(loc.lb_endpoints):
            fe = fl.at("lb_endpoints").at(j)
            if lbe.WhichOneof("host_identifier") != "endpoint":
                fe.reject("only endpoint: is supported (no named endpoints)")
            host, port = socket_address(lbe.endpoint.address, fe.at("endpoint").at("address"))
            if not 0 < port < 65536:
                fe.reject(f"port {port} is outside 1..65535", "endpoint")
            if lbe.health_status in (2, 3, 4, 5):      # UNHEALTHY, DRAINING, TIMEOUT, DEGRADED
                continue
            w = lbe.load_balancing_weight.value if lbe.HasField("load_balancing_weight") else 1
            out.append(Endpoint(host, port, max(1, w), match_index(matches, lbe) if matches else None,
                                loc.priority, locality, locality_weight))
    return tuple(out)


def translate_cluster(c: Any, f: Findings, assignment: Any | None = None,
                      secrets: SecretStore | None = None) -> ClusterConfig:
    """`assignment`: the ClusterLoadAssignment of an EDS cluster, when there is one;
    `secrets`: what SDS references in its transport sockets find."""
    if not c.name:
        f.reject("a cluster needs a name", "name")
    f.only(c, SUPPORTED)
    kind = c.WhichOneof("cluster_discovery_type")
    if kind == "cluster_type":
        f.reject("custom cluster types are not supported", "cluster_type")
    t = TYPES.get(c.type, "static")
    options: dict[str, Any] = {}
    if (t == "original_dst") != (c.lb_policy == 6):
        f.reject("an ORIGINAL_DST cluster takes lb_policy CLUSTER_PROVIDED, and only it does", "lb_policy")
    if t == "original_dst":
        options["original_dst"] = _original_dst(c, f)
    elif c.HasField("original_dst_lb_config") or c.HasField("cleanup_interval"):
        f.warn("only an ORIGINAL_DST cluster uses this; ignored",
               "original_dst_lb_config" if c.HasField("original_dst_lb_config") else "cleanup_interval")
    if c.HasField("upstream_bind_config"):
        options["source_address"] = _bind(c.upstream_bind_config, f.at("upstream_bind_config"))
    if c.filters:       # upstream network filters: Istio's TCP metadata exchange only
        options.update(istio.cluster_filters(c.filters, f))
    if c.HasField("transport_socket"):
        tls = upstream_tls(c.transport_socket, f.at("transport_socket"), secrets, c.name)
        if tls is not None:
            options["tls"] = tls
    matches = socket_matches(c, f, secrets)
    if matches:
        options["tls_matches"] = matches
    if t in ("strict_dns", "logical_dns"):
        if t == "logical_dns":
            f.warn("LOGICAL_DNS is served as STRICT_DNS (every resolved address is an endpoint)", "type")
        options["type"] = "strict_dns"
        if c.HasField("dns_refresh_rate"):
            options["dns_refresh_rate"] = seconds(c.dns_refresh_rate)
        options["dns_lookup_family"] = DNS_FAMILY.get(c.dns_lookup_family, "auto")
    if t == "eds":
        endpoints = endpoints_of(assignment, f.at("load_assignment"), matches) if assignment is not None else ()
    elif t == "original_dst":
        if c.HasField("load_assignment") and c.load_assignment.endpoints:
            f.warn("an ORIGINAL_DST cluster's hosts are its connections' destinations; endpoints ignored",
                   "load_assignment")
        endpoints = ()
    else:
        endpoints = endpoints_of(c.load_assignment, f.at("load_assignment"), matches)
    lb = LB.get(c.lb_policy)
    if lb is None:
        f.reject("this lb_policy is not supported (ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV are; "
                 "CLUSTER_PROVIDED with ORIGINAL_DST)",
                 "lb_policy")
    kw: dict[str, Any] = {"lb": lb}
    kw["connect_timeout"] = seconds(c.connect_timeout) if c.HasField("connect_timeout") else 5.0
    if kw["connect_timeout"] <= 0:
        f.reject("connect_timeout must be longer than 0", "connect_timeout")
    if c.HasField("max_requests_per_connection"):
        kw["max_requests_per_connection"] = c.max_requests_per_connection.value
    if _http2(c, f):
        kw["protocol"] = "http2"
    if c.HasField("circuit_breakers"):
        kw["circuit_breakers"] = _breakers(c.circuit_breakers, f.at("circuit_breakers"))
    if c.HasField("outlier_detection"):
        options["outlier_detection"] = _outlier(c.outlier_detection, f.at("outlier_detection"))
    if c.health_checks:
        options["health_check"] = _health(c.health_checks[0], f.at("health_checks").at(0))
        if len(c.health_checks) > 1:
            f.warn("only the first health check is run", "health_checks")
    if c.HasField("common_lb_config"):
        cl = c.common_lb_config
        f.at("common_lb_config").only(cl, {"healthy_panic_threshold", "locality_weighted_lb_config"})
        if cl.HasField("healthy_panic_threshold"):
            options["common_lb_config"] = {"healthy_panic_threshold": cl.healthy_panic_threshold.value}
        if cl.HasField("locality_weighted_lb_config"):
            # a locality by weight and health first, then a host in it (proxy.upstream.locality)
            options["locality_weighted"] = True
    if c.HasField("per_connection_buffer_limit_bytes"):
        f.warn("per_connection_buffer_limit_bytes is not supported; mosnx's write watermarks apply",
               "per_connection_buffer_limit_bytes")
    try:
        return ClusterConfig(name=c.name, endpoints=endpoints, options=options, **kw)
    except ValueError as e:
        f.reject(str(e))


def _original_dst(c: Any, f: Findings) -> dict[str, Any]:
    out: dict[str, Any] = {"cleanup_interval": seconds(c.cleanup_interval) if c.HasField("cleanup_interval")
                           else 5.0}
    if c.HasField("original_dst_lb_config"):
        o = c.original_dst_lb_config
        fo = f.at("original_dst_lb_config")
        fo.only(o, {"use_http_header", "http_header_name", "upstream_port_override"})
        if o.use_http_header:
            out["http_header"] = (o.http_header_name or "x-envoy-original-dst-host").lower()
        if o.HasField("upstream_port_override"):
            port = o.upstream_port_override.value
            if not 0 < port < 65536:
                fo.reject(f"port {port} is outside 1..65535", "upstream_port_override")
            out["port_override"] = port
    return out


def _bind(b: Any, f: Findings) -> tuple[str, int]:
    f.only(b, {"source_address"})
    if not b.HasField("source_address"):
        f.reject("upstream_bind_config needs a source_address", "source_address")
    sa = b.source_address
    f.at("source_address").only(sa, {"address", "port_value", "protocol"})
    try:
        ip = ipaddress.ip_address(sa.address)
    except ValueError:
        f.at("source_address").reject(f"not an IP address: {sa.address!r}", "address")
    return str(ip), sa.port_value


def _http2(c: Any, f: Findings) -> bool:
    if c.HasField("http2_protocol_options"):
        return True
    for key, anyv in c.typed_extension_protocol_options.items():
        fk = f.at("typed_extension_protocol_options").at(key)
        if key != HTTP_PROTOCOL_OPTIONS:
            fk.warn("these protocol options are not supported; ignored")
            continue
        opts = http_protocol_options_pb2.HttpProtocolOptions()
        if not anyv.Unpack(opts):
            fk.reject(f"expected {HTTP_PROTOCOL_OPTIONS}, got {anyv.type_url}")
        fk.only(opts, {"explicit_http_config", "common_http_protocol_options"})
        kind = opts.WhichOneof("upstream_protocol_options")
        if kind == "explicit_http_config":
            return opts.explicit_http_config.WhichOneof("protocol_config") == "http2_protocol_options"
        if kind is not None:
            fk.warn(f"{kind} is not supported: mosnx speaks HTTP/1.1 unless explicit_http_config says HTTP/2",
                    kind)
    return False


def _breakers(cb: Any, f: Findings) -> CircuitBreakers:
    for i, t in enumerate(cb.thresholds):
        ft = f.at("thresholds").at(i)
        if t.priority != 0:
            ft.warn("only DEFAULT priority thresholds apply", "priority")
            continue
        ft.only(t, {"priority", "max_connections", "max_pending_requests", "max_requests", "max_retries"})
        kw = {k: getattr(t, k).value for k in ("max_connections", "max_pending_requests", "max_requests",
                                              "max_retries") if t.HasField(k)}
        return CircuitBreakers(**kw)
    return CircuitBreakers()


_OUTLIER_INTS = ("consecutive_5xx", "consecutive_gateway_failure", "max_ejection_percent",
                 "enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure", "enforcing_success_rate",
                 "success_rate_minimum_hosts", "success_rate_request_volume", "success_rate_stdev_factor",
                 "enforcing_failure_percentage", "failure_percentage_threshold",
                 "failure_percentage_minimum_hosts", "failure_percentage_request_volume",
                 "consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure")
_OUTLIER_TIMES = ("interval", "base_ejection_time", "max_ejection_time")


def _outlier(od: Any, f: Findings) -> OutlierDetection:
    f.only(od, set(_OUTLIER_INTS + _OUTLIER_TIMES) | {"split_external_local_origin_errors"})
    kw: dict[str, Any] = {k: getattr(od, k).value for k in _OUTLIER_INTS if od.HasField(k)}
    kw.update({k: seconds(getattr(od, k)) for k in _OUTLIER_TIMES if od.HasField(k)})
    kw["split_external_local_origin_errors"] = od.split_external_local_origin_errors
    return OutlierDetection(**kw)


def _health(hc: Any, f: Findings) -> HealthCheck:
    f.only(hc, {"timeout", "interval", "unhealthy_threshold", "healthy_threshold", "http_health_check",
                "tcp_health_check", "grpc_health_check"})
    kw: dict[str, Any] = {"interval": seconds(hc.interval) if hc.HasField("interval") else 5.0,
                          "timeout": seconds(hc.timeout) if hc.HasField("timeout") else 1.0}
    if hc.HasField("unhealthy_threshold"):
        kw["unhealthy_threshold"] = max(1, hc.unhealthy_threshold.value)
    if hc.HasField("healthy_threshold"):
        kw["healthy_threshold"] = max(1, hc.healthy_threshold.value)
    kind = hc.WhichOneof("health_checker")
    if kind == "http_health_check":
        h = hc.http_health_check
        f.at(kind).only(h, {"path", "host", "expected_statuses"})
        expected = frozenset(s for r in h.expected_statuses for s in range(r.start, r.end)) or None
        kw["http"] = HttpHealthCheck(path=h.path or "/", expected=expected, host=h.host or None)
    elif kind == "grpc_health_check":
        g = hc.grpc_health_check
        kw["grpc"] = GrpcHealthCheck(service_name=g.service_name, authority=g.authority or None)
    elif kind != "tcp_health_check":
        f.reject("a health check needs http_health_check, grpc_health_check or tcp_health_check")
    try:
        return HealthCheck(**kw)
    except ValueError as e:
        f.reject(str(e))
