"""Helpers for the built-in filters' tests: a request, and a filter built through its
registered factory as a YAML listener builds it (returning the stats it counts in)."""
from __future__ import annotations

import asyncio

import mosnx.runtime.filters  # noqa: F401  (registers the kinds)
from mosnx.runtime.actions import Pause
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.model import Config, ListenerConfig
from mosnx.runtime.registry import BuildContext, Services, filter_factory


def req(headers: dict | None = None) -> StreamContext:
    return StreamContext(RequestHead("GET", "/", Headers.from_pairs(list((headers or {}).items()))))


def build(kind: str, cfg: dict, stats=None):
    lc = ListenerConfig("l", "127.0.0.1", 1)
    bctx = BuildContext(Config("<t>", None, (lc,), ()), lc, set(), {}, services=Services(**({"stats": stats} if stats else {})))
    return filter_factory(kind)(kind, cfg, bctx), bctx.services.stats


def settle(a):
    async def wait():
        return await a.awaitable
    return asyncio.run(wait()) if isinstance(a, Pause) else a
