"""The express path: a request that only needs forwarding, decided and answered in
as few calls as the work allows.

Most requests on a plain reverse-proxy listener meet no step at all: no listener,
vhost or route filter, a route that forwards to a cluster without retries, mirrors
or rewrites, and no request body. For those the phase machinery of HttpStream is
pure overhead. Eligibility is decided in fastpath.eligibility (the listener and
the request, when the stream is made; the route, when the snapshot is built); a
stream that may take this path has `express` set, and HttpStream hands these
three moments to this mixin:

- start: the route is matched here; a gRPC call, a route with steps or a missing
  route clears `express` and the general decision takes over from the top (the
  route was only looked at, so nothing is undone);
- the pool's connection: the head is the request (no body, framing, replay or
  per-try timer);
- a whole response in one read: head, body and end go out in one call, the head
  by the decoder's memo entry (no step could have changed it).

Everything else (the end of the request, failures, timeouts, resets, a response
in pieces) is HttpStream's own code over the same fields. With the fast path
switched off (fastpath.memo) no stream is express, and the differential test
(tests/e2e/test_fastpath_differential.py) requires both paths to put the same
bytes on both wires.
"""
from __future__ import annotations

from typing import Any

from ..forwarding import end_to_end
from ..stream.decide import pick_weighted
from mosnx.runtime.headers import Headers

from ..stream.contracts import Upstream
from ..stream.fields import StreamFields
from ..stream.state import DONE
from . import memo
from .memo import remember

# What a response head keeps end to end and what the downstream made of it, by the
# identity of the upstream decoder's memo entry: [entry, end-to-end fields, slot the
# downstream fills (Downstream.send_whole's memo)].
BY_RESPONSE = memo.kind("express.response_head", 64, "response heads on the express path: end-to-end fields and the downstream's encoding, by the identity of the decoded head's memo entry")
_BY_RESPONSE: dict[int, list[Any]] = BY_RESPONSE.table()
EXPRESS_RQ = memo.EXPRESS_RQ


class ExpressMixin(StreamFields):
    __slots__ = ()

    def _express(self) -> None:
        ctx = self.ctx
        vh = self.listener.routes.vhost_of(ctx.request)
        if vh is None:
            return self.fail(404, "route_not_found")
        route = vh.match(ctx)
        action = route.plain if route is not None else None
        if route is None or action is None:
            # no route (the vhost's steps may still answer) or one with steps
            self.express = False
            if self.trace_wire is not None:
                self._trace_object(False)       # steps may ask the trace for more
            return self._decide()
        EXPRESS_RQ.value += 1
        ctx.vhost = vh
        ctx.route = route
        self.chain = route.chain
        name = action.cluster
        if name is None:
            name = pick_weighted(action.weighted_clusters)
        ctx.cluster_name = name
        self.action = action
        cluster = self.worker.clusters.get(name)
        if cluster is None:
            return self.fail(503, "cluster_not_found")
        self.cluster = cluster
        t = action.timeout
        if t:
            # the request has no body: it is complete, so its timeout runs from now
            self.route_timeout = t
            self._arm_timeout(t)
        self._forward()

    def _express_ready(self, conn: Upstream) -> None:
        if self._attach(conn):
            # with no step, nothing but the request id (and last, the context a trace's
            # attempt wrote) was added since the decode; a trace context that replaced
            # the request's own changed it
            ctx = self.ctx
            tr = ctx.trace
            if tr is None:
                w = self.trace_wire
                if w is None:
                    conn.send_request(ctx.request, ctx.source_address, 0, False, None, True, None, self.decoded)
                else:
                    # an unsampled fresh trace's context, which the request does not hold
                    conn.send_request(ctx.request, ctx.source_address, 0, False, None, True, None,
                                      self.decoded, w)
            else:
                # an unsampled trace of the request's own hands its context over encoded
                conn.send_request(ctx.request, ctx.source_address, 0, False, None, True, None,
                                  None if tr.replaced else self.decoded, tr.wire, tr.tracer.wire_n)

    def _express_whole(self, conn: Upstream, status: int, headers: Headers, keep_alive: bool,
                       body_len: int, body: bytes, decoded: object) -> bool:
        # what on_upstream_head, on_upstream_data and on_upstream_end do, in one call
        conn.stream = None
        self.up_keep_alive = keep_alive
        if self.ctx.trace is not None and self.ctx.trace.sampled:     # an unsampled attempt records nothing
            self.ctx.trace.attempt_status(status)
        self._head_arrived(status, headers)
        self.ctx.bytes_sent += body_len
        self.resp = DONE
        m: list[Any] | None = _BY_RESPONSE.get(id(decoded)) if decoded is not None else None
        if m is not None and m[0] is decoded:
            BY_RESPONSE.hits += 1
        else:
            m = [decoded, end_to_end(headers.items), None]
            if decoded is not None:
                remember(_BY_RESPONSE, BY_RESPONSE, id(decoded), m)
        headers.items = list(m[1])
        self.down.send_whole(self, status, headers, body_len, body, m)
        self._release_upstream(keep_alive)
        self._finish()
        return True

