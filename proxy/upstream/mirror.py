"""Request mirroring: fire-and-forget copies of a request to shadow clusters.

A copy never delays or fails the real request: it is sent by its own task on its
own connection (upstream.call), after the real request's body has been read, and
its answer and errors are dropped. A body is copied only when it fits the
listener's limits.retry_buffer; a larger one skips the copy (counted) rather
than holding memory or the request. The copy's Host gets the `-shadow` suffix,
as Envoy's, so the shadow service can tell copies from live traffic.

A copy is counted on the shadow cluster as Envoy counts shadow traffic there:
upstream_rq_total, upstream_rq_<class>, upstream_rq_time, upstream_rq_timeout,
upstream_cx_total, upstream_cx_active and the connect failures, and the host's
rq_total in /clusters (see ShadowStats). The real request's cluster never counts it.
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

from .call import http_call

if TYPE_CHECKING:
    from .cluster import Cluster

MIRROR_TIMEOUT = 5.0


def shadow_host(host: str) -> str:
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and not host.endswith("]"):
        return f"{name}-shadow:{port}"
    return host + "-shadow"


def _ignore(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


class MirrorBody:
    """Collects the request body (as sent upstream, after body steps) for the copies."""
    __slots__ = ("worker", "stream", "clusters", "chunks", "size", "limit")

    def __init__(self, worker, stream, clusters: list[str], chunks: list[bytes], limit: int):
        self.worker = worker
        self.stream = stream
        self.clusters = clusters
        self.chunks: list[bytes] | None = chunks
        self.size = sum(len(c) for c in chunks)
        self.limit = limit

    def add(self, data: bytes) -> None:
        if self.chunks is None:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.chunks = None           # too big for the buffer: no copy
            self.worker.stats.counter("server.mirror_skipped_body").value += 1
            return
        self.chunks.append(data)

    def send(self) -> None:
        # a response that ended before the request body did stopped the body's reading
        # (stream.on_request_body drops the rest): what we hold may be partial
        if self.chunks is None or self.stream.response_done:
            return
        send(self.worker, self.stream.ctx.request, self.clusters, b"".join(self.chunks))


def start(worker, stream, mirrors) -> None:
    """Called when the route is decided, before the request is forwarded."""
    clusters = [m.cluster for m in mirrors if m.percent >= 100 or random.random() * 100 < m.percent]
    if not clusters:
        return
    limit = stream.listener.config.limits.retry_buffer
    if stream.request_done:
        body = b"".join(stream.body_buf) if stream.body_buf else b""
        if len(body) > limit:
            worker.stats.counter("server.mirror_skipped_body").value += 1
            return
        send(worker, stream.ctx.request, clusters, body)
        return
    if stream.request_body is not None and stream.request_body > limit:
        worker.stats.counter("server.mirror_skipped_body").value += 1
        return
    # nothing has gone upstream yet: what the stream holds is all the body read so far
    stream.mirror_body = MirrorBody(worker, stream, clusters, list(stream.body_buf or ()), limit)


class ShadowStats:
    """Counts one copy on the cluster it goes to (an upstream.call observer). Each
    copy opens its own connection, so a copy is one upstream_cx_total too."""
    __slots__ = ("cluster", "started", "up")

    def __init__(self) -> None:
        self.cluster: Cluster = None  # type: ignore[assignment]  # set by begin(), the first call
        self.started = 0.0
        self.up = False                   # connected: a failure from now on is no connect failure

    def begin(self, cluster, host) -> None:
        self.cluster = cluster
        self.started = time.monotonic()
        host.rq_total += 1
        cluster.rq_total_counter.value += 1
        cluster.c["upstream_cx_total"].value += 1
        cluster.cx_active_gauge.value += 1

    def connected(self) -> None:
        self.up = True

    def answered(self, status: int) -> None:
        c = self.cluster
        c.cx_active_gauge.value -= 1
        c.count_status(status)
        c.rq_time.add((time.monotonic() - self.started) * 1000.0)

    def failed(self, e: BaseException) -> None:
        c = self.cluster
        c.cx_active_gauge.value -= 1
        timed_out = isinstance(e, TimeoutError)
        if not self.up:
            c.c["upstream_cx_connect_fail"].value += 1
            if timed_out:
                c.c["upstream_cx_connect_timeout"].value += 1
        elif timed_out:
            c.c["upstream_rq_timeout"].value += 1


def send(worker, req, clusters: list[str], body: bytes) -> None:
    hdrs = [(":method", req.method), (":path", req.path), (":authority", shadow_host(req.host))]
    hdrs += [(k, v) for k, v in req.headers.pairs() if k != "host"]
    loop = asyncio.get_running_loop()
    for cluster in clusters:
        worker.mirror_total.value += 1
        task = loop.create_task(http_call(worker.clusters, cluster, hdrs, body, MIRROR_TIMEOUT, ShadowStats()))
        task.add_done_callback(_ignore)
