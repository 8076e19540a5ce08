"""The ADS client: one gRPC stream to a control plane, state of the world or delta.

Invariants (the xDS protocol as Envoy speaks it):
- One request answers one response and carries its nonce; nothing else asks on its
  own, except `resubscribe` (the sink's names changed) and the first requests of a
  new stream. Answers wait per type in a deque of at most `MAX_QUEUED`; a newer
  response supersedes answers that are still held and subscriptions not yet sent
  (its answer carries the names as they are then), so nothing is asked twice and
  nothing grows without bound.
- `version_info` (SotW) is the last version of that type the client accepted: an ACK
  echoes the response's, a NACK keeps the previous and carries `error_detail`
  (google.rpc.Status INVALID_ARGUMENT, naming each rejected resource and why).
  Delta ACKs and NACKs carry only the nonce; the resource versions the client keeps
  are those the sink took, and a new stream sends them as `initial_resource_versions`.
- The sink gets every resource of a response that unpacked, minus the ones named
  twice; what it rejects, together with what did not unpack, makes the answer a NACK.
  For a wildcard type in SotW, the names the sink holds that a response leaves out
  are `removed`; for named types an absent resource means nothing; delta says what
  is removed. Resources of a named type the sink did not ask for are not passed on
  (VHDS names are namespaces: "rc" asks for every "rc/<host>", ResourceType.wants).
- A NACK of the same version with the same rejected names as the last NACK (a control
  plane resending what was refused, as go-control-plane does) is held back for a
  growing delay (`nack_backoff.held`), so a refused config never becomes a storm of
  requests: counted as control_plane.rate_limit_enforced.
- When the stream fails or ends, the client waits a jittered, capped, exponential
  back-off (reset once a stream has carried a response) and opens a new one, asking
  again for what it holds. The sink is never told to drop anything because the
  control plane went away: its last good state keeps serving.
- `initial_fetch(timeout)` ends once every type the sink wants (wildcard, or named
  with names) has had one response, ACKed or NACKed, as Envoy's initial fetch does.
- Node goes on the first request of each stream only, when
  `set_node_on_first_message_only`; on every request otherwise.
- Stats under Envoy's names: control_plane.connected_state (1/0), and per type
  `<prefix>.update_attempt|update_success|update_rejected|update_failure`, the
  `<prefix>.version` gauge (a 63-bit hash of the last accepted version, as Envoy's
  is a hash) and `<prefix>.update_time` (ms since the epoch of the last success).
  An attempt is a response taken (ACK or NACK) or a stream lost with the type
  subscribed (a failure); control_plane.pending_requests counts answers waiting.
- A state-of-the-world response costs what changed in it, plus one lookup per
  resource: the ADS stream reads it as resources.RawDiscoveryResponse (each
  resource the bytes of its Any), and a resource whose bytes the last response had
  is the message taken then (resources.unpack_raw; `TypeState.parsed` counts the
  ones parsed). The names the client holds are updated in C loops, and an ACK's
  names are sorted once per set of names.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Literal, Mapping, Sequence

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.rpc import status_pb2

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from mosnx.runtime.stats import PER_PROXY, Counter, Gauge, Store

from .backoff import Backoff
from .resources import ORDER, TYPES, RawDiscoveryResponse, Rejection, ResourceType, XdsSink, unpack_counted, \
    unpack_raw

log = logging.getLogger("mosnx.xds")

Mode = Literal["sotw", "delta"]
INVALID_ARGUMENT = 3            # google.rpc.Code
_ADS_SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
MAX_QUEUED = 16                 # answers waiting per type
MAX_STRAY = 8                   # answers to responses of types the client does not know
MAX_ERROR_DETAIL = 4096         # characters of error_detail.message
# Only features mosnx has: resources wrapped in envoy.service.discovery.v3.Resource are
# unwrapped in SotW responses too (resources.unpack_one)
CLIENT_FEATURES = ("xds.config.resource-in-sotw",)


def _own_version() -> str:
    try:
        return importlib.metadata.version("mosnx")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def make_node(node_id: str, cluster: str = "", metadata: Mapping[str, Any] | None = None, *,
              user_agent_version: str | None = None,
              client_features: Sequence[str] = CLIENT_FEATURES) -> base_pb2.Node:
    """The Node this proxy introduces itself with; `metadata` goes verbatim into a Struct
    (istiod reads it: ISTIO_VERSION, CLUSTER_ID, ...)."""
    node = base_pb2.Node(id=node_id, cluster=cluster, user_agent_name="mosnx",
                         user_agent_version=user_agent_version or _own_version(),
                         client_features=list(client_features))
    if metadata:
        try:
            node.metadata.update(dict(metadata))
        except (ValueError, TypeError) as e:
            raise ValueError(f"node metadata must be a mapping of JSON values: {e}") from None
    return node


def version_hash(version: str) -> int:
    """The `version` gauge: a hash of the version text that fits a signed 64-bit gauge."""
    return int.from_bytes(hashlib.blake2b(version.encode(), digest_size=8).digest(), "big") >> 1


@dataclass(slots=True)
class _Answer:
    nonce: str | None           # None: a subscription request, with the latest nonce
    version: str                # SotW version_info to send
    error: status_pb2.Status | None
    not_before: float           # loop time


@dataclass(slots=True)
class _TypeStats:
    attempt: Counter
    success: Counter
    rejected: Counter
    failure: Counter
    version: Gauge
    update_time: Gauge

    @classmethod
    def of(cls, store: Store, prefix: str) -> _TypeStats:
        return cls(store.counter(f"{prefix}.update_attempt"), store.counter(f"{prefix}.update_success"),
                   store.counter(f"{prefix}.update_rejected"), store.counter(f"{prefix}.update_failure"),
                   store.gauge(f"{prefix}.version", PER_PROXY), store.gauge(f"{prefix}.update_time", PER_PROXY))


@dataclass(slots=True)
class TypeState:
    """What the client knows of one type; read it, never write it."""
    rtype: ResourceType
    stats: _TypeStats
    version: str = ""           # last accepted (SotW version_info, delta system_version_info)
    nonce: str = ""             # last response nonce on the current stream
    held: dict[str, str] = field(default_factory=dict)  # names the sink holds -> resource version
    last_error: str = ""        # error_detail of the last NACK; "" since an ACK
    received: bool = False      # a response of this type came, on any stream
    # per stream
    started: bool = False       # a request of this type went out on this stream
    sent_names: frozenset[str] = frozenset()
    queue: deque[_Answer] = field(default_factory=lambda: deque(maxlen=MAX_QUEUED))
    # repeated NACKs
    nack_key: tuple[str, frozenset[str]] | None = None
    nack_repeats: int = 0
    # the last response's resources by their bytes (resources.unpack): not parsed again
    known: dict[bytes, tuple[str, Message]] = field(default_factory=dict)
    parsed: int = 0             # resources parsed from their bytes, all responses
    # the names an ACK lists, sorted once per set of names (20,000 EDS names take ms to sort)
    sorted_names: tuple[frozenset[str], list[str]] | None = None


class AdsClient:
    """One ADS stream for the whole proxy. `start()` inside the running loop, `close()` to stop."""

    def __init__(self, target: str, node: base_pb2.Node, sink: XdsSink, stats: Store, *,
                 mode: Mode = "sotw", set_node_on_first_message_only: bool = True,
                 channel_options: Sequence[tuple[str, Any]] = (),
                 backoff: Backoff | None = None, nack_backoff: Backoff | None = None,
                 types: Sequence[str] = ORDER, credentials: grpc.ChannelCredentials | None = None,
                 scope: str = "control_plane") -> None:
        """`credentials`: TLS to the control plane (None: plaintext); `scope`: the
        prefix of the stream's own stats (connected_state, pending_requests, ...)."""
        if not target or target.startswith(":") or ":" not in target:
            raise ValueError(f"xDS target must be host:port (or a gRPC target such as unix:/path), not {target!r}")
        if mode not in ("sotw", "delta"):
            raise ValueError(f"ADS mode must be 'sotw' or 'delta', not {mode!r}")
        unknown = [t for t in types if t not in TYPES]
        if unknown:
            raise ValueError(f"unknown xDS type URL(s): {', '.join(unknown)}")
        self.target = target
        self.node = node
        self.sink = sink
        self.mode: Mode = mode
        self.node_once = set_node_on_first_message_only
        self.backoff = backoff or Backoff(0.5, 30.0)
        self.nack_backoff = nack_backoff or Backoff(0.5, 10.0)
        # the channel's own reconnect back-off follows ours, or it would hold a new
        # stream back for up to two minutes after the control plane comes back
        opts: dict[str, Any] = {
            "grpc.initial_reconnect_backoff_ms": max(1, int(self.backoff.base * 1000)),
            "grpc.min_reconnect_backoff_ms": max(1, int(self.backoff.base * 1000)),
            "grpc.max_reconnect_backoff_ms": max(1, int(self.backoff.cap * 1000)),
            "grpc.max_receive_message_length": 64 << 20,
        }
        opts.update(dict(channel_options))
        self.channel_options = tuple(opts.items())
        self.credentials = credentials
        self.types: dict[str, TypeState] = {
            t: TypeState(TYPES[t], _TypeStats.of(stats, TYPES[t].stat_prefix)) for t in types}
        self._connected = stats.gauge(f"{scope}.connected_state", PER_PROXY)
        self._rate_limited = stats.counter(f"{scope}.rate_limit_enforced")
        stats.gauge_reading(f"{scope}.pending_requests",
                            lambda: sum(len(s.queue) for s in self.types.values()) + len(self._stray),
                            PER_PROXY)
        self._stray: deque[discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest] = \
            deque(maxlen=MAX_STRAY)
        self._wake = asyncio.Event()
        self._initial = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._node_sent = False
        self._got_response = False
        self.streams = 0            # streams opened, for the admin dump and tests
        self.requests = 0           # requests written, all streams

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("AdsClient already started")
        if self.credentials is not None:
            self._channel = grpc.aio.secure_channel(self.target, self.credentials, options=self.channel_options)
        else:
            self._channel = grpc.aio.insecure_channel(self.target, options=self.channel_options)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="xds-ads")

    async def close(self) -> None:
        """Stop the stream and the channel; the sink keeps what it has."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close(grace=None)
        self._connected.set(0)

    async def initial_fetch(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until every type the sink wants has had a response,
        ACKed or not (as Envoy's initial fetch: a rejected first update still ends it);
        whether that happened. A proxy starts serving after this or after the timeout."""
        self._check_initial()
        try:
            await asyncio.wait_for(self._initial.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _check_initial(self) -> None:
        if self._initial.is_set():
            return
        for st in self.types.values():
            names = self._names(st)
            if not st.received and (names is None or names):
                return
        self._initial.set()

    @property
    def connected(self) -> bool:
        return self._connected.value == 1

    def resubscribe(self, type_url: str) -> None:
        """The sink's names for `type_url` changed: ask again (now, if a stream is open)."""
        st = self.types.get(type_url)
        if st is None:
            raise ValueError(f"type {type_url!r} is not one this client subscribes to")
        for a in st.queue:              # a held NACK goes now, carrying the new names
            a.not_before = 0.0
        if not st.queue:
            st.queue.append(_Answer(None, "", None, 0.0))
        self._wake.set()

    def dump(self) -> dict[str, Any]:
        """The client's state for the admin API."""
        return {"target": self.target, "mode": self.mode, "connected": self.connected,
                "streams": self.streams, "requests": self.requests,
                "types": {t: {"version": s.version, "nonce": s.nonce, "resources": len(s.held),
                              "last_error": s.last_error} for t, s in self.types.items()}}

    # -- streams -------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            await self._one_stream()
            if self._closing:
                break
            attempt = 0 if self._got_response else attempt + 1
            delay = self.backoff.delay(attempt)
            log.info("xds: stream to %s ended; next in %.2fs", self.target, delay)
            await asyncio.sleep(delay)

    async def _one_stream(self) -> None:
        call = self._open()
        self.streams += 1
        self._node_sent = False
        self._got_response = False
        self._stray.clear()
        for st in self.types.values():
            st.nonce, st.started, st.sent_names = "", False, frozenset()
            st.queue.clear()
            st.queue.append(_Answer(None, "", None, 0.0))
        tasks = {asyncio.create_task(self._reader(call)), asyncio.create_task(self._writer(call))}
        ready = asyncio.create_task(self._watch_ready())
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                e = t.exception()
                if isinstance(e, grpc.aio.AioRpcError):
                    log.warning("xds: stream to %s: %s %s", self.target, e.code().name, e.details())
                elif e is not None:
                    log.error("xds: stream to %s failed: %r", self.target, e)
        finally:
            for t in (*tasks, ready):
                t.cancel()
            call.cancel()
            await asyncio.gather(*tasks, ready, return_exceptions=True)
            self._connected.set(0)
            for st in self.types.values():
                if st.started:
                    st.stats.attempt.inc()
                    st.stats.failure.inc()

    def _open(self) -> Any:
        """A new stream's call (another service's stream of the same messages opens its own)."""
        assert self._channel is not None
        if self.mode == "sotw":
            # the stub's own method, with each resource kept as the bytes of its Any
            return self._channel.stream_stream(
                _ADS_SOTW, request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                response_deserializer=RawDiscoveryResponse.FromString)()
        return ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel).DeltaAggregatedResources()

    async def _watch_ready(self) -> None:
        # connected as Envoy means it: the stream's transport is up, whether or not the
        # control plane has answered yet (an ADS cache answers only once it has something)
        assert self._channel is not None
        while True:
            state = self._channel.get_state(try_to_connect=True)
            if state == grpc.ChannelConnectivity.READY:
                self._connected.set(1)
                return
            await self._channel.wait_for_state_change(state)

    async def _reader(self, call: Any) -> None:
        while True:
            resp = await call.read()
            if resp is grpc.aio.EOF:
                log.warning("xds: control plane %s closed the stream", self.target)
                return
            self._got_response = True
            self._connected.set(1)
            if self.mode == "sotw":
                self._on_sotw(resp)
            else:
                self._on_delta(resp)
            self._wake.set()

    async def _writer(self, call: Any) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            while self._stray:
                await self._write(call, self._stray.popleft())
            wait: float | None = None
            for st in self.types.values():
                while st.queue:
                    now = loop.time()
                    a = st.queue[0]
                    if a.not_before > now:
                        wait = a.not_before - now if wait is None else min(wait, a.not_before - now)
                        break
                    st.queue.popleft()
                    req = self._sotw_request(st, a) if self.mode == "sotw" else self._delta_request(st, a)
                    if req is not None:
                        await self._write(call, req)
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def _write(self, call: Any, req: Any) -> None:
        if not self._node_sent or not self.node_once:
            req.node.CopyFrom(self.node)
            self._node_sent = True
        await call.write(req)
        self.requests += 1

    # -- requests ------------------------------------------------------------------
    def _names(self, st: TypeState) -> frozenset[str] | None:
        names = self.sink.subscriptions(st.rtype.type_url)
        return None if names is None else frozenset(names)

    def _sotw_request(self, st: TypeState, a: _Answer) -> discovery_pb2.DiscoveryRequest | None:
        names = self._names(st)
        if a.nonce is None:             # a subscription, not an answer
            if st.started and (names is None or names == st.sent_names):
                return None             # nothing new to ask
            if names is not None and not names and not st.started:
                return None             # a named type with no names yet: nothing to ask
            nonce, version = st.nonce, st.version
        else:
            nonce, version = a.nonce, a.version
        req = discovery_pb2.DiscoveryRequest(version_info=version, type_url=st.rtype.type_url,
                                             response_nonce=nonce)
        if names is not None:
            s = st.sorted_names
            if s is None or s[0] is not names:
                s = st.sorted_names = (names, sorted(names))
            req.resource_names.extend(s[1])
            if names is not st.sent_names and names != st.sent_names:
                # what is held was asked for: it changes only with the names
                st.held = {n: v for n, v in st.held.items() if st.rtype.wants(n, names)}
            st.sent_names = names
        if a.error is not None:
            req.error_detail.CopyFrom(a.error)
        st.started = True
        return req

    def _delta_request(self, st: TypeState, a: _Answer) -> discovery_pb2.DeltaDiscoveryRequest | None:
        names = self._names(st)
        first = not st.started
        add: list[str] = []
        drop: list[str] = []
        if names is not None and names is not st.sent_names:
            add = sorted(names - st.sent_names)
            drop = sorted(st.sent_names - names)
        if a.nonce is None and not (add or drop or (first and names is None)):
            return None                 # a subscription with nothing new to ask
        req = discovery_pb2.DeltaDiscoveryRequest(type_url=st.rtype.type_url,
                                                  resource_names_subscribe=add,
                                                  resource_names_unsubscribe=drop,
                                                  response_nonce=a.nonce or "")
        if first:
            held = st.held if names is None else {n: v for n, v in st.held.items() if st.rtype.wants(n, names)}
            req.initial_resource_versions.update(held)
        if names is not None:
            if names is not st.sent_names and names != st.sent_names:
                # what is held was asked for: it changes only with the names
                st.held = {n: v for n, v in st.held.items() if st.rtype.wants(n, names)}
            st.sent_names = names
        if a.error is not None:
            req.error_detail.CopyFrom(a.error)
        st.started = True
        return req

    # -- responses -----------------------------------------------------------------
    def _stray_answer(self, type_url: str, nonce: str) -> None:
        err = status_pb2.Status(code=INVALID_ARGUMENT, message=f"unknown or unsubscribed type {type_url!r}")
        log.warning("xds: response of type %r, which this client does not handle", type_url)
        if self.mode == "sotw":
            self._stray.append(discovery_pb2.DiscoveryRequest(
                type_url=type_url, response_nonce=nonce, error_detail=err))
        else:
            self._stray.append(discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, response_nonce=nonce, error_detail=err))

    def _on_sotw(self, resp: Any) -> None:
        """A DiscoveryResponse, or the same read as a RawDiscoveryResponse (_open):
        either has type_url, nonce, version_info and resources."""
        st = self.types.get(resp.type_url)
        if st is None:
            self._stray_answer(resp.type_url, resp.nonce)
            return
        seen: AbstractSet[str]
        if isinstance(resp, RawDiscoveryResponse):
            good, bad, seen, parsed = unpack_raw(st.rtype, resp.resources, st.known)
            st.parsed += parsed
        else:
            assert isinstance(resp, discovery_pb2.DiscoveryResponse)
            good, bad, seen, parsed = unpack_counted(st.rtype, (("", r) for r in resp.resources), st.known)
            st.parsed += parsed
        names = self._names(st)
        removed: set[str] = st.held.keys() - seen if names is None else set()
        self._update(st, resp.nonce, resp.version_info, good, bad, removed, None)

    def _on_delta(self, resp: discovery_pb2.DeltaDiscoveryResponse) -> None:
        st = self.types.get(resp.type_url)
        if st is None:
            self._stray_answer(resp.type_url, resp.nonce)
            return
        good, bad, seen, parsed = unpack_counted(st.rtype, ((r.name, r.resource) for r in resp.resources), st.known)
        st.parsed += parsed
        versions = {r.name: r.version for r in resp.resources}
        removed = set(resp.removed_resources) - seen
        self._update(st, resp.nonce, resp.system_version_info, good, bad, removed, versions)

    def _update(self, st: TypeState, nonce: str, version: str, good: dict[str, Message],
                bad: list[Rejection], removed: set[str], versions: dict[str, str] | None) -> None:
        type_url = st.rtype.type_url
        st.nonce = nonce
        st.received = True
        st.stats.attempt.inc()
        names = self._names(st)
        if names is not None and not good.keys() <= names:     # what was not asked for is not passed on
            good = {n: m for n, m in good.items() if st.rtype.wants(n, names)}
        try:
            rejected = list(self.sink.apply(type_url, version, good, removed))
        except Exception as e:          # a sink's bug costs a NACK, not the stream
            log.exception("xds: applying %s version %r failed", type_url, version)
            rejected = [Rejection(n, f"internal error applying it: {e!r}") for n in sorted(good)] or \
                [Rejection("*", f"internal error applying the update: {e!r}")]
        rejected = bad + rejected
        refused = {r.name for r in rejected}
        for n in removed:
            st.held.pop(n, None)
        if versions is None and not refused:
            if st.held.keys() != good.keys():       # state of the world: C loops
                st.held.update(dict.fromkeys(good, ""))
        else:
            for n in good:
                if n not in refused:
                    st.held[n] = versions.get(n, "") if versions is not None else ""
        self._check_initial()
        loop = asyncio.get_running_loop()
        if not rejected:
            st.version, st.last_error = version, ""
            st.nack_key, st.nack_repeats = None, 0
            st.stats.success.inc()
            st.stats.version.set(version_hash(version))
            st.stats.update_time.set(int(time.time() * 1000))
            self._answer(st, _Answer(nonce, version, None, 0.0))
            return
        message = _error_message(type_url, version, rejected)
        st.last_error = message
        st.stats.rejected.inc()
        log.warning("xds: NACK %s", message)
        key = (version, frozenset(refused))
        delay = 0.0
        if key == st.nack_key:          # the same refusal again: hold the answer back
            delay = self.nack_backoff.held(st.nack_repeats)
            st.nack_repeats += 1
            self._rate_limited.inc()
        else:
            st.nack_key, st.nack_repeats = key, 0
        err = status_pb2.Status(code=INVALID_ARGUMENT, message=message)
        self._answer(st, _Answer(nonce, st.version, err, loop.time() + delay))

    def _answer(self, st: TypeState, a: _Answer) -> None:
        now = asyncio.get_running_loop().time()
        # answers still held are superseded by this one (its nonce is the newer), and so
        # are subscriptions not yet sent: this answer carries the names as they are now
        kept = [x for x in st.queue if x.not_before <= now and x.nonce is not None]
        st.queue.clear()
        st.queue.extend(kept)
        st.queue.append(a)


def _error_message(type_url: str, version: str, rejected: list[Rejection]) -> str:
    kind = type_url.rsplit(".", 1)[-1]
    parts = [f"{r.name}: {r.detail}" for r in rejected]
    msg = f"{kind} version {version!r}: {len(rejected)} rejected: " + "; ".join(parts)
    if len(msg) > MAX_ERROR_DETAIL:
        msg = msg[:MAX_ERROR_DETAIL - 20] + " ... (truncated)"
    return msg
