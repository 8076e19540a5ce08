"""Deciding what a request becomes: its id, the vhost, the route, the route's action.

Order (DESIGN.md): listener `request` steps → vhost → vhost `request` steps → route
match → route `request` steps → action (local reply, redirect, or forward) →
`upstream_request` → upstream. The decision is plain calls: a step that pauses
stops it, and its I/O resumes it at the chain's next step, so a request no step
pauses costs no coroutine, task or generator.
"""
from __future__ import annotations

from asyncio import Future
from collections.abc import Callable
from typing import Any

import random

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.routes import DirectResponse, RedirectAction, RouteAction

from ..codec.http2 import is_grpc, is_grpc_type, parse_grpc_timeout
from ..request_id import new_request_id
from mosnx.runtime.tracing.propagation import READ_NAMES
from .retry import STATUS_CONDITIONS
from .state import COMPLETE, ENDED, RECEIVING
from .steps import REQUEST
from .fields import StreamFields


# the header names _admit() looks for: its own two, and every one the tracer reads
_ADMIT_NAMES = frozenset((b"x-request-id", b"content-type", *READ_NAMES))


class DecideMixin(StreamFields):
    __slots__ = ()

    def start(self) -> None:
        try:
            if self._admit() or not self.express:
                # a gRPC call's deadline and trailers-only errors take the general path
                self.express = False
                if self.trace_wire is not None:
                    self._trace_object(False)       # steps may ask the trace for more
                self._decide()
            else:
                self._express()
        except Exception:
            self._decision_failed()

    def _trace_object(self, written: bool) -> None:
        """Make the context the stream kept (trace_wire) its trace object (Tracer.adopt):
        `written`, the context went upstream already; else its first attempt writes it,
        after whatever the steps add."""
        self.listener.tracer.adopt(self.ctx, self.trace_wire, written)
        self.trace_wire = None

    def _admit(self) -> bool:
        """Count the request and give it its id; True when it is a gRPC call."""
        ls = self.lstats
        ls.rq_total.value += 1
        ls.rq_active.value += 1
        self.req = COMPLETE if self.request_body == 0 else RECEIVING
        ctx = self.ctx
        # one pass for the three facts: the first request id and content type, as getb
        # would find them, and whether a header the tracer reads is there at all
        items = ctx.request.headers.items
        rid = ctype = None
        carried = False
        for k, v in items:
            if k in _ADMIT_NAMES:
                if k == b"x-request-id":
                    if rid is None:
                        rid = v
                elif k == b"content-type":
                    if ctype is None:
                        ctype = v
                else:
                    carried = True
        if rid is None:
            rid_s = new_request_id()
            items.append((b"x-request-id", rid_s.encode()))
        else:
            rid_s = rid.decode("latin-1")
        ctx.request_id = rid_s
        grpc = ctype is not None and is_grpc_type(ctype)
        tracer = self.listener.tracer
        if tracer is not None:
            # the trace it continues or starts (ctx.trace); one of its own, most often,
            # which on the express path is only its context until more is asked of it
            if carried:
                tracer.begin(ctx)
            else:
                # Tracer.begin_express, its usual case inline: a fresh trace's context
                # drawn ahead, which the stream keeps (start() makes it a trace object
                # off the express path; a sampled one, SampledWire, is recorded at the
                # stream's end); None in its place, a sampled trace with no context
                # drawn ahead
                pool = tracer.pool
                if pool:
                    w = pool.pop()
                    if w is not None:
                        self.trace_wire = w
                    else:
                        tracer.begin_sampled(ctx)
                else:
                    self.trace_wire = tracer.begin_express(ctx)
        if grpc:
            t = parse_grpc_timeout(ctx.request.headers.getb(b"grpc-timeout"))
            if t is not None:
                ctx.timeout_override = t      # the caller's deadline bounds the whole call
            return True
        return False

    # The decision runs as four chains of request steps, each followed by what it
    # leads to; a chain a step paused goes on (then leads on) when its I/O settles.
    def _decide(self) -> None:
        steps = self.listener.pipeline.request
        if not steps or self._steps(REQUEST, steps, 0, True):
            self._pick_vhost()

    def _chain_at(self) -> tuple[tuple, Callable[[], None]]:
        """The chain the decision is in (its steps, and what it leads to), read from
        how far it got: each stage sets what the next one finds."""
        ctx = self.ctx
        if ctx.vhost is None:
            return self.listener.pipeline.request, self._pick_vhost
        if ctx.route is None:
            return ctx.vhost.pipeline.request, self._pick_route
        if self.action is None:
            return ctx.route.pipeline.request, self._take_action
        return self.chain.upstream_request, self._go_upstream

    def _hold_decision(self, fut: Future[Any], start: int, _data: Any, _end: bool) -> None:
        def resumed(r: Any) -> None:
            try:
                steps, then = self._chain_at()
                if self._settled(REQUEST, r, True) is not None and self._steps(REQUEST, steps, start, True):
                    then()
            except Exception:
                self._decision_failed()
        self._when_settled(fut, resumed)

    def _decision_failed(self) -> None:
        self.worker.log_exception("stream decision failed")
        self.fail(500, "internal_error")

    def _pick_vhost(self) -> None:
        if self.resp >= ENDED:
            return
        ctx = self.ctx
        vh = self.listener.routes.vhost_of(ctx.request)
        if vh is None:
            return self.fail(404, "route_not_found")
        ctx.vhost = vh
        self.chain = vh.chain
        steps = vh.pipeline.request
        if not steps or self._steps(REQUEST, steps, 0, True):
            self._pick_route()

    def _pick_route(self) -> None:
        ctx = self.ctx
        route = ctx.vhost.match(ctx)  # type: ignore[union-attr]  # _pick_vhost set it
        if route is None:
            return self.fail(404, "route_not_found")
        ctx.route = route
        self.chain = route.chain
        action = route.action
        if isinstance(action, RouteAction):
            # the cluster (a weighted split's pick too) is known with the route, as in
            # Envoy, so replies made by the route's own steps still log and expose it
            cname = action.cluster
            if cname is None:
                cname = (pick_weighted(action.weighted_clusters) if action.cluster_header is None
                         else cluster_from_header(ctx, action.cluster_header_b))
            ctx.cluster_name = cname
        steps = route.pipeline.request
        if not steps or self._steps(REQUEST, steps, 0, True):
            self._take_action()

    def _take_action(self) -> None:
        ctx = self.ctx
        action = ctx.route.action  # type: ignore[union-attr]  # _pick_route set it
        if not isinstance(action, RouteAction):
            if isinstance(action, DirectResponse):
                return self.local_reply(LocalReply(action.status, action.body, action.headers, ""))
            if isinstance(action, RedirectAction):
                return self.local_reply(LocalReply(action.status, b"", (("location", action.location(ctx)),), ""))
            return self.fail(500, "internal_error")
        self.action = action
        cluster = self.worker.clusters.get(ctx.cluster_name)
        if cluster is None:
            return self.fail(503, "cluster_not_found")
        self.cluster = cluster
        if action.rewrites:
            self._rewrite(action)
        steps = self.chain.upstream_request
        if not steps or self._steps(REQUEST, steps, 0, True):
            self._go_upstream()

    def _go_upstream(self) -> None:
        if self.resp >= ENDED:
            return
        ctx = self.ctx
        action = self.action
        if action.retry is not None and action.retry.num_retries:
            self.body_buf = self.body_buf if self.body_buf is not None else []
            self.wants_retry_5xx = not action.retry.retry_on.isdisjoint(STATUS_CONDITIONS)
        t = ctx.timeout_override if ctx.timeout_override is not None else action.timeout
        if action.timeout and t and action.timeout < t and is_grpc(ctx.request.headers):
            t = action.timeout      # a gRPC caller's deadline shortens the route timeout, never extends it
        if t:
            # as Envoy's, the route timeout runs from the end of the downstream request
            self.route_timeout = t
            if self.req is COMPLETE:
                self._arm_timeout(t)
        if action.mirrors:
            self.worker.mirror(self, action.mirrors)
        if self.expect_continue:
            self.expect_continue = False
            self.down.send_continue(self)
        self._forward()

    def _rewrite(self, action: RouteAction) -> None:
        ctx = self.ctx
        if action.prefix_rewrite is not None:
            old, new = action.prefix_rewrite
            path = ctx.request.path
            if path.startswith(old):
                p = new + path[len(old):]
                if not p.startswith("/"):
                    p = "/" + p
                ctx.set_path(p)
        if action.regex_rewrite is not None:
            pat, sub = action.regex_rewrite
            url_path = ctx.url_path
            rest = ctx.request.path[len(url_path):]
            ctx.set_path(pat.sub(sub, url_path) + rest)
        if action.host_rewrite is not None:
            ctx.request.headers.set(b"host", action.host_rewrite.encode("latin-1"))


def cluster_from_header(ctx: Any, name: bytes) -> str:
    """The cluster a request header names (its first value), or "" when absent: no
    cluster has that name, so the request is answered 503 cluster_not_found (Envoy's NC)."""
    v = ctx.request.headers.getb(name)
    return v.decode("latin-1") if v is not None else ""


def pick_weighted(weighted: tuple[tuple[str, int], ...]) -> str:
    total = 0
    for _, w in weighted:
        total += w
    r = random.random() * total
    for name, w in weighted:
        r -= w
        if r < 0:
            return name
    return weighted[-1][0]
