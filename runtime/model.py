"""Validated configuration as frozen dataclasses, and the Snapshot the core executes.

The YAML loader (runtime.config) produces a Config; build_snapshot() turns it into a
Snapshot by adding what front ends compile (pipelines, route tables). Nothing here
does I/O; constructors reject values that cannot be served.

A Snapshot is shared by every stream in flight and never changes once built: every
class here is frozen, and so are the route tables (runtime.routes). The few dicts
(Snapshot.listeners/.clusters, Config.raw, the `options` and filter `config`
mappings) stay plain dicts because the core reads some of them per request
or per connection, where a read-only proxy costs a lookup more; nothing writes them
after build_snapshot() returns, and Snapshot.dump() hands out a copy of Config.raw.
The filters built for a snapshot (and Snapshot.extensions) keep their own state:
buckets, counters; that is shared state by design, not configuration.
"""
from __future__ import annotations

import copy
import ipaddress
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from .diagnostics import Span
from .pipeline import Pipeline
from .routes import RouteAction, RouteTable
from .stat_tags import StatsConfig

if TYPE_CHECKING:
    from .logformat import JsonFormat, LogFormat
    from .log_filter import LogFilter

KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    weight: int = 1
    # which of the cluster's options["tls_matches"] (Envoy's transport_socket_matches)
    # this endpoint's metadata chose, by index; None: the cluster's own options["tls"]
    tls_match: int | None = None
    priority: int = 0                         # Envoy's EDS priority: 0 first, the others as it fails
    # Envoy's LocalityLbEndpoints: the locality ("region/zone/sub_zone") and its
    # load_balancing_weight (0: none), used when the cluster balances by locality
    # (options["locality_weighted"], proxy.upstream.locality)
    locality: str = ""
    locality_weight: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is outside 1..65535")
        if self.weight < 1:
            raise ValueError("endpoint weight must be >= 1")
        if self.priority < 0:
            raise ValueError("endpoint priority must be >= 0")
        if self.locality_weight < 0:
            raise ValueError("endpoint locality_weight must be >= 0")

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class CircuitBreakers:
    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    endpoints: tuple[Endpoint, ...]
    connect_timeout: float = 1.0
    lb: str = "round_robin"
    protocol: str = "http1"
    circuit_breakers: CircuitBreakers = CircuitBreakers()
    idle_timeout: float = 60.0                # pooled connection idle time before close
    max_requests_per_connection: int = 0      # 0: unlimited
    options: dict[str, Any] = field(default_factory=dict)  # extension settings (health, outlier, ...)
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class Timeouts:
    request_headers: float = 10.0
    idle: float = 60.0
    drain: float = 5.0
    stream_idle: float = 300.0                # Envoy's stream_idle_timeout default


@dataclass(frozen=True, slots=True)
class Limits:
    request_headers: int = 60 * KiB
    retry_buffer: int = 64 * KiB              # request body kept for replay on retry
    write_high_water: int = 256 * KiB         # pause the other side above this
    write_low_water: int = 64 * KiB
    # header fields in a request head (and in its trailers), as Envoy's max_headers_count
    request_headers_count: int = 100


ESCAPED_SLASH_ACTIONS = ("keep", "reject", "unescape_and_redirect", "unescape_and_forward")


@dataclass(frozen=True, slots=True)
class PathNormalization:
    """How a listener makes the one request path rules, routes and upstreams see
    (Envoy's normalize_path, merge_slashes and path_with_escaped_slashes_action)."""
    normalize: bool = True                    # RFC 3986 dot segments, unreserved escapes decoded
    merge_slashes: bool = True
    escaped_slashes: str = "keep"             # what %2F and %5C do: one of ESCAPED_SLASH_ACTIONS

    def __post_init__(self) -> None:
        if self.escaped_slashes not in ESCAPED_SLASH_ACTIONS:
            raise ValueError(f"escaped_slashes: expected one of {', '.join(ESCAPED_SLASH_ACTIONS)}")


@dataclass(frozen=True, slots=True)
class AccessLog:
    path: str                                 # "stdout", "stderr" or a file path
    format: LogFormat | JsonFormat | None = None  # compiled at load (runtime.logformat); None: the default
    filter: LogFilter | None = None           # which streams are logged (Envoy's access-log filter); None: all


@dataclass(frozen=True, slots=True)
class FilterSpec:
    kind: str                                 # registry name, e.g. "wasm"
    name: str                                 # instance name, used in stats and by .mdsl
    config: dict[str, Any]
    disabled: bool = False                    # Envoy's `disabled`: runs only where a route names it
    span: Span | None = None
    # False: no settings of its own (Envoy's cors, local_ratelimit without a token bucket):
    # it runs only on routes that give it theirs (runtime.route_filters)
    own: bool = True


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
TRANSPORT_PROTOCOLS = ("", "raw_buffer", "tls")
SOURCE_TYPES = ("any", "local", "external")
LISTENER_FILTERS = ("tls_inspector", "http_inspector")


@dataclass(frozen=True, slots=True)
class ChainMatch:
    """Which connections a filter chain takes (Envoy's FilterChainMatch). An empty
    field takes every connection; proxy.filter_chain applies the fields in Envoy's
    order, the most specific match winning at each step."""
    destination_port: int = 0                 # 0: any
    prefix_ranges: tuple[IPNetwork, ...] = ()               # of the destination address
    server_names: tuple[str, ...] = ()        # lower-case; exact, or "*.suffix" (any depth)
    transport_protocol: str = ""              # "", "raw_buffer" or "tls"
    application_protocols: tuple[str, ...] = ()
    direct_source_prefix_ranges: tuple[IPNetwork, ...] = ()
    source_type: str = "any"                  # "any", "local" (same host) or "external"
    source_prefix_ranges: tuple[IPNetwork, ...] = ()
    source_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.destination_port < 65536:
            raise ValueError(f"destination_port {self.destination_port} is outside 1..65535")
        if self.transport_protocol not in TRANSPORT_PROTOCOLS:
            raise ValueError(f"transport_protocol: expected raw_buffer or tls, not {self.transport_protocol!r}")
        if self.source_type not in SOURCE_TYPES:
            raise ValueError(f"source_type: expected one of {', '.join(SOURCE_TYPES)}")
        for p in self.source_ports:
            if not 0 < p < 65536:
                raise ValueError(f"source port {p} is outside 1..65535")
        for n in self.server_names:
            if not n or n != n.lower() or ("*" in n and not (n.startswith("*.") and "*" not in n[1:])):
                raise ValueError(f"server name {n!r}: expected a lower-case name or *.suffix")


@dataclass(frozen=True, slots=True)
class ListenerFilter:
    """A listener filter that reads a connection's first bytes before a chain is
    chosen; `disabled_ports` are destination port ranges [start, end) it skips
    (Envoy's filter_disabled, its port ranges only)."""
    kind: str                                 # one of LISTENER_FILTERS
    disabled_ports: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in LISTENER_FILTERS:
            raise ValueError(f"listener filter {self.kind!r}: expected one of {', '.join(LISTENER_FILTERS)}")

    def runs_for(self, port: int) -> bool:
        for start, end in self.disabled_ports:
            if start <= port < end:
                return False
        return True


@dataclass(frozen=True, slots=True)
class NetworkFilter:
    """A network filter that runs before a chain's stack gets the connection (Envoy's
    network filters before the last): `kind` names its factory in
    proxy.network_filters; `config` is plain data, compiled once per worker."""
    kind: str                                 # e.g. "rbac"
    name: str                                 # the Envoy entry's name, for stats and errors
    config: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class SocketOption:
    """A setsockopt on a listening socket (Envoy's socket_options, integer values)."""
    level: int
    name: int
    value: int


@dataclass(frozen=True, slots=True)
class FilterChain:
    """One of a listener's filter chains: which connections it takes, and the
    protocol stack that serves them. The stack is a whole ListenerConfig named
    "<listener>/<chain>", with chain_of set: it is served, never bound."""
    name: str
    match: ChainMatch
    stack: ListenerConfig


TRACE_FORMATS = ("w3c", "b3", "sw8")
TRACE_EXPORTERS = ("otlp", "zipkin", "skywalking")


@dataclass(frozen=True, slots=True)
class ListenerTracing:
    """A listener's tracing: the propagation formats (read: the first present, in this
    order; written: all of them) and Envoy's sampling percentages."""
    propagation: tuple[str, ...] = TRACE_FORMATS
    random_sampling: float = 100.0
    client_sampling: float = 100.0
    overall_sampling: float = 100.0

    def __post_init__(self) -> None:
        if not self.propagation:
            raise ValueError("propagation needs at least one format")
        for f in self.propagation:
            if f not in TRACE_FORMATS:
                raise ValueError(f"unknown propagation format {f!r}; expected {', '.join(TRACE_FORMATS)}")


def _has_module(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except ImportError:                 # a parent package missing
        return False


@dataclass(frozen=True, slots=True)
class TraceExporter:
    """One collector: OTLP (gRPC at host:port, or OTLP/HTTP protobuf at an http:// URL),
    Zipkin v2 JSON (an http:// URL) or SkyWalking segments (over its gRPC
    TraceSegmentReportService at host:port, or its HTTP API at an http:// base URL,
    /v3/segments added)."""
    kind: str
    endpoint: str

    def __post_init__(self) -> None:
        if self.kind not in TRACE_EXPORTERS:
            raise ValueError(f"unknown exporter {self.kind!r}; expected {', '.join(TRACE_EXPORTERS)}")
        http = self.endpoint.startswith("http://")
        if self.kind == "zipkin" and not http:
            raise ValueError(f"zipkin endpoint {self.endpoint!r}: Zipkin takes an http:// URL")
        if self.kind == "skywalking" and not http and not _has_module("skywalking.protocol.language_agent"):
            raise ValueError(f"skywalking endpoint {self.endpoint!r}: SkyWalking's gRPC reporter needs its "
                             "protocol classes: pip install 'mosnx[skywalking]' (or give the OAP's HTTP API, "
                             "http://host:12800)")
        if not http:
            from .config.units import parse_address     # (runtime.config builds this model: no cycle at import)
            try:
                parse_address(self.endpoint)
            except ValueError as e:
                raise ValueError(f"{self.kind} endpoint {self.endpoint!r}: expected host:port or an http:// URL "
                                 f"({e})") from None


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """Where spans go and who recorded them (top-level `tracing:`)."""
    service_name: str | None = None           # None: each listener's name
    service_instance: str | None = None       # None: pid@hostname of the worker
    exporters: tuple[TraceExporter, ...] = ()
    max_queue: int = 2048                     # spans waiting per exporter; more are dropped and counted
    batch_size: int = 512                     # spans per export call
    batch_delay: float = 1.0                  # longest a span waits for its batch to fill, s


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str
    host: str
    port: int
    protocol: str = "http"
    route: RouteAction | None = None          # the default route
    rules: tuple[str, ...] = ()               # .mdsl files or folders, absolute paths
    filters: tuple[FilterSpec, ...] = ()
    access_log: AccessLog | None = None
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    path_normalization: PathNormalization = PathNormalization()
    options: dict[str, Any] = field(default_factory=dict)  # protocol settings (tls, http2, tcp)
    span: Span | None = None
    # routes built elsewhere (an Envoy RouteConfiguration, inline or from RDS): used as
    # they are, instead of route: or rules:; route_config names where they came from
    route_table: RouteTable | None = None
    route_config: str | None = None
    tracing: ListenerTracing | None = None    # None: no trace context read or written
    # several protocol stacks on one address (protocol "chains"): each connection
    # goes to the chain its facts match (proxy.filter_chain), else to the default
    # one, else it is closed. A listener with none serves its own stack, as above.
    filter_chains: tuple[FilterChain, ...] = ()
    default_filter_chain: FilterChain | None = None
    listener_filters: tuple[ListenerFilter, ...] = ()
    listener_filters_timeout: float = 15.0    # 0: wait as long as it takes
    continue_on_listener_filters_timeout: bool = False
    chain_of: str | None = None               # a chain's stack: the listener it serves
    # transparent interception (proxy.original_dst): the destination a redirected
    # connection had (SO_ORIGINAL_DST), read when original_dst or use_original_dst
    original_dst: bool = False                # Envoy's original_dst listener filter
    use_original_dst: bool = False            # hand each connection to the listener of its destination
    bind_to_port: bool = True                 # False: never bound, reached only by that hand-off
    transparent: bool = False                 # IP_TRANSPARENT on the listening socket (TPROXY)
    socket_options: tuple[SocketOption, ...] = ()
    network_filters: tuple[NetworkFilter, ...] = ()   # a stack's filters before its last

    def stacks(self) -> tuple[ListenerConfig, ...]:
        """The protocol stacks serving this listener's connections: itself, or its chains'."""
        if self.protocol != "chains":
            return (self,)
        chains = self.filter_chains + ((self.default_filter_chain,) if self.default_filter_chain else ())
        return tuple(c.stack for c in chains)


@dataclass(frozen=True, slots=True)
class AdminToken:
    """The admin's bearer token, read from `path` when the config is loaded. Its value
    never appears in a repr, a log line or a dump."""
    path: str
    value: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    host: str = "127.0.0.1"
    port: int = 15000
    token: AdminToken | None = None           # None: no token asked for (loopback is the guard)
    span: Span | None = field(default=None, compare=False)


XDS_MODES = ("sotw", "delta")


@dataclass(frozen=True, slots=True)
class XdsNode:
    """Who this proxy says it is to the control plane (Envoy's Node)."""
    id: str = ""
    cluster: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class XdsTls:
    """TLS to the control plane: each of `ca`, `cert`, `key` a file path (str) or PEM
    in memory (bytes, a bootstrap's inline DataSource). `ca` None: the system's roots;
    `cert` and `key` come together (mutual TLS) or not at all; `sni`: the name the
    server's certificate is checked against (and sent as SNI), "" for the host."""
    ca: str | bytes | None = None
    cert: str | bytes | None = None
    key: str | bytes | None = None
    sni: str = ""
    span: Span | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert and key")
        for what in ("ca", "cert", "key"):
            v = getattr(self, what)
            if v is not None and not v:
                raise ValueError(f"tls {what} cannot be empty")


@dataclass(frozen=True, slots=True)
class XdsConfig:
    """One aggregated (ADS) stream to a control plane: where, how, and as whom.
    From mosnx.yaml's `xds:` or an Envoy bootstrap's dynamic_resources.ads_config."""
    host: str
    port: int
    mode: str = "sotw"                        # "sotw" (GRPC) or "delta" (DELTA_GRPC)
    node: XdsNode = XdsNode()
    initial_fetch_timeout: float = 15.0       # Envoy's default; 0: wait forever
    set_node_on_first_message_only: bool = False
    lds: bool = True                          # listeners come over the stream (lds_config: {ads: {}})
    cds: bool = True                          # clusters come over the stream (cds_config: {ads: {}})
    cluster: str | None = None                # the bootstrap's static cluster naming the server
    # the server's Unix socket (an Envoy pipe address): used instead of host and port,
    # which are then "" and 0
    unix_path: str | None = None
    # the bootstrap's own listeners and clusters that wait on the stream (RDS or EDS over
    # ADS): decoded Envoy messages by type URL and name, translated by runtime.envoy.apply
    static_resources: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)
    span: Span | None = field(default=None, compare=False)
    tls: XdsTls | None = None                 # None: plaintext to the control plane
    # False: no ADS stream (a bootstrap without ads_config whose secrets come by SDS):
    # host and port are not used
    ads: bool = True
    # static clusters an SDS config source may name, as gRPC targets (host:port or
    # unix:<path>): the separate SDS stream (proxy.xds.sds_stream) connects to one
    grpc_targets: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in XDS_MODES:
            raise ValueError(f"xds mode must be one of {', '.join(XDS_MODES)}, not {self.mode!r}")
        if not self.ads:
            pass
        elif self.unix_path is not None:
            if not self.unix_path:
                raise ValueError("a Unix socket path cannot be empty")
        elif not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is outside 1..65535")
        if self.initial_fetch_timeout < 0:
            raise ValueError("initial_fetch_timeout cannot be negative")


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    admin: AdminConfig | None
    listeners: tuple[ListenerConfig, ...]
    clusters: tuple[ClusterConfig, ...]
    workers: int | None = None                # None: one per core
    raw: dict[str, Any] = field(default_factory=dict)   # the YAML as data, for config_dump
    demo_upstream: tuple[tuple[str, int], ...] = ()     # quickstart: embedded demo upstreams
    fast_path: bool = True                    # the express path and memos (proxy.fastpath)
    xds: XdsConfig | None = None              # a control plane to take resources from
    sources: tuple[str, ...] = ()             # other files read with it (an Envoy bootstrap's xDS files)
    tracing: TracingConfig | None = None      # span export (listeners choose to trace)
    stats: StatsConfig | None = None          # /stats/prometheus naming (None: mosnx's)


@dataclass(frozen=True, slots=True)
class Listener:
    """A listener as the core serves it: config plus the compiled pipeline and routes."""
    config: ListenerConfig
    pipeline: Pipeline
    routes: RouteTable
    # runtime.tracing.Tracer when the listener traces: the stream's one check; the
    # worker serving the snapshot binds its sink and counters
    tracer: Any = None
    # an RPC listener's rules (dsl.rpc.RpcRouter: the call's header map -> its route), if any
    rpc_rules: Any = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    config: Config
    listeners: dict[str, Listener]
    clusters: dict[str, ClusterConfig]
    sources: tuple[str, ...]                  # files whose change triggers a reload
    built_at: float = field(default_factory=time.time)
    extensions: dict[str, Any] = field(default_factory=dict)  # per-snapshot shared state of filters
    # the listeners a later build_snapshot(previous=this) may take as they are (see there)
    reusable: frozenset[str] = frozenset()

    def dump(self) -> dict[str, Any]:
        """Plain data for /config_dump, the caller's to change: the YAML is a copy."""
        return {
            "version": self.version,
            "built_at": self.built_at,
            "path": self.config.path,
            "sources": list(self.sources),
            "config": copy.deepcopy(self.config.raw),
            "routes": {n: l.routes.describe() for n, l in self.listeners.items()},
        }
