"""The counters every HTTP stream and connection of one listener updates, made once
per listener and worker so the hot path never builds a stat name."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mosnx.runtime.stats import ACCUMULATE, Counter, Store

if TYPE_CHECKING:
    from .stream.detail import DetailStats


class ListenerStats:
    __slots__ = ("rq_total", "rq_active", "by_class", "class_counters", "rq_time", "local", "timeout",
                 "cx_total", "cx_active", "rx_reset", "rq_retry_ok", "prefix", "local_replies", "detail")

    def __init__(self, store: Store, listener: str):
        p = f"http.{listener}."
        self.prefix = p
        self.rq_total = store.counter(p + "downstream_rq_total")
        self.rq_active = store.gauge(p + "downstream_rq_active", ACCUMULATE)
        self.by_class = {c: store.counter(p + f"downstream_rq_{c}") for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}
        # the same counters by status // 100 (none for statuses out of range)
        self.class_counters = (None,) + tuple(self.by_class.values()) + (None,) * 4
        self.rq_time = store.histogram(p + "downstream_rq_time")
        # Envoy's downstream_rq_completed: the responses the class counters count, added when read
        classes = tuple(self.by_class.values())
        store.counter_reading(p + "downstream_rq_completed", lambda: sum(k.value for k in classes))
        self.local = store
        self.timeout = store.counter(p + "downstream_rq_timeout")
        self.cx_total = store.counter(p + "downstream_cx_total")
        self.cx_active = store.gauge(p + "downstream_cx_active", ACCUMULATE)
        self.rx_reset = store.counter(p + "downstream_rq_rx_reset")
        self.rq_retry_ok = store.counter(p + "downstream_rq_retry_success")
        self.local_replies: dict[str, Counter] = {}      # cause -> its local_reply.<cause> counter
        # per-route and per-host series, when the listener's stats: asks (stream.detail)
        self.detail: DetailStats | None = None

    def by_address(self, host: str, port: int) -> None:
        """Envoy's listener.<address>.downstream_cx_total and downstream_cx_active
        (`127.0.0.1_8080`, `[__1]_8080`), read from this listener's own counts, so a
        connection is counted once. Not for an address whose stats a filter-chain
        listener keeps itself."""
        address = (f"[{host}]" if ":" in host else host).replace(":", "_")
        p = f"listener.{address}_{port}."
        store = self.local
        if p + "downstream_cx_total" in store.counters:
            return
        cx_total, cx_active = self.cx_total, self.cx_active
        store.counter_reading(p + "downstream_cx_total", lambda: cx_total.value)
        store.gauge_reading(p + "downstream_cx_active", lambda: cx_active.value, ACCUMULATE)

    def local_reply(self, cause: str) -> None:
        """Count a local reply under local_reply.<cause>, the cause its x-mosnx-error names."""
        c = self.local_replies.get(cause)
        if c is None:
            c = self.local_replies[cause] = self.local.counter(self.prefix + "local_reply." + cause)
        c.value += 1

    def refused(self, status: int, cause: str) -> None:
        """A reply the connection writes itself, before or instead of a stream (a
        malformed request, a header block over the limits, a header timeout, a path
        that cannot be normalised): counted as a request answered with `status`, as a
        stream's local reply is, whichever protocol carried it."""
        self.rq_total.value += 1
        c = self.class_counters[status // 100] if 100 <= status < 600 else self.by_class["5xx"]
        c.value += 1  # type: ignore[union-attr]  # statuses 100..599 have a counter each
        self.local_reply(cause)
