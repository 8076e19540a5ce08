"""The admin HTTP API, on Envoy's paths and formats: /stats, /stats/prometheus,
/clusters, /listeners, /server_info, /config_dump, /ready, plus POST /reload, and the
mutating endpoints Istio's agent calls: POST /quitquitquit, /healthcheck/fail,
/healthcheck/ok, /drain_listeners, /logging (docs/istio.md).

Runs in the supervisor, never in a worker, and holds no proxy state: every answer comes
from an AdminBackend. A handler that raises costs one 500, a malformed request costs
its connection; the server itself never goes down. Requests on a connection are
answered one at a time, in order (pipelined requests wait their turn).

With one worker the supervisor's loop is also the data plane's, so the admin must never
hold it: filtering, rendering and JSON encoding run in slices of at most SLICE seconds
(`render`), and a stats filter is an RE2 pattern of bounded length, which matches in
linear time. Slices on the loop rather than a thread: a thread would hold the GIL
while the OS preempts it, and the loop would wait out its time slice.
Access is admin_access.py's (its rules are written out there): a mutating endpoint is
POST only and refuses cross-site requests; a configured token is needed for every
endpoint but /ready; bound to loopback, only loopback Host names are answered.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Iterable, Protocol
from urllib.parse import parse_qs

import httptools

from mosnx.runtime.stat_tags import StatNaming

from . import admin_format as fmt
from .admin_access import HEADERS, Access, Refusal

log = logging.getLogger("mosnx.admin")

MAX_HEAD = 64 * 1024      # request line plus headers
MAX_BODY = 64 * 1024      # no endpoint reads a body; this only bounds what we buffer
MAX_PENDING = 8           # pipelined requests queued before we stop reading

TEXT = "text/plain; charset=UTF-8"
JSON = "application/json"
PROMETHEUS = "text/plain; version=0.0.4; charset=UTF-8"

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}

# The longest the admin holds the loop before letting it serve I/O again, and the
# pause it then takes: the admin gets at most about a fifth of the loop, so a
# scraper polling back to back neither delays a request by more than a slice nor
# keeps the process busy enough for the OS to start preempting it. The clock is read
# every CHECK pieces; a piece is one stat, one line or one JSON token, a few
# microseconds at most.
SLICE = 0.0005
PAUSE = 0.002
CHECK = 8


class AdminBackend(Protocol):
    async def stats(self) -> dict: ...
    async def clusters(self) -> dict: ...
    async def config_dump(self) -> dict: ...
    def server_info(self) -> dict: ...
    async def reload(self) -> tuple[bool, dict]: ...
    def ready(self) -> bool: ...
    def fail_health_check(self, failed: bool) -> None: ...
    def quit(self) -> bool: ...
    def listeners(self) -> list[dict[str, Any]]: ...
    async def drain_listeners(self, inbound_only: bool, graceful: bool) -> list[str]: ...
    async def set_log_levels(self, levels: dict[str, str]) -> dict[str, str]: ...
    def log_levels(self) -> dict[str, str]: ...
    def stat_naming(self) -> StatNaming: ...


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


class BadRequest(Exception):
    """A handler's answer to a bad query: becomes a 400 with the message."""


def text(status: int, body: str, content_type: str = TEXT) -> Response:
    return Response(status, body.encode(), content_type)


def json_response(status: int, obj: Any, pretty: bool = False) -> Response:
    """For small answers; a dump that grows with the config goes through `render`."""
    return Response(status, "".join(fmt.json_pieces(obj, pretty)).encode(), JSON)


async def render(pieces: Iterable[str], content_type: str = TEXT) -> Response:
    """A 200 whose body is `pieces` joined, pausing PAUSE for the loop after each SLICE."""
    out: list[str] = []
    clock = time.perf_counter
    deadline = clock() + SLICE
    for n, piece in enumerate(pieces, 1):
        out.append(piece)
        if not n % CHECK and clock() > deadline:
            await asyncio.sleep(PAUSE)
            deadline = clock() + SLICE
    return Response(200, "".join(out).encode(), content_type)


Query = dict[str, list[str]]
Handler = Callable[[AdminBackend, Query], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    help: str
    handler: Handler


def _param(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _stats_selection(query: Query) -> tuple[fmt.Pattern | None, bool]:
    pattern = _param(query, "filter")
    try:
        compiled = fmt.compile_filter(pattern) if pattern else None
    except ValueError as e:
        raise BadRequest(f"invalid regex in filter: {e}") from None
    return compiled, "usedonly" in query


async def _home(backend: AdminBackend, query: Query) -> Response:
    return text(200, help_text())


async def _ready(backend: AdminBackend, query: Query) -> Response:
    if backend.ready():
        return text(200, "LIVE\n")
    return text(503, f"{backend.server_info().get('state', 'PRE_INITIALIZING')}\n")


async def _server_info(backend: AdminBackend, query: Query) -> Response:
    return json_response(200, backend.server_info(), pretty=True)


async def _config_dump(backend: AdminBackend, query: Query) -> Response:
    return await render(fmt.json_pieces(await backend.config_dump()), JSON)


async def _clusters(backend: AdminBackend, query: Query) -> Response:
    form = _param(query, "format")
    if form not in (None, "text", "json"):
        raise BadRequest(f"unknown format {form!r}: use text or json")
    clusters = await backend.clusters()
    if form == "json":
        return await render(fmt.clusters_json_pieces(clusters), JSON)
    return await render(fmt.clusters_text_pieces(clusters))


_STATS_TYPES = {None: TEXT, "text": TEXT, "json": JSON, "prometheus": PROMETHEUS}


async def _stats(backend: AdminBackend, query: Query) -> Response:
    form = _param(query, "format")
    if form not in _STATS_TYPES:
        raise BadRequest(f"unknown format {form!r}: use text, json or prometheus")
    pattern, used_only = _stats_selection(query)
    return await render(fmt.stats_pieces(await backend.stats(), pattern, used_only, form, backend.stat_naming()),
                        _STATS_TYPES[form])


async def _prometheus(backend: AdminBackend, query: Query) -> Response:
    pattern, used_only = _stats_selection(query)
    return await render(fmt.stats_pieces(await backend.stats(), pattern, used_only, "prometheus",
                                         backend.stat_naming()), PROMETHEUS)


async def _reload(backend: AdminBackend, query: Query) -> Response:
    """200 with the new version, or 400 with every finding (file:line:col: code message)
    while the previous version keeps serving."""
    ok, details = await backend.reload()
    return json_response(200 if ok else 400, {**details, "ok": ok}, pretty=True)


async def _quit(backend: AdminBackend, query: Query) -> Response:
    backend.quit()
    return text(200, "OK\n")


async def _healthcheck_fail(backend: AdminBackend, query: Query) -> Response:
    backend.fail_health_check(True)
    return text(200, "OK\n")


async def _healthcheck_ok(backend: AdminBackend, query: Query) -> Response:
    backend.fail_health_check(False)
    return text(200, "OK\n")


async def _drain_listeners(backend: AdminBackend, query: Query) -> Response:
    unknown = set(query) - {"inboundonly", "graceful", "skip_exit"}
    if unknown:
        raise BadRequest(f"unknown parameter {sorted(unknown)[0]!r}: use inboundonly, graceful")
    await backend.drain_listeners("inboundonly" in query, "graceful" in query)
    return text(200, "OK\n")


async def _listeners(backend: AdminBackend, query: Query) -> Response:
    form = _param(query, "format")
    if form not in (None, "text", "json"):
        raise BadRequest(f"unknown format {form!r}: use text or json")
    found = backend.listeners()
    if form == "json":
        return json_response(200, fmt.listeners_json(found), pretty=True)
    return text(200, fmt.listeners_text(found))


async def _logging(backend: AdminBackend, query: Query) -> Response:
    """?level=L sets every logger; ?<logger>=L one (mosnx.<logger>); none: the list.
    L is one of Envoy's names (trace ... off)."""
    from .admin_backend import ENVOY_LEVELS, ROOT
    levels: dict[str, str] = {}
    known = backend.log_levels()
    for key, values in query.items():
        value = values[-1].lower()
        if value not in ENVOY_LEVELS:
            raise BadRequest(f"unknown level {values[-1]!r} for {key}: use one of {', '.join(ENVOY_LEVELS)}")
        name = ROOT if key == "level" else key if key == ROOT or key.startswith(ROOT + ".") else f"{ROOT}.{key}"
        if name not in known:
            raise BadRequest(f"unknown logger {key!r}: use level=, or one of {', '.join(known)}")
        levels[name] = ENVOY_LEVELS[value]
    now = await backend.set_log_levels(levels) if levels else backend.log_levels()
    return text(200, "active loggers:\n" + "".join(f"  {n}: {lvl}\n" for n, lvl in now.items()))


ROUTES: dict[str, Route] = {
    "/": Route("GET", "this list of admin endpoints", _home),
    "/help": Route("GET", "this list of admin endpoints", _home),
    "/ready": Route("GET", "200 LIVE when serving, else 503 with the server state", _ready),
    "/server_info": Route("GET", "version, state, uptime, workers, snapshot version (JSON)", _server_info),
    "/config_dump": Route("GET", "the live configuration snapshot (JSON)", _config_dump),
    "/clusters": Route("GET", "upstream clusters and endpoint health; ?format=json", _clusters),
    "/stats": Route("GET", "all stats; ?filter=<regex>, ?usedonly, ?format=json|prometheus", _stats),
    "/stats/prometheus": Route("GET", "stats in Prometheus text format; ?filter=<regex>, ?usedonly",
                               _prometheus),
    "/reload": Route("POST", "rebuild the configuration from its sources; 400 with errors if it fails",
                     _reload),
    "/listeners": Route("GET", "listener names and addresses; ?format=json", _listeners),
    "/quitquitquit": Route("POST", "drain, then exit 0", _quit),
    "/healthcheck/fail": Route("POST", "fail the server's health check: /ready answers 503 DRAINING", _healthcheck_fail),
    "/healthcheck/ok": Route("POST", "pass the server's health check again", _healthcheck_ok),
    "/drain_listeners": Route("POST", "stop accepting on every listener; ?inboundonly (traffic_direction "
                              "INBOUND), ?graceful (after the drain time, connections told to close)",
                              _drain_listeners),
    "/logging": Route("POST", "?level=<level> for every logger, ?<logger>=<level> for one; the levels",
                      _logging),
}


def help_text() -> str:
    lines = ["admin commands are:\n"]
    lines += [f"  {route.method} {path}: {route.help}\n" for path, route in ROUTES.items()]
    return "".join(lines)


_OPEN = Access()      # dispatch without a policy: loopback rules, no token


async def dispatch(backend: AdminBackend, method: str, target: bytes,
                   headers: dict[bytes, bytes] | None = None, access: Access | None = None) -> Response:
    """The response to one request; never raises. `headers` holds the request's
    access-relevant headers (admin_access.HEADERS), names lower-cased."""
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        return text(400, "invalid request target\n")
    path = (url.path or b"").decode("latin-1")
    route = ROUTES.get(path)
    try:
        (access or _OPEN).check(path, route is not None and route.method != "GET", headers or {})
    except Refusal as e:
        return Response(e.status, f"{e}\n".encode(), TEXT, e.headers)
    if route is None:
        return text(404, "invalid path. " + help_text())
    allowed = (route.method, "HEAD") if route.method == "GET" else (route.method,)
    if method not in allowed:
        return Response(405, f"{route.method} required\n".encode(), TEXT, (("allow", ", ".join(allowed)),))
    query = parse_qs(url.query.decode("latin-1"), keep_blank_values=True) if url.query else {}
    try:
        return await route.handler(backend, query)
    except BadRequest as e:
        return text(400, f"{e}\n")
    except Exception as e:
        log.exception("admin %s %s failed", method, target.decode("latin-1"))
        return text(500, f"error: {type(e).__name__}: {e}\n")


def encode(response: Response, keep_alive: bool, head_only: bool = False) -> bytes:
    head = [_STATUS_LINES[response.status],
            f"content-type: {response.content_type}\r\n"
            f"content-length: {len(response.body)}\r\n"
            "cache-control: no-cache, max-age=0\r\n"
            "x-content-type-options: nosniff\r\n".encode()]
    head += [f"{k}: {v}\r\n".encode("latin-1") for k, v in response.headers]
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    if not head_only:
        head.append(response.body)
    return b"".join(head)


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    target: bytes
    keep_alive: bool
    headers: dict[bytes, bytes]


class _Reject(Exception):
    """Raised from a parser callback; the parser reports it as a callback error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AdminProtocol(asyncio.Protocol):
    def __init__(self, backend: AdminBackend, access: Access) -> None:
        self.backend = backend
        self.access = access
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = httptools.HttpRequestParser(self)
        # A queue item is a parsed request, or a final error reply that closes the connection.
        self.pending: deque[_Request | Response] = deque()
        self.task: asyncio.Task[None] | None = None
        self.closed = False       # stop parsing: the connection ends after what is queued
        self.paused = False
        self._target = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._head_size = 0
        self._body_size = 0
        self._reject: _Reject | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request is queued; what follows is another protocol we do not speak.
            self._finish()
        except httptools.HttpParserCallbackError:
            reject = self._reject or _Reject(500, "request handling failed")
            self._finish(text(reject.status, f"{reject}\n"))
        except httptools.HttpParserError:
            self._finish(text(400, "malformed request\n"))

    def connection_lost(self, exc: Exception | None) -> None:
        # The running request is left to finish: a client that hangs up must not cancel
        # a reload halfway. Its answer is dropped.
        self.closed = True
        self.pending.clear()

    def on_message_begin(self) -> None:
        self._target.clear()
        self._headers = {}
        self._head_size = self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._target += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value))
        name = name.lower()
        if name in HEADERS:
            # a repeated header is kept whole, so it matches no single expected value
            seen = self._headers.get(name)
            self._headers[name] = value if seen is None else seen + b", " + value

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > MAX_BODY:
            self._reject = _Reject(413, "request body too large")
            raise self._reject

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("latin-1")
        self._enqueue(_Request(method, bytes(self._target), self.parser.should_keep_alive(), self._headers))

    def _grow_head(self, n: int) -> None:
        self._head_size += n
        if self._head_size > MAX_HEAD:
            self._reject = _Reject(431, "request header fields too large")
            raise self._reject

    def _finish(self, reply: Response | None = None) -> None:
        """Stop reading; answer what is queued, then `reply` if given, then close."""
        self.closed = True
        if reply is not None:
            self.pending.append(reply)
        self._start()

    def _enqueue(self, item: _Request) -> None:
        self.pending.append(item)
        if len(self.pending) >= MAX_PENDING and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._start()

    def _start(self) -> None:
        if self.task is None:
            if self.pending:
                self.task = asyncio.get_running_loop().create_task(self._serve())
            elif self.closed:
                self.transport.close()

    async def _serve(self) -> None:
        try:
            while self.pending:
                item = self.pending.popleft()
                if isinstance(item, Response):
                    self.transport.write(encode(item, keep_alive=False))
                    self.transport.close()
                    return
                response = await dispatch(self.backend, item.method, item.target, item.headers, self.access)
                if self.transport.is_closing():
                    return
                # Once parsing has stopped, the last queued answer ends the connection.
                keep_alive = item.keep_alive and not (self.closed and not self.pending)
                self.transport.write(encode(response, keep_alive, head_only=item.method == "HEAD"))
                if not keep_alive:
                    self.transport.close()
                    return
                if self.paused and len(self.pending) < MAX_PENDING // 2:
                    self.paused = False
                    self.transport.resume_reading()
        finally:
            self.task = None


async def start_admin(host: str, port: int, backend: AdminBackend,
                      access: Access | None = None) -> asyncio.AbstractServer:
    """Listen on host:port (port 0 picks a free one; see `server.sockets`). `access`
    defaults to the rules for `host` with no token; the caller may `update` it later."""
    loop = asyncio.get_running_loop()
    access = access or Access(host)
    return await loop.create_server(lambda: AdminProtocol(backend, access), host, port)
