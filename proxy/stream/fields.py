"""The one slotted layout of a stream, with the type of each field, and (for the
type checker only) the methods one part of the lifecycle calls on another.

Every mixin of the package derives from StreamFields, so each sees the fields and
its siblings' methods with their types; HttpStream (executor.py) puts the mixins
together and adds no field. Which module owns which field is listed in
executor.py; the states are state.py's.
"""
from __future__ import annotations

from asyncio import Future, TimerHandle
from typing import TYPE_CHECKING, Any, Callable

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.context import StreamContext
from mosnx.runtime.headers import Headers

from .contracts import Downstream, Tunnel, Upstream
from .state import Attempt, Req, Resp

if TYPE_CHECKING:
    from mosnx.runtime.model import Listener
    from mosnx.runtime.pipeline import Pipeline
    from mosnx.runtime.routes import RouteAction

    from ..listener_stats import ListenerStats
    from ..upstream.cluster import Cluster, Host
    from .steps import Phase

# what a paused phase keeps until its step's I/O settles: (future, next step, chunk, end)
Hold = Callable[["Future[Any]", int, Any, bool], None]


class StreamFields:
    __slots__ = (
        "ctx", "down", "worker", "listener", "lstats", "chain", "action", "cluster", "host",
        "up", "req", "resp", "att", "request_body",
        "body_buf", "body_bytes", "replayable", "req_trailers", "req_chunked", "timer",
        "try_timer", "attempts", "tried", "resp_body_steps", "expect_continue",
        "upgrade", "tunnel_up", "up_keep_alive", "upstream_start", "retrying",
        "client_keep_alive", "paused_down", "wants_retry_5xx", "reused", "express",
        "idle_mark", "idle_since", "route_timeout", "resp_left", "held", "held_body", "mirror_body",
        "timeout_at", "req_held", "decoded", "refused", "trace_wire",
    )

    ctx: StreamContext
    down: Downstream
    worker: Any                       # proxy.worker.Worker (its loop, clusters, stats, logs)
    listener: Listener
    lstats: ListenerStats
    chain: Pipeline
    # set by the decision and the attempt before anything reads them (None until then)
    action: RouteAction
    cluster: Cluster
    host: Host
    up: Upstream | None
    req: Req
    resp: Resp
    att: Attempt
    request_body: int | None
    body_buf: list[bytes] | None
    body_bytes: int
    replayable: bool
    req_trailers: Headers | None
    req_chunked: bool
    timer: TimerHandle | None
    try_timer: TimerHandle | None
    attempts: int
    tried: Host | None
    resp_body_steps: tuple
    expect_continue: bool
    upgrade: bool
    tunnel_up: Tunnel | None
    up_keep_alive: bool
    upstream_start: float
    retrying: bool
    client_keep_alive: bool
    paused_down: bool
    wants_retry_5xx: bool
    reused: bool
    express: bool
    idle_mark: int
    idle_since: float
    route_timeout: float
    resp_left: int
    held: list[tuple[str, Any]] | None
    held_body: int | None
    mirror_body: Any                  # upstream.mirror.MirrorBody
    timeout_at: float
    req_held: list[tuple[Any, Headers | None, bool]] | None
    decoded: object
    refused: bool
    trace_wire: bytes | None

    if TYPE_CHECKING:
        # what one part of the lifecycle calls on another (each is defined in its module)
        def _steps(self, phase: Phase, steps: Any, start: int, data: Any, end: bool = False,
                   hold: Hold | None = None) -> Any: ...
        def _settled(self, phase: Phase, r: Any, data: Any) -> Any: ...
        def _when_settled(self, fut: Future[Any], then: Callable[[Any], None]) -> None: ...
        def _answer(self, r: Any) -> None: ...
        def _trailer_steps(self, phase: Phase, steps: Any, start: int, done: Callable[[Any], None]) -> None: ...
        def _decide(self) -> None: ...
        def _trace_object(self, written: bool) -> None: ...
        def _express(self) -> None: ...
        def _express_ready(self, conn: Upstream) -> None: ...
        def _express_whole(self, conn: Upstream, status: int, headers: Headers, keep_alive: bool,
                           body_len: int, body: bytes, decoded: object) -> bool: ...
        def _forward(self) -> None: ...
        def _attach(self, conn: Upstream) -> bool: ...
        def _release_upstream(self, reusable: bool) -> None: ...
        def _drop_upstream(self) -> None: ...
        def _after_upstream_gone(self) -> None: ...
        def _head_arrived(self, status: int, headers: Headers) -> float: ...
        def _cut(self, detail: str) -> None: ...
        def _start_tunnel(self, headers: Headers) -> None: ...
        def _can_replay(self) -> bool: ...
        def _can_retry(self) -> bool: ...
        def _retry(self) -> None: ...
        def _release_retry(self) -> None: ...
        def _forward_later(self, delay: float) -> None: ...
        def _arm_timeout(self, t: float) -> None: ...
        def _disarm_timeout(self) -> None: ...
        def _on_try_timeout(self) -> None: ...
        def _on_timeout(self) -> None: ...
        def _finish(self) -> None: ...
        def local_reply(self, r: LocalReply) -> None: ...
        def fail(self, status: int, detail: str) -> None: ...
        def on_upstream_data(self, data: bytes) -> None: ...
        def on_upstream_end(self, trailers: Headers | None) -> None: ...
        def on_request_end(self, trailers: Headers | None) -> None: ...
