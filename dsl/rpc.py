"""RPC rules: the `rpc` block's fields, what its routes may say, and the router they compile to.

An `rpc NAME { route ... }` block routes the calls of an RPC listener (protocol bolt
or dubbo). Its conditions read only the call's own facts, the rpc.* fields, which
are the codec's header map (proxy.rpc.codec: the pseudo-keys `:service`,
`:method`, `:version`, `:group`, and the attachments by name); an HTTP rule never
reads them, and an RPC rule never reads an HTTP field (P503, dsl.check).

Compiled guards are closures over that header map (a dict of str), not over a
StreamContext, so routing a call allocates nothing: RpcRouter is called with
frame.headers and answers the first matching route's RouteAction, a LocalReply
(`respond`: its status picks the protocol's error, as a filter's reply does), or
None when no route takes the call (the listener's default route follows).
"""
from __future__ import annotations

from typing import Any, Callable

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.attributes import ATTRIBUTES
from mosnx.runtime.routes import RouteAction

from . import scheme as S

# field -> the header-map key it reads ("rpc.headers" is keyed by the attachment's name)
RPC_FIELDS: dict[str, str | None] = {
    "rpc.service": ":service", "rpc.method": ":method", "rpc.version": ":version",
    "rpc.group": ":group", "rpc.headers": None,
}
# what each field is: the attribute table's words (runtime.attributes holds the one table)
RPC_FIELD_DOCS = {name: ATTRIBUTES[name].doc for name in RPC_FIELDS}
RPC_TYPE = S.STRING
# `respond STATUS "message"` in an RPC route: the status picks the protocol's error
# (proxy.rpc.server maps it as it maps a filter's local reply)
RPC_REPLY_STATUSES = {400: "codec error", 404: "no route", 429: "rate limited", 502: "unavailable",
                      503: "busy", 504: "timeout"}

Headers = dict[str, str]
Guard = Callable[[Headers], bool]
Decision = RouteAction | LocalReply


def is_rpc_field(name: str) -> bool:
    return name in RPC_FIELDS or name.startswith("rpc.")


def rpc_getter(name: str, key: str | None) -> Callable[[Headers], str]:
    """The compiled read of an rpc.* field from a call's header map."""
    hkey = RPC_FIELDS[name]
    if hkey is None:
        k: str = key or ""

        def attachment(h: Headers) -> str:
            return h.get(k, "")
        return attachment

    pk: str = hkey

    def pseudo(h: Headers) -> str:
        return h.get(pk, "")
    return pseudo


class RpcRouter:
    """The compiled rpc blocks of a listener: routes in order, first match wins."""
    __slots__ = ("routes", "names", "spans")

    def __init__(self, routes: list[tuple[str, Any, Guard | None, Decision]]) -> None:
        self.names = tuple(r[0] for r in routes)
        self.spans = tuple(r[1] for r in routes)        # each route's declaration (mosnx explain)
        self.routes = tuple((r[2], r[3]) for r in routes)

    def __call__(self, headers: Headers) -> Decision | None:
        for guard, decision in self.routes:
            if guard is None or guard(headers):
                return decision
        return None

    def clusters(self) -> set[str]:
        out: set[str] = set()
        for _, d in self.routes:
            if isinstance(d, RouteAction):
                if d.cluster:
                    out.add(d.cluster)
                out.update(c for c, _ in d.weighted_clusters or ())
        return out

    def __repr__(self) -> str:
        return f"RpcRouter({', '.join(self.names)})"


def reply(status: int, message: str) -> LocalReply:
    return LocalReply(status, b"", (), message or f"local reply {status}")


def describe(d: Any) -> str:
    if isinstance(d, LocalReply):
        return f"respond {d.status} ({RPC_REPLY_STATUSES.get(d.status, 'unavailable')})"
    return f"to {d.cluster}" if getattr(d, "cluster", None) else "split"
