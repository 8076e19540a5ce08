"""VHDS: a RouteConfiguration with `vhds` gets more virtual hosts as VirtualHost
resources over the (delta) ADS stream.

As Envoy's VhdsSubscription: the client subscribes with the RouteConfiguration's
name as a namespace, and every VirtualHost resource named `<route config name>/<host>`
(the namespace is what comes before the last "/", as a host has no slash and a route
config name may) belongs to it. Its virtual hosts are the RouteConfiguration's own
followed by those, in name order; the table is translated from the merged message.
VHDS is delta-only in Envoy (ADS must be DELTA_GRPC): over a state-of-the-world
stream a RouteConfiguration with vhds is rejected, as Envoy refuses it. Not served:
on-demand requests for a Host no virtual host serves (Envoy's on_demand filter), and
the clearing of a route configuration's VHDS hosts when the RouteConfiguration
itself is updated (they are kept until the control plane removes them).

`merged()` keeps its result while the RouteConfiguration and its VirtualHost
messages are the same objects, so apply()'s translation cache keeps the table.
Pure: messages are only read.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from envoy.config.route.v3 import route_pb2


def namespace(name: str) -> str:
    """The RouteConfiguration a VirtualHost resource belongs to ("" for none)."""
    return name.rsplit("/", 1)[0] if "/" in name else ""


def in_namespaces(name: str, names: Iterable[str] | frozenset[str]) -> bool:
    """Whether a VirtualHost resource name is subscribed by one of `names` (route
    configuration names, or the resource's own name)."""
    return name in names or namespace(name) in names


def vhds_names(route_configs: Iterable[Any]) -> set[str]:
    """The namespaces to subscribe to: the names of the RouteConfigurations with vhds."""
    return {rc.name for rc in route_configs if rc.HasField("vhds")}


class Merged:
    """What merged() made, by route configuration name: (rc, the VirtualHosts, result,
    their resource names)."""
    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: dict[str, tuple[Any, tuple[Any, ...], Any, tuple[str, ...]]] = {}

    def origin(self, route_config: str, field_path: str) -> tuple[str, str] | None:
        """(VirtualHost resource name, field path within it) when `field_path` of the
        merged RouteConfiguration lies in a virtual host VHDS brought."""
        hit = self.held.get(route_config)
        if hit is None or not field_path.startswith("virtual_hosts["):
            return None
        i = int(field_path[len("virtual_hosts["):field_path.index("]")])
        own = len(hit[0].virtual_hosts)
        if i < own or i - own >= len(hit[3]):
            return None
        return hit[3][i - own], field_path[field_path.index("]") + 1:].lstrip(".")


def merged(routes: Mapping[str, Any], vhosts: Mapping[str, Any], memo: Merged | None = None) -> dict[str, Any]:
    """The RouteConfigurations with their VHDS virtual hosts added (the others as they are)."""
    if not vhosts and not any(rc.HasField("vhds") for rc in routes.values()):
        return dict(routes)
    by_ns: dict[str, list[tuple[str, Any]]] = {}
    for name, vh in vhosts.items():
        by_ns.setdefault(namespace(name), []).append((name, vh))
    out: dict[str, Any] = {}
    kept: dict[str, tuple[Any, tuple[Any, ...], Any, tuple[str, ...]]] = {}
    for name, rc in routes.items():
        if not rc.HasField("vhds"):
            out[name] = rc
            continue
        pairs = sorted(by_ns.get(rc.name, ()), key=lambda kv: kv[0])
        mine = tuple(vh for _, vh in pairs)
        hit = memo.held.get(name) if memo is not None else None
        if hit is not None and hit[0] is rc and len(hit[1]) == len(mine) and all(
                a is b for a, b in zip(hit[1], mine)):
            got = hit[2]
        else:
            got = route_pb2.RouteConfiguration()
            got.CopyFrom(rc)
            got.virtual_hosts.extend(mine)
        kept[name] = (rc, mine, got, tuple(n for n, _ in pairs))
        out[name] = got
    if memo is not None:
        memo.held = kept
    return out


def sotw_refusal(rc: Any) -> str | None:
    """Why a RouteConfiguration cannot be served over a state-of-the-world stream, if it cannot."""
    if rc.HasField("vhds"):
        return "vhds needs the delta protocol: ADS must use DELTA_GRPC (as Envoy requires)"
    return None

