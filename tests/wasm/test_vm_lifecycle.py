"""Tick timers, shared-queue notifications and proxy_done (a context the plugin
keeps after proxy_on_done returned 0), through tests/wasm/lifecycle.wat."""
from __future__ import annotations

import asyncio
import logging
import os

from mosnx.runtime import Headers, RequestHead, StreamContext, Store
from mosnx.runtime.registry import BuildContext, Services
from mosnx.wasm import load
from mosnx.wasm.fastcall import GuestFunc

MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lifecycle.wat")


def make():
    bctx = BuildContext(config=None, listener=None, clusters=set(), filters={}, services=Services(stats=Store()))
    return load("life", {"module": MODULE}, bctx, base_dir="/")


def said(caplog, word):
    return sum(1 for r in caplog.records if r.getMessage().endswith(": " + word))


def test_tick_starts_with_the_first_stream_and_repeats(caplog):
    async def go():
        f = make()
        ctx = StreamContext(RequestHead("GET", "/", Headers.from_pairs([("host", "h")])))
        f.on_request(ctx)
        await asyncio.sleep(0.08)
        f.on_log(ctx)
    with caplog.at_level(logging.ERROR, logger="mosnx.wasm"):
        asyncio.run(go())
    assert said(caplog, "tick") >= 3


def test_queue_ready_is_delivered_to_the_registering_root(caplog):
    async def go():
        f = make()
        push = GuestFunc(f.vm.store, f.vm.exports["push"])
        assert push() == 0
        await asyncio.sleep(0.01)
    with caplog.at_level(logging.ERROR, logger="mosnx.wasm"):
        asyncio.run(go())
    assert said(caplog, "queue") == 1


def test_proxy_done_defers_deletion(caplog):
    async def go():
        f = make()
        ctx = StreamContext(RequestHead("GET", "/", Headers.from_pairs([("host", "h")])))
        f.on_request(ctx)
        sid = ctx.filter_state[f].id
        f.on_log(ctx)
        assert sid in f.vm.contexts and said(caplog, "delete") == 0
        finish = GuestFunc(f.vm.store, f.vm.exports["finish"])
        assert finish(sid) == 0
        await asyncio.sleep(0.01)
        assert sid not in f.vm.contexts
    with caplog.at_level(logging.ERROR, logger="mosnx.wasm"):
        asyncio.run(go())
    assert said(caplog, "delete") == 1
