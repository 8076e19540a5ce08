"""docs/metrics.md: runtime.stat_catalog rendered as tables, one per section.

    mosnx docs metrics > docs/metrics.md
"""
from __future__ import annotations

from mosnx.runtime.stat_catalog import NONE, SAME, SECTIONS, Stat

REGENERATE = "mosnx docs metrics > docs/metrics.md"

HEADER = f"""\
# Metrics

<!-- Generated from runtime/stat_catalog.py; do not edit.
     Regenerate with: {REGENERATE} -->

Every stat mosnx keeps, as `/stats` (text or `?format=json`) and
`/stats/prometheus` on the admin API show them. Each worker counts its own; the
admin sums counters and gauges across workers and adds histogram buckets, so every
number is for the whole proxy. Histograms are in milliseconds, with Envoy's bucket
bounds. `<name>` parts are filled in: `http.<listener>.downstream_rq_total` is
`http.ingress.downstream_rq_total` for the listener named `ingress`. A stat appears
once the code path that keeps it has been built (a listener, a cluster, a filter
instance), so a stat of a feature not configured is absent rather than 0.

The Envoy column gives the name Envoy uses for the same count: "same" when it is
the same, "—" when Envoy has none.
"""


def _envoy(s: Stat) -> str:
    if s.envoy == SAME:
        return "same"
    if s.envoy == NONE:
        return "—"
    return s.envoy if " " in s.envoy else f"`{s.envoy}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    lines = [HEADER]
    for sec in SECTIONS:
        lines += [f"## {sec.title}", "", sec.intro, "", "| stat | type | meaning | Envoy |", "|---|---|---|---|"]
        for s in sec.stats:
            lines.append(f"| `{s.name}` | {s.type} | {_cell(s.meaning)} | {_cell(_envoy(s))} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
