"""Settings of multiplexed RPC listeners and clusters (`protocol: bolt | dubbo | thrift`).

A listener of an RPC protocol takes the same default `route:` as an HTTP listener
(cluster or weighted split, timeout, retry) and, under `rpc:`, routes matched in
order on what a call is: its service, method, version, group and attachments
(`headers`). The first route whose every condition holds takes the call; a call
no route takes follows the default route; with no default route it is answered
"no route" in the protocol's own error format.

`method_stats: true` counts calls per service and method as well; a listener's
access_log logs one line per call, and its `tracing:` continues the trace a call
carries in its attachments and passes it on upstream.

A retry (route `retry:`) is made only for a method listed in `idempotent_methods`
(a call that is not idempotent could run twice), on the upstream resetting, the
connection failing or a per-try timeout.

A cluster of an RPC protocol multiplexes: `rpc.connections` connections per
endpoint carry up to `rpc.max_requests_per_connection` calls in flight each.

A Thrift listener reads each message's transport and protocol as it comes;
`thrift: {transport, protocol}` pins them, so a caller in another encoding is refused
at the proxy rather than passed on to providers that cannot read it.

The protocol names are declared here (RPC_PROTOCOLS) because the schema must know
them before any proxy code is imported; the proxy's codec registry serves them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..routes import RouteAction
from .compound import ListOf, Mapped, MapOf
from .route import ROUTE, RouteWithFilters
from .scalars import Bool, Enum, Int, Size, Str
from .reader import KeyPath, Reader
from .schema import Check, Field, Obj

RPC_PROTOCOLS = ("bolt", "dubbo", "thrift")
MiB = 1024 * 1024

# The pseudo-keys of a call's header map (proxy.rpc.codec): match keys -> header key
MATCH_KEYS = {"service": ":service", "method": ":method", "version": ":version", "group": ":group"}
# Match keys a protocol's header map cannot carry, by protocol: a route asking for
# one could never match, so it is a config error. (Dubbo's attachments are read
# when a route asks for them, so Bolt and Dubbo both carry every key.)
UNSUPPORTED: dict[str, frozenset[str]] = {
    # a Thrift call is a method name ("Service:method" when multiplexed) and a struct
    "thrift": frozenset({"version", "group", "headers"})}


@dataclass(frozen=True, slots=True)
class RpcMatch:
    service: str | None = None
    method: str | None = None
    version: str | None = None
    group: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """(header-map key, wanted value), each of which must hold."""
        out = [(MATCH_KEYS[k], v) for k in ("service", "method", "version", "group")
               if (v := getattr(self, k)) is not None]
        return tuple(out) + self.headers


@dataclass(frozen=True, slots=True)
class RpcRoute:
    match: RpcMatch
    route: RouteAction


@dataclass(frozen=True, slots=True)
class RpcOptions:
    routes: tuple[RpcRoute, ...] = ()
    max_frame_size: int = 8 * MiB
    idempotent_methods: frozenset[str] = frozenset()
    method_stats: bool = False


@dataclass(frozen=True, slots=True)
class RpcClusterOptions:
    connections: int = 1
    max_requests_per_connection: int = 1024


@dataclass(frozen=True, slots=True)
class ThriftOptions:
    transport: str = "auto"
    protocol: str = "auto"


def _plain_route(action: object) -> RouteAction:
    if isinstance(action, RouteWithFilters):
        raise ValueError("fault and rate_limit are not per-route policies on an RPC listener yet")
    return action  # type: ignore[return-value]  # ROUTE builds a RouteAction otherwise


def _match(kwargs: dict) -> dict:
    h = kwargs.get("headers")
    kwargs["headers"] = tuple(h.items()) if h else ()
    return kwargs


MATCH = Obj({
    "service": Field(Str(), "the service (Dubbo's interface path, SOFA's interface name)"),
    "method": Field(Str(), "the method called (Bolt: known when the client sends sofa_head_method_name)"),
    "version": Field(Str(), "the service version"),
    "group": Field(Str(), "the service group (Bolt: the unique id; Dubbo: the `group` attachment)"),
    "headers": Field(MapOf(Str(empty=True)), "attachments (Bolt's header map, Dubbo's attachments) that must "
                     "have these values"),
}, build=RpcMatch, adapt=_match)

RPC_ROUTE = Obj({
    "match": Field(MATCH, "conditions on the call, all of which must hold; {} matches every call",
                   required=True),
    "route": Field(Mapped(ROUTE, _plain_route), "where a matching call goes: {cluster or weighted_clusters, "
                   "timeout, retry}", required=True),
}, build=RpcRoute)

LISTENER = Obj({
    "routes": Field(ListOf(RPC_ROUTE), "routes tried in order before the default route: [{match, route}]"),
    "max_frame_size": Field(Size(positive=True), "largest frame accepted; a larger one closes the connection"),
    "idempotent_methods": Field(Mapped(ListOf(Str(), single=True), frozenset),
                                "methods safe to call twice: only these are retried under a route's retry"),
    "method_stats": Field(Bool(), "count calls per service and method too (`<proto>.<listener>.method."
                          "<service>.<method>.*`); off by default, since every method is a series of its own"),
}, build=RpcOptions)

CLUSTER = Obj({
    "connections": Field(Int(1, 64), "connections per endpoint that calls are multiplexed over"),
    "max_requests_per_connection": Field(Int(1), "calls in flight on one connection; above it a call "
                                         "waits (as a pending request) for room"),
}, build=RpcClusterOptions)

THRIFT = Obj({
    "transport": Field(Enum("auto", "framed", "unframed"), "the transport callers must use; auto: "
                       "either, told apart per message"),
    "protocol": Field(Enum("auto", "binary", "compact"), "the protocol callers must use; auto: any, "
                      "told apart per message (binary strict or lax, compact)"),
}, build=ThriftOptions)

# Merged into document.LISTENER's (STACK's) and document.CLUSTER's fields.
LISTENER_FIELDS = {
    "rpc": Field(LISTENER, "settings of a protocol: bolt, dubbo or thrift listener: {routes, "
                 "max_frame_size, idempotent_methods, method_stats}"),
    "thrift": Field(THRIFT, "a protocol: thrift listener's encoding: {transport, protocol}"),
}
CLUSTER_FIELDS = {
    "rpc": Field(CLUSTER, "protocol: bolt, dubbo or thrift: {connections, max_requests_per_connection}"),
}


def routes_or(check: Check) -> Check:
    """A listener's route-or-rules check, except that an RPC listener's rpc.routes are
    routes enough (a call none of them takes is answered "no route")."""
    def wrapped(values: dict, present: set, r: Reader, path: KeyPath) -> bool:
        opts = values.get("rpc")
        if values.get("protocol") in RPC_PROTOCOLS and isinstance(opts, RpcOptions) and opts.routes \
                and not present & {"route", "rules"}:
            return True
        return check(values, present, r, path)
    return wrapped


def check_listener(kwargs: dict) -> dict:
    """An RPC listener's values: routes only on what its protocol carries; rpc: only on one."""
    proto = kwargs.get("protocol")
    opts = kwargs.get("rpc")
    if proto not in RPC_PROTOCOLS:
        if opts is not None:
            raise ValueError(f"rpc: settings need protocol: {' or '.join(RPC_PROTOCOLS)}")
    if proto != "thrift" and kwargs.get("thrift") is not None:
        raise ValueError("thrift: settings need protocol: thrift")
    if proto not in RPC_PROTOCOLS:
        return kwargs
    action = kwargs.get("route")
    if action is not None and getattr(action, "cluster_header", None) is not None:
        raise ValueError("route.cluster_header needs an HTTP listener (an RPC call has no HTTP headers)")
    for key in ("tls", "http2", "tcp"):
        if kwargs.get(key) is not None:
            # refused rather than ignored: a listener thought to be TLS would serve plaintext
            raise ValueError(f"{key}: is not served on a protocol: {proto} listener yet")
    if kwargs.get("rules") and isinstance(opts, RpcOptions) and opts.routes:
        raise ValueError("rpc.routes and rules: both route the calls: give one (rules: route with rpc blocks)")
    if isinstance(opts, RpcOptions):
        bad = UNSUPPORTED.get(proto, frozenset())
        for i, r in enumerate(opts.routes):
            m = r.match
            for k in sorted(bad):
                if getattr(m, k):
                    raise ValueError(f"rpc.routes[{i}].match.{k}: a {proto} call is not routed by {k} "
                                     "(its header map does not carry it)")
    return kwargs
