"""The separate SDS stream: SecretDiscoveryService.StreamSecrets (state of the world)
to the static cluster a TLS context's `sds_config.api_config_source` names (Istio's
agent serves its workload certificate `default` and `ROOTCA` on `sds-grpc`, a Unix
socket), as Envoy opens one.

- One stream per proxy, kept by the supervisor beside the ADS stream (or alone, when
  the bootstrap has no ADS). It speaks to one cluster: the first (by name) that a
  needed secret names and that is a known gRPC target (XdsConfig.grpc_targets); once
  chosen it stays. Secrets naming another cluster are asked for on ADS (with a
  warning), as every secret was before there was this stream.
- `SecretRouting.names()` is what the stream subscribes to: the secrets the held and
  waiting listeners and clusters need (DynamicConfig.needed) whose source is that
  cluster. The ADS stream asks for the rest (DynamicConfig.stream_secrets).
- What comes goes into the same sink as ADS secrets (DynamicConfig.apply with the
  Secret type): checked, translated, built before it is ACKed, NACKed by name with
  error_detail otherwise; listeners and clusters warm until their secrets come, and a
  rotated secret reloads the workers, so the next handshake uses it.
- The protocol (ACK/NACK, nonces, back-off and reconnect, held repeated NACKs) is
  ads.AdsClient's, over another service: its stats are `sds.*` per type, as on ADS,
  and `sds_stream.connected_state|pending_requests|rate_limit_enforced`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from envoy.config.core.v3 import base_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf.message import Message

from mosnx.runtime.envoy.protos import CLUSTER, LISTENER, SECRET
from mosnx.runtime.envoy.secrets import stream_sources
from mosnx.runtime.stats import Store

from .ads import AdsClient
from .dynamic import DynamicConfig
from .resources import Rejection

log = logging.getLogger("mosnx.xds")

SCOPE = "sds_stream"


class SdsClient(AdsClient):
    """AdsClient's protocol on SecretDiscoveryService.StreamSecrets: Secrets only, SotW."""

    def __init__(self, target: str, node: base_pb2.Node, sink: Any, stats: Store, **kw: Any) -> None:
        super().__init__(target, node, sink, stats, mode="sotw", types=(SECRET,), scope=SCOPE, **kw)

    def _open(self) -> Any:
        assert self._channel is not None
        return sds_pb2_grpc.SecretDiscoveryServiceStub(self._channel).StreamSecrets()


class SecretRouting:
    """Which needed secrets the SDS stream brings, and to which cluster it goes."""

    def __init__(self, dynamic: DynamicConfig, targets: dict[str, str]) -> None:
        self.dynamic = dynamic
        self.targets = targets
        self.cluster: str | None = None         # chosen once, kept
        self._memo: tuple[Any, Any, Any, Any, frozenset[str]] | None = None
        self._warned: set[str] = set()

    def names(self) -> frozenset[str]:
        """The secrets the SDS stream asks for (worked out again only when the
        listeners, clusters, file config or needed names changed)."""
        d = self.dynamic
        lst, cl, base = d.resources[LISTENER], d.resources[CLUSTER], d.base()
        needed = d.needed().get(SECRET, frozenset())
        m = self._memo
        if m is not None and m[0] is lst and m[1] is cl and m[2] is base and m[3] is needed:
            return m[4]
        waiting = base.xds.static_resources if base.xds is not None else {}
        sources = stream_sources([*lst.values(), *waiting.get(LISTENER, {}).values()],
                                 [*cl.values(), *waiting.get(CLUSTER, {}).values()])
        wanted = {n: c for n, c in sources.items() if n in needed}
        if self.cluster is None:
            known = sorted({c for c in wanted.values() if c in self.targets})
            if known:
                self.cluster = known[0]
        for n, c in sorted(wanted.items()):
            if c != self.cluster and c not in self._warned:
                self._warned.add(c)
                why = ("it is not a static cluster mosnx can reach" if c not in self.targets
                       else f'the SDS stream goes to "{self.cluster}" (one per proxy)')
                log.warning('xds: Secret "%s" names SDS cluster "%s": asked for on the ADS stream, since %s',
                            n, c, why)
        got = frozenset(n for n, c in wanted.items() if c == self.cluster)
        self._memo = (lst, cl, base, needed, got)
        return got


class _Sink:
    """The SDS client's sink: the stream's names, and the shared DynamicConfig."""

    def __init__(self, routing: SecretRouting) -> None:
        self.routing = routing

    def subscriptions(self, type_url: str) -> frozenset[str] | None:
        return self.routing.names() if type_url == SECRET else frozenset()

    def apply(self, type_url: str, version: str, resources: dict[str, Message],
              removed: set[str]) -> list[Rejection]:
        return self.routing.dynamic.apply(type_url, version, resources, removed)


class SdsStream:
    """The SDS stream of the proxy: opened (`check()`) once a needed secret names a
    reachable cluster; `close()` to stop. `client_options`: AdsClient keyword
    arguments (back-off, for tests)."""

    def __init__(self, dynamic: DynamicConfig, targets: dict[str, str], node: base_pb2.Node, stats: Store,
                 **client_options: Any) -> None:
        self.routing = SecretRouting(dynamic, targets)
        self.node = node
        self.stats = stats
        self.client_options = client_options
        self.client: SdsClient | None = None
        self.on_open: Callable[[SdsClient], None] | None = None

    def names(self) -> frozenset[str]:
        return self.routing.names() if self.client is not None else frozenset()

    def check(self) -> None:
        """Open the stream if a needed secret now names its cluster (inside the loop)."""
        if self.client is not None:
            return
        self.routing.names()
        cluster = self.routing.cluster
        if cluster is None:
            return
        target = self.routing.targets[cluster]
        self.client = SdsClient(target, self.node, _Sink(self.routing), self.stats, **self.client_options)
        self.client.start()
        log.info('xds: SDS stream to cluster "%s" (%s)', cluster, target)
        if self.on_open is not None:
            self.on_open(self.client)

    def resubscribe(self) -> None:
        if self.client is None:
            self.check()
        else:
            self.client.resubscribe(SECRET)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    def dump(self) -> dict[str, Any] | None:
        return None if self.client is None else {"cluster": self.routing.cluster, **self.client.dump()}
