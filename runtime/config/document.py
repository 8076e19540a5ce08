"""The shape of mosnx.yaml: admin, workers, listeners and clusters, declared once.

A new setting is one Field here (and an attribute on its model dataclass; a
cluster setting with no attribute lands in ClusterConfig.options). The loader
walks DOCUMENT and builds Config from what it returns.
"""
from __future__ import annotations

from ..model import (ESCAPED_SLASH_ACTIONS, XDS_MODES, AdminConfig, CircuitBreakers, ClusterConfig, Endpoint,
                     Limits, ListenerConfig, PathNormalization, Timeouts, XdsConfig, XdsNode, XdsTls)
from .admin import TokenFile
from .cluster import CHECKS as CLUSTER_GOVERNANCE_CHECKS, FIELDS as CLUSTER_GOVERNANCE
from .protocols import CLUSTER_FIELDS as CLUSTER_PROTOCOL, LISTENER_FIELDS as LISTENER_PROTOCOL
from .rpc import (CLUSTER_FIELDS as CLUSTER_RPC, LISTENER_FIELDS as LISTENER_RPC, RPC_PROTOCOLS,
                  check_listener as check_rpc_listener, routes_or)
from .filters import FilterItem
from .route import ROUTE, RouteWithFilters
from .access_log import ACCESS_LOG
from .chains import chain_objects, finish, listener_fields as chain_fields, stack_or_chains
from .tracing import LISTENER_TRACING, TRACING
from .stats import LISTENER_STATS, STATS
from .compound import Data, Either, ListOf, MapOf, Mapped, Unique
from .names import Distinct, Name
from .scalars import Address, Bool, Duration, Enum, FilePath, Int, Size, Str
from .schema import Field, Obj, ordered

LB_POLICIES = ("round_robin", "weighted_round_robin", "random", "least_request", "ring_hash", "maglev",
               "peak_ewma")
UPSTREAM_PROTOCOLS = ("http1", "http2") + RPC_PROTOCOLS
LISTENER_PROTOCOLS = ("http", "tcp") + RPC_PROTOCOLS


def _host_port(kwargs: dict) -> dict:
    kwargs["host"], kwargs["port"] = kwargs.pop("address")
    return kwargs


def _locality_weighted(kwargs: dict) -> dict:
    # an endpoint's locality_weight turns locality-weighted balancing on for its cluster
    if any(isinstance(e, Endpoint) and e.locality_weight for e in kwargs.get("endpoints") or ()):
        kwargs["locality_weighted"] = True
    return kwargs


def _route_filters(kwargs: dict) -> dict:
    route = kwargs.get("route")
    if isinstance(route, RouteWithFilters):
        # the default route's policy filters run after the listener's own
        kwargs["route"] = route.action
        kwargs["filters"] = tuple(kwargs.get("filters") or ()) + route.filters
    action = kwargs.get("route")
    if kwargs.get("protocol") == "tcp" and action is not None and action.cluster_header is not None:
        raise ValueError("route.cluster_header needs an HTTP listener (a TCP connection has no headers)")
    if kwargs.get("protocol", "http") not in ("http",) + RPC_PROTOCOLS and kwargs.get("tracing") is not None:
        raise ValueError("tracing needs an HTTP or RPC listener (trace context is read from HTTP headers "
                         "or RPC attachments)")
    return check_rpc_listener(kwargs)


def _listener(kwargs: dict) -> dict:
    return finish(_host_port(_route_filters(kwargs)))


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _show_size(n: int) -> str:
    return f"{n // 1024}KiB" if n and n % 1024 == 0 else f"{n} bytes"


ADMIN = Obj({
    "address": Field(Address(), "where the admin API listens; beyond loopback, set token_file",
                     default=("127.0.0.1", 15000)),
    "token_file": Field(TokenFile(), "file holding the bearer token every admin request but /ready "
                        "must carry; read at start and on reload", attr="token"),
}, build=AdminConfig, adapt=_host_port)

ENDPOINT = Either(
    Mapped(Address(), lambda hp: Endpoint(*hp)),
    Obj({"address": Field(Address(), "host:port of the endpoint", required=True),
         "weight": Field(Int(1), "share of requests under weighted load balancing"),
         "priority": Field(Int(0), "priority level: level 0 takes the traffic while enough of it is healthy, "
                           "then the next levels (Envoy's EDS priority, overprovisioning factor 1.4)"),
         "locality": Field(Str(), "the endpoint's locality (region/zone/sub_zone), for locality-weighted "
                           "load balancing"),
         "locality_weight": Field(Int(0), "the weight of the endpoint's locality; set on any endpoint, the "
                                  "cluster picks a locality by weight and health first (Envoy's locality "
                                  "weighted load balancing); 0: its locality takes no traffic")},
        build=Endpoint, adapt=_host_port, label="a mapping {address, weight, priority, locality, locality_weight}"),
)

CIRCUIT_BREAKERS = Obj({
    "max_connections": Field(Int(0), "open connections to the cluster; above it a new request fails with 503 (upstream_cx_overflow)"),
    "max_pending_requests": Field(Int(0), "requests waiting for a connection; above it 503 (upstream_rq_pending_overflow)"),
    "max_requests": Field(Int(0), "requests in flight to the cluster; above it 503"),
    "max_retries": Field(Int(0), "retries in flight to the cluster; above it a retry is not made (upstream_rq_retry_overflow)"),
}, build=CircuitBreakers)

CLUSTER = Obj({
    "name": Field(Name("cluster"), "the name routes use", required=True),
    "endpoints": Field(ListOf(ENDPOINT), "host:port strings or {address, weight}; may be empty",
                       required=True),
    "connect_timeout": Field(Duration(positive=True), "time allowed to open a connection"),
    "lb": Field(Enum(*LB_POLICIES), "load-balancing policy: how an endpoint is picked for each request"),
    "protocol": Field(Enum(*UPSTREAM_PROTOCOLS), "protocol spoken to the endpoints: HTTP/1.1 or HTTP/2 (prior knowledge, or ALPN with tls), "
                     "or an RPC protocol (docs/rpc.md)"),
    "idle_timeout": Field(Duration(), "close a pooled upstream connection idle this long"),
    "max_requests_per_connection": Field(Int(0), "requests sent on one upstream connection before it is closed; 0: unlimited"),
    "circuit_breakers": Field(CIRCUIT_BREAKERS, "limits that fail fast with 503 when reached"),
    **CLUSTER_GOVERNANCE,
    **CLUSTER_PROTOCOL,
    **CLUSTER_RPC,
}, build=ClusterConfig, extras="options", checks=CLUSTER_GOVERNANCE_CHECKS, adapt=_locality_weighted)

TIMEOUTS = Obj({
    "request_headers": Field(Duration(positive=True), "time allowed for the request headers to arrive"),
    "idle": Field(Duration(), "close a downstream connection idle this long; 0: never"),
    "drain": Field(Duration(), "time in-flight streams get to finish on shutdown or reload"),
    "stream_idle": Field(Duration(), "reset a stream with no bytes either way for this long; 0: never"),
}, build=Timeouts)

LIMITS = Obj({
    "request_headers": Field(Size(positive=True), "largest request head accepted (431 above)"),
    "retry_buffer": Field(Size(), "request body kept for replay on retry"),
    "write_high_water": Field(Size(positive=True), "pause the other side when this much is buffered"),
    "write_low_water": Field(Size(), "resume it below this; less than write_high_water"),
    "request_headers_count": Field(Int(1, 10_000), "header fields a request head (or its trailers) may "
                                   "have (431 above); as Envoy's max_headers_count"),
}, build=Limits, checks=[ordered("write_low_water", "write_high_water", show=_show_size)])

PATH_NORMALIZATION = Obj({
    "normalize": Field(Bool(), "RFC 3986 dot-segment removal and decoding of unreserved escapes"),
    "merge_slashes": Field(Bool(), "merge repeated slashes into one"),
    "escaped_slashes": Field(Enum(*ESCAPED_SLASH_ACTIONS), "what %2F and %5C in a path do"),
}, build=PathNormalization)

# a listener's protocol stack: its own, or each of its filter chains' (config.chains)
STACK = {
    "protocol": Field(Enum(*LISTENER_PROTOCOLS), "http: HTTP/1.1 and HTTP/2 (h2c, prior knowledge, or ALPN with tls); tcp: L4 proxying to the route's cluster; "
                     "bolt, dubbo, thrift: multiplexed RPC (docs/rpc.md)"),
    "route": Field(ROUTE, "the default route every request takes (Envoy's names); give either route: or rules:"),
    "rules": Field(ListOf(FilePath(must_exist=True), min_items=1, single=True),
                   ".mdsl rule files or folders, relative to this file, declaring the routes (docs/mdsl.md); reloaded on change"),
    "filters": Field(ListOf(FilterItem(), unique=[Unique("filter name", lambda f: f.name, "name")]),
                     "HTTP filters in order, each {<kind>: {name, disabled, ...settings}}"),
    "access_log": Field(ACCESS_LOG, "where to log each request: stdout, stderr, a file path, or {path, format}; absent: no access log"),
    "timeouts": Field(TIMEOUTS, "timeouts on the client side: {request_headers, idle, drain, stream_idle}"),
    "limits": Field(LIMITS, "request head, header count and buffer limits"),
    "path_normalization": Field(PATH_NORMALIZATION, "the one request path rules, routes and upstreams "
                                "see: {normalize, merge_slashes, escaped_slashes}"),
    "tracing": Field(LISTENER_TRACING, "read, continue and write trace context, and record spans: "
                     "{propagation, random_sampling, client_sampling, overall_sampling}"),
    "stats": Field(LISTENER_STATS, "detailed upstream stats this listener keeps (they multiply series): "
                   "{per_route, per_host}"),
    **LISTENER_PROTOCOL,
    **LISTENER_RPC,
}
CHAIN, DEFAULT_CHAIN = chain_objects(STACK, _route_filters)

LISTENER = Obj({
    "name": Field(Name("listener"), "the listener's name, in stats and logs", required=True),
    "address": Field(Distinct(Address(), "listener address", show=lambda hp: _address(*hp)),
                     "host:port to listen on; [::1]:8080 for IPv6", required=True),
    **STACK,
    **chain_fields(CHAIN, DEFAULT_CHAIN),
}, build=ListenerConfig, adapt=_listener, extras="options", checks=[routes_or(stack_or_chains(set(STACK)))])

XDS_NODE = Obj({
    "id": Field(Str(), "the node id the control plane knows this proxy by"),
    "cluster": Field(Str(), "the service cluster this proxy belongs to"),
    "metadata": Field(MapOf(Data()), "free-form metadata sent to the control plane (Envoy's node.metadata)"),
}, build=XdsNode)

XDS_TLS = Obj({
    "ca": Field(FilePath(must_exist=True), "CA bundle the control plane's certificate must chain to; "
                "default: the system's"),
    "cert": Field(FilePath(must_exist=True), "client certificate chain, for mutual TLS (with key)"),
    "key": Field(FilePath(must_exist=True), "PEM private key of cert"),
    "sni": Field(Str(), "the name the server's certificate is checked against and sent as SNI; "
                 "default: the address's host"),
}, build=XdsTls)

XDS = Obj({
    "address": Field(Address(), "host:port of the control plane's ADS (gRPC) server", required=True),
    "tls": Field(XDS_TLS, "TLS to the control plane: {ca, cert, key, sni}; absent: plaintext"),
    "node": Field(XDS_NODE, "who this proxy is: {id, cluster, metadata}"),
    "mode": Field(Enum(*XDS_MODES), "sotw: state of the world (Envoy's GRPC); delta: incremental (DELTA_GRPC)"),
    "initial_fetch_timeout": Field(Mapped(Duration(), float), "how long to wait for the first resources "
                                   "before serving without them; 0: wait forever"),
}, build=XdsConfig, adapt=_host_port)

DOCUMENT = Obj({
    "admin": Field(ADMIN, "the admin API (/stats, /clusters, /config_dump, reload, ...); absent: no admin API", default=None),
    "workers": Field(Int(1), "worker processes sharing the listeners; absent: one per core (mosnx run --workers overrides)", default=None),
    "demo_upstream": Field(ListOf(Address()), "addresses where `mosnx run` starts its built-in demo upstream servers (for the quickstart)", default=()),
    "fast_path": Field(Bool(), "the express path and the memos of repeated heads; false: every request takes the "
                       "general path and nothing is remembered (as MOSNX_FASTPATH=0 in the environment)", default=True),
    "listeners": Field(ListOf(LISTENER), "where mosnx accepts traffic", default=()),
    "clusters": Field(ListOf(CLUSTER), "groups of upstream endpoints", default=()),
    "xds": Field(XDS, "take listeners, routes, clusters and endpoints from a control plane over one ADS "
                 "stream (Envoy's xDS); the file's own listeners and clusters stay", default=None),
    "tracing": Field(TRACING, "span export: {service_name, exporters: [{otlp|zipkin|skywalking: {endpoint}}]}; "
                     "listeners choose to trace with their own tracing:", default=None),
    "stats": Field(STATS, "how /stats/prometheus names series: {prometheus_names: envoy | mosnx, "
                   "stats_tags, use_all_default_tags}", default=None),
})
