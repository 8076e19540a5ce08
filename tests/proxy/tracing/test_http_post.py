"""The collector POST: URL checks, success on 2xx, ExportError otherwise or when
nothing listens."""
from __future__ import annotations

import asyncio
import socket

import pytest

from mosnx.proxy.tracing.http_post import ExportError, post, split_url


def test_split_url() -> None:
    assert split_url("http://127.0.0.1:9411/api/v2/spans") == ("127.0.0.1", 9411, "/api/v2/spans")
    assert split_url("http://h") == ("h", 80, "/")
    with pytest.raises(ValueError):
        split_url("https://h/x")


def serve(status: bytes):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 2\r\n\r\nno")
        await writer.drain()
        writer.close()
    return handle


@pytest.mark.parametrize("status, ok", [(b"202 Accepted", True), (b"500 Oops", False)])
def test_status_decides(status: bytes, ok: bool) -> None:
    async def main() -> None:
        srv = await asyncio.start_server(serve(status), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            if ok:
                assert await post(f"http://127.0.0.1:{port}/x", b"{}", "application/json") == 202
            else:
                with pytest.raises(ExportError, match="answered 500"):
                    await post(f"http://127.0.0.1:{port}/x", b"{}", "application/json")
        finally:
            srv.close()
    asyncio.run(asyncio.wait_for(main(), 30))


def test_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]       # bound, never listening: refused
        with pytest.raises(ExportError):
            asyncio.run(post(f"http://127.0.0.1:{port}/x", b"", "application/json", timeout=5))
