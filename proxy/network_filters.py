"""Network filters before a chain's last: run once per connection, before its stack.

A stack's `network_filters` (runtime.model.NetworkFilter) name a factory in FACTORIES
by kind; each factory compiles the filter's plain config once per worker store (so
its stats land in that worker's counters) into an object with
`on_connection(ctx) -> bool`: True lets the connection go on, False closes it.

Invariants:
- A filter is compiled once per (worker store, filter config), never per connection.
- The filters run in order; the first that says no closes the connection and the
  rest do not run.
- They see the connection's facts only: source and destination (the original one
  when the connection was redirected), the server name, and after a TLS handshake
  the peer's certificate. No byte of the stream is read for them.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.model import ListenerConfig, NetworkFilter


class ConnectionFilter(Protocol):
    def on_connection(self, ctx: StreamContext) -> bool: ...


def _rbac(config: dict[str, Any], stats: Any) -> ConnectionFilter:
    from mosnx.runtime.filters.rbac import network_rbac
    return network_rbac(config, stats)


# kind -> factory(config, the worker's stats store)
FACTORIES: dict[str, Callable[[dict[str, Any], Any], ConnectionFilter]] = {"rbac": _rbac}

_built: dict[tuple[int, int], tuple[NetworkFilter, ConnectionFilter]] = {}


def register(kind: str, factory: Callable[[dict[str, Any], Any], ConnectionFilter]) -> None:
    """Add a network filter kind (its translator makes NetworkFilter(kind, ...))."""
    FACTORIES[kind] = factory


def instance(stats: Any, spec: NetworkFilter) -> ConnectionFilter:
    key = (id(stats), id(spec))
    got = _built.get(key)
    if got is not None and got[0] is spec:
        return got[1]
    f = FACTORIES[spec.kind](spec.config, stats)
    if len(_built) > 4096:        # filters of snapshots long gone
        _built.clear()
    _built[key] = (spec, f)
    return f


class Check:
    """A stack's network filters for one connection: called with the TLS facts of its
    handshake (None without TLS); True when every filter lets it go on."""
    __slots__ = ("worker", "stack", "src", "dst", "sni")

    def __init__(self, worker: Any, stack: ListenerConfig, src: tuple[str, int], dst: tuple[str, int],
                 sni: str):
        self.worker = worker
        self.stack = stack
        self.src = src
        self.dst = dst
        self.sni = sni

    def __call__(self, tls: Any) -> bool:
        ctx = StreamContext(RequestHead("", "", Headers(), "tcp"), self.stack.name, "TCP", self.src, self.dst)
        ctx.connection_sni = self.sni
        if tls is not None:
            ctx.connection_sni = tls.sni or self.sni
            ctx.connection_mtls = tls.mtls
            ctx.peer_subject = tls.subject
            ctx.tls = tls
        stats = self.worker.stats
        for spec in self.stack.network_filters:
            if not instance(stats, spec).on_connection(ctx):
                return False
        return True
