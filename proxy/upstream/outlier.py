"""Outlier detection, as Envoy's: passive ejection of endpoints that fail.

Two kinds of detection. Consecutive errors (consecutive_5xx, consecutive_gateway_failure)
act on the result that reaches the threshold. Statistical ones (success_rate,
failure_percentage) run at each `interval` sweep over that interval's counts. An
ejected host leaves rotation for base_ejection_time × its back-off multiplier
(capped at max_ejection_time); the multiplier grows with each ejection and shrinks
by one each sweep the host spends in rotation, so a host that keeps failing stays
out longer. Unejection happens at sweeps, as Envoy's. max_ejection_percent bounds
how many hosts may be out at once.

Per-host state lives on Host (so it survives a reload that rebuilds the cluster);
this object holds the config, the stats and the sweep timer. The sweep is a
call_later chain, not a task: nothing to leak, stop() cancels one handle.
"""
from __future__ import annotations

import math
import random
import time

from mosnx.runtime.config.cluster import OutlierDetection
from mosnx.runtime.stats import PER_PROXY

# Stats under cluster.<name>.outlier_detection.<stat>, Envoy's names.
STATS = (
    "ejections_total", "ejections_enforced_total", "ejections_overflow",
    "ejections_consecutive_5xx",
    "ejections_enforced_consecutive_5xx", "ejections_detected_consecutive_5xx",
    "ejections_enforced_consecutive_gateway_failure", "ejections_detected_consecutive_gateway_failure",
    "ejections_enforced_success_rate", "ejections_detected_success_rate",
    "ejections_enforced_failure_percentage", "ejections_detected_failure_percentage",
    "ejections_enforced_consecutive_local_origin_failure",
    "ejections_detected_consecutive_local_origin_failure",
)

CONSECUTIVE_5XX = "consecutive_5xx"
CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
SUCCESS_RATE = "success_rate"
FAILURE_PERCENTAGE = "failure_percentage"
CONSECUTIVE_LOCAL_ORIGIN_FAILURE = "consecutive_local_origin_failure"

# Local failures as an HTTP status, as Envoy maps them when they are not split apart.
LOCAL_STATUS = {"connect_failure": 503, "reset": 503, "timeout": 504}

_ENFORCING = {
    CONSECUTIVE_5XX: "enforcing_consecutive_5xx",
    CONSECUTIVE_GATEWAY_FAILURE: "enforcing_consecutive_gateway_failure",
    SUCCESS_RATE: "enforcing_success_rate",
    FAILURE_PERCENTAGE: "enforcing_failure_percentage",
    CONSECUTIVE_LOCAL_ORIGIN_FAILURE: "enforcing_consecutive_local_origin_failure",
}


class OutlierDetector:
    def __init__(self, cluster, config: OutlierDetection, clock=time.monotonic):
        self.cluster = cluster
        self.config = config
        self.clock = clock
        prefix = f"cluster.{cluster.name}.outlier_detection."
        self.c = {s: cluster.stats.counter(prefix + s) for s in STATS}
        # hosts out of rotation: a fact about the cluster, reported once across workers
        self.active = cluster.stats.gauge(prefix + "ejections_active", PER_PROXY)
        self.timer = None
        self.loop = None
        self.refresh()

    # -- lifecycle --
    def start(self, loop) -> None:
        self.loop = loop
        self.timer = loop.call_later(self.config.interval, self._tick)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.loop = None

    def refresh(self) -> None:
        """Membership changed: the ejected count is recounted over the current hosts."""
        self.active.value = sum(1 for h in self.cluster.hosts if h.ejected)

    def clear_gauge(self) -> None:
        self.active.value = 0

    # -- results, on the request path --
    def on_result(self, host, status: int) -> None:
        host.od_total += 1
        cfg = self.config
        if status >= 500:
            if status in (502, 503, 504):
                host.od_gw += 1
                if host.od_gw == cfg.consecutive_gateway_failure:
                    self._consecutive(host, CONSECUTIVE_GATEWAY_FAILURE)
            else:
                host.od_gw = 0
            host.od_5xx += 1
            if host.od_5xx == cfg.consecutive_5xx:
                self._consecutive(host, CONSECUTIVE_5XX)
        else:
            host.od_ok += 1
            host.od_5xx = 0
            host.od_gw = 0
        if self.config.split_external_local_origin_errors:
            host.od_local = 0      # it answered: the connection was fine

    def on_local_failure(self, host, kind: str) -> None:
        """A connect failure, reset or timeout: as 503/504, or counted apart when split."""
        if not self.config.split_external_local_origin_errors:
            self.on_result(host, LOCAL_STATUS.get(kind, 503))
            return
        host.od_local += 1
        if host.od_local == self.config.consecutive_local_origin_failure and not host.ejected:
            self.eject(host, CONSECUTIVE_LOCAL_ORIGIN_FAILURE)
            host.od_local = 0

    def _consecutive(self, host, kind: str) -> None:
        if host.ejected:
            return
        self.eject(host, kind)
        # as Envoy: the count starts over, so a host kept in by max_ejection_percent
        # is tried again after another run of failures
        if kind == CONSECUTIVE_5XX:
            host.od_5xx = 0
        else:
            host.od_gw = 0

    # -- ejection --
    def eject(self, host, kind: str) -> bool:
        self.c["ejections_detected_" + kind].value += 1
        pct = getattr(self.config, _ENFORCING[kind])
        if pct <= 0 or (pct < 100 and random.random() * 100 >= pct):
            return False
        hosts = self.cluster.hosts
        ejected = sum(1 for h in hosts if h.ejected)
        if 100.0 * (ejected + 1) / max(len(hosts), 1) > self.config.max_ejection_percent:
            self.c["ejections_overflow"].value += 1
            return False
        host.ejected = True
        host.ejected_at = self.clock()
        host.ejections += 1
        host.set_health()
        self.active.value = ejected + 1
        self.c["ejections_total"].value += 1
        self.c["ejections_enforced_total"].value += 1
        self.c["ejections_enforced_" + kind].value += 1
        if kind == CONSECUTIVE_5XX:
            self.c["ejections_consecutive_5xx"].value += 1
        return True

    def _uneject(self, host) -> None:
        host.ejected = False
        host.od_5xx = host.od_gw = host.od_local = 0
        host.set_health()

    # -- the sweep --
    def _tick(self) -> None:
        self.timer = None
        try:
            self.sweep()
        finally:
            if self.loop is not None:
                self.timer = self.loop.call_later(self.config.interval, self._tick)

    def sweep(self) -> None:
        cfg = self.config
        now = self.clock()
        base = cfg.base_ejection_time
        cap = max(cfg.max_ejection_time, base)
        for h in self.cluster.hosts:
            if h.ejected:
                if now - h.ejected_at >= min(base * h.ejections, cap):
                    self._uneject(h)
            elif h.ejections:
                h.ejections -= 1
        self._success_rate()
        self._failure_percentage()
        for h in self.cluster.hosts:
            h.success_rate = 100.0 * h.od_ok / h.od_total if h.od_total else -1.0
            h.od_total = h.od_ok = 0
        self.refresh()

    def _volume(self, volume: int) -> list:
        return [h for h in self.cluster.hosts if not h.ejected and h.od_total >= volume]

    def _success_rate(self) -> None:
        cfg = self.config
        hosts = self._volume(cfg.success_rate_request_volume)
        if len(hosts) < cfg.success_rate_minimum_hosts:
            return
        rates = [100.0 * h.od_ok / h.od_total for h in hosts]
        mean = sum(rates) / len(rates)
        stdev = math.sqrt(sum((r - mean) ** 2 for r in rates) / len(rates))
        threshold = mean - stdev * cfg.success_rate_stdev_factor / 1000.0
        for h, r in zip(hosts, rates):
            if r < threshold:
                self.eject(h, SUCCESS_RATE)

    def _failure_percentage(self) -> None:
        cfg = self.config
        hosts = self._volume(cfg.failure_percentage_request_volume)
        if len(hosts) < cfg.failure_percentage_minimum_hosts:
            return
        for h in hosts:
            if 100.0 * (h.od_total - h.od_ok) / h.od_total >= cfg.failure_percentage_threshold:
                self.eject(h, FAILURE_PERCENTAGE)
