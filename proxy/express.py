"""The short path for a request that only needs forwarding.

Most requests on a plain reverse-proxy listener meet no step at all: no listener,
vhost or route filter, a route that forwards to a cluster without retries, mirrors
or rewrites, and no request body. For those the phase machinery of HttpStream is
pure overhead, so ExpressStream decides in one call, sends the head without
framing or replaying a body, and takes the response head without looking for
steps or retries. It keeps every field HttpStream keeps, so anything off the
short path is HttpStream's own code picking up the same state: the body, the end,
failures, timeouts and resets through the methods this class does not override,
and a route with steps (or a gRPC call) by turning the stream into an HttpStream
outright.
"""
from __future__ import annotations

from .stream import HttpStream, _pick_weighted


class ExpressStream(HttpStream):
    __slots__ = ()

    def start(self) -> None:
        try:
            if self._admit():
                # a gRPC call's deadline and trailers-only errors take the full path
                self._full()
            else:
                self._express()
        except Exception:
            self._decision_failed()

    def _full(self) -> None:
        """Off the short path for good: from here on this is an HttpStream (the
        classes share one layout), deciding from the top."""
        self.__class__ = HttpStream
        self._decide()

    def _express(self) -> None:
        ctx = self.ctx
        vh = self.listener.routes.vhost_of(ctx.request)
        if vh is None:
            return self.fail(404, "route_not_found")
        route = vh.match(ctx)
        action = route.plain if route is not None else None
        if action is None:
            # no route (the vhost's steps may still answer) or one with steps: the
            # route was only looked at, so nothing is undone
            return self._full()
        ctx.vhost = vh
        ctx.route = route
        self.chain = route.chain
        name = action.cluster
        if name is None:
            name = _pick_weighted(action.weighted_clusters)
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

    def on_pool_ready(self, conn) -> None:
        # no retry timer and no body to frame or replay: the head is the request, and
        # it has no body or upgrade by the short path's own terms
        if self._attach(conn):
            # (with no step, nothing but the request id was added since the decode)
            self._send_bodiless(conn, self.origin)

    def on_upstream_head(self, status: int, headers, keep_alive: bool, body: int | None) -> None:
        # no retry policy and no response step: the head goes out as it came
        self.up_keep_alive = keep_alive
        self._head_arrived(status, headers)
        self._send_upstream_head(body)

    def on_upstream_whole(self, conn, status: int, headers, keep_alive: bool, body_len: int,
                          body: bytes, origin=None) -> None:
        # head, body and end at once, with no step to see them in between: what
        # on_upstream_head, on_upstream_data and on_upstream_end do, in one call
        conn.stream = None
        self.up_keep_alive = keep_alive
        self._head_arrived(status, headers)
        self.ctx.bytes_sent += body_len
        # no response step could have changed the head: the codec's memory stands for it
        self._send_upstream_head(body_len, body, origin)
        self._release_upstream(keep_alive and self.request_done)
        self.response_done = True
        self._finish()
