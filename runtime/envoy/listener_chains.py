"""Envoy's filter chains: filter_chain_match, default_filter_chain, listener filters.

A listener with several filter chains (or one with a match, or a default chain)
becomes a "chains" ListenerConfig: each chain a FilterChain holding its match and its
protocol stack, a ListenerConfig named "<listener>/<chain>" (the chain's name, made
unique with "#<index>" when two chains share one). The match is translated on its
own (translate_chain_match, chain_matches), independent of the chain's filters, so a
listener whose filters mosnx cannot run still tells which chain a connection gets.

Listener filters: tls_inspector and http_inspector are served (with filter_disabled
port ranges); original_dst is the listener's original_dst flag (has_original_dst);
others are skipped with a warning. A chain's TLS
(transport_socket) is runtime.envoy.tls' downstream_tls(), SDS included.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Callable

from ..model import ChainMatch, FilterChain, IPNetwork, ListenerConfig, ListenerFilter
from ..routes import RouteTable
from .common import seconds
from .findings import Findings

CHAIN_FIELDS = frozenset({"default_filter_chain", "listener_filters", "listener_filters_timeout",
                          "continue_on_listener_filters_timeout"})
TLS_INSPECTOR = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
HTTP_INSPECTOR = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
ORIGINAL_DST = "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
_BY_NAME = {"envoy.filters.listener.tls_inspector": "tls_inspector", TLS_INSPECTOR: "tls_inspector",
            "envoy.listener.tls_inspector": "tls_inspector",
            "envoy.filters.listener.http_inspector": "http_inspector", HTTP_INSPECTOR: "http_inspector",
            "envoy.listener.http_inspector": "http_inspector"}
DOWNSTREAM_TLS = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
RAW_BUFFER = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
SOURCE_TYPES = {0: "any", 1: "local", 2: "external"}

# how a chain's stack is translated: listeners._stack (passed in, so this module
# does not import the one that imports it)
StackOf = Callable[[Any, Findings, dict[str, Any], dict[str, RouteTable]], ListenerConfig]


def one_chain(lst: Any) -> bool:
    """A listener that is one protocol stack: one chain, no match, no default chain."""
    return (len(lst.filter_chains) == 1 and not lst.HasField("default_filter_chain")
            and not lst.filter_chains[0].filter_chain_match.ListFields())


def _stack_names(lst: Any) -> list[str]:
    """A unique name per chain (the default chain last): its own, or its index."""
    raw = [fc.name or str(i) for i, fc in enumerate(lst.filter_chains)]
    if lst.HasField("default_filter_chain"):
        raw.append(lst.default_filter_chain.name or "default")
    counts: dict[str, int] = {}
    for n in raw:
        counts[n] = counts.get(n, 0) + 1
    return [f"{lst.name}/{n}" + (f"#{i}" if counts[n] > 1 else "") for i, n in enumerate(raw)]


def chain_matches(lst: Any, f: Findings) -> list[tuple[str, ChainMatch]]:
    """(chain name, its match) for each filter chain of `lst`, in order, the filters
    left untranslated; a chain whose match cannot be served is left out (warned)."""
    out = []
    for i, fc in enumerate(lst.filter_chains):
        m = translate_chain_match(fc.filter_chain_match, f.at("filter_chains").at(i).at("filter_chain_match"))
        if m is not None:
            out.append((fc.name, m))
    return out


def translate_chains(lst: Any, f: Findings, base: dict[str, Any], routes: dict[str, RouteTable],
                     stack_of: StackOf) -> ListenerConfig:
    if not lst.filter_chains and not lst.HasField("default_filter_chain"):
        f.reject("a listener needs a filter chain", "filter_chains")
    names = _stack_names(lst)
    chains: list[FilterChain] = []
    for i, fc in enumerate(lst.filter_chains):
        ff = f.at("filter_chains").at(i)
        m = translate_chain_match(fc.filter_chain_match, ff.at("filter_chain_match"))
        if m is None:
            continue
        stack = stack_of(fc, ff, {**base, "name": names[i]}, routes)
        chains.append(FilterChain(fc.name, m, dataclasses.replace(stack, chain_of=lst.name)))
    default = None
    if lst.HasField("default_filter_chain"):
        dfc = lst.default_filter_chain
        fd = f.at("default_filter_chain")
        if dfc.filter_chain_match.ListFields():
            fd.warn("a default chain takes what no other chain matches; its filter_chain_match is ignored",
                    "filter_chain_match")
        stack = stack_of(dfc, fd, {**base, "name": names[-1]}, routes)
        default = FilterChain(dfc.name, ChainMatch(), dataclasses.replace(stack, chain_of=lst.name))
    timeout = seconds(lst.listener_filters_timeout) if lst.HasField("listener_filters_timeout") else 15.0
    return ListenerConfig(protocol="chains", filter_chains=tuple(chains), default_filter_chain=default,
                          listener_filters=listener_filters(lst, f), listener_filters_timeout=timeout,
                          continue_on_listener_filters_timeout=lst.continue_on_listener_filters_timeout,
                          **base)


def _networks(ranges: Any, f: Findings) -> tuple[IPNetwork, ...]:
    out = []
    for i, r in enumerate(ranges):
        try:
            out.append(ipaddress.ip_network(f"{r.address_prefix}/{r.prefix_len.value}", strict=False))
        except ValueError as e:
            f.at(i).reject(f"not an address range: {e}")
    return tuple(out)


def translate_chain_match(m: Any, f: Findings) -> ChainMatch | None:
    """An envoy.config.listener.v3.FilterChainMatch; None (with a warning) for a
    transport protocol no inspector here detects, which no connection can match."""
    f.only(m, {"destination_port", "prefix_ranges", "direct_source_prefix_ranges", "source_type",
               "source_prefix_ranges", "source_ports", "server_names", "transport_protocol",
               "application_protocols"}, "not supported by mosnx; the chain matches as if it were unset")
    if m.transport_protocol not in ("", "raw_buffer", "tls"):
        f.warn(f"transport protocol {m.transport_protocol!r} is never detected here; the chain is skipped",
               "transport_protocol")
        return None
    try:
        return ChainMatch(
            destination_port=m.destination_port.value if m.HasField("destination_port") else 0,
            prefix_ranges=_networks(m.prefix_ranges, f.at("prefix_ranges")),
            server_names=tuple(n.lower() for n in m.server_names),
            transport_protocol=m.transport_protocol,
            application_protocols=tuple(m.application_protocols),
            direct_source_prefix_ranges=_networks(m.direct_source_prefix_ranges, f.at("direct_source_prefix_ranges")),
            source_type=SOURCE_TYPES.get(m.source_type, "any"),
            source_prefix_ranges=_networks(m.source_prefix_ranges, f.at("source_prefix_ranges")),
            source_ports=tuple(m.source_ports))
    except ValueError as e:
        f.reject(str(e))


def listener_filters(lst: Any, f: Findings) -> tuple[ListenerFilter, ...]:
    out = []
    for i, lf in enumerate(lst.listener_filters):
        fl = f.at("listener_filters").at(i)
        url = lf.typed_config.type_url.rsplit("/", 1)[-1] if lf.HasField("typed_config") else ""
        kind = _BY_NAME.get(url) or (None if url else _BY_NAME.get(lf.name))
        if kind is None:
            if not _is_original_dst(lf, url):
                fl.warn(f"listener filter {url or lf.name} is not available in mosnx; skipped")
            continue
        ports: tuple[tuple[int, int], ...] = ()
        if lf.HasField("filter_disabled"):
            got = _port_ranges(lf.filter_disabled)
            if got is None:
                fl.warn("only destination_port_range (or an or_match of them) is supported; "
                        "the filter runs for every connection", "filter_disabled")
            else:
                ports = got
        out.append(ListenerFilter(kind, ports))
    return tuple(out)


def _is_original_dst(lf: Any, url: str) -> bool:
    return url == ORIGINAL_DST or (not url and lf.name in ("envoy.filters.listener.original_dst",
                                                           "envoy.listener.original_dst"))


def has_original_dst(lst: Any) -> bool:
    """Whether the listener runs Envoy's original_dst listener filter."""
    for lf in lst.listener_filters:
        url = lf.typed_config.type_url.rsplit("/", 1)[-1] if lf.HasField("typed_config") else ""
        if _is_original_dst(lf, url):
            return True
    return False


def _port_ranges(p: Any) -> tuple[tuple[int, int], ...] | None:
    kind = p.WhichOneof("rule")
    if kind == "destination_port_range":
        return ((p.destination_port_range.start, p.destination_port_range.end),)
    if kind == "or_match":
        out: list[tuple[int, int]] = []
        for r in p.or_match.rules:
            got = _port_ranges(r)
            if got is None:
                return None
            out.extend(got)
        return tuple(out)
    return None

