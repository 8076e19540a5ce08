"""Retries: which answers and failures may be tried again (pure decisions over the
route's retry policy), and making the next attempt.

As in Envoy, a retry holds one of the cluster's retry slots (max_retries) from the
moment it is decided until the next decision on the stream, or its end.
"""
from __future__ import annotations

import random

from mosnx.runtime.routes import RetryPolicy

from .state import COMPLETE, HEAD_SENT
from .fields import StreamFields

# retry_on conditions that look at the status of an answer
STATUS_CONDITIONS = frozenset({"5xx", "gateway-error", "retriable-status-codes", "retriable-4xx"})


def retriable_status(status: int, retry: RetryPolicy | None) -> bool:
    """Whether an answer with `status` may be tried again under `retry`."""
    if retry is None:
        return False
    on = retry.retry_on
    if status >= 500 and "5xx" in on:
        return True
    if status in (502, 503, 504) and "gateway-error" in on:
        return True
    if status in retry.retriable_status_codes and "retriable-status-codes" in on:
        return True
    return status == 409 and "retriable-4xx" in on


def backoff(retry: RetryPolicy, attempts: int) -> float:
    """The most the attempt after `attempts` waits (fully jittered, as Envoy's)."""
    return min(retry.backoff_max, retry.backoff_base * (2 ** (attempts - 1)))


def replayable(request_body: int | None, kept_whole: bool, fits: bool) -> bool:
    """Whether the request can be sent again: it has no body, or all of it is kept
    (it ended, and every chunk fitted the retry buffer)."""
    return fits and (request_body == 0 or kept_whole)


class RetryMixin(StreamFields):
    __slots__ = ()

    def _can_replay(self) -> bool:
        return replayable(self.request_body, self.body_buf is not None and self.req is COMPLETE,
                          self.replayable)

    def _can_retry(self) -> bool:
        self._release_retry()       # as Envoy: a retry holds its slot until the next decision
        retry = self.action.retry
        if retry is None or self.attempts > retry.num_retries or not self._can_replay() or self.resp >= HEAD_SENT:
            return False
        cluster = self.cluster
        if cluster.retries_active >= cluster.cb.max_retries:
            cluster.c["upstream_rq_retry_overflow"].value += 1
            return False
        return True

    def _retry(self) -> None:
        if self.ctx.trace is not None:
            self.ctx.trace.attempt_end("")      # the attempt's client span ends before the backoff
        cluster = self.cluster
        cluster.c["upstream_rq_retry"].value += 1
        cluster.retries_active += 1
        self.retrying = True
        self.tried = self.host
        retry = self.action.retry
        self._forward_later(random.uniform(0, backoff(retry, self.attempts)) if retry is not None else 0.0)

    def _release_retry(self) -> None:
        if self.retrying:
            self.retrying = False
            self.cluster.retries_active -= 1

    def _forward_later(self, delay: float) -> None:
        def go():
            if self.resp < HEAD_SENT:
                self._forward()
        self.worker.loop.call_later(delay, go)
