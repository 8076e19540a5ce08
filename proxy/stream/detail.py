"""Per-route and per-endpoint upstream stats, for the listeners that ask for them
(`stats: {per_route: true, per_host: true}`): they multiply series, so they are opt-in.

For each upstream response that stands (the one the client gets; what the cluster's
upstream_rq_time and upstream_rq_<class> count), a listener that asks records:

- per route, Envoy's route-level names: `vhost.<vhost>.route.<route>.upstream_rq_completed`,
  `.upstream_rq_<status>` (200, 503: made at a status's first response),
  `.upstream_rq_<class>` (2xx … 5xx) and `.upstream_rq_time` (ms, from the request
  sent upstream to the response head);
- per endpoint (Envoy has these only in /clusters, not as stats):
  `cluster.<cluster>.host.<host>_<port>.upstream_rq_completed`, `.upstream_rq_<status>`,
  `.upstream_rq_<class>`, `.upstream_rq_time`.

As the cluster's, a status outside 100..599 counts as 5xx, with no counter of its own;
a 1xx (a 101 switching protocols) is completed, in no class.

A dot or colon in a vhost or route name becomes `_`, so each stays one segment for tag
extraction (runtime.stat_tags: envoy_virtual_host, envoy_route); an address is written
as Envoy writes one in a stat name, `127.0.0.1_9000` (tag upstream_host).

The cost is held where it is asked for: a listener that asks serves its streams as
DetailedHttpStream, whose `_head_arrived` records after HttpStream's; every other
listener's streams are plain HttpStreams and do nothing more per request. The class is
chosen when a connection first sees a listener's config (and again when it changes),
next to the express path's eligibility.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mosnx.runtime.headers import Headers
from mosnx.runtime.stats import Histogram, Store

from .executor import HttpStream

if TYPE_CHECKING:
    from mosnx.runtime.model import Listener

    from ..listener_stats import ListenerStats

MAX_KEYS = 4096        # routes or hosts remembered by identity; then the table starts again


def _segment(name: str) -> str:
    return name.replace(".", "_").replace(":", "_")


class Series:
    """The stats of one route or endpoint: responses by exact status, and the time to
    their heads."""
    __slots__ = ("codes", "made", "time")

    def __init__(self, store: Store, prefix: str):
        # upstream_rq_<status> as the cluster's (Store.responses), upstream_rq_<class>
        # and upstream_rq_completed their sums when read: one count a response
        r = store.responses(prefix + "upstream_rq_")
        self.codes = codes = r.codes
        self.made = r.made
        store.counter_reading(prefix + "upstream_rq_completed", lambda: sum([c.value for c in codes.values()]))
        self.time: Histogram = store.histogram(prefix + "upstream_rq_time")

    def record(self, status: int, elapsed: float) -> None:
        c = self.codes.get(status)
        if c is None:
            c = self.made(status)
        c.value += 1
        self.time.add(elapsed)


class DetailStats:
    """A listener's per-route and per-host series in one worker's store. Series are
    found by the route or host object (one dict look-up per response), made by name
    the first time, so a new snapshot's routes and a changed endpoint list find the
    series their names already have."""
    __slots__ = ("store", "per_route", "per_host", "_routes", "_hosts", "_named")

    def __init__(self, store: Store):
        self.store = store
        self.per_route = False
        self.per_host = False
        self._routes: dict[Any, Series] = {}
        self._hosts: dict[Any, Series] = {}
        self._named: dict[str, Series] = {}

    def configure(self, per_route: bool, per_host: bool) -> None:
        self.per_route = per_route
        self.per_host = per_host

    def _series(self, prefix: str) -> Series:
        s = self._named.get(prefix)
        if s is None:
            s = self._named[prefix] = Series(self.store, prefix)
        return s

    def route(self, vhost: Any, route: Any) -> Series:
        s = self._routes.get(route)
        if s is None:
            if len(self._routes) >= MAX_KEYS:
                self._routes.clear()
            vh = _segment(vhost.name) if vhost is not None else "default"
            r = _segment(route.name) or str(route.index)
            s = self._routes[route] = self._series(f"vhost.{vh}.route.{r}.")
        return s

    def host(self, cluster: str, host: Any) -> Series:
        s = self._hosts.get(host)
        if s is None:
            if len(self._hosts) >= MAX_KEYS:
                self._hosts.clear()
            address = host.address.replace(":", "_")        # 127.0.0.1_9000, as Envoy writes addresses
            s = self._hosts[host] = self._series(f"cluster.{cluster}.host.{address}.")
        return s


class DetailedHttpStream(HttpStream):
    """HttpStream that also records its listener's per-route and per-host series."""
    __slots__ = ()

    def _head_arrived(self, status: int, headers: Headers) -> float:
        elapsed = HttpStream._head_arrived(self, status, headers)
        detail: DetailStats = self.lstats.detail  # type: ignore[assignment]  # stream_class set it
        if detail.per_route:
            route = self.ctx.route
            if route is not None:
                detail.route(self.ctx.vhost, route).record(status, elapsed)
        if detail.per_host:
            detail.host(self.cluster.name, self.host).record(status, elapsed)
        return elapsed


def stream_class(listener: Listener, lstats: ListenerStats) -> type[HttpStream]:
    """The class of the streams `listener` serves: DetailedHttpStream when its
    `stats:` asks for per-route or per-host series (their switches set on `lstats`),
    else HttpStream."""
    opts = listener.config.options.get("stats") or {}
    per_route, per_host = bool(opts.get("per_route")), bool(opts.get("per_host"))
    if not (per_route or per_host):
        if lstats.detail is not None:
            lstats.detail.configure(False, False)
        return HttpStream
    if lstats.detail is None:
        lstats.detail = DetailStats(lstats.local)
    lstats.detail.configure(per_route, per_host)
    return DetailedHttpStream
