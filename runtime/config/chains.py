"""mosnx.yaml's filter chains: several protocol stacks on one listener.

A listener with `filter_chains:` (or `default_filter_chain:`) keeps only its name,
address and the listener filters; every other listener key belongs to a chain,
which takes them all (protocol, route or rules, filters, tls, tcp, ...) plus its
`name` and its `match` (Envoy's filter_chain_match, in mosnx's words). The chains'
stacks become ListenerConfigs named "<listener>/<chain>", as Envoy's do
(runtime.envoy.listener_chains), so the core serves both alike.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Callable

from ..model import LISTENER_FILTERS, SOURCE_TYPES, ChainMatch, FilterChain, ListenerConfig, ListenerFilter
from .compound import ListOf, Mapped, Unique
from .reader import BAD_VALUE, KeyPath, Reader, dotted
from .scalars import Bool, Duration, Enum, Int, Str
from .schema import Check, Field, Obj, exactly_one


def _server_name(name: str) -> None:
    if "*" in name and not (name.startswith("*.") and "*" not in name[2:]):
        raise ValueError(f'"{name}": a wildcard is only allowed as a leading "*."')


_NETS = ListOf(Mapped(Str(), lambda s: ipaddress.ip_network(s, strict=False)), min_items=1, single=True)

MATCH = Obj({
    "destination_port": Field(Int(1, 65535), "the port the connection was made to"),
    "prefix_ranges": Field(_NETS, "address ranges (CIDR) the destination address is in; the longest wins"),
    "server_names": Field(ListOf(Mapped(Str(_server_name), str.lower), min_items=1, single=True),
                          'TLS server names (needs tls_inspector); "*.example.com" for a wildcard; '
                          "exact before wildcard"),
    "transport_protocol": Field(Enum("raw_buffer", "tls"), "tls or raw_buffer, as tls_inspector finds"),
    "application_protocols": Field(ListOf(Str(), min_items=1, single=True),
                                   "ALPN protocols offered in the ClientHello, or http/1.1, http/1.0, h2c "
                                   "as http_inspector finds"),
    "direct_source_prefix_ranges": Field(_NETS, "address ranges of the directly connected peer"),
    "source_type": Field(Enum(*SOURCE_TYPES), "local: from this host; external: from elsewhere"),
    "source_prefix_ranges": Field(_NETS, "address ranges of the client"),
    "source_ports": Field(ListOf(Int(1, 65535), min_items=1, single=True), "the client's ports"),
}, build=ChainMatch)

CHAIN_KEYS = frozenset({"filter_chains", "default_filter_chain"})


def chain_objects(stack: dict[str, Field], adapt: Callable[[dict], dict]) -> tuple[Obj, Obj]:
    """The schema of a filter chain and of a default chain, with `stack` (a listener's
    protocol keys) and `adapt` (what a listener's adapt does to them)."""
    model = {f.name for f in dataclasses.fields(ListenerConfig)}

    def build(kwargs: dict, span: Any) -> FilterChain:
        name = kwargs.pop("name", "default")
        match = kwargs.pop("match", ChainMatch())
        kwargs = adapt(kwargs)
        options = {k: kwargs.pop(k) for k in list(kwargs) if k not in model}
        # name, host and port are the listener's, set when it is built (finish())
        return FilterChain(name, match, ListenerConfig(name=name, host="", port=0, span=span, options=options,
                                                       **kwargs))

    one = exactly_one("route", "rules", what="a default route, or .mdsl rules that declare the routes")
    chain = Obj({"name": Field(Str(), "the chain's name, unique in the listener; stats and logs name its "
                               "stack <listener>/<name>", required=True),
                 "match": Field(MATCH, "which connections this chain takes (Envoy's filter_chain_match); "
                                "absent: any"),
                 **stack}, build=build, checks=[one], label="a filter chain mapping")
    default = Obj({"name": Field(Str(), "the chain's name (default: default)"), **stack},
                  build=build, checks=[one], label="a filter chain mapping")
    return chain, default


def listener_fields(chain: Obj, default: Obj) -> dict[str, Field]:
    """Merged into document.LISTENER's fields."""
    return {
        "filter_chains": Field(ListOf(chain, min_items=1, unique=[Unique("filter chain", lambda c: c.name, "name")]),
                               "several protocol stacks on this address, each connection served by the one "
                               "its first bytes and addresses match (Envoy's filter chains); the listener "
                               "then keeps only name, address and the listener_filters keys"),
        "default_filter_chain": Field(default, "the chain for connections no filter chain matches; "
                                      "absent: they are closed"),
        "listener_filters": Field(ListOf(Enum(*LISTENER_FILTERS), single=True),
                                  "what is read of a connection's first bytes to match chains: "
                                  "tls_inspector (TLS, server name, ALPN), http_inspector (HTTP/1.x or h2c)"),
        "listener_filters_timeout": Field(Duration(), "how long the listener filters wait for bytes; 0: no limit"),
        "continue_on_listener_filters_timeout": Field(Bool(), "after that timeout, match with what is known "
                                                      "instead of closing the connection"),
    }


def stack_or_chains(stack_keys: set[str]) -> Check:
    """A listener has route: or rules: (exactly one), or filter chains and none of
    the keys that belong to a chain."""
    one = exactly_one("route", "rules", what="a default route, or .mdsl rules that declare the routes")

    def check(values: dict, present: set, r: Reader, path: KeyPath) -> bool:
        if not present & CHAIN_KEYS:
            return one(values, present, r, path)
        extra = sorted(present & stack_keys)
        if extra:
            r.error(r.at(path + (extra[0],)), BAD_VALUE,
                    f"{dotted(path)}: {extra[0]}: belongs in a filter chain when the listener has filter chains")
            return False
        return True
    return check


def finish(kwargs: dict) -> dict:
    """A listener's values, once built: with chains, protocol "chains" and each
    stack named and placed as the listener."""
    kwargs["listener_filters"] = tuple(ListenerFilter(k) for k in kwargs.get("listener_filters") or ())
    chains = kwargs.get("filter_chains") or ()
    default = kwargs.get("default_filter_chain")
    if not chains and default is None:
        return kwargs
    name, host, port = kwargs["name"], kwargs["host"], kwargs["port"]

    def placed(c: FilterChain) -> FilterChain:
        return dataclasses.replace(c, stack=dataclasses.replace(c.stack, name=f"{name}/{c.name}", host=host,
                                                                port=port, chain_of=name))
    kwargs["protocol"] = "chains"
    kwargs["filter_chains"] = tuple(placed(c) for c in chains)
    kwargs["default_filter_chain"] = placed(default) if default is not None else None
    return kwargs
