"""The `route:` mapping of a listener: a RouteAction, with Envoy's names where Envoy has one.

Every cluster it names is a reference checked once the whole document is read,
so a typo is reported at the name itself. A duration of 0 disables that timeout
and is kept as None, as RouteAction expects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model import FilterSpec
from ..routes import RETRY_ON, MirrorPolicy, RetryPolicy, RouteAction
from .compound import Data, Either, ListOf, Mapped, MapOf
from .names import Ref
from .scalars import Duration, Enum, Int, Number, Str, attribute_reference, regex
from .schema import Field, Obj, exactly_one, ordered


def _backoff(kwargs: dict) -> dict:
    backoff = kwargs.pop("backoff", None)
    if backoff is not None:
        kwargs["backoff_base"] = base = backoff["base_interval"]
        # Envoy's default: ten times the base interval
        kwargs["backoff_max"] = backoff.get("max_interval") or 10 * base
    return kwargs


BACKOFF = Obj({
    "base_interval": Field(Duration(positive=True), "first retry waits up to this long", required=True),
    "max_interval": Field(Duration(positive=True), "longest wait between retries; default 10 × base_interval"),
}, checks=[ordered("base_interval", "max_interval", strict=False)])

RETRY = Obj({
    "retry_on": Field(Mapped(ListOf(Enum(*sorted(RETRY_ON)), min_items=1, split=","), frozenset),
                      "conditions that cause a retry, a list or a comma-separated string"),
    "num_retries": Field(Int(0), "retries after the first attempt"),
    "per_try_timeout": Field(Duration(zero_is_none=True), "timeout of each attempt; 0: none"),
    "retriable_status_codes": Field(Mapped(ListOf(Int(100, 599)), frozenset),
                                    "statuses retried under retriable-status-codes"),
    "backoff": Field(BACKOFF, "jittered exponential back-off between attempts"),
}, build=RetryPolicy, adapt=_backoff)

MIRROR = Obj({
    "cluster": Field(Ref("cluster"), "cluster that receives a copy of the request", required=True),
    "percent": Field(Number(0, 100), "share of requests mirrored, 0..100"),
}, build=MirrorPolicy)


def _weighted(pairs: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    if sum(w for _, w in pairs) <= 0:
        raise ValueError("the weights must add up to more than 0")
    return pairs


WEIGHTED_CLUSTERS = Mapped(Either(
    ListOf(Obj({"name": Field(Ref("cluster"), "the cluster given this share", required=True),
                "weight": Field(Int(0), "its share of requests, relative to the others", required=True)},
               build=lambda v, span: (v["name"], v["weight"]), label="a mapping {name, weight}"),
           min_items=1),
    Mapped(MapOf(Int(0), key=Ref("cluster")), lambda d: tuple(d.items())),
), _weighted)


def _header_name(value: str) -> str:
    if not value or any(c in value for c in " :\t\r\n"):
        raise ValueError(f'"{value}" is not a header name')
    return value.lower()


def _prefix_rewrite(value: str) -> tuple[str, str]:
    if not value.startswith("/"):
        raise ValueError(f'"{value}" must start with "/"')
    # the default route matches every path, so the whole path prefix "/" is replaced
    return ("/", value)


REGEX_REWRITE = Obj({
    "pattern": Field(Mapped(Str(), regex), "regular expression matched against the path", required=True),
    "substitution": Field(Str(empty=True), r"replacement; \1 refers to a group", required=True),
}, build=lambda v, span: (v["pattern"], v["substitution"]))

# Policies of the default route that are filters: `fault: {...}` here is the `fault`
# filter for this listener's one route, settings as in `filters:`.
ROUTE_FILTERS = ("fault", "rate_limit")


@dataclass(frozen=True, slots=True)
class RouteWithFilters:
    """A default route with filter policies; the listener unpacks it (document._listener)."""
    action: RouteAction
    filters: tuple[FilterSpec, ...]


class _Route(Obj):
    def make(self, values: dict[str, Any], span: Any) -> Any:
        specs = tuple(FilterSpec(kind=k, name=k, config=values.pop(k), span=span)
                      for k in ROUTE_FILTERS if k in values)
        action = super().make(values, span)
        return RouteWithFilters(action, specs) if specs else action


ROUTE = _Route({
    "cluster": Field(Ref("cluster"), "cluster the request goes to; give cluster: or weighted_clusters:"),
    "weighted_clusters": Field(WEIGHTED_CLUSTERS, "split across clusters: a list of {name, weight} "
                               "or a mapping of name to weight"),
    "cluster_header": Field(Mapped(Str(), _header_name), "request header whose value names the cluster "
                            "(Envoy's cluster_header); a request without it, or naming no cluster, "
                            "is answered 503 (HTTP listeners only)"),
    "timeout": Field(Duration(zero_is_none=True), "from the end of the request until the response starts; 0 disables it"),
    "idle_timeout": Field(Duration(zero_is_none=True), "longest quiet time on the stream; 0 disables it"),
    "retry": Field(RETRY, "retry policy, as Envoy's: {retry_on, num_retries, per_try_timeout, retriable_status_codes, backoff}"),
    "prefix_rewrite": Field(Mapped(Str(), _prefix_rewrite), "replaces the path prefix (the whole path's "
                            "leading /) before forwarding"),
    "regex_rewrite": Field(REGEX_REWRITE, "rewrites the path with a regular expression"),
    "host_rewrite": Field(Str(), "Host header (:authority) sent upstream instead of the client's"),
    "mirror": Field(ListOf(MIRROR, single=True), "shadow traffic: one {cluster, percent} or a list",
                    attr="mirrors"),
    "hash_key": Field(Str(attribute_reference), 'attribute to hash for consistent load balancing, '
                      'e.g. request.headers["x-user"]'),
    "fault": Field(Data(), "fault injection: {delay: {fixed_delay, percentage}, abort: {http_status, "
                   "percentage}}, as the fault filter"),
    "rate_limit": Field(Data(), "local rate limit: {token_bucket: {max_tokens, tokens_per_fill, "
                        "fill_interval}, key, algorithm}, as the rate_limit filter"),
}, build=RouteAction, checks=[exactly_one("cluster", "weighted_clusters", "cluster_header")])
