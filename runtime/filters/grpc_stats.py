"""gRPC statistics, as Envoy's envoy.filters.http.grpc_stats: calls and the messages
each way, counted from the length-prefixed frames of gRPC bodies.

Only a request whose content-type is application/grpc* is looked at; any other
stream costs one state lookup per body chunk. Message boundaries are found by the
5-byte prefix (flag, 4-byte big-endian length) of each message, across chunks; a
message's bytes are skipped, never copied.

When the stream ends it counts, under `cluster.<cluster>.grpc.` (the route's
cluster): `total`, `success` (grpc-status 0) or `failure`, `request_message_count`
and `response_message_count`. With `stats_for_all_methods`, or for a method in
`individual_method_stats_allowlist`, they go under `<service>.<method>.` too, as
Envoy names them; at most MAX_METHODS names are kept per filter, others count
under the plain prefix. With `emit_filter_state`, the stream's counts stay in its
filter state (FILTER_STATE: (request messages, response messages)) for istio_stats.
"""
from __future__ import annotations

from typing import Any

from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from ..stats import Counter, Store
from . import _config as C

FILTER_STATE = "envoy.filters.http.grpc_stats"
MAX_METHODS = 1000
H_CONTENT_TYPE = b"content-type"
H_GRPC_STATUS = b"grpc-status"
KEYS = {"stats_for_all_methods", "emit_filter_state", "individual_method_stats_allowlist"}


class Frames:
    """Counts the length-prefixed messages of one direction of a gRPC body."""
    __slots__ = ("count", "skip", "head")

    def __init__(self) -> None:
        self.count = 0
        self.skip = 0           # bytes of the current message still to come
        self.head = b""         # a prefix cut by a chunk's end

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                take = min(self.skip, n - i)
                self.skip -= take
                i += take
                continue
            need = 5 - len(self.head)
            head = self.head + data[i:i + need]
            i += need
            if len(head) < 5:
                self.head = head
                return
            self.head = b""
            self.count += 1
            self.skip = int.from_bytes(head[1:5], "big")


class _Stream:
    __slots__ = ("method", "request", "response")

    def __init__(self, method: str) -> None:
        self.method = method
        self.request = Frames()
        self.response = Frames()


def allowlist(value: Any) -> frozenset[str]:
    """Envoy's individual_method_stats_allowlist {services: [{name, method_names}]}
    as "service.method" names."""
    if value is None:
        return frozenset()
    if not isinstance(value, dict):
        raise ValueError("grpc_stats.individual_method_stats_allowlist: expected {services: [...]}")
    out = set()
    for i, svc in enumerate(value.get("services", []) or []):
        if not isinstance(svc, dict) or not isinstance(svc.get("name"), str):
            raise ValueError(f"grpc_stats.individual_method_stats_allowlist.services[{i}]: expected "
                             "{name, method_names}")
        for m in svc.get("method_names", []) or []:
            out.add(f"{svc['name']}.{m}")
    return frozenset(out)


class GrpcStatsFilter(HttpFilter):
    name = "grpc_stats"

    def __init__(self, all_methods: bool = False, allowed: frozenset[str] = frozenset(),
                 emit_filter_state: bool = False, name: str = "grpc_stats", stats: Store | None = None):
        self.name = name
        self.all_methods = all_methods
        self.allowed = allowed
        self.emit = emit_filter_state
        self.store = stats or Store()
        self._named: dict[tuple[str, str], tuple[Counter, ...]] = {}

    def on_request(self, ctx: StreamContext) -> None:
        ctype = ctx.request.headers.getb(H_CONTENT_TYPE)
        if ctype is None or not ctype.startswith(b"application/grpc"):
            return None
        path = ctx.url_path
        service, _, method = path.lstrip("/").partition("/")
        ctx.state()[self] = _Stream(f"{service}.{method}" if service and method and "/" not in method else "")
        return None

    def on_request_body(self, ctx: StreamContext, data: bytes, end_stream: bool) -> None:
        st = ctx.filter_state
        s = st.get(self) if st is not None else None
        if s is not None:
            s.request.feed(data)
        return None

    def on_response_body(self, ctx: StreamContext, data: bytes, end_stream: bool) -> None:
        st = ctx.filter_state
        s = st.get(self) if st is not None else None
        if s is not None:
            s.response.feed(data)
        return None

    def on_response_trailers(self, ctx: StreamContext) -> None:
        """Nothing to do here: a filter with this hook makes the core keep the
        trailers on ctx.response, where on_log reads grpc-status."""
        return None

    def _counters(self, cluster: str, method: str) -> tuple[Counter, ...]:
        key = (cluster, method)
        got = self._named.get(key)
        if got is None:
            if method and len(self._named) >= MAX_METHODS:
                return self._counters(cluster, "")
            scope = f"{method}." if method else ""
            st = self.store
            got = self._named[key] = (
                st.counter(f"cluster.{cluster}.grpc.{scope}total"),
                st.counter(f"cluster.{cluster}.grpc.{scope}success"),
                st.counter(f"cluster.{cluster}.grpc.{scope}failure"),
                st.counter(f"cluster.{cluster}.grpc.{scope}request_message_count"),
                st.counter(f"cluster.{cluster}.grpc.{scope}response_message_count"))
        return got

    def on_log(self, ctx: StreamContext) -> None:
        st = ctx.filter_state
        s = st.get(self) if st is not None else None
        if s is None:
            return
        resp = ctx.response
        status = None
        if resp is not None:
            status = resp.headers.getb(H_GRPC_STATUS)
            if status is None and resp.trailers is not None:
                status = resp.trailers.getb(H_GRPC_STATUS)
        method = s.method if s.method and (self.all_methods or s.method in self.allowed) else ""
        c = self._counters(ctx.cluster_name or "unknown", method)
        c[0].value += 1
        (c[1] if status == b"0" else c[2]).value += 1
        c[3].value += s.request.count
        c[4].value += s.response.count
        if self.emit:
            ctx.state()[FILTER_STATE] = (s.request.count, s.response.count)


def _flag(cfg: dict, key: str) -> bool:
    v = cfg.get(key, False)
    if not isinstance(v, bool):
        raise ValueError(f"grpc_stats.{key}: expected true or false")
    return v


def _factory(name: str, cfg: dict, ctx: BuildContext) -> GrpcStatsFilter:
    cfg = cfg or {}
    C.known_keys(cfg, KEYS, "grpc_stats")
    return GrpcStatsFilter(_flag(cfg, "stats_for_all_methods"), allowlist(cfg.get("individual_method_stats_allowlist")),
                           _flag(cfg, "emit_filter_state"), name, ctx.services.stats)


register_filter("grpc_stats", _factory)
