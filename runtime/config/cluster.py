"""Cluster traffic-governance settings: health_check, outlier_detection, the balancers'
own settings and DNS discovery, with Envoy's names and defaults.

ClusterConfig has no attribute for these, so they land in ClusterConfig.options
under their YAML key, as the frozen values built here (compared by value, so a
reload that does not touch them keeps the cluster's running checkers).
"""
from __future__ import annotations

from dataclasses import dataclass

from .compound import ListOf, Mapped
from .reader import BAD_VALUE, KeyPath, Reader, dotted
from .scalars import Bool, Duration, Enum, Int, Number, Str, attribute_reference
from .schema import Field, Obj, exactly_one, ordered


@dataclass(frozen=True, slots=True)
class HttpHealthCheck:
    path: str = "/"
    expected: frozenset[int] | None = None    # None: 200 only, as Envoy
    host: str | None = None                   # None: the cluster's name, as Envoy


@dataclass(frozen=True, slots=True)
class GrpcHealthCheck:
    """Envoy's grpc_health_check: grpc.health.v1.Health/Check for one service."""
    service_name: str = ""                    # "": the server's overall health
    authority: str | None = None              # None: the cluster's name, as Envoy


@dataclass(frozen=True, slots=True)
class HealthCheck:
    interval: float = 5.0
    timeout: float = 1.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 1
    http: HttpHealthCheck | None = None       # neither http nor grpc: a TCP connect check
    grpc: GrpcHealthCheck | None = None

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("interval and timeout must be longer than 0")
        if self.http is not None and self.grpc is not None:
            raise ValueError("a check is http or grpc, not both")

    @property
    def kind(self) -> str:
        return "http" if self.http is not None else "grpc" if self.grpc is not None else "tcp"


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Envoy's OutlierDetection fields and defaults (percentages 0..100; the stdev factor
    in thousandths, as Envoy's success_rate_stdev_factor)."""
    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 5
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 10
    enforcing_consecutive_5xx: int = 100
    enforcing_consecutive_gateway_failure: int = 0
    enforcing_success_rate: int = 100
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: int = 1900
    enforcing_failure_percentage: int = 0
    failure_percentage_threshold: int = 85
    failure_percentage_minimum_hosts: int = 5
    failure_percentage_request_volume: int = 50
    split_external_local_origin_errors: bool = False
    consecutive_local_origin_failure: int = 5
    enforcing_consecutive_local_origin_failure: int = 100


STATUS_RANGE = Obj({
    "start": Field(Int(100, 599), "first status of the range", required=True),
    "end": Field(Int(101, 600), "status after the last one (exclusive, as Envoy's)", required=True),
}, build=lambda v, span: range(v["start"], v["end"]), checks=[ordered("start", "end")])


def _statuses(kwargs: dict) -> dict:
    ranges = kwargs.pop("expected_statuses", None)
    if ranges:
        kwargs["expected"] = frozenset(kwargs.get("expected") or ()).union(*ranges)
    return kwargs


HTTP_HEALTH_CHECK = Obj({
    "path": Field(Str(), "path requested by the check", required=True),
    "expected": Field(Mapped(ListOf(Int(100, 599), min_items=1, single=True), frozenset),
                      "statuses that count as healthy (default [200])"),
    "expected_statuses": Field(ListOf(STATUS_RANGE, min_items=1), "Envoy's ranges [{start, end}], "
                               "end exclusive; added to expected"),
    "host": Field(Str(), "Host header of the check; default: the cluster's name"),
}, build=HttpHealthCheck, adapt=_statuses)


GRPC_HEALTH_CHECK = Obj({
    "service_name": Field(Str(empty=True), 'service asked about; default "": the whole server'),
    "authority": Field(Str(), ":authority of the check; default: the cluster's name"),
}, build=GrpcHealthCheck)


def _drop_tcp(kwargs: dict) -> dict:
    kwargs.pop("tcp", None)        # a TCP check is the absence of an http or grpc one
    return kwargs


HEALTH_CHECK = Obj({
    "http": Field(HTTP_HEALTH_CHECK, "an HTTP GET check: {path, expected, host}"),
    "grpc": Field(GRPC_HEALTH_CHECK, "grpc.health.v1.Health/Check, needs protocol: http2: "
                  "{service_name, authority}"),
    "tcp": Field(Obj({}, label="an empty mapping {}"), "a TCP connect check: {}"),
    "interval": Field(Duration(positive=True), "time between checks of each endpoint"),
    "timeout": Field(Duration(positive=True), "time a check may take before it fails"),
    "unhealthy_threshold": Field(Int(1), "failed checks in a row that take an endpoint out of rotation"),
    "healthy_threshold": Field(Int(1), "passed checks in a row that bring it back"),
}, build=HealthCheck, adapt=_drop_tcp,
   checks=[exactly_one("http", "grpc", "tcp", what="the kind of check")])

_PERCENT = Int(0, 100)

OUTLIER_DETECTION = Obj({
    "consecutive_5xx": Field(Int(1), "5xx answers (or local failures) in a row that eject an endpoint"),
    "consecutive_gateway_failure": Field(Int(1), "502/503/504 (or local failures) in a row that eject "
                                         "an endpoint, when enforcing_consecutive_gateway_failure > 0"),
    "interval": Field(Duration(positive=True), "time between ejection sweeps (success rate, unejection)"),
    "base_ejection_time": Field(Duration(positive=True), "first ejection time; multiplied by the "
                                "number of recent ejections"),
    "max_ejection_time": Field(Duration(positive=True), "longest ejection, however many recent ejections"),
    "max_ejection_percent": Field(_PERCENT, "most endpoints ejected at once, in percent"),
    "enforcing_consecutive_5xx": Field(_PERCENT, "chance, in percent, that a consecutive_5xx detection ejects"),
    "enforcing_consecutive_gateway_failure": Field(_PERCENT, "chance, in percent, that a "
                                                   "consecutive_gateway_failure detection ejects"),
    "enforcing_success_rate": Field(_PERCENT, "chance, in percent, that a success-rate outlier is ejected"),
    "success_rate_minimum_hosts": Field(Int(1), "endpoints with enough requests needed for success-rate detection"),
    "success_rate_request_volume": Field(Int(1), "requests in an interval for an endpoint to count"),
    "success_rate_stdev_factor": Field(Int(0), "ejected below mean - stdev × factor / 1000"),
    "enforcing_failure_percentage": Field(_PERCENT, "chance, in percent, that a failure-percentage "
                                          "outlier is ejected"),
    "failure_percentage_threshold": Field(_PERCENT, "failure percentage at or above which an endpoint is ejected"),
    "failure_percentage_minimum_hosts": Field(Int(1), "endpoints with enough requests needed for "
                                              "failure-percentage detection"),
    "failure_percentage_request_volume": Field(Int(1), "requests in an interval for an endpoint to count"),
    "split_external_local_origin_errors": Field(Bool(), "count connect failures, resets and timeouts apart "
                                                "(consecutive_local_origin_failure) instead of as 503/504"),
    "consecutive_local_origin_failure": Field(Int(1), "local failures in a row that eject an endpoint, "
                                              "when split_external_local_origin_errors"),
    "enforcing_consecutive_local_origin_failure": Field(_PERCENT, "chance, in percent, that a "
                                                        "consecutive_local_origin_failure detection ejects"),
}, build=OutlierDetection)

RING_HASH_LB_CONFIG = Obj({
    "minimum_ring_size": Field(Int(1, 8 * 1024 * 1024), "fewest points on the ring; default: 256 per unit of weight"),
    "maximum_ring_size": Field(Int(1, 8 * 1024 * 1024), "most points on the ring; default: no bound"),
})


def _prime(n: int) -> int:
    if n < 2 or any(n % p == 0 for p in range(2, int(n ** 0.5) + 1)):
        raise ValueError(f"{n} is not a prime number")
    return n


MAGLEV_LB_CONFIG = Obj({
    "table_size": Field(Mapped(Int(2, 5_000_011), _prime), "lookup table size, a prime (default 65537)"),
})

LEAST_REQUEST_LB_CONFIG = Obj({
    "choice_count": Field(Int(2, 100), "hosts compared per pick when weights are equal (default 2)"),
    "active_request_bias": Field(Number(0, 10), "how strongly active requests lower a host's weight "
                                 "when weights differ (default 1.0)"),
})

PEAK_EWMA_LB_CONFIG = Obj({
    "decay_time": Field(Mapped(Duration(positive=True), float), "how fast a latency peak is forgotten (default 10s)"),
    "default_rtt": Field(Mapped(Duration(positive=True), float), "latency assumed for an endpoint not yet measured (default 10ms)"),
})

COMMON_LB_CONFIG = Obj({
    "healthy_panic_threshold": Field(Number(0, 100), "below this percentage of healthy endpoints, "
                                     "all endpoints take traffic (default 50; 0 disables panic mode)"),
})

CLUSTER_TYPES = ("static", "strict_dns")
DNS_LOOKUP_FAMILIES = ("v4_preferred", "v4_only", "v6_only", "auto", "all")


def _grpc_needs_http2(values: dict, present: set, r: Reader, path: KeyPath) -> bool:
    hc = values.get("health_check")
    if not isinstance(hc, HealthCheck) or hc.grpc is None or values.get("protocol") != "http1":
        return True
    r.error(r.at(path + ("health_check", "grpc")), BAD_VALUE,
            f"{dotted(path + ('health_check', 'grpc'))}: a gRPC health check needs protocol: http2 "
            "(this cluster speaks http1)")
    return False


# Merged into document.CLUSTER's checks: settings here that depend on the cluster's others.
CHECKS = (_grpc_needs_http2,)

# Merged into document.CLUSTER's fields.
FIELDS = {
    "hash_key": Field(Str(attribute_reference), 'attribute hashed by ring_hash and maglev, e.g. request.headers["x-user"]'),
    "health_check": Field(HEALTH_CHECK, "active health checking of every endpoint"),
    "outlier_detection": Field(OUTLIER_DETECTION, "passive ejection of failing endpoints, as Envoy's"),
    "ring_hash_lb_config": Field(RING_HASH_LB_CONFIG, "ring_hash settings: bounds on the ring's size"),
    "maglev_lb_config": Field(MAGLEV_LB_CONFIG, "maglev settings: the lookup table size"),
    "least_request_lb_config": Field(LEAST_REQUEST_LB_CONFIG, "least_request settings: choice_count, active_request_bias"),
    "peak_ewma_lb_config": Field(PEAK_EWMA_LB_CONFIG, "peak_ewma settings: decay_time, default_rtt"),
    "common_lb_config": Field(COMMON_LB_CONFIG, "settings of every policy: healthy_panic_threshold"),
    "type": Field(Enum(*CLUSTER_TYPES), "static (the default): endpoints are addresses; strict_dns: names "
                  "resolved every dns_refresh_rate, each address an endpoint"),
    "dns_refresh_rate": Field(Duration(positive=True), "time between resolutions of a strict_dns cluster "
                              "(default 5s)"),
    "dns_lookup_family": Field(Enum(*DNS_LOOKUP_FAMILIES), "addresses a strict_dns cluster uses "
                               "(default v4_preferred)"),
}
