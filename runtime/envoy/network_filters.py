"""Envoy's network filters before a chain's last -> runtime.model.NetworkFilter.

TRANSLATORS maps a filter's type URL (the message name) to a function that makes the
NetworkFilter proxy.network_filters runs; INERT maps the type URLs of filters that
are recognised but do nothing here to why, and they are warned about (X001) and left
out (Istio's private network extensions are runtime.envoy.istio's). A udpa/xds TypedStruct is looked into: its inner type_url is the one that
counts. Any other network filter rejects the listener: Envoy has no is_optional for
network filters, so a proxy that cannot run one must not serve the chain without it.
"""
from __future__ import annotations

from typing import Any, Callable

from ..model import NetworkFilter
from .findings import Findings
from .rbac import NETWORK_RBAC, network_rbac_config

TYPED_STRUCTS = ("udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct")


def _rbac(nf: Any, f: Findings) -> NetworkFilter:
    from envoy.extensions.filters.network.rbac.v3 import rbac_pb2
    from ..filters.rbac import network_rbac
    from ..filters.rbac_match import RbacError
    msg = rbac_pb2.RBAC()
    nf.typed_config.Unpack(msg)
    cfg = network_rbac_config(msg, f.at("typed_config"))
    try:
        network_rbac(cfg)             # compiles now, so a rule that cannot run rejects here
    except RbacError as e:
        f.at("typed_config").reject(str(e))
    return NetworkFilter("rbac", nf.name or "envoy.filters.network.rbac", cfg)


TRANSLATORS: dict[str, Callable[[Any, Findings], NetworkFilter]] = {NETWORK_RBAC: _rbac}

# recognised, not run: type URL (message name) -> what mosnx does instead. Istio's own
# network extensions (istio.stats, metadata exchange, istio_authn) never come here:
# runtime.envoy.istio takes them first (listeners._stack)
INERT: dict[str, str] = {
    "envoy.extensions.filters.network.set_filter_state.v3.Config": "set_filter_state is not run",
}


def register(type_url: str, translate: Callable[[Any, Findings], NetworkFilter]) -> None:
    """Serve one more network filter (its runtime kind: proxy.network_filters.register)."""
    TRANSLATORS[type_url] = translate
    INERT.pop(type_url, None)


def type_name(any_msg: Any) -> str:
    """The message name of an Any, looking inside a TypedStruct."""
    name = any_msg.type_url.rsplit("/", 1)[-1]
    if name in TYPED_STRUCTS:
        from udpa.type.v1 import typed_struct_pb2
        ts = typed_struct_pb2.TypedStruct()
        try:
            any_msg.Unpack(ts)
        except Exception:        # a malformed struct: its outer name is all that is known
            return name
        if ts.type_url:
            return ts.type_url.rsplit("/", 1)[-1]
    return name


def network_filter(nf: Any, f: Findings) -> NetworkFilter | None:
    """One entry of a chain's `filters` before the last; `f` is at the entry. None: a
    recognised filter that does nothing here (warned)."""
    if nf.WhichOneof("config_type") != "typed_config":
        f.reject("a network filter needs a typed_config")
    name = type_name(nf.typed_config)
    translate = TRANSLATORS.get(name)
    if translate is not None:
        return translate(nf, f)
    why = INERT.get(name)
    if why is not None:
        f.warn(f"{nf.name or name}: {why}", "typed_config")
        return None
    f.reject(f"network filter {nf.name or name} ({name}) is not available in mosnx (Envoy has no optional "
             f"network filters: a listener with one it lacks is refused; served before the last: "
             f"{', '.join(sorted(TRANSLATORS))}; recognised and left out: {', '.join(sorted(INERT))})",
             "typed_config")
