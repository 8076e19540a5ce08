"""Envoy Listener -> runtime.model.ListenerConfig.

Each filter chain's last network filter is either an http_connection_manager or a
tcp_proxy: that is the chain's protocol stack (_stack), with its TLS when its
transport_socket has some. A listener with one chain and no match is that stack;
one with several chains (or a match, or a default chain) is a "chains" listener,
translated by listener_chains. HTTP routes come inline (route_config) or by RDS
name: `routes` maps names to the tables already translated, and a name not in it
raises Waiting (a Rejected that is not an error: the caller holds the listener back
until it arrives, as Envoy warms it). Scoped routes (scoped_routes) are
runtime.envoy.scoped_routes' table, from the SRDS scopes held (`scopes`). HTTP filters and their per-route settings are
runtime.envoy.http_filters' business.
Envoy's defaults win where they differ from mosnx's (no path normalisation).
The chain's transport_socket (a DownstreamTlsContext) becomes options["tls"]
(tls.downstream_tls); a secret it names that has not come raises Waiting.
Network filters before the last: Istio's own (istio.stats, metadata exchange,
istio_authn) are runtime.envoy.istio's, the rest network_filters' (run per
connection, or recognised and warned about, or the listener is rejected).
Transparent interception (use_original_dst, the original_dst listener filter,
bind_to_port, transparent, socket_options) belongs to the listener, never to its
chains' stacks.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..model import Limits, ListenerConfig, NetworkFilter, PathNormalization, SocketOption, Timeouts
from ..routes import RouteAction, RouteTable
from .access_log import access_log
from .common import seconds, socket_address
from .findings import Findings, Rejection, Waiting
from .http_filters import check_route_filters, http_filters
from . import istio
from .protos import HCM, TCP_PROXY, HttpConnectionManager, tcp_proxy_pb2
from .listener_chains import CHAIN_FIELDS, has_original_dst, one_chain, translate_chains
from .network_filters import network_filter
from .routes import translate_route_config
from .scoped_routes import Scope, scoped_table
from .secrets import SecretStore
from .tls import downstream_tls

ESCAPED = {0: "keep", 1: "keep", 2: "reject", 3: "unescape_and_redirect", 4: "unescape_and_forward"}
DIRECTIONS = {1: "INBOUND", 2: "OUTBOUND"}      # envoy.config.core.v3.TrafficDirection


def rds_name(listener: Any) -> str | None:
    """The RouteConfiguration an HTTP listener asks RDS for, if any (its first)."""
    names = rds_names(listener)
    return names[0] if names else None


def rds_names(listener: Any) -> list[str]:
    """The RouteConfigurations an HTTP listener asks RDS for, one per chain that does."""
    out: list[str] = []
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for fc in chains:
        for nf in fc.filters:
            if nf.typed_config.type_url.endswith("." + "HttpConnectionManager"):
                hcm = HttpConnectionManager()
                if nf.typed_config.Unpack(hcm) and hcm.WhichOneof("route_specifier") == "rds":
                    if hcm.rds.route_config_name not in out:
                        out.append(hcm.rds.route_config_name)
    return out


def translate_listener(lst: Any, f: Findings, routes: dict[str, RouteTable] | None = None,
                       secrets: SecretStore | None = None, scopes: Mapping[str, Scope] | None = None
                       ) -> ListenerConfig:
    if not lst.name:
        f.reject("a listener needs a name", "name")
    f.only(lst, {"name", "address", "filter_chains", "stat_prefix", "traffic_direction", "use_original_dst",
                 "bind_to_port", "transparent", "socket_options", *CHAIN_FIELDS})
    if not lst.HasField("address"):
        f.reject("a listener needs an address", "address")
    host, port = socket_address(lst.address, f.at("address"))
    if not 0 < port < 65536:
        f.at("address").reject(f"port {port} is outside 1..65535 (mosnx binds the port it is given)")
    base: dict[str, Any] = {"name": lst.name, "host": host, "port": port}
    if lst.traffic_direction:       # what /drain_listeners?inboundonly selects
        base["options"] = {"traffic_direction": DIRECTIONS[lst.traffic_direction]}

    def stack(fc: Any, ff: Findings, b: dict[str, Any], r: dict[str, RouteTable]) -> ListenerConfig:
        return _stack(fc, ff, b, r, secrets, lst.name, scopes)
    if not one_chain(lst):
        lc = translate_chains(lst, f, base, routes or {}, stack)
    else:
        lc = stack(lst.filter_chains[0], f.at("filter_chains").at(0), base, routes or {})
    own = _interception(lst, f)
    return dataclasses.replace(lc, **own) if own else lc


def _interception(lst: Any, f: Findings) -> dict[str, Any]:
    """The listener's own fields of transparent interception, as ListenerConfig's."""
    out: dict[str, Any] = {}
    if lst.HasField("use_original_dst") and lst.use_original_dst.value:
        out["use_original_dst"] = True
    if has_original_dst(lst):
        out["original_dst"] = True
    if lst.HasField("bind_to_port") and not lst.bind_to_port.value:
        out["bind_to_port"] = False
    if lst.HasField("transparent") and lst.transparent.value:
        out["transparent"] = True
    opts = []
    for i, so in enumerate(lst.socket_options):
        fo = f.at("socket_options").at(i)
        fo.only(so, {"description", "level", "name", "int_value", "buf_value", "state"})
        if so.WhichOneof("value") != "int_value":
            fo.warn("only int_value socket options are set; this one is not", "buf_value")
            continue
        opts.append(SocketOption(so.level, so.name, so.int_value))
    if opts:
        out["socket_options"] = tuple(opts)
    return out


def _stack(fc: Any, ff: Findings, base: dict[str, Any], routes: dict[str, RouteTable],
           secrets: SecretStore | None, listener: str, scopes: Mapping[str, Scope] | None = None) -> ListenerConfig:
    """One filter chain's protocol stack: its last network filter (and its TLS; a secret
    it names that has not come raises Waiting)."""
    ff.only(fc, {"filters", "name", "filter_chain_match", "transport_socket"})
    if not fc.filters:
        ff.reject("a filter chain needs a network filter", "filters")
    extra: dict[str, Any] = {}          # options Istio's network filters ask for (runtime.envoy.istio)
    before: list[NetworkFilter] = []    # the filters run per connection (runtime.envoy.network_filters)
    for i, nf in enumerate(fc.filters[:-1]):
        fi = ff.at("filters").at(i)
        if istio.network_kind(nf) is not None:
            extra.update(istio.network_filter(nf, fi) or {})
            continue
        got = network_filter(nf, fi)
        if got is not None:
            before.append(got)
    last = fc.filters[-1]
    fl = ff.at("filters").at(len(fc.filters) - 1)
    if last.WhichOneof("config_type") != "typed_config":
        fl.reject("a network filter needs a typed_config")
    url = last.typed_config.type_url
    if url == HCM:      # the TCP metadata exchange serves tcp_proxy; HTTP has the header one
        extra.pop("istio_mx", None)
    if extra:       # a copy: the chains of one listener share `base`
        base = {**base, "options": {**base.get("options", {}), **extra}}
    if url == HCM:
        hcm = HttpConnectionManager()
        last.typed_config.Unpack(hcm)
        lc = _http(hcm, fl.at("typed_config"), base, routes, scopes)
    elif url == TCP_PROXY:
        tp = tcp_proxy_pb2.TcpProxy()
        last.typed_config.Unpack(tp)
        lc = _tcp(tp, fl.at("typed_config"), base)
    else:
        fl.reject(f"network filter {url.rsplit('/', 1)[-1]} is not supported "
                  "(http_connection_manager and tcp_proxy are)", "typed_config")
    if fc.HasField("transport_socket"):
        tls = downstream_tls(fc.transport_socket, ff.at("transport_socket"), secrets, listener)
        if tls is not None:
            lc = dataclasses.replace(lc, options={**lc.options, "tls": tls})
    if before:
        lc = dataclasses.replace(lc, network_filters=tuple(before))
    return lc


def _tcp(tp: Any, f: Findings, base: dict[str, Any]) -> ListenerConfig:
    f.only(tp, {"stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "access_log"})
    if tp.access_log:
        base["access_log"] = access_log(tp.access_log, f.at("access_log"))
    kind = tp.WhichOneof("cluster_specifier")
    if kind == "cluster":
        action = RouteAction(cluster=tp.cluster, timeout=None)
    elif kind == "weighted_clusters":
        pairs = tuple((c.name, c.weight) for c in tp.weighted_clusters.clusters)
        if sum(w for _, w in pairs) <= 0:
            f.reject("the weights must add up to more than 0", "weighted_clusters")
        action = RouteAction(weighted_clusters=pairs, timeout=None)
    else:
        f.reject("tcp_proxy needs cluster or weighted_clusters")
    timeouts = Timeouts(idle=seconds(tp.idle_timeout)) if tp.HasField("idle_timeout") else Timeouts(idle=3600.0)
    return ListenerConfig(protocol="tcp", route=action, timeouts=timeouts, **base)


def _http(hcm: Any, f: Findings, base: dict[str, Any], routes: dict[str, RouteTable],
          scopes: Mapping[str, Scope] | None = None) -> ListenerConfig:
    f.only(hcm, {"stat_prefix", "codec_type", "route_config", "rds", "scoped_routes", "http_filters",
                 "normalize_path",
                 "merge_slashes", "path_with_escaped_slashes_action", "request_headers_timeout",
                 "stream_idle_timeout", "drain_timeout", "common_http_protocol_options",
                 "max_request_headers_kb", "use_remote_address", "generate_request_id", "access_log"})
    kind = hcm.WhichOneof("route_specifier")
    if kind == "route_config":
        name = hcm.route_config.name or base["name"]
        table = translate_route_config(hcm.route_config, f.at("route_config"))
    elif kind == "rds":
        name = hcm.rds.route_config_name
        if not name:
            f.at("rds").reject("rds needs a route_config_name", "route_config_name")
        got = routes.get(name)
        if got is None:
            fr = f.at("rds").at("route_config_name")
            raise Waiting(Rejection(fr.type_url, fr.name, fr.path, f'RouteConfiguration "{name}" has not been received'))
        table = got
    elif kind == "scoped_routes":
        name = hcm.scoped_routes.name
        table = scoped_table(hcm.scoped_routes, f.at("scoped_routes"), routes, scopes)
    else:
        f.reject("http_connection_manager needs route_config, rds or scoped_routes"
                 + (f" ({kind} is not supported)" if kind else ""))
    filters, skipped = http_filters(hcm, f)
    check_route_filters(table, filters, skipped, f)
    alpn = istio.alpn_of(hcm)
    if alpn:        # istio.alpn: what the upstream TLS offers an Istio peer (proxy.tls.istio_alpn)
        base = {**base, "options": {**base.get("options", {}), "istio_alpn": alpn}}
    pn = PathNormalization(normalize=hcm.normalize_path.value if hcm.HasField("normalize_path") else False,
                           merge_slashes=hcm.merge_slashes,
                           escaped_slashes=ESCAPED.get(hcm.path_with_escaped_slashes_action, "keep"))
    t: dict[str, float] = {}
    if hcm.HasField("request_headers_timeout") and seconds(hcm.request_headers_timeout) > 0:
        t["request_headers"] = seconds(hcm.request_headers_timeout)
    if hcm.HasField("stream_idle_timeout"):
        t["stream_idle"] = seconds(hcm.stream_idle_timeout)
    if hcm.HasField("drain_timeout"):
        t["drain"] = seconds(hcm.drain_timeout)
    limits: dict[str, int] = {}
    if hcm.HasField("common_http_protocol_options"):
        cp = hcm.common_http_protocol_options
        f.at("common_http_protocol_options").only(cp, {"idle_timeout", "max_headers_count"})
        if cp.HasField("idle_timeout"):
            t["idle"] = seconds(cp.idle_timeout)
        if cp.HasField("max_headers_count"):
            limits["request_headers_count"] = max(1, cp.max_headers_count.value)
    if hcm.HasField("max_request_headers_kb"):
        limits["request_headers"] = max(1, hcm.max_request_headers_kb.value) * 1024
    if hcm.access_log:
        base["access_log"] = access_log(hcm.access_log, f.at("access_log"))
    try:
        return ListenerConfig(protocol="http", filters=tuple(filters), path_normalization=pn,
                              timeouts=Timeouts(**t), limits=Limits(**limits), route_table=table,
                              route_config=name, **base)
    except ValueError as e:
        f.reject(str(e))

