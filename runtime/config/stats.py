"""`stats:` at the top of mosnx.yaml (how /stats/prometheus names series) and in a
listener (which detailed upstream stats it keeps).

The top-level block builds a runtime.stat_tags.StatsConfig, which checks the tags
(a regex that compiles and has a group, a name given once); a listener's block is a
plain {per_route, per_host} mapping kept in ListenerConfig.options["stats"].
"""
from __future__ import annotations

from ..stat_tags import PROMETHEUS_NAMES, StatsConfig, StatTag
from .compound import ListOf
from .scalars import Bool, Enum, Str
from .schema import Field, Obj

TAG = Obj({
    "tag_name": Field(Str(), "the label's name", required=True, attr="name"),
    "regex": Field(Str(), "a regular expression on the stat name: group 1 is taken out of the name, "
                   "group 2 (or 1) is the value"),
    "fixed_value": Field(Str(empty=True), "a value every series carries under this label"),
}, build=StatTag, label="a mapping {tag_name, regex | fixed_value}")

STATS = Obj({
    "prometheus_names": Field(Enum(*PROMETHEUS_NAMES), "envoy: Envoy's names and tags "
                              "(envoy_cluster_upstream_rq_total{envoy_cluster_name=...}), for Envoy and "
                              "Istio dashboards; mosnx: mosnx_ names, as before (the default)"),
    "stats_tags": Field(ListOf(TAG), "labels of your own, as Envoy's stats_config.stats_tags", attr="tags"),
    "use_all_default_tags": Field(Bool(), "false: only the stats_tags given are extracted"),
}, build=StatsConfig)

LISTENER_STATS = Obj({
    "per_route": Field(Bool(), "upstream_rq_completed, upstream_rq_<class> and upstream_rq_time per route, as "
                       "vhost.<vhost>.route.<route>.*", default=False),
    "per_host": Field(Bool(), "the same per upstream endpoint, as cluster.<cluster>.host.<host>_<port>.*",
                      default=False),
})
