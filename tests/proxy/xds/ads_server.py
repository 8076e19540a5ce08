"""An ADS server for tests: state of the world and delta on 127.0.0.1, on grpcio's asyncio server.

It answers as go-control-plane's snapshot cache does, so the client meets what a real
control plane does to it:
- SotW: a request whose version_info differs from the type's current version is
  answered at once with the current resources (all of them for a wildcard request,
  the existing named ones otherwise); a request that has the current version (an
  ACK) opens a watch answered at the next `push`. A NACK carries the old version, so
  it is answered at once with the same refused version again: one resend per request,
  never more. A request whose nonce is not the last one sent for its type is stale
  and ignored.
- Delta: the server keeps, per stream and type, the resource versions the client has
  (its initial_resource_versions, then whatever was sent), and sends what differs
  and what was removed, after each request and each push; a NACK changes nothing.
  VirtualHost (VHDS) names are namespaces, as Envoy subscribes: "rc" takes "rc/<host>".
Every request and response is recorded. `stop()` then `start()` serves again on the
same port, with the same resources, as a control plane restarting. Test code only:
never imported by the package.
"""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

NAME_FIELD = {"ClusterLoadAssignment": "cluster_name"}
VIRTUAL_HOST = "type.googleapis.com/envoy.config.route.v3.VirtualHost"


def name_of(msg: Message) -> str:
    return getattr(msg, NAME_FIELD.get(msg.DESCRIPTOR.name, "name"))


def pack(msg: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


@dataclass
class Request:
    stream: int
    kind: str                           # "sotw" or "delta"
    type_url: str
    version: str                        # SotW version_info ("" for delta)
    nonce: str
    error: status_pb2.Status | None
    names: tuple[str, ...]              # SotW resource_names
    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()
    initial: dict[str, str] = field(default_factory=dict)
    node: base_pb2.Node | None = None
    at: float = 0.0

    @property
    def nack(self) -> bool:
        return self.error is not None


@dataclass
class Response:
    stream: int
    kind: str
    type_url: str
    version: str
    nonce: str
    names: tuple[str, ...]
    removed: tuple[str, ...] = ()


class _Sotw:
    def __init__(self, server: AdsServer, sid: int, out: asyncio.Queue[Any]) -> None:
        self.server, self.sid, self.out = server, sid, out
        self.nonce: dict[str, str] = {}
        self.watch: dict[str, tuple[frozenset[str], str]] = {}
        self.sent_names: dict[str, frozenset[str]] = {}

    def on_request(self, req: discovery_pb2.DiscoveryRequest) -> None:
        t = req.type_url
        if req.response_nonce and req.response_nonce != self.nonce.get(t):
            return                      # stale: answers a response that was superseded
        self.watch[t] = (frozenset(req.resource_names), req.version_info)
        self.maybe_respond(t)

    def maybe_respond(self, t: str) -> None:
        w = self.watch.get(t)
        cur = self.server.resources.get(t)
        if w is None or cur is None:
            return
        names, asked_version = w
        version, resources = cur
        if asked_version == version and (not names or names <= self.sent_names.get(t, frozenset())):
            return                      # up to date: wait for a push
        chosen = [r for r in resources if not names or name_of(r) in names]
        self.send(t, version, [pack(r) for r in chosen], tuple(name_of(r) for r in chosen))
        self.sent_names[t] = names

    def send(self, t: str, version: str, anys: list[any_pb2.Any], names: tuple[str, ...]) -> None:
        nonce = str(next(self.server.nonces))
        self.nonce[t] = nonce
        self.watch.pop(t, None)
        self.server.responses.append(Response(self.sid, "sotw", t, version, nonce, names))
        self.out.put_nowait(discovery_pb2.DiscoveryResponse(
            version_info=version, resources=anys, type_url=t, nonce=nonce))


class _Delta:
    def __init__(self, server: AdsServer, sid: int, out: asyncio.Queue[Any]) -> None:
        self.server, self.sid, self.out = server, sid, out
        self.wildcard: dict[str, bool] = {}
        self.subscribed: dict[str, set[str]] = {}
        self.known: dict[str, dict[str, str]] = {}

    def on_request(self, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        t = req.type_url
        if t not in self.wildcard:      # the first request of the type
            self.wildcard[t] = not req.resource_names_subscribe or "*" in req.resource_names_subscribe
            self.subscribed[t] = set()
            self.known[t] = dict(req.initial_resource_versions)
        self.subscribed[t] |= set(req.resource_names_subscribe) - {"*"}
        for n in req.resource_names_unsubscribe:
            self.subscribed[t].discard(n)
            self.known[t].pop(n, None)
        self.maybe_respond(t)

    def maybe_respond(self, t: str) -> None:
        cur = self.server.resources.get(t)
        if t not in self.wildcard or cur is None:
            return
        version, resources = cur
        current = {name_of(r): r for r in resources}
        vers = self.server.resource_versions.get(t, {})
        subscribed = self.subscribed[t]
        if self.wildcard[t]:
            wants: Callable[[str], bool] = lambda n: True  # noqa: E731
        elif t == VIRTUAL_HOST:     # VHDS names are namespaces: "<route config>" takes "<route config>/<host>"
            wants = lambda n: n in subscribed or n.rsplit("/", 1)[0] in subscribed  # noqa: E731
        else:
            wants = lambda n: n in subscribed  # noqa: E731
        known = self.known[t]
        send = [n for n in current if wants(n) and known.get(n) != vers.get(n)]
        removed = [n for n in known if n not in current and wants(n)]
        if not send and not removed:
            return
        nonce = str(next(self.server.nonces))
        resp = discovery_pb2.DeltaDiscoveryResponse(system_version_info=version, type_url=t, nonce=nonce,
                                                    removed_resources=removed)
        for n in send:
            resp.resources.add(name=n, version=vers[n], resource=pack(current[n]))
            known[n] = vers[n]
        for n in removed:
            known.pop(n)
        self.server.responses.append(Response(self.sid, "delta", t, version, nonce, tuple(send), tuple(removed)))
        self.out.put_nowait(resp)


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self) -> None:
        self.resources: dict[str, tuple[str, list[Message]]] = {}
        self.resource_versions: dict[str, dict[str, str]] = {}
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        self.nonces = itertools.count(1)
        self.port = 0
        self._ids = itertools.count(1)
        self._streams: dict[int, _Sotw | _Delta] = {}
        self._server: grpc.aio.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> int:
        self._server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None
        self._streams.clear()

    # -- what a test does ------------------------------------------------------
    def push(self, type_url: str, version: str, resources: Iterable[Message]) -> None:
        """Make `resources` (names may repeat, to test that) the type's whole state at `version`."""
        res = list(resources)
        old = {name_of(r): r for r in self.resources.get(type_url, ("", []))[1]}
        vers = self.resource_versions.setdefault(type_url, {})
        for r in res:
            n = name_of(r)
            if n not in vers or old.get(n) != r:
                vers[n] = version
        for n in list(vers):
            if n not in {name_of(r) for r in res}:
                del vers[n]
        self.resources[type_url] = (version, res)
        for s in list(self._streams.values()):
            s.maybe_respond(type_url)

    def send_sotw(self, type_url: str, version: str, anys: list[any_pb2.Any]) -> None:
        """Send an arbitrary SotW response on every stream (a type the client never asked for...)."""
        for s in self._streams.values():
            if isinstance(s, _Sotw):
                s.send(type_url, version, anys, ())

    def of(self, type_url: str, *, stream: int | None = None) -> list[Request]:
        return [r for r in self.requests if r.type_url == type_url and (stream is None or r.stream == stream)]

    async def wait(self, pred: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
        """Poll `pred` until it returns something true, at most `timeout` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            got = pred()
            if got:
                return got
            if loop.time() > end:
                recent = "\n".join(repr(r) for r in self.requests[-10:])
                raise AssertionError(f"timed out waiting for {what}; last requests:\n{recent}")
            await asyncio.sleep(0.01)

    # -- the service -----------------------------------------------------------
    async def _serve(self, kind: str, request_iterator: AsyncIterator[Any]) -> AsyncIterator[Any]:
        sid = next(self._ids)
        out: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
        handler: _Sotw | _Delta = _Sotw(self, sid, out) if kind == "sotw" else _Delta(self, sid, out)
        self._streams[sid] = handler
        loop = asyncio.get_running_loop()

        async def read() -> None:
            try:
                async for req in request_iterator:
                    self.requests.append(_record(sid, kind, req, loop.time()))
                    handler.on_request(req)
            finally:
                out.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await out.get()) is not None:
                yield item
        finally:
            reader.cancel()
            self._streams.pop(sid, None)

    async def StreamAggregatedResources(self, request_iterator: Any, context: Any) -> Any:  # noqa: N802
        async for resp in self._serve("sotw", request_iterator):
            yield resp

    async def DeltaAggregatedResources(self, request_iterator: Any, context: Any) -> Any:  # noqa: N802
        async for resp in self._serve("delta", request_iterator):
            yield resp


def _record(sid: int, kind: str, req: Any, at: float) -> Request:
    error = status_pb2.Status() if req.HasField("error_detail") else None
    if error is not None:
        error.CopyFrom(req.error_detail)
    node = None
    if req.HasField("node"):
        node = base_pb2.Node()
        node.CopyFrom(req.node)
    if kind == "sotw":
        return Request(sid, kind, req.type_url, req.version_info, req.response_nonce, error,
                       tuple(req.resource_names), node=node, at=at)
    return Request(sid, kind, req.type_url, "", req.response_nonce, error, (),
                   tuple(req.resource_names_subscribe), tuple(req.resource_names_unsubscribe),
                   dict(req.initial_resource_versions), node=node, at=at)
