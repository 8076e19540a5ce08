"""The supervisor's side of xDS: the one ADS stream of the proxy, the resources it
brings (dynamic.DynamicConfig), and how they reach the workers.

- One stream per proxy, opened once the workers are live; closed before they drain.
  Beside it, the SDS stream (sds_stream.SdsStream), opened once a needed secret
  names its cluster; a config with no ADS (XdsConfig.ads False) has that one alone.
- The ADS channel is plaintext, or TLS when XdsConfig.tls is set (`credentials`):
  the CA the server's certificate must chain to (the system's roots without one), a
  client certificate for mutual TLS, and the name checked (and sent as SNI). Files
  are read when the stream is made: one that cannot be read then (the config's check
  found it) is logged, and no ADS stream is opened.
- An accepted update that changed only endpoints (dynamic.DynamicConfig.reassigned)
  asks the supervisor to change those clusters' endpoints in place
  (Supervisor.reassign: no build, no reload), counted as `eds.update_in_place`;
  every other accepted update asks for a reload. Updates that come while one is
  under way are pushed together after it, in the order they were accepted: a reload
  reads every resource held then, so it takes the place of the endpoint changes
  accepted before it. Endpoint changes that did not reach every worker are made
  good by a reload.
- The file's config is read again only when it changed on disk; the supervisor's
  reload translates with the translations the sink keeps, so only what changed is
  translated again.
- Workers are given what changed since they were last given resources (delta());
  a worker that does not hold the generation a delta starts from is given every
  resource (payload()). The snapshot that validated an update is kept, so the next
  validation and the reload build only the listeners that changed
  (runtime.snapshot.build_snapshot's `previous`).
- A worker process gets the resources by a private file (spill): megabytes of them
  are more than the loop's non-blocking pipe takes at once. One file per content
  and kind, in a folder only this user can read, removed when the proxy stops.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import pickle
import shutil
import tempfile
from typing import Any, Awaitable, Callable

import grpc

from mosnx.runtime.envoy.apply import apply
from mosnx.runtime.envoy.protos import SECRET
from mosnx.runtime.model import ClusterConfig, Config, Endpoint, Snapshot, XdsConfig, XdsTls
from mosnx.runtime.snapshot import build_snapshot
from mosnx.runtime.stats import Store

from .. import sockets
from .ads import AdsClient, make_node
from .dynamic import Delta, DynamicConfig, FileConfig, Payload
from .sds_stream import SdsStream

Endpoints = dict[str, tuple[Endpoint, ...]]

log = logging.getLogger("mosnx")


def target(x: XdsConfig) -> str:
    """The gRPC target of the control plane: host:port, or unix:<path> (grpcio's form
    for a Unix socket, as Envoy's pipe address)."""
    return f"unix:{x.unix_path}" if x.unix_path is not None else sockets.show(x.host, x.port)


def _pem(v: str | bytes | None, what: str) -> bytes | None:
    if v is None or isinstance(v, bytes):
        return v
    try:
        with open(v, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"xds tls {what}: cannot read {v!r}: {e.strerror or e}") from None


def credentials(t: XdsTls) -> tuple[grpc.ChannelCredentials, tuple[tuple[str, Any], ...]]:
    """grpc channel credentials for TLS to the control plane, and the channel options
    that go with them (the name the server's certificate is checked against)."""
    creds = grpc.ssl_channel_credentials(root_certificates=_pem(t.ca, "ca"), private_key=_pem(t.key, "key"),
                                         certificate_chain=_pem(t.cert, "cert"))
    opts: tuple[tuple[str, Any], ...] = (("grpc.ssl_target_name_override", t.sni),) if t.sni else ()
    return creds, opts


class XdsControl:
    def __init__(self, config_path: str, x: XdsConfig, stats: Store,
                 reload: Callable[[str], Awaitable[Any]], next_version: Callable[[], int],
                 reassign: Callable[[Endpoints], Awaitable[bool]] | None = None) -> None:
        """`reload(why)`: the supervisor's reload; `next_version()`: the version an
        update would become (for validating it); `reassign(endpoints)`: the
        supervisor's change of these clusters' endpoints in place, True when every
        worker took it (None: endpoint changes reload too)."""
        self.config_path = config_path
        self.x = x
        self._reload = reload
        self._next_version = next_version
        self._reassign = reassign
        self.file_config = FileConfig(config_path)     # the config file as it is now
        self.dynamic = DynamicConfig(self.file_config, self._validate, self._changed)
        if reassign is not None:
            self.dynamic.reassigned = self._reassigned
        self.in_place = stats.counter("eds.update_in_place")
        self.dynamic.initial_fetch_timeout = x.initial_fetch_timeout
        node = make_node(x.node.id, x.node.cluster, x.node.metadata)
        self.ads: AdsClient | None = None
        creds: grpc.ChannelCredentials | None = None
        opts: tuple[tuple[str, Any], ...] = ()
        try:
            if x.tls is not None:
                creds, opts = credentials(x.tls)
        except ValueError as e:
            # the files were there when the config was read: say so, serve the file's config
            log.error("xds: %s; the ADS stream is not opened (/ready answers 503)", e)
        if x.ads and (x.tls is None or creds is not None):
            self.ads = AdsClient(target(x), node, self.dynamic, stats,
                                 mode=x.mode,  # type: ignore[arg-type]  # XdsConfig checks it is sotw or delta
                                 set_node_on_first_message_only=x.set_node_on_first_message_only,
                                 credentials=creds, channel_options=opts)
        self.sds = SdsStream(self.dynamic, x.grpc_targets, node, stats,
                             set_node_on_first_message_only=x.set_node_on_first_message_only)
        self.sds.on_open = lambda _client: self._resubscribe_ads(SECRET)
        self.dynamic.stream_secrets = self.sds.names
        self.dynamic.resubscribe = self._resubscribe
        self._push: asyncio.Task | None = None
        self._dirty = False
        self._endpoints: Endpoints = {}      # accepted in place, not yet pushed
        self._spill_dir: str | None = None
        self._spilled: dict[str, str] = {}   # kind -> the file written last
        self._given = 0                      # the generation of resources the workers were given last
        self.checked: Snapshot | None = None     # the snapshot of the last update validated

    def start(self) -> None:
        x = self.x
        if self.ads is not None:
            self.ads.start()
            log.info("xds: %s stream to %s%s as node %r", x.mode, target(x), " over TLS" if x.tls else "",
                     x.node.id)
        self.sds.check()

    async def close(self) -> None:
        if self.ads is not None:
            await self.ads.close()
        await self.sds.close()

    def _resubscribe(self, type_url: str) -> None:
        if type_url == SECRET:
            self.sds.resubscribe()
        self._resubscribe_ads(type_url)

    def _resubscribe_ads(self, type_url: str) -> None:
        if self.ads is not None:
            self.ads.resubscribe(type_url)

    def release(self) -> None:
        """Whatever way the proxy ends: the spilled files go."""
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)

    # -- what the supervisor asks --
    def payload(self) -> Payload:
        return self.dynamic.payload()

    def generation(self) -> int:
        """The generation of what payload() gives."""
        return self.dynamic.generation

    def delta(self) -> Delta:
        """What changed since the workers were last given resources."""
        d = self.dynamic.delta(self._given)
        self._given = d["gen"]
        return d

    def config(self) -> Config:
        """The file's config with the resources held now (what a reload builds),
        translated with the sink's translations: only what none holds is translated."""
        d = self.dynamic
        return apply(self.file_config(), d.resources, cache=d.translations)[0]

    def ready(self) -> bool:
        # without ADS no listeners or clusters are awaited: what waits for a secret warms
        return self.dynamic.ready() if self.x.ads else True

    def dump(self) -> dict[str, Any]:
        return self.dynamic.dump()

    def spill(self, payload: Payload | Endpoints | Delta, kind: str = "resources") -> str:
        """`payload` in a file only this user can read, for a worker to load; it
        replaces the last file of its `kind` (every worker has read that one: pushes
        wait for every worker's answer)."""
        if self._spill_dir is None:
            self._spill_dir = tempfile.mkdtemp(prefix="mosnx-xds-")      # mode 0700
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        path = os.path.join(self._spill_dir, f"{kind}-{hashlib.sha256(data).hexdigest()[:16]}")
        last = self._spilled.get(kind)
        if path != last:
            tmp = path + ".tmp"
            # 0600 inside the 0700 folder: SDS secrets (private keys) travel in it
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            if last is not None:
                with contextlib.suppress(OSError):
                    os.unlink(last)
            self._spilled[kind] = path
        return path

    # -- DynamicConfig's callbacks --
    def _validate(self, config: Config) -> None:
        self.checked = build_snapshot(config, self._next_version(), previous=self.checked)

    def _changed(self) -> None:
        self._dirty = True
        self._endpoints.clear()         # the reload reads them, with the rest
        self._kick()

    def _reassigned(self, configs: dict[str, ClusterConfig]) -> None:
        self.in_place.value += 1
        for name, cfg in configs.items():
            self._endpoints[name] = cfg.endpoints
        self._kick()

    def _kick(self) -> None:
        if self._push is None or self._push.done():
            self._push = asyncio.get_running_loop().create_task(self._push_all())

    async def _push_all(self) -> None:
        while self._dirty or self._endpoints:
            if self._dirty:
                self._dirty = False
                self._endpoints.clear()
                await self._reload("xds")
                continue
            batch, self._endpoints = self._endpoints, {}
            assert self._reassign is not None       # only set by _reassigned, which needs it
            if not await self._reassign(batch):
                # a worker missed it: a reload brings every one to what is held
                self._dirty = True
