"""Rendering for the admin API: Envoy's /stats and /clusters layouts, their JSON shapes,
and the Prometheus text exposition format 0.0.4.

Pure functions from the plain data an AdminBackend returns (a merged stats dump, the
clusters dict) to text or JSON; no I/O. Names, separators and orderings follow Envoy's
admin so scripts, dashboards and scrapers written for Envoy keep working.

Each renderer that grows with the number of stats, clusters or config entries is a
generator of text pieces (`*_pieces`); an empty piece marks a point where the caller
may pause. The admin drives them in slices on the loop it shares with the data plane
(admin.render), so no answer holds the loop for longer than a slice; `prometheus`
joins the same pieces at once.

A `filter` a client sends is compiled by RE2 (as Envoy's is), never by `re`: RE2
matches in time linear in the name, so no pattern can make /stats spin (`(a+)+$`
backtracks exponentially in `re`). Patterns are capped in length, and so is RE2's
program memory.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterator, Protocol

import re2

from mosnx.runtime.stat_tags import Labels, StatNaming
from mosnx.runtime.stats import quantile

MAX_FILTER = 1024          # characters in a ?filter= pattern

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False        # a bad pattern is the client's 400, not our stderr
_RE2_OPTIONS.max_mem = 8 << 20


class Pattern(Protocol):
    def search(self, text: str) -> Any: ...


def compile_filter(pattern: str) -> Pattern:
    """An RE2 pattern for searching stat names; ValueError with a message for the client."""
    if len(pattern) > MAX_FILTER:
        raise ValueError(f"the pattern is {len(pattern)} characters; at most {MAX_FILTER} are accepted")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        why = e.args[0] if e.args else "invalid pattern"
        raise ValueError(why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)) from None

# mosnx's own naming, for callers that name no other (runtime.stat_tags)
MOSNX_NAMING = StatNaming()

# Envoy's supported quantiles, in percent: the P0 ... P100 of its summaries.
PERCENTS = (0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100)



def num(v: Any) -> str:
    """Shortest text for a number: integral floats without `.0`, as Envoy prints them."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 2 ** 53 else repr(v)
    return str(v)


def estimate(v: float | None) -> float | None:
    """A quantile estimate without float noise (9.95, not 9.950000000000001)."""
    return None if v is None else float(f"{v:.12g}")


Pieces = Iterator[str]

# Gauges set when the proxy starts: "used" even at 0, as in Envoy (Istio's agent asks
# for server.state with ?usedonly, and 0 is LIVE)
SET_AT_START = frozenset({"server.state", "server.live"})

# What "used" means per section of a dump, for ?usedonly.
_SECTIONS: tuple[tuple[str, Callable[[str, Any], bool]], ...] = (
    ("counters", lambda k, v: v != 0), ("gauges", lambda k, v: v != 0 or k in SET_AT_START),
    ("histograms", lambda k, h: h["count"] > 0))


def _jsonable(value: Any) -> Any:
    # A stray set or Path in a dump should not cost the whole answer.
    return list(value) if isinstance(value, (set, frozenset)) else str(value)


_PRETTY = json.JSONEncoder(indent=2, default=_jsonable)
_COMPACT = json.JSONEncoder(default=_jsonable)


def json_pieces(obj: Any, pretty: bool = True) -> Pieces:
    """`obj` as JSON text and a final newline, in small pieces."""
    yield from (_PRETTY if pretty else _COMPACT).iterencode(obj)
    yield "\n"


def selecting(dump: dict[str, Any], pattern: Pattern | None, used_only: bool, into: dict[str, Any]) -> Pieces:
    """Fill `into` with the stats whose name matches `pattern` (searched, as Envoy's
    `filter`); yields a pause point per stat.

    `used_only` keeps non-zero counters and gauges and histograms with samples: the
    merged dump carries no "ever written" flag, so zero stands in for unused (but for
    SET_AT_START).
    """
    for section, used in _SECTIONS:
        kept = into[section] = {}
        for name, value in dump.get(section, {}).items():
            if (not used_only or used(name, value)) and (pattern is None or pattern.search(name) is not None):
                kept[name] = value
            yield ""


def select(dump: dict[str, Any], pattern: Pattern | None = None, used_only: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _ in selecting(dump, pattern, used_only, out):
        pass
    return out


# --- /stats -----------------------------------------------------------------------

def histogram_summary(h: dict[str, Any]) -> str:
    """Envoy's `P50(interval,cumulative)` list. Workers keep only cumulative histograms,
    so the interval value is `nan`, which is what Envoy prints for an empty interval."""
    if not h["count"]:
        return "No recorded values"
    return " ".join(f"P{p:g}(nan,{num(estimate(quantile(h, p / 100)))})" for p in PERCENTS)


def _scalars(dump: dict[str, Any]) -> list[tuple[str, Any]]:
    """Counters and gauges, sorted by name (names are unique across both)."""
    scalars = {**dump["counters"], **dump["gauges"]}
    return [(name, scalars[name]) for name in sorted(scalars)]


def stats_text_pieces(dump: dict[str, Any]) -> Pieces:
    """Counters and gauges sorted by name, then histograms sorted by name, as Envoy does."""
    for name, value in _scalars(dump):
        yield f"{name}: {value}\n"
    histograms = dump["histograms"]
    for name in sorted(histograms):
        yield f"{name}: {histogram_summary(histograms[name])}\n"


def _building_stats_json(dump: dict[str, Any], into: dict[str, Any]) -> Pieces:
    stats: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in _scalars(dump)]
    into["stats"] = stats
    histograms = dump["histograms"]
    if not histograms:
        return
    computed = []
    for name in sorted(histograms):
        h = histograms[name]
        computed.append({"name": name, "values": [{"interval": None, "cumulative": estimate(quantile(h, p / 100))}
                                                  for p in PERCENTS]})
        yield ""
    stats.append({"histograms": {"supported_quantiles": list(PERCENTS), "computed_quantiles": computed}})


def _built_pieces(building: Callable[[Any, dict[str, Any]], Pieces], source: Any) -> Pieces:
    """What a `_building_*` generator makes, in slices (the admin yields between them),
    then its JSON in pieces."""
    out: dict[str, Any] = {}
    yield from building(source, out)
    yield from json_pieces(out)


def stats_json_pieces(dump: dict[str, Any]) -> Pieces:
    return _built_pieces(_building_stats_json, dump)


def stats_pieces(stats: dict[str, Any], pattern: Pattern | None, used_only: bool, form: str | None,
                 naming: StatNaming = MOSNX_NAMING) -> Pieces:
    """/stats in `form` (text, json or prometheus, its series named by `naming`) for the
    stats `select` keeps."""
    dump: dict[str, Any] = {}
    yield from selecting(stats, pattern, used_only, dump)
    if form == "json":
        yield from stats_json_pieces(dump)
    elif form == "prometheus":
        yield from prometheus_pieces(dump, naming)
    else:
        yield from stats_text_pieces(dump)


# --- /listeners --------------------------------------------------------------------

def listeners_text(listeners: list[dict[str, Any]]) -> str:
    """Envoy's text form: `name::address:port`, one a line."""
    return "".join(f"{l['name']}::{_hostport(l['host'], l['port'])}\n" for l in listeners)


def listeners_json(listeners: list[dict[str, Any]]) -> dict[str, Any]:
    """Envoy's admin.v3.Listeners."""
    return {"listener_statuses": [
        {"name": l["name"], "local_address": {"socket_address": {"address": l["host"], "port_value": l["port"]}}}
        for l in listeners]}


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- /stats/prometheus ------------------------------------------------------------

def prometheus_name(stat: str, naming: StatNaming = MOSNX_NAMING) -> tuple[str, Labels]:
    """`cluster.web.upstream_rq_total` -> (`mosnx_cluster_upstream_rq_total`, (("cluster_name", "web"),))
    by mosnx's naming; by Envoy's (runtime.stat_tags), (`envoy_cluster_upstream_rq_total`,
    (("envoy_cluster_name", "web"),)). A stat that carries its labels as Istio's do
    (`reporter=.=source;.;...;.;istio_requests_total`) keeps its own name, unprefixed,
    and those labels in their order."""
    return naming.series(stat)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


Families = dict[str, list[tuple[Labels, Any]]]


def _grouping(section: dict[str, Any], families: Families, naming: StatNaming) -> Pieces:
    """Group stats into metric families (after tag extraction many stats share one
    name), each family's series sorted by labels; yields a pause point per stat."""
    name_of = naming.series
    for stat, value in section.items():
        name, labels = name_of(stat)
        families.setdefault(name, []).append((labels, value))
        yield ""
    for name, series in families.items():
        series.sort(key=lambda s: s[0])
        if any(a[0] == b[0] for a, b in zip(series, series[1:])):
            families[name] = _merged(series)


def _merged(series: list[tuple[Labels, Any]]) -> list[tuple[Labels, Any]]:
    """Sorted series with those of equal labels made one, their values added: two stats
    a config's tags name alike must not make a series twice (Prometheus would refuse
    the whole scrape)."""
    out: list[tuple[Labels, Any]] = []
    for labels, v in series:
        if not out or out[-1][0] != labels:
            out.append((labels, v))
            continue
        prev = out[-1][1]
        if isinstance(prev, dict):      # a histogram: the same bounds, counts added
            v = {"bounds": prev["bounds"], "counts": [a + b for a, b in zip(prev["counts"], v["counts"])],
                 "sum": prev["sum"] + v["sum"], "count": prev["count"] + v["count"]}
        else:
            v = prev + v
        out[-1] = (labels, v)
    return out


def _histogram_series(name: str, labels: Labels, h: dict[str, Any]) -> str:
    out = []
    cumulative = 0
    for bound, count in zip(h["bounds"], h["counts"]):
        cumulative += count
        out.append(f"{name}_bucket{_labels(labels + (('le', num(bound)),))} {cumulative}\n")
    out.append(f"{name}_bucket{_labels(labels + (('le', '+Inf'),))} {h['count']}\n")
    out.append(f"{name}_sum{_labels(labels)} {num(h['sum'])}\n")
    out.append(f"{name}_count{_labels(labels)} {h['count']}\n")
    return "".join(out)


def prometheus_pieces(dump: dict[str, Any], naming: StatNaming = MOSNX_NAMING) -> Pieces:
    """One `# TYPE` line per family; counters, then gauges, then histograms, as Envoy emits.
    `naming` turns stat names into families and labels (runtime.stat_tags)."""
    for kind in ("counter", "gauge", "histogram"):
        families: Families = {}
        yield from _grouping(dump[kind + "s"], families, naming)
        for name in sorted(families):
            yield f"# TYPE {name} {kind}\n"
            for labels, v in families[name]:
                yield (_histogram_series(name, labels, v) if kind == "histogram"
                       else f"{name}{_labels(labels)} {num(v)}\n")


def prometheus(dump: dict[str, Any], naming: StatNaming = MOSNX_NAMING) -> str:
    return "".join(prometheus_pieces(dump, naming))


# --- /clusters --------------------------------------------------------------------

# Backend health words that are not Envoy flag names.
_HEALTH_ALIASES = {"unhealthy": "failed_active_hc", "ejected": "failed_outlier_check",
                   "degraded": "degraded_active_hc"}

# Envoy's flag -> its HostHealthStatus JSON field.
_FLAG_JSON = {
    "failed_active_hc": ("failed_active_health_check", True),
    "failed_outlier_check": ("failed_outlier_check", True),
    "degraded_active_hc": ("failed_active_degraded_check", True),
    "pending_dynamic_removal": ("pending_dynamic_removal", True),
    "pending_active_hc": ("pending_active_hc", True),
    "active_hc_timeout": ("active_hc_timeout", True),
    "failed_eds_health": ("eds_health_status", "UNHEALTHY"),
    "degraded_eds_health": ("eds_health_status", "DEGRADED"),
}

# Per-host lines Envoy prints after the host's stats, with its defaults.
_HOST_INFO = (("hostname", ""), ("health_flags", None), ("weight", 1), ("region", ""),
              ("zone", ""), ("sub_zone", ""), ("canary", False), ("priority", 0),
              ("success_rate", -1), ("local_origin_success_rate", -1))
_NOT_STATS = {"address", "health", *(k for k, _ in _HOST_INFO)}


def health_flags(health: Any) -> list[str]:
    """Envoy flag names from an endpoint's `health`: a word ("healthy", "unhealthy",
    "ejected", "degraded" or an Envoy flag name) or a list of such words."""
    words = [health] if isinstance(health, str) else list(health or ())
    flags = [_HEALTH_ALIASES.get(w, w).lstrip("/") for w in words]
    return [f for f in flags if f != "healthy"]


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else num(v)


def _host_stats(ep: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted((k, v) for k, v in ep.items()
                  if k not in _NOT_STATS and isinstance(v, (int, float)) and not isinstance(v, bool))


def clusters_text_pieces(clusters: dict[str, Any]) -> Pieces:
    """Envoy's `/clusters` text: one piece per cluster's settings, one per endpoint."""
    for cluster, info in sorted(clusters.items()):
        lines: list[str] = []
        for key, value in sorted(info.items()):
            if key == "endpoints":
                continue
            if isinstance(value, dict):
                # Envoy prints circuit breaker thresholds under the priority they apply to.
                key = "default_priority" if key == "circuit_breakers" else key
                lines += [f"{cluster}::{key}::{k}::{_text(v)}\n" for k, v in sorted(value.items())]
            else:
                lines.append(f"{cluster}::{key}::{_text(value)}\n")
        yield "".join(lines)
        for ep in info.get("endpoints", ()):
            prefix = f"{cluster}::{ep['address']}::"
            lines = [f"{prefix}{k}::{_text(v)}\n" for k, v in _host_stats(ep)]
            for key, default in _HOST_INFO:
                if key == "health_flags":
                    value = "".join("/" + f for f in health_flags(ep.get("health"))) or "healthy"
                else:
                    value = _text(ep.get(key, default))
                lines.append(f"{prefix}{key}::{value}\n")
            yield "".join(lines)


def _socket_address(address: str) -> dict[str, Any]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return {"pipe": {"path": address}}
    return {"socket_address": {"address": host.strip("[]"), "port_value": int(port)}}


def clusters_json_pieces(clusters: dict[str, Any]) -> Pieces:
    """Envoy's `/clusters?format=json` shape (admin.v3.Clusters)."""
    return _built_pieces(_building_clusters_json, clusters)


def _building_clusters_json(clusters: dict[str, Any], into: dict[str, Any]) -> Pieces:
    statuses: list[dict[str, Any]] = []
    into["cluster_statuses"] = statuses
    for cluster, info in sorted(clusters.items()):
        hosts = []
        for ep in info.get("endpoints", ()):
            health: dict[str, Any] = {"eds_health_status": "HEALTHY"}
            health.update(_FLAG_JSON[f] for f in health_flags(ep.get("health")) if f in _FLAG_JSON)
            host: dict[str, Any] = {
                "address": _socket_address(ep["address"]),
                "stats": [{"name": k, "value": v, "type": "GAUGE" if k.endswith("_active") else "COUNTER"}
                          for k, v in _host_stats(ep)],
                "health_status": health,
                "weight": ep.get("weight", 1),
            }
            for key in ("hostname", "priority"):
                if key in ep:
                    host[key] = ep[key]
            hosts.append(host)
            yield ""
        statuses.append({"name": cluster, "added_via_api": bool(info.get("added_via_api", False)),
                         "host_statuses": hosts})
