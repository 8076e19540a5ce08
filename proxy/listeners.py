"""Listener factories by protocol: how a worker binds and serves one listener.

Each factory returns an asyncio server bound with SO_REUSEPORT, so every worker
accepts on the same address. A protocol this build cannot serve is a config error
positioned at the listener.
"""
from __future__ import annotations

import asyncio

from mosnx.runtime.diagnostics import ConfigError, Diagnostic

from .http1.server import Http1Server


async def _http(worker, name: str, cfg):
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: Http1Server(worker, name), cfg.host, cfg.port,
                                    reuse_port=True, backlog=4096)


FACTORIES = {"http": _http}


async def listen(worker, name: str, cfg):
    factory = FACTORIES.get(cfg.protocol)
    if factory is None:
        raise ConfigError([Diagnostic(cfg.span, "C301",
                                      f'listener "{name}": protocol {cfg.protocol} is not served by this build; '
                                      f'served: {", ".join(sorted(FACTORIES))}')])
    return await factory(worker, name, cfg)
