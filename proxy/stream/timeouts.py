"""The route timeout, the per-try timeout and the stream idle timeout.

A short route timeout is a loop timer; a long one (SWEPT_TIMEOUT and over) and the
stream idle timeout are checked by the worker's sweep (check_timeouts), which
reads progress from counters the data path keeps anyway.
"""
from __future__ import annotations

from .state import DONE, ENDED, HEAD_SENT
from .fields import StreamFields

# route timeouts at least this long are enforced by the worker's sweep, not a timer
SWEPT_TIMEOUT = 2.0


class TimeoutsMixin(StreamFields):
    __slots__ = ()

    def _arm_timeout(self, t: float) -> None:
        if t >= SWEPT_TIMEOUT:
            # a timer costs more than the rest of the stream's bookkeeping; a long
            # timeout is checked by the worker's sweep instead, at most 250 ms late
            self.timeout_at = self.worker.loop.time() + t
        else:
            self.timer = self.worker.loop.call_later(t, self._on_timeout)

    def _disarm_timeout(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timeout_at = 0.0

    def _on_timeout(self) -> None:
        self._disarm_timeout()      # the timer that fired, or the sweep's entry
        if self.resp >= HEAD_SENT:
            return
        if self.cluster is not None:
            self.cluster.c["upstream_rq_timeout"].value += 1
            if self.host is not None:
                self.host.pool.cancel(self)
        self.lstats.timeout.value += 1
        if self.up is not None:
            self.host.observe_failure("timeout")
            self._drop_upstream()
        self.fail(504, "upstream_response_timeout")

    def _on_try_timeout(self) -> None:
        self.try_timer = None
        if self.resp >= HEAD_SENT:
            return
        self.cluster.c["upstream_rq_per_try_timeout"].value += 1
        self.host.observe_failure("timeout")
        self._drop_upstream()
        if self._can_retry():
            return self._retry()
        self.fail(504, "upstream_per_try_timeout")

    def check_timeouts(self, now: float) -> None:
        """From the worker's sweep, for a stream its connection has started: a long
        route timeout that has passed, and the stream idle timeout (no byte either
        way for too long)."""
        resp = self.resp
        if resp >= ENDED:
            return
        t = self.timeout_at
        if t and t <= now:
            self._on_timeout()
            return
        ctx = self.ctx
        mark = ctx.bytes_received + ctx.bytes_sent + self.attempts + (1 if resp >= HEAD_SENT else 0)
        if mark != self.idle_mark:
            self.idle_mark = mark
            self.idle_since = now
            return
        action = self.action
        limit = action.idle_timeout if action is not None and action.idle_timeout else \
            self.listener.config.timeouts.stream_idle
        if not limit or now - self.idle_since < limit:
            return
        self.worker.stats.counter(f"http.{self.listener.config.name}.downstream_rq_idle_timeout").value += 1
        if resp >= HEAD_SENT:
            ctx.error_detail = "stream_idle_timeout"
            self.resp = DONE
            self._release_upstream(False)
            self.down.abort(self)
            self._finish()
            return
        self._drop_upstream()
        self.fail(504, "stream_idle_timeout")
