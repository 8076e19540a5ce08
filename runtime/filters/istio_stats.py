"""Istio's standard metrics (istio.stats): for HTTP istio_requests_total and the
request duration, request size and response size histograms (and, for a gRPC
stream that grpc_stats counted with emit_filter_state, the messages each way); for TCP the
connections opened and closed and the bytes each way; with Istio's labels.

Every stream is recorded once, when it has ended (on_log: the metadata exchange has
read both peers by then), from one side: the reporter, `source` on an OUTBOUND
listener, `destination` on an INBOUND one (config `reporter` overrides). This node's
metadata fills its own side's labels; the other side's come from the peer the
peer_metadata filter read (unknown when there was none). destination_service is the
host of the route's cluster (`outbound|9080|v1|reviews.default.svc.cluster.local`),
else the Host header (unless disable_host_header_fallback), else unknown.

A series is a stat whose name carries its labels as Istio's Envoy writes them
(`reporter=.=source;.;source_workload=.=productpage-v1;.;...;.;istio_requests_total`):
the stats store stays name -> value, workers merge as for any stat, and
/stats/prometheus renders the labels back (proxy.admin_format). At most MAX_SERIES
label sets are kept per filter; a stream that would make another counts
`<name>.series_overflow` instead (cardinality is bounded, never the memory of a peer
that sends random metadata). The label tuple of a peer is derived once and cached.

TCP (IstioTcpStats, which the TCP proxy holds for a listener whose Envoy chain has
istio.stats before tcp_proxy: ListenerConfig.options["istio_stats"]): a connection
counts as opened when its upstream connects (or, when it never does, as it closes),
and its bytes and its close are counted when it closes (Istio also reports open
connections every tcp_reporting_duration; mosnx does not). The peer side is the one
Istio's TCP metadata exchange read (proxy.tcp.proxy), else unknown; the principals
come from the connections' certificates as for HTTP.
"""
from __future__ import annotations

from typing import Any

from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from ..stats import Counter, Histogram, Store
from . import _config as C
from .grpc_stats import FILTER_STATE as GRPC_COUNTS
from .peer_metadata import DOWNSTREAM_PEER, UPSTREAM_PEER, exchanged, node_of

STATS = ("series_overflow",)
LABELS = ("reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app",
          "source_version", "source_canonical_service", "source_canonical_revision", "source_cluster",
          "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
          "destination_version", "destination_service", "destination_service_name",
          "destination_service_namespace", "destination_canonical_service", "destination_canonical_revision",
          "destination_cluster", "request_protocol", "response_code", "grpc_response_status", "response_flags",
          "connection_security_policy")
UNKNOWN = "unknown"
MAX_SERIES = 4096
SEP, EQ = ";.;", "=.="         # Istio's tag delimiters in a stat name
# (workload, namespace, app, version, canonical service, canonical revision, cluster)
Workload = tuple[str, str, str, str, str, str, str]
UNKNOWN_WORKLOAD: Workload = (UNKNOWN,) * 7
# mosnx's reason for ending a stream itself -> Envoy's response flag (what Istio's
# response_flags label carries); a reason with no flag of its own is shown as it is
RESPONSE_FLAGS = {
    "upstream_connect_failure": "UF", "upstream_connect_timeout": "UF", "no_healthy_upstream": "UH",
    "route_not_found": "NR", "cluster_not_found": "NC", "upstream_overflow": "UO", "upstream_rq_overflow": "UO",
    "upstream_cx_overflow": "UO", "circuit_open": "UO", "upstream_response_timeout": "UT",
    "upstream_per_try_timeout": "UT", "stream_idle_timeout": "SI", "idle_timeout": "SI",
    "downstream_remote_disconnect": "DC", "upstream_reset_before_response_started": "UR",
    "upstream_reset_after_response_started": "UR", "upstream_refused_stream": "UR",
    "upstream_protocol_error": "UPE", "fault_abort": "FI", "rate_limited": "RL",
}
H_CONTENT_TYPE = b"content-type"
H_GRPC_STATUS = b"grpc-status"


def _clean(v: str) -> str:
    return v.replace(SEP, "_").replace(EQ, "_") if ";" in v or "=" in v else v


def _flag(detail: str) -> str:
    if not detail:
        return "-"
    return RESPONSE_FLAGS.get(detail) or _clean(detail)


def workload_of(md: dict[str, Any] | None) -> Workload:
    """Istio's workload labels from a node's (or peer's) exchanged metadata."""
    if not md:
        return UNKNOWN_WORKLOAD
    labels = md.get("LABELS") or {}
    if not isinstance(labels, dict):
        labels = {}

    def pick(*keys: str, default: str = UNKNOWN) -> str:
        for k in keys:
            v = labels.get(k)
            if v:
                return _clean(str(v))
        return default
    return (_clean(str(md.get("WORKLOAD_NAME") or UNKNOWN)), _clean(str(md.get("NAMESPACE") or UNKNOWN)),
            pick("app", "app.kubernetes.io/name"), pick("version", "app.kubernetes.io/version"),
            pick("service.istio.io/canonical-name", "app.kubernetes.io/name", "app"),
            pick("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version", default="latest"),
            _clean(str(md.get("CLUSTER_ID") or UNKNOWN)))


def service_of(cluster: str, host: str, fallback: bool) -> str:
    """destination_service: the host of an Istio cluster name, else the Host header
    (without its port), else unknown."""
    parts = cluster.split("|")
    if len(parts) == 4 and parts[3]:
        return _clean(parts[3])
    if fallback and host:
        h = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return _clean(h) or UNKNOWN
    return UNKNOWN


def service_parts(service: str, namespace: str) -> tuple[str, str]:
    """(destination_service_name, destination_service_namespace)."""
    bits = service.split(".")
    if len(bits) >= 3 and bits[2] == "svc":
        return bits[0], bits[1]
    return service, namespace


def _sides(reporter: str, own: Workload, peer: Workload, ctx: StreamContext, service: str) -> tuple[str, ...]:
    """The labels from reporter to destination_cluster: this node on the reporter's
    side, the peer on the other."""
    if reporter == "source":
        src, dst = own, peer
        # the upstream connection: this side's certificate and the destination's
        src_principal, dst_principal = principals(ctx.upstream_tls, local_first=True)
    else:
        src, dst = peer, own
        dst_principal, src_principal = principals(ctx.tls, local_first=True)
    svc_name, svc_ns = service_parts(service, dst[1])
    return (reporter, src[0], src[1], src_principal, src[2], src[3], src[4], src[5], src[6],
            dst[0], dst[1], dst_principal, dst[2], dst[3], service, svc_name, svc_ns, dst[4], dst[5], dst[6])


def principals(tls: Any, local_first: bool = False) -> tuple[str, str]:
    """(peer, local) principals of a connection as Istio names them: the first URI SAN
    (a SPIFFE id) of the peer's certificate and of this side's; unknown without one.
    local_first: (local, peer)."""
    peer = local = UNKNOWN
    if tls is not None:
        if tls.uri_sans:
            peer = _clean(tls.uri_sans[0])
        if tls.local_uri_sans:
            local = _clean(tls.local_uri_sans[0])
    return (local, peer) if local_first else (peer, local)


def _policy(reporter: str, ctx: StreamContext) -> str:
    if reporter == "source":
        return UNKNOWN
    return "mutual_tls" if ctx.connection_mtls else "none"


def series_prefix(labels: tuple[str, ...], names: tuple[str, ...] = LABELS) -> str:
    """What goes before a metric's name to make the stat of one series."""
    return "".join(f"{k}{EQ}{v}{SEP}" for k, v in zip(names, labels))


class IstioStatsFilter(HttpFilter):
    name = "istio_stats"

    def __init__(self, node: dict[str, Any], reporter: str = "source", host_fallback: bool = True,
                 name: str = "istio_stats", stats: Store | None = None):
        if reporter not in ("source", "destination"):
            raise ValueError(f"istio_stats.reporter: expected source or destination, not {reporter!r}")
        self.name = name
        self.reporter = reporter
        self.host_fallback = host_fallback
        self.own = workload_of(exchanged(node)) if node else UNKNOWN_WORKLOAD
        self.store = stats or Store()
        self._overflow: Counter = self.store.counter(f"{name}.series_overflow")
        self._series: dict[tuple[str, ...], tuple[Counter, Histogram, Histogram, Histogram]] = {}
        self._messages: dict[tuple[str, ...], tuple[Counter, Counter]] = {}
        self._peers: dict[int, tuple[dict[str, Any], Workload]] = {}

    def _peer(self, md: dict[str, Any] | None) -> Workload:
        if md is None:
            return UNKNOWN_WORKLOAD
        hit = self._peers.get(id(md))
        if hit is not None and hit[0] is md:
            return hit[1]
        w = workload_of(md)
        if len(self._peers) >= 1024:
            self._peers.clear()
        self._peers[id(md)] = (md, w)       # the dict is the peer cache's: kept alive here
        return w

    def labels(self, ctx: StreamContext) -> tuple[str, ...]:
        st = ctx.filter_state or {}
        peer = self._peer(st.get(UPSTREAM_PEER if self.reporter == "source" else DOWNSTREAM_PEER))
        host = ctx.request.authority or ctx.request.headers.get("host") or ""
        sides = _sides(self.reporter, self.own, peer, ctx, service_of(ctx.cluster_name, host, self.host_fallback))
        resp = ctx.response
        ctype = ctx.request.headers.getb(H_CONTENT_TYPE) or b""
        grpc = ctype.startswith(b"application/grpc")
        grpc_status = ""
        if grpc and resp is not None:
            raw = resp.headers.getb(H_GRPC_STATUS)
            if raw is None and resp.trailers is not None:
                raw = resp.trailers.getb(H_GRPC_STATUS)
            grpc_status = _clean(raw.decode("latin-1")) if raw is not None else ""
        return sides + ("grpc" if grpc else "http", str(resp.status) if resp is not None else "0", grpc_status,
                        _flag(ctx.error_detail), _policy(self.reporter, ctx))

    def on_response_trailers(self, ctx: StreamContext) -> None:
        """Nothing to do here: a filter with this hook makes the core keep the
        trailers on ctx.response, where on_log reads grpc-status."""
        return None

    def on_log(self, ctx: StreamContext) -> None:
        key = self.labels(ctx)
        s = self._series.get(key)
        if s is None:
            if len(self._series) >= MAX_SERIES:
                self._overflow.value += 1
                return
            st = self.store
            prefix = series_prefix(key)
            s = self._series[key] = (
                st.counter(prefix + "istio_requests_total"),
                st.histogram(prefix + "istio_request_duration_milliseconds"),
                st.histogram(prefix + "istio_request_bytes"),
                st.histogram(prefix + "istio_response_bytes"))
        s[0].value += 1
        s[1].add(ctx.duration_ms)
        s[2].add(float(ctx.bytes_received))
        s[3].add(float(ctx.bytes_sent))
        counts = ctx.filter_state.get(GRPC_COUNTS) if ctx.filter_state is not None else None
        if counts is not None:          # a gRPC stream grpc_stats counted (emit_filter_state)
            m = self._messages.get(key)
            if m is None:
                prefix = series_prefix(key)
                m = self._messages[key] = (self.store.counter(prefix + "istio_request_messages_total"),
                                           self.store.counter(prefix + "istio_response_messages_total"))
            m[0].value += counts[0]
            m[1].value += counts[1]


TCP_LABELS = LABELS[:20] + ("request_protocol", "response_flags", "connection_security_policy")


class IstioTcpStats:
    """Istio's TCP metrics for the connections of one listener (see the module docstring)."""

    def __init__(self, node: dict[str, Any], reporter: str, store: Store, name: str = "istio_stats",
                 want: dict[str, Any] | None = None):
        self.want = want            # the listener option it serves (held: its id keys the cache)
        self.reporter = reporter
        self.own = workload_of(exchanged(node)) if node else UNKNOWN_WORKLOAD
        self.store = store
        self._overflow: Counter = store.counter(f"{name}.series_overflow")
        self._series: dict[tuple[str, ...], tuple[Counter, Counter, Counter, Counter]] = {}

    def labels(self, ctx: StreamContext) -> tuple[str, ...]:
        # the peer the TCP metadata exchange read, if it ran (proxy.tcp.proxy)
        st = ctx.filter_state
        md = st.get(UPSTREAM_PEER if self.reporter == "source" else DOWNSTREAM_PEER) if st else None
        peer = workload_of(md) if md is not None else UNKNOWN_WORKLOAD
        sides = _sides(self.reporter, self.own, peer, ctx, service_of(ctx.cluster_name, "", False))
        return sides + ("tcp", _flag(ctx.error_detail), _policy(self.reporter, ctx))

    def _of(self, key: tuple[str, ...]) -> tuple[Counter, Counter, Counter, Counter] | None:
        s = self._series.get(key)
        if s is None:
            if len(self._series) >= MAX_SERIES:
                self._overflow.value += 1
                return None
            st = self.store
            prefix = series_prefix(key, TCP_LABELS)
            s = self._series[key] = (
                st.counter(prefix + "istio_tcp_connections_opened_total"),
                st.counter(prefix + "istio_tcp_connections_closed_total"),
                st.counter(prefix + "istio_tcp_sent_bytes_total"),
                st.counter(prefix + "istio_tcp_received_bytes_total"))
        return s

    def opened(self, ctx: StreamContext) -> tuple[str, ...]:
        """Count the connection opened; the labels its close is counted under."""
        key = self.labels(ctx)
        s = self._of(key)
        if s is not None:
            s[0].value += 1
        return key

    def closed(self, ctx: StreamContext, key: tuple[str, ...] | None) -> None:
        """Count the connection closed with its bytes (opened too, when it never was)."""
        if key is None:
            key = self.opened(ctx)
        s = self._of(key)
        if s is not None:
            s[1].value += 1
            s[2].value += ctx.bytes_sent
            s[3].value += ctx.bytes_received


_tcp: dict[tuple[int, int], IstioTcpStats] = {}


def tcp_stats(store: Store, config: Any, options: dict[str, Any]) -> IstioTcpStats | None:
    """The TCP recorder of a listener whose options ask for Istio's stats, one per
    stats store and config (so a new snapshot gets a new one); None when not asked."""
    want = options.get("istio_stats")
    if want is None:
        return None
    key = (id(store), id(want))
    got = _tcp.get(key)
    if got is None or got.store is not store or got.want is not want:
        if len(_tcp) > 256:
            _tcp.clear()
        reporter = want.get("reporter") or (
            "destination" if options.get("traffic_direction") == "INBOUND" else "source")
        got = _tcp[key] = IstioTcpStats(node_metadata(config), reporter, store, want=want)
    return got


def node_metadata(config: Any) -> dict[str, Any]:
    """The bootstrap node's metadata: xds.node, else the Envoy bootstrap's `node`."""
    xds = getattr(config, "xds", None)
    if xds is not None and xds.node.metadata:
        return dict(xds.node.metadata)
    raw = getattr(config, "raw", None) or {}
    node = raw.get("node") if isinstance(raw, dict) else None
    md = node.get("metadata") if isinstance(node, dict) else None
    return md if isinstance(md, dict) else {}


def _factory(name: str, cfg: dict, ctx: BuildContext) -> IstioStatsFilter:
    cfg = cfg or {}
    C.known_keys(cfg, {"node", "reporter", "disable_host_header_fallback"}, "istio_stats")
    _, md = node_of(cfg, ctx)
    reporter = cfg.get("reporter")
    if reporter is None:
        direction = (getattr(ctx.listener, "options", None) or {}).get("traffic_direction", "")
        reporter = "destination" if direction == "INBOUND" else "source"
    fallback = cfg.get("disable_host_header_fallback", False)
    if not isinstance(fallback, bool):
        raise ValueError("istio_stats.disable_host_header_fallback: expected true or false")
    return IstioStatsFilter(md, reporter, not fallback, name, ctx.services.stats)


register_filter("istio_stats", _factory)
