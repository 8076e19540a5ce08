"""The registry of front ends and filters, looked up by name by build_snapshot().

`dsl` registers the loader for `rules:`, `wasm` the factory for `wasm` filters,
built-in filters theirs. runtime never imports them: the composition root (the
CLI) imports the packages, whose import registers them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from .diagnostics import Diagnostic
from .pipeline import HttpFilter, Pipeline
from .routes import RouteTable
from .stats import Store


@dataclass
class Services:
    """What the worker that builds a snapshot lends to front ends and filters."""
    stats: Store = field(default_factory=Store)
    # async http_call(cluster, headers: list[(str,str)], body: bytes, timeout: float)
    #   -> (status: int, headers: list[(str,str)], body: bytes); raises on failure
    http_call: Callable[..., Awaitable[Any]] | None = None
    worker_id: int = 0
    # endpoint(cluster) -> (host, port) of a healthy endpoint the cluster's balancer
    #   picks, or None: for filters that open their own channel (ext_authz's gRPC)
    endpoint: Callable[[str], tuple[str, int] | None] | None = None
    # emit(ctx, kind, record): structured records from `on log` steps; kind "access"
    # goes to the listener's access log as one JSON line
    emit: Callable[[Any, str, dict], None] | None = None
    # memo(name, bound, doc) -> a table with get(key) and put(key, value): the proxy's
    #   memo registry (counted in /stats as fastpath.memo.<name>.*, emptied and unused
    #   when the fast path is off); None: nothing is remembered
    memo: Callable[[str, int, str], Any] | None = None

    def memo_table(self, name: str, bound: int, doc: str) -> Any:
        return self.memo(name, bound, doc) if self.memo is not None else NO_MEMO


class _NoMemo:
    """What a filter remembers where no memo registry is lent (checks, tests): nothing."""
    def get(self, key: Any) -> Any:
        return None

    def put(self, key: Any, value: Any) -> Any:
        return value


NO_MEMO = _NoMemo()


@dataclass
class BuildContext:
    """What a front end may consult while building one listener."""
    config: Any                       # runtime.model.Config
    listener: Any                     # runtime.model.ListenerConfig
    clusters: set[str]
    filters: dict[str, HttpFilter]    # filters declared on the listener, by instance name
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)   # extra files to watch for reload
    extensions: dict[str, Any] = field(default_factory=dict)
    services: Services = field(default_factory=Services)


@dataclass
class RulesResult:
    routes: RouteTable
    pipeline: Pipeline = field(default_factory=Pipeline)   # listener-level steps from the rules
    rpc: Any = None             # the rules' rpc blocks (dsl.rpc.RpcRouter), for an RPC listener


class RulesLoader(Protocol):
    def __call__(self, paths: tuple[str, ...], ctx: BuildContext) -> RulesResult | None:
        """Compile rule files; on failure append diagnostics to ctx and return None."""


FilterFactory = Callable[[str, dict, BuildContext], HttpFilter]

_rules_loaders: dict[str, RulesLoader] = {}
_filters: dict[str, FilterFactory] = {}
_filter_schemas: dict[str, Callable[[dict], list[str]]] = {}


def register_rules_loader(name: str, loader: RulesLoader) -> None:
    _rules_loaders[name] = loader


def rules_loader(name: str = "mdsl") -> RulesLoader | None:
    return _rules_loaders.get(name)


def register_filter(kind: str, factory: FilterFactory) -> None:
    """`factory(instance_name, config, build_ctx) -> HttpFilter`; raise ValueError on bad config."""
    _filters[kind] = factory


def filter_factory(kind: str) -> FilterFactory | None:
    return _filters.get(kind)


def filter_kinds() -> list[str]:
    return sorted(_filters)
