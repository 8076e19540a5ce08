"""Envoy Listener -> runtime.model.ListenerConfig.

A listener serves one filter chain whose last network filter is either an
http_connection_manager or a tcp_proxy. HTTP routes come inline (route_config) or
by RDS name: `routes` maps names to the tables already translated, and a name not
in it raises Waiting (a Rejected that is not an error: the caller holds the
listener back until it arrives, as Envoy warms it). HTTP filters and their
per-route settings are runtime.envoy.http_filters' business.
Envoy's defaults win where they differ from mosnx's (no path normalisation).
"""
from __future__ import annotations

from typing import Any

from ..model import Limits, ListenerConfig, PathNormalization, Timeouts
from ..routes import RouteAction, RouteTable
from .common import seconds, socket_address
from .findings import Findings, Rejection, Waiting
from .http_filters import check_route_filters, http_filters
from .istio import network_filter
from .protos import HCM, TCP_PROXY, HttpConnectionManager, tcp_proxy_pb2
from .routes import translate_route_config

ESCAPED = {0: "keep", 1: "keep", 2: "reject", 3: "unescape_and_redirect", 4: "unescape_and_forward"}


DIRECTIONS = {1: "INBOUND", 2: "OUTBOUND"}      # envoy.config.core.v3.TrafficDirection


def rds_name(listener: Any) -> str | None:
    """The RouteConfiguration an HTTP listener asks RDS for, if any."""
    for fc in listener.filter_chains[:1]:
        for nf in fc.filters:
            if nf.typed_config.type_url.endswith("." + "HttpConnectionManager"):
                hcm = HttpConnectionManager()
                if nf.typed_config.Unpack(hcm) and hcm.WhichOneof("route_specifier") == "rds":
                    return hcm.rds.route_config_name
    return None


def translate_listener(lst: Any, f: Findings, routes: dict[str, RouteTable] | None = None) -> ListenerConfig:
    if not lst.name:
        f.reject("a listener needs a name", "name")
    f.only(lst, {"name", "address", "filter_chains", "stat_prefix", "traffic_direction"})
    if not lst.HasField("address"):
        f.reject("a listener needs an address", "address")
    host, port = socket_address(lst.address, f.at("address"))
    if not 0 < port < 65536:
        f.at("address").reject(f"port {port} is outside 1..65535 (mosnx binds the port it is given)")
    if len(lst.filter_chains) != 1:
        f.reject("mosnx serves exactly one filter chain per listener", "filter_chains")
    fc = lst.filter_chains[0]
    ff = f.at("filter_chains").at(0)
    ff.only(fc, {"filters", "name"})
    if not fc.filters:
        ff.reject("a filter chain needs a network filter", "filters")
    extra: dict[str, Any] = {}          # options Istio's network filters ask for (runtime.envoy.istio)
    for i, nf in enumerate(fc.filters[:-1]):
        extra.update(network_filter(nf, ff.at("filters").at(i)) or {})
    last = fc.filters[-1]
    fl = ff.at("filters").at(len(fc.filters) - 1)
    if last.WhichOneof("config_type") != "typed_config":
        fl.reject("a network filter needs a typed_config")
    url = last.typed_config.type_url
    base: dict[str, Any] = {"name": lst.name, "host": host, "port": port}
    if lst.traffic_direction:       # what /drain_listeners?inboundonly selects
        base["options"] = {"traffic_direction": DIRECTIONS[lst.traffic_direction]}
    if extra:
        base["options"] = {**base.get("options", {}), **extra}
    if url == HCM:
        hcm = HttpConnectionManager()
        last.typed_config.Unpack(hcm)
        return _http(hcm, fl.at("typed_config"), base, routes or {})
    if url == TCP_PROXY:
        tp = tcp_proxy_pb2.TcpProxy()
        last.typed_config.Unpack(tp)
        return _tcp(tp, fl.at("typed_config"), base)
    fl.reject(f"network filter {url.rsplit('/', 1)[-1]} is not supported "
              "(http_connection_manager and tcp_proxy are)", "typed_config")


def _tcp(tp: Any, f: Findings, base: dict[str, Any]) -> ListenerConfig:
    f.only(tp, {"stat_prefix", "cluster", "weighted_clusters", "idle_timeout"})
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


def _http(hcm: Any, f: Findings, base: dict[str, Any], routes: dict[str, RouteTable]) -> ListenerConfig:
    f.only(hcm, {"stat_prefix", "codec_type", "route_config", "rds", "http_filters", "normalize_path",
                 "merge_slashes", "path_with_escaped_slashes_action", "request_headers_timeout",
                 "stream_idle_timeout", "drain_timeout", "common_http_protocol_options",
                 "max_request_headers_kb", "use_remote_address", "generate_request_id"})
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
    else:
        f.reject("http_connection_manager needs route_config or rds" + (f" ({kind} is not supported)" if kind else ""))
    filters, skipped = http_filters(hcm, f)
    check_route_filters(table, filters, skipped, f)
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
    try:
        return ListenerConfig(protocol="http", filters=tuple(filters), path_normalization=pn,
                              timeouts=Timeouts(**t), limits=Limits(**limits), route_table=table,
                              route_config=name, **base)
    except ValueError as e:
        f.reject(str(e))
