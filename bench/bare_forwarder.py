#!/usr/bin/env python3
"""The floor for a Python proxy: a bare uvloop + httptools HTTP/1.1 forwarder.

    python bench/bare_forwarder.py LISTEN_PORT UPSTREAM_PORT

Each client connection gets its own keep-alive upstream connection; requests are
forwarded as received and responses copied back once complete. No routing,
limits, header rewriting, streaming, timeouts, stats or error handling beyond
closing: it only tells what one Python worker can do on this machine at all,
so the benchmark can show mosnx against that as well as against nginx.
Responses must carry Content-Length (the benchmark's upstream does).
"""
from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, client: "Client"):
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.buf: list[bytes] = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf.append(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        out, self.buf = b"".join(self.buf), []
        self.client.transport.write(out)

    def connection_lost(self, exc) -> None:
        self.client.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.parser = httptools.HttpRequestParser(self)
        self.pending: list[bytes] = []
        self.upstream: Upstream | None = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: Upstream(self), "127.0.0.1", self.upstream_port)
        self.upstream = up
        if self.pending:
            up.transport.write(b"".join(self.pending))
            self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.transport.write(data)

    def connection_lost(self, exc) -> None:
        if self.upstream is not None:
            self.upstream.transport.close()


def main() -> None:
    listen, upstream = int(sys.argv[1]), int(sys.argv[2])
    uvloop.install()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: Client(upstream), "127.0.0.1", listen, reuse_address=True))
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
