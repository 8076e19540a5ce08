"""Scoped routes (Envoy's SRDS): an HTTP listener whose route table is chosen per
request by a key built from its headers.

An HttpConnectionManager's `scoped_routes` gives a `scope_key_builder` (fragments,
each a `header_value_extractor`) and its scopes: ScopedRouteConfiguration resources
sent over SRDS (`scoped_rds`, a wildcard subscription, as Envoy's: every scope
received belongs to every listener that uses it) or listed inline
(`scoped_route_configurations_list`). A scope names a RouteConfiguration fetched
over RDS, or carries one inline, and holds a key of string fragments.

ScopedRouteTable is a RouteTable: the core asks it `vhost_of(request)` as it asks
any table, and it answers from the scope whose key equals the request's key (then
that scope's own table picks the vhost by Host). No scope, or a header the key needs
missing: no vhost, which the core answers 404 route_not_found, as Envoy does when no
scope matches. Everything is decided when the table is made: a request costs one
header look-up per fragment and one dict look-up.

Warming, as Envoy's: a listener waits (Waiting, not a rejection) until the scopes it
uses have come and each one's RouteConfiguration has. One difference, said here: a
listener over SRDS also waits while no scope at all is held (Envoy serves it,
answering every request 404), so it does not open before its first scopes arrive.
Two scopes with the same key: the newer one is rejected (between two new ones, the
second by name), as Envoy refuses a scope key conflict. Nothing here reads a clock or does I/O; messages are only read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..context import RequestHead
from ..headers import TOKEN, Headers
from ..pipeline import Pipeline
from ..routes import Route, RouteTable, VirtualHost
from .findings import Findings, Rejected, Rejection, Sink, Waiting
from .protos import HCM, ROUTE, SCOPED_ROUTE, HttpConnectionManager
from .routes import translate_route_config

# the explicit wildcard name of the xDS protocol: needed_names() gives it for SRDS
# when some listener subscribes to scopes (the client asks by wildcard)
WILDCARD = "*"

Key = tuple[str, ...]
Extract = Callable[[RequestHead], "str | None"]


@dataclass(frozen=True, slots=True)
class Scope:
    """One ScopedRouteConfiguration: its key and where its routes come from."""
    name: str
    key: Key
    route_name: str | None          # fetched over RDS
    table: RouteTable | None        # or inline


def _fragment(name: str, separator: str, index: int | None, elem_key: str | None, elem_sep: str) -> Extract:
    """One header_value_extractor as Envoy reads it: the header's first value, split by
    `separator` (none: the whole value), then the element at `index` or the value of
    the `elem_key` element (split once by `elem_sep`); None when there is none."""
    lname = name.lower()
    if lname in ("host", ":authority"):
        # Envoy keeps Host as :authority; either name reads it
        def raw(rq: RequestHead) -> str | None:
            if rq.authority is not None:
                return rq.authority
            h = rq.headers.getb(b"host")
            return h.decode("latin-1") if h is not None else None
    else:
        bname = lname.encode("latin-1")

        def raw(rq: RequestHead) -> str | None:
            v = rq.headers.getb(bname)
            return v.decode("latin-1") if v is not None else None

    if index is not None and not separator:
        return raw                  # the whole value (index 0, as Envoy requires then)
    if index is not None:
        i = index

        def by_index(rq: RequestHead) -> str | None:
            v = raw(rq)
            if v is None:
                return None
            if not separator:
                return v
            parts = v.split(separator)
            return parts[i] if i < len(parts) else None
        return by_index
    k, ks = elem_key or "", elem_sep

    def by_element(rq: RequestHead) -> str | None:
        v = raw(rq)
        if v is None:
            return None
        for el in (v.split(separator) if separator else (v,)):
            name_, found, value = el.partition(ks)
            if name_ == k:
                return value if found else ""
        return None
    return by_element


class KeyBuilder:
    """A scope_key_builder, compiled: key_of(request) is the request's key, or None when
    a fragment finds nothing (then no scope matches). `single`: the one fragment's
    extractor when there is one (the common case), so a table can key by its string."""
    __slots__ = ("fragments", "_extract", "single")

    def __init__(self, fragments: Iterable[Extract], described: Iterable[str] = ()) -> None:
        self._extract = tuple(fragments)
        self.fragments = tuple(described)
        self.single: Extract | None = self._extract[0] if len(self._extract) == 1 else None

    def key_of(self, request: RequestHead) -> Key | None:
        out = []
        for ex in self._extract:
            v = ex(request)
            if v is None:
                return None
            out.append(v)
        return tuple(out)


class ScopedRouteTable(RouteTable):
    """A route table per scope, picked by the request's key. `vhosts` holds every
    scope's vhosts (what a walk over a table's routes sees: clusters, filter settings,
    the admin's description); matching goes through vhost_of only."""
    __slots__ = ("name", "builder", "scopes", "_by_key", "_by_one")
    name: str
    builder: KeyBuilder
    scopes: tuple[tuple[Scope, RouteTable], ...]
    _by_key: dict[Key, RouteTable]
    _by_one: dict[str, RouteTable]          # one-fragment keys by their string: no tuple per request

    def __init__(self, name: str, builder: KeyBuilder, scopes: Iterable[tuple[Scope, RouteTable]]) -> None:
        scopes = tuple(scopes)
        seen: set[int] = set()
        vhosts: list[VirtualHost] = []
        for _, t in scopes:
            for vh in t.vhosts:
                if id(vh) not in seen:
                    seen.add(id(vh))
                    vhosts.append(vh)
        super().__init__(vhosts)
        set_ = object.__setattr__
        set_(self, "only_vhost", None)      # the key decides first, never one vhost for all
        set_(self, "name", name)
        set_(self, "builder", builder)
        set_(self, "scopes", scopes)
        set_(self, "_by_key", {s.key: t for s, t in scopes})
        set_(self, "_by_one", {s.key[0]: t for s, t in scopes if len(s.key) == 1})

    def scope_of(self, request: RequestHead) -> RouteTable | None:
        one = self.builder.single
        if one is not None:
            v = one(request)
            return self._by_one.get(v) if v is not None else None
        key = self.builder.key_of(request)
        return self._by_key.get(key) if key is not None else None

    def vhost_of(self, request: Any) -> VirtualHost | None:
        t = self.scope_of(request)
        return t.vhost_of(request) if t is not None else None

    def vhost_for(self, host: str) -> VirtualHost | None:
        """The vhost a request with only this Host reaches (a key read from other
        headers finds nothing)."""
        return self.vhost_of(RequestHead("GET", "/", Headers([(b"host", host.encode("latin-1"))])))

    def finalize(self, listener: Pipeline) -> "ScopedRouteTable":
        # one finalized table per distinct table: scopes sharing a RouteConfiguration share it
        done: dict[int, RouteTable] = {}
        return ScopedRouteTable(self.name, self.builder,
                                [(s, done.setdefault(id(t), t.finalize(listener))) for s, t in self.scopes])

    def with_routes(self, routes: Callable[[Route], Route]) -> "ScopedRouteTable":
        done: dict[int, RouteTable] = {}
        return ScopedRouteTable(self.name, self.builder,
                                [(s, done.setdefault(id(t), t.with_routes(routes))) for s, t in self.scopes])

    def describe(self) -> list[dict]:
        return [{"scope": s.name, "key": list(s.key), "route_config": s.route_name, "virtual_hosts": t.describe()}
                for s, t in self.scopes]


# -- translation ----------------------------------------------------------------------

def key_builder(kb: Any, f: Findings) -> KeyBuilder:
    """A ScopedRoutes.ScopeKeyBuilder -> KeyBuilder (Rejected for what Envoy refuses)."""
    f.only(kb, {"fragments"})
    if not kb.fragments:
        f.reject("scope_key_builder needs at least one fragment", "fragments")
    out: list[Extract] = []
    described: list[str] = []
    for i, fb in enumerate(kb.fragments):
        ff = f.at("fragments").at(i)
        if fb.WhichOneof("type") != "header_value_extractor":
            ff.reject("a fragment needs a header_value_extractor")
        hv = fb.header_value_extractor
        fh = ff.at("header_value_extractor")
        if not hv.name:
            fh.reject("header_value_extractor needs a name", "name")
        if hv.name.lower() != ":authority" and not TOKEN.fullmatch(hv.name):
            fh.reject(f"{hv.name!r} is not a header name", "name")
        kind = hv.WhichOneof("extract_type")
        if kind == "index":
            if not hv.element_separator and hv.index != 0:
                fh.reject("with no element_separator the index must be 0", "index")
            out.append(_fragment(hv.name, hv.element_separator, hv.index, None, ""))
            described.append(f"{hv.name}[{hv.index}]")
        elif kind == "element":
            if not hv.element.key:
                fh.at("element").reject("an element needs a key", "key")
            if not hv.element.separator:
                fh.at("element").reject("an element needs a separator", "separator")
            out.append(_fragment(hv.name, hv.element_separator, None, hv.element.key, hv.element.separator))
            described.append(f"{hv.name}[{hv.element.key}]")
        else:
            fh.reject("header_value_extractor needs index or element")
    return KeyBuilder(out, described)


def translate_scope(sc: Any, f: Findings, name: str | None = None) -> Scope:
    """A ScopedRouteConfiguration -> Scope; `name` for an unnamed one listed inline."""
    f.only(sc, {"name", "route_configuration_name", "route_configuration", "key", "on_demand"})
    if sc.on_demand:
        f.warn("on_demand is not served: the scope's routes are fetched at once", "on_demand")
    scope_name = sc.name or name
    if not scope_name:
        f.reject("a scope needs a name", "name")
    if not sc.HasField("key") or not sc.key.fragments:
        f.reject("a scope needs a key with at least one fragment", "key")
    key: list[str] = []
    for i, fr in enumerate(sc.key.fragments):
        if fr.WhichOneof("type") != "string_key":
            f.at("key").at("fragments").at(i).reject("a key fragment needs a string_key")
        key.append(fr.string_key)
    if sc.HasField("route_configuration"):
        if sc.route_configuration_name:
            f.reject("route_configuration_name and route_configuration are exclusive", "route_configuration")
        return Scope(scope_name, tuple(key), None,
                     translate_route_config(sc.route_configuration, f.at("route_configuration")))
    if not sc.route_configuration_name:
        f.reject("a scope needs route_configuration_name or route_configuration", "route_configuration_name")
    return Scope(scope_name, tuple(key), sc.route_configuration_name, None)


class ScopeCache:
    """What scopes() translated, by name, with the message it came from."""
    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: dict[str, tuple[Any, Scope | Rejected]] = {}


def scopes(msgs: Mapping[str, Any], sink: Sink, cache: ScopeCache | None = None
           ) -> tuple[dict[str, Scope], list[Rejection]]:
    """The SRDS resources held -> their scopes by name, and the rejected ones. A scope
    whose key another already has is rejected: a key picks one scope. The scopes
    translated before (the same messages, in `cache`) keep their keys against new
    ones, then the earlier by name wins."""
    out: dict[str, Scope] = {}
    rejected: list[Rejection] = []
    keys: dict[Key, str] = {}
    seen: dict[str, tuple[Any, Scope | Rejected]] = {}
    held = cache.held if cache is not None else {}
    for name in sorted(msgs, key=lambda n: (not (n in held and held[n][0] is msgs[n]), n)):
        msg = msgs[name]
        hit = held.get(name)
        got: Scope | Rejected
        if hit is not None and hit[0] is msg:
            got = hit[1]
        else:
            f = Findings(SCOPED_ROUTE, name, "", sink)
            try:
                if msg.name != name:
                    f.reject(f'the resource is named "{name}" but the scope "{msg.name}"', "name")
                got = translate_scope(msg, f)
            except Rejected as e:
                got = e
        seen[name] = (msg, got)
        if isinstance(got, Rejected):
            rejected.append(got.rejection)
            continue
        other = keys.get(got.key)
        if other is not None:
            rejected.append(Rejection(SCOPED_ROUTE, name, "key",
                                      f'scope "{other}" has the same key {list(got.key)}'))
            continue
        keys[got.key] = name
        out[name] = got
    if cache is not None:
        cache.held = seen
    return out, rejected


def scoped_table(sr: Any, f: Findings, routes: Mapping[str, RouteTable],
                 srds: Mapping[str, Scope] | None) -> ScopedRouteTable:
    """An HCM's `scoped_routes` -> its table. Raises Waiting while a scope or its
    RouteConfiguration has not come, Rejected for what cannot be served."""
    f.only(sr, {"name", "scope_key_builder", "rds_config_source", "scoped_route_configurations_list",
                "scoped_rds"})
    if not sr.name:
        f.reject("scoped_routes needs a name", "name")
    if not sr.HasField("scope_key_builder"):
        f.reject("scoped_routes needs a scope_key_builder", "scope_key_builder")
    builder = key_builder(sr.scope_key_builder, f.at("scope_key_builder"))
    kind = sr.WhichOneof("config_specifier")
    held: list[Scope] = []
    if kind == "scoped_route_configurations_list":
        fl = f.at("scoped_route_configurations_list").at("scoped_route_configurations")
        keys: set[Key] = set()
        for i, sc in enumerate(sr.scoped_route_configurations_list.scoped_route_configurations):
            s = translate_scope(sc, fl.at(i), name=f"{sr.name}#{i}")
            if s.key in keys:
                fl.at(i).reject(f"another scope has the same key {list(s.key)}", "key")
            keys.add(s.key)
            held.append(s)
    elif kind == "scoped_rds":
        if sr.scoped_rds.srds_resources_locator:
            f.at("scoped_rds").reject("srds_resources_locator (xdstp) is not supported", "srds_resources_locator")
        if not srds:
            fw = f.at("scoped_rds")
            raise Waiting(Rejection(fw.type_url, fw.name, fw.path,
                                    "no ScopedRouteConfiguration has been received"))
        held = [srds[n] for n in sorted(srds)]
    else:
        f.reject("scoped_routes needs scoped_rds or scoped_route_configurations_list")
    tables: list[tuple[Scope, RouteTable]] = []
    for s in held:
        if s.table is not None:
            tables.append((s, s.table))
            continue
        assert s.route_name is not None     # translate_scope made it one or the other
        t = routes.get(s.route_name)
        if t is None:
            fw = f.at("scoped_rds" if kind == "scoped_rds" else "scoped_route_configurations_list")
            raise Waiting(Rejection(fw.type_url, fw.name, fw.path, f'RouteConfiguration "{s.route_name}" '
                                    f'of scope "{s.name}" has not been received'))
        tables.append((s, t))
    return ScopedRouteTable(sr.name, builder, tables)


# -- subscriptions --------------------------------------------------------------------

def _hcms(listener: Any) -> Iterator[Any]:
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for fc in chains:
        for nf in fc.filters:
            if nf.typed_config.type_url == HCM:
                hcm = HttpConnectionManager()
                if nf.typed_config.Unpack(hcm) and hcm.WhichOneof("route_specifier") == "scoped_routes":
                    yield hcm.scoped_routes


def uses_scopes(listener: Any) -> bool:
    """Whether one of the listener's HCMs takes scoped routes."""
    return next(_hcms(listener), None) is not None


def srds_names(listeners: Iterable[Any]) -> list[str]:
    """The names of the scoped route configurations (ScopedRoutes.name) that come over
    SRDS, in order, once each: what Envoy's ScopedRoutesConfigDump lists."""
    out: list[str] = []
    for lst in listeners:
        for sr in _hcms(lst):
            if sr.WhichOneof("config_specifier") == "scoped_rds" and sr.name not in out:
                out.append(sr.name)
    return out


def needed(listeners: Iterable[Any], srds: Mapping[str, Any]) -> dict[str, set[str]]:
    """What scoped listeners need next, by type URL: SRDS by wildcard ({WILDCARD}) when
    one uses scoped_rds, and RDS the RouteConfigurations their scopes name (the held
    SRDS resources' and the inline lists')."""
    wants = False
    routes: set[str] = set()
    for lst in listeners:
        for sr in _hcms(lst):
            kind = sr.WhichOneof("config_specifier")
            if kind == "scoped_rds":
                wants = True
            elif kind == "scoped_route_configurations_list":
                routes.update(sc.route_configuration_name
                              for sc in sr.scoped_route_configurations_list.scoped_route_configurations
                              if sc.route_configuration_name)
    if wants:
        routes.update(m.route_configuration_name for m in srds.values() if m.route_configuration_name)
    return {SCOPED_ROUTE: {WILDCARD} if wants else set(), ROUTE: routes}
