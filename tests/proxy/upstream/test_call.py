"""proxy/upstream/call.py: one-shot HTTP/1.1 calls to a cluster (proxy_http_call,
mirror copies) against a real upstream on 127.0.0.1: the request as sent, the answer
as read, each failure a CallError or a timeout, and the observer told each step."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from mosnx.proxy.upstream.call import CallError, http_call


class Upstream:
    """Answers every connection with `reply` after reading one request head; keeps what came."""

    def __init__(self, reply: bytes, wait: float = 0.0):
        self.reply, self.wait, self.seen = reply, wait, []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def serve(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        body = await reader.readexactly(length[0]) if length else b""
        self.seen.append((head, body))
        await asyncio.sleep(self.wait)
        writer.write(self.reply)
        await writer.drain()
        writer.close()


def clusters(port: int | None, name: str = "ext"):
    host = None if port is None else SimpleNamespace(host="127.0.0.1", port=port, address=f"127.0.0.1:{port}")
    return {name: SimpleNamespace(pick=lambda ctx: host)}


class Observer:
    def __init__(self):
        self.events = []

    def begin(self, cluster, host):
        self.events.append("begin")

    def connected(self):
        self.events.append("connected")

    def answered(self, status):
        self.events.append(status)

    def failed(self, e):
        self.events.append(type(e).__name__)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_the_request_as_sent_and_the_answer_as_read():
    async def go():
        async with Upstream(b"HTTP/1.1 201 Created\r\nx-r: 1\r\ncontent-length: 2\r\n\r\nok") as up:
            obs = Observer()
            answer = await http_call(clusters(up.port), "ext",
                                     [(":method", "POST"), (":path", "/check?a=1"), (":authority", "auth.svc"),
                                      ("X-Token", "t"), ("connection", "keep-alive"), ("content-length", "99")],
                                     b"body", 5.0, obs)
            return up.seen, answer, obs.events
    seen, answer, events = run(go())
    head, body = seen[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /check?a=1 HTTP/1.1" and body == b"body"
    fields = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
    assert fields == [("host", "auth.svc"), ("x-token", "t"), ("content-length", "4"), ("connection", "close")]
    assert answer == (201, [("x-r", "1"), ("content-length", "2")], b"ok")
    assert events == ["begin", "connected", 201]


def test_defaults_and_a_close_delimited_body():
    async def go():
        async with Upstream(b"HTTP/1.1 200 OK\r\n\r\nuntil close") as up:
            return up.port, up.seen, await http_call(clusters(up.port), "ext", [], b"", 5.0)
    port, seen, answer = run(go())
    assert seen[0][0].startswith(b"GET / HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n" % port)
    assert answer == (200, [], b"until close")


@pytest.mark.parametrize("reply,message", [
    (b"", "upstream closed before responding"),
    (b"NOT HTTP\r\n\r\n", "upstream_protocol_error"),
])
def test_a_bad_or_missing_answer_is_a_call_error(reply, message):
    async def go():
        async with Upstream(reply) as up:
            obs = Observer()
            with pytest.raises(CallError, match=message):
                await http_call(clusters(up.port), "ext", [], b"", 5.0, obs)
            return obs.events
    assert run(go()) == ["begin", "connected", "CallError"]


def test_unknown_cluster_and_no_endpoint():
    async def go():
        with pytest.raises(CallError, match="unknown cluster 'nope'"):
            await http_call(clusters(1), "nope", [], b"", 1.0)
        with pytest.raises(CallError, match="no healthy endpoint in cluster 'ext'"):
            await http_call(clusters(None), "ext", [], b"", 1.0)
    run(go())


def test_a_slow_upstream_times_out():
    async def go():
        async with Upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", wait=10.0) as up:
            obs = Observer()
            with pytest.raises(TimeoutError):
                await http_call(clusters(up.port), "ext", [], b"", 0.2, obs)
            return obs.events
    assert run(go()) == ["begin", "connected", "TimeoutError"]
