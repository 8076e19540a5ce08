"""The supervisor's side of xDS: the one ADS stream of the proxy, the resources it
brings (dynamic.DynamicConfig), and how they reach the workers.

- One stream per proxy, opened once the workers are live; closed before they drain.
- Every accepted update asks the supervisor for a reload; updates that come while
  one is under way are pushed together after it.
- The file's config is read again only when it changed on disk; what was decoded
  and translated of the resources is kept (dynamic.Decoded), so a reload translates
  only what changed.
- A worker process gets the resources by a private file (spill): megabytes of them
  are more than the loop's non-blocking pipe takes at once. One file per content,
  in a folder only this user can read, removed when the proxy stops.
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

from mosnx.runtime.model import Config, XdsConfig
from mosnx.runtime.snapshot import build_snapshot
from mosnx.runtime.stats import Store

from .. import sockets
from .ads import AdsClient, make_node
from .dynamic import Decoded, DynamicConfig, FileConfig, Payload, effective

log = logging.getLogger("mosnx")


def target(x: XdsConfig) -> str:
    """The gRPC target of the control plane: host:port, or unix:<path> (grpcio's form
    for a Unix socket, as Envoy's pipe address)."""
    return f"unix:{x.unix_path}" if x.unix_path is not None else sockets.show(x.host, x.port)


class XdsControl:
    def __init__(self, config_path: str, x: XdsConfig, stats: Store,
                 reload: Callable[[str], Awaitable[Any]], next_version: Callable[[], int]) -> None:
        """`reload(why)`: the supervisor's reload; `next_version()`: the version an
        update would become (for validating it)."""
        self.config_path = config_path
        self.x = x
        self._reload = reload
        self._next_version = next_version
        self.file_config = FileConfig(config_path)     # the config file as it is now
        self._decoded = Decoded()
        self.dynamic = DynamicConfig(self.file_config, self._validate, self._changed)
        self.dynamic.initial_fetch_timeout = x.initial_fetch_timeout
        node = make_node(x.node.id, x.node.cluster, x.node.metadata)
        self.ads = AdsClient(target(x), node, self.dynamic, stats,
                             mode=x.mode,  # type: ignore[arg-type]  # XdsConfig checks it is sotw or delta
                             set_node_on_first_message_only=x.set_node_on_first_message_only)
        self.dynamic.resubscribe = self.ads.resubscribe
        self._push: asyncio.Task | None = None
        self._dirty = False
        self._spill_dir: str | None = None
        self._spilled: str | None = None

    def start(self) -> None:
        self.ads.start()
        x = self.x
        log.info("xds: %s stream to %s as node %r", x.mode, target(x), x.node.id)

    async def close(self) -> None:
        await self.ads.close()

    def release(self) -> None:
        """Whatever way the proxy ends: the spilled files go."""
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)

    # -- what the supervisor asks --
    def payload(self) -> Payload:
        return self.dynamic.payload()

    def config(self) -> Config:
        """The file's config with the resources held now (what a reload builds)."""
        return effective(self.file_config(), self.payload(), self._decoded)

    def ready(self) -> bool:
        return self.dynamic.ready()

    def dump(self) -> dict[str, Any]:
        return self.dynamic.dump()

    def spill(self, payload: Payload) -> str:
        """`payload` in a file only this user can read, for a worker to load."""
        if self._spill_dir is None:
            self._spill_dir = tempfile.mkdtemp(prefix="mosnx-xds-")      # mode 0700
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        path = os.path.join(self._spill_dir, f"resources-{hashlib.sha256(data).hexdigest()[:16]}")
        if path != self._spilled:
            tmp = path + ".tmp"
            # 0600 inside the 0700 folder: SDS secrets (private keys) travel in it
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            if self._spilled is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._spilled)
            self._spilled = path
        return path

    # -- DynamicConfig's callbacks --
    def _validate(self, config: Config) -> None:
        build_snapshot(config, self._next_version())

    def _changed(self) -> None:
        self._dirty = True
        if self._push is None or self._push.done():
            self._push = asyncio.get_running_loop().create_task(self._push_all())

    async def _push_all(self) -> None:
        while self._dirty:
            self._dirty = False
            await self._reload("xds")
