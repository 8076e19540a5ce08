"""Rendering for the admin API: Envoy's /stats and /clusters layouts, their JSON shapes,
and the Prometheus text exposition format 0.0.4.

Pure functions from the plain data an AdminBackend returns (a merged stats dump, the
clusters dict) to text or JSON-able dicts; no I/O. Names, separators and orderings
follow Envoy's admin so scripts, dashboards and scrapers written for Envoy keep working.

A `filter` a client sends is compiled by RE2 (as Envoy's is), never by `re`: RE2
matches in time linear in the name, so no pattern can make /stats spin (`(a+)+$`
backtracks exponentially in `re`). Patterns are capped in length, and so is RE2's
program memory.
"""
from __future__ import annotations

import re
from typing import Any, Protocol

import re2

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

# Envoy's supported quantiles, in percent: the P0 ... P100 of its summaries.
PERCENTS = (0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100)

PROM_PREFIX = "mosnx_"

# Envoy-style tag extraction: each rule, in order, lifts the segment its first group
# spans out of the name into a label. A segment ends at the next dot, so a cluster or
# listener whose name contains a dot is split there (Envoy's default rules do the same).
# Applied in sequence, `listener.<l>.http.<p>.x` yields both listener and prefix labels.
TAG_RULES = (
    ("cluster_name", re.compile(r"^cluster\.(([^.]+)\.)")),
    ("listener_name", re.compile(r"^listener\.(([^.]+)\.)")),
    ("http_conn_manager_prefix", re.compile(r"^(?:listener\.)?http\.(([^.]+)\.)")),
    ("plugin_name", re.compile(r"^wasm\.(([^.]+)\.)")),
)

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def num(v: Any) -> str:
    """Shortest text for a number: integral floats without `.0`, as Envoy prints them."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 2 ** 53 else repr(v)
    return str(v)


def estimate(v: float | None) -> float | None:
    """A quantile estimate without float noise (9.95, not 9.950000000000001)."""
    return None if v is None else float(f"{v:.12g}")


def select(dump: dict[str, Any], pattern: Pattern | None = None,
           used_only: bool = False) -> dict[str, Any]:
    """The stats whose name matches `pattern` (searched, as Envoy's `filter`).

    `used_only` keeps non-zero counters and gauges and histograms with samples: the
    merged dump carries no "ever written" flag, so zero stands in for unused.
    """
    def keep(name: str, used: bool) -> bool:
        return (not used_only or used) and (pattern is None or pattern.search(name) is not None)

    return {
        "counters": {k: v for k, v in dump.get("counters", {}).items() if keep(k, v != 0)},
        "gauges": {k: v for k, v in dump.get("gauges", {}).items() if keep(k, v != 0)},
        "histograms": {k: h for k, h in dump.get("histograms", {}).items() if keep(k, h["count"] > 0)},
    }


# --- /stats -----------------------------------------------------------------------

def histogram_summary(h: dict[str, Any]) -> str:
    """Envoy's `P50(interval,cumulative)` list. Workers keep only cumulative histograms,
    so the interval value is `nan`, which is what Envoy prints for an empty interval."""
    if not h["count"]:
        return "No recorded values"
    return " ".join(f"P{p:g}(nan,{num(estimate(quantile(h, p / 100)))})" for p in PERCENTS)


def stats_text(dump: dict[str, Any]) -> str:
    """Counters and gauges sorted by name, then histograms sorted by name, as Envoy does."""
    scalars = sorted([*dump["counters"].items(), *dump["gauges"].items()])
    lines = [f"{name}: {value}\n" for name, value in scalars]
    lines += [f"{name}: {histogram_summary(h)}\n" for name, h in sorted(dump["histograms"].items())]
    return "".join(lines)


def stats_json(dump: dict[str, Any]) -> dict[str, Any]:
    scalars = sorted([*dump["counters"].items(), *dump["gauges"].items()])
    stats: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in scalars]
    if dump["histograms"]:
        stats.append({"histograms": {
            "supported_quantiles": list(PERCENTS),
            "computed_quantiles": [
                {"name": name, "values": [{"interval": None, "cumulative": estimate(quantile(h, p / 100))}
                                          for p in PERCENTS]}
                for name, h in sorted(dump["histograms"].items())],
        }})
    return {"stats": stats}


# --- /stats/prometheus ------------------------------------------------------------

def prometheus_name(stat: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """`cluster.web.upstream_rq_total` -> (`mosnx_cluster_upstream_rq_total`, (("cluster_name", "web"),))."""
    labels = []
    for tag, rule in TAG_RULES:
        m = rule.match(stat)
        if m:
            labels.append((tag, m.group(2)))
            stat = stat[:m.start(1)] + stat[m.end(1):]
    return PROM_PREFIX + _INVALID.sub("_", stat), tuple(labels)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _families(section: dict[str, Any]) -> dict[str, list[tuple[tuple[tuple[str, str], ...], Any]]]:
    """Group stats into metric families: after tag extraction many stats share one name."""
    families: dict[str, list[tuple[tuple[tuple[str, str], ...], Any]]] = {}
    for stat, value in section.items():
        name, labels = prometheus_name(stat)
        families.setdefault(name, []).append((labels, value))
    for series in families.values():
        series.sort(key=lambda s: s[0])
    return families


def prometheus(dump: dict[str, Any]) -> str:
    """One `# TYPE` line per family; counters, then gauges, then histograms, as Envoy emits."""
    out: list[str] = []
    for kind in ("counter", "gauge"):
        families = _families(dump[kind + "s"])
        for name in sorted(families):
            out.append(f"# TYPE {name} {kind}\n")
            out += [f"{name}{_labels(labels)} {num(v)}\n" for labels, v in families[name]]
    families = _families(dump["histograms"])
    for name in sorted(families):
        out.append(f"# TYPE {name} histogram\n")
        for labels, h in families[name]:
            cumulative = 0
            for bound, count in zip(h["bounds"], h["counts"]):
                cumulative += count
                out.append(f"{name}_bucket{_labels(labels + (('le', num(bound)),))} {cumulative}\n")
            out.append(f"{name}_bucket{_labels(labels + (('le', '+Inf'),))} {h['count']}\n")
            out.append(f"{name}_sum{_labels(labels)} {num(h['sum'])}\n")
            out.append(f"{name}_count{_labels(labels)} {h['count']}\n")
    return "".join(out)


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


def clusters_text(clusters: dict[str, Any]) -> str:
    lines: list[str] = []
    for cluster, info in sorted(clusters.items()):
        for key, value in sorted(info.items()):
            if key == "endpoints":
                continue
            if isinstance(value, dict):
                # Envoy prints circuit breaker thresholds under the priority they apply to.
                key = "default_priority" if key == "circuit_breakers" else key
                lines += [f"{cluster}::{key}::{k}::{_text(v)}\n" for k, v in sorted(value.items())]
            else:
                lines.append(f"{cluster}::{key}::{_text(value)}\n")
        for ep in info.get("endpoints", ()):
            prefix = f"{cluster}::{ep['address']}::"
            lines += [f"{prefix}{k}::{_text(v)}\n" for k, v in _host_stats(ep)]
            for key, default in _HOST_INFO:
                if key == "health_flags":
                    value = "".join("/" + f for f in health_flags(ep.get("health"))) or "healthy"
                else:
                    value = _text(ep.get(key, default))
                lines.append(f"{prefix}{key}::{value}\n")
    return "".join(lines)


def _socket_address(address: str) -> dict[str, Any]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return {"pipe": {"path": address}}
    return {"socket_address": {"address": host.strip("[]"), "port_value": int(port)}}


def clusters_json(clusters: dict[str, Any]) -> dict[str, Any]:
    """Envoy's `/clusters?format=json` shape (admin.v3.Clusters)."""
    statuses = []
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
        statuses.append({"name": cluster, "added_via_api": bool(info.get("added_via_api", False)),
                         "host_statuses": hosts})
    return {"cluster_statuses": statuses}
