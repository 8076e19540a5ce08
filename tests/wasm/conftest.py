"""Drive wasm filters the way the proxy core does, without sockets.

`run()` plays one stream through a filter: request headers (awaiting a Pause),
request body, a canned upstream response (or the filter's local reply), the
response hooks and the log hook, and reports what the upstream and the client
would have seen.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

import pytest

from mosnx.runtime import Headers, LocalReply, Pause, RequestHead, ResponseHead, StreamContext, Store
from mosnx.runtime.registry import BuildContext, Services
from mosnx.wasm import load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTERS = os.path.join(ROOT, "examples", "wasm", "filters")
WAT = os.path.join(ROOT, "examples", "wasm", "wat")


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    os.environ["MOSNX_CACHE_DIR"] = str(tmp_path_factory.mktemp("wasm-cache"))


@pytest.fixture(autouse=True)
def _fresh_shared():
    from mosnx.wasm import shared
    shared.reset()


def make(name: str, module: str, stats: Store | None = None, clusters=None, **options):
    """Load a filter from examples/wasm (filters/*.wasm or wat/*.wat)."""
    path = os.path.join(WAT if module.endswith(".wat") else FILTERS, module)
    services = Services(stats=stats or Store())
    ctx = BuildContext(config=None, listener=None, clusters=set(clusters or ()), filters={},
                       services=services)
    if clusters is None:
        ctx.clusters = None
    return load(name, {"module": path, **options}, ctx, base_dir=ROOT)


@dataclass
class Result:
    status: int = 0
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    detail: str = ""
    upstream_called: bool = False
    upstream_path: str = ""
    upstream_headers: Headers | None = None
    upstream_body: bytes = b""
    ctx: StreamContext | None = None


def _reply_response(ctx: StreamContext, reply: LocalReply, res: Result) -> bytes:
    ctx.response = ResponseHead(reply.status, Headers.from_pairs(
        list(reply.headers) + [("content-length", str(len(reply.body)))]))
    res.detail = reply.detail
    return reply.body


async def _step(action, res: Result):
    """Resolve Pauses; returns None or a LocalReply."""
    while isinstance(action, Pause):
        action = await asyncio.wait_for(action.awaitable, 5)
    return action


async def arun(f, method="GET", path="/", headers=(), body=b"", chunks=None,
               upstream=(200, (("content-type", "text/plain"),), b"hello"),
               source=("10.1.2.3", 40000)) -> Result:
    hdrs = [("host", "example.com"), *headers]
    if body or chunks:
        hdrs.append(("content-length", str(len(body) if chunks is None else sum(map(len, chunks)))))
    ctx = StreamContext(RequestHead(method, path, Headers.from_pairs(hdrs)), source=source,
                        destination=("127.0.0.1", 8080))
    res = Result(ctx=ctx)
    reply = await _step(f.on_request(ctx), res)
    if reply is None and (body or chunks):
        sent = []
        parts = chunks if chunks is not None else [body]
        for i, c in enumerate(parts):
            out = f.on_request_body(ctx, c, i == len(parts) - 1)
            if isinstance(out, LocalReply):
                reply = out
                break
            sent.append(c if out is None else out)
        res.upstream_body = b"".join(sent)
    if reply is None:
        res.upstream_called = True
        res.upstream_path = ctx.request.path
        res.upstream_headers = ctx.request.headers.copy()
        status, uh, ub = upstream
        resp_parts = list(ub) if isinstance(ub, list) else [ub]
        ub = b"".join(resp_parts)
        ctx.response = ResponseHead(status, Headers.from_pairs(list(uh) + [("content-length", str(len(ub)))]))
        resp_body = resp_parts
    else:
        resp_body = [_reply_response(ctx, reply, res)]
    r2 = await _step(f.on_response(ctx), res)
    if isinstance(r2, LocalReply):
        resp_body = [_reply_response(ctx, r2, res)]
    sent = []
    for i, c in enumerate(resp_body):
        out = f.on_response_body(ctx, c, i == len(resp_body) - 1)
        if isinstance(out, LocalReply):
            sent = [_reply_response(ctx, out, res)]
            break
        sent.append(c if out is None else out)
    resp_body = b"".join(sent)
    res.status = ctx.response.status
    res.headers = ctx.response.headers
    res.body = resp_body
    f.on_log(ctx)
    return res


def run(f, **kw) -> Result:
    return asyncio.run(arun(f, **kw))
