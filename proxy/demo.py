"""The embedded demo upstream: a tiny HTTP/1.1 server that says who served a request.

Used by the quickstart (`demo_upstream:` in the config, or `mosnx demo-upstream`),
so `make demo` shows load balancing and headers without any other software.
"""
from __future__ import annotations

import asyncio
import json

import httptools


class DemoServer(asyncio.Protocol):
    def __init__(self, name: str):
        self.name = name
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()

    def on_message_begin(self):
        self.url = b""
        self.headers = []
        self.body = 0

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body):
        self.body += len(body)

    def on_message_complete(self):
        path = self.url.decode("latin-1")
        info = {"served_by": self.name, "method": self.parser.get_method().decode(), "path": path,
                "headers": dict(self.headers), "body_bytes": self.body}
        if path.startswith("/status/"):
            try:
                status = int(path.split("/")[2])
            except ValueError:
                status = 400
        else:
            status = 200
        body = (json.dumps(info, indent=2) + "\n").encode()
        keep = self.parser.should_keep_alive()
        head = (f"HTTP/1.1 {status} Demo\r\ncontent-type: application/json\r\n"
                f"x-served-by: {self.name}\r\ncontent-length: {len(body)}\r\n"
                f"{'' if keep else 'connection: close' + chr(13) + chr(10)}\r\n").encode()
        self.transport.write(head if info["method"] == "HEAD" else head + body)
        if not keep:
            self.transport.close()


async def start_demo(host: str, port: int, reuse_port: bool = False) -> asyncio.AbstractServer:
    """Serve on host:port. `reuse_port` lets another process join (mosnx run --takeover);
    the caller is then the one that keeps strangers out."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: DemoServer(f"demo-{port}"), host, port, reuse_address=True,
                                    reuse_port=reuse_port or None)
