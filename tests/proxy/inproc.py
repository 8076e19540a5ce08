"""A worker in this process, in front of an asyncio upstream, for tests whose filters
are registered here (a separate mosnx process would not have them); and readers for
what comes back on a raw connection."""
from __future__ import annotations

import asyncio
import contextlib

from mosnx.proxy.worker import Worker


@contextlib.asynccontextmanager
async def proxied(tmp_path, handle, filters: str, workers: list | None = None):
    """Yield the port of a listener running `filters` (YAML flow list items) in front of
    an upstream served by `handle(reader, writer)`; the worker goes into `workers`."""
    up = await asyncio.start_server(handle, "127.0.0.1", 0)
    up_port = up.sockets[0].getsockname()[1]
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"""
listeners:
  - name: l
    address: 127.0.0.1:{port}
    route: {{ cluster: up }}
    filters: [{filters}]
clusters:
  - {{name: up, endpoints: ["127.0.0.1:{up_port}"]}}
""")
    w = Worker(str(cfg))
    w.loop = asyncio.get_running_loop()
    await w.apply(w.build(1))
    if workers is not None:
        workers.append(w)
    try:
        yield port
    finally:
        await w.drain(1.0)
        up.close()


async def read_head(reader) -> tuple[str, dict[str, str]]:
    """(start line, headers with lower-case names)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], dict(line.lower().split(": ", 1) for line in lines[1:] if line)


async def read_chunked(reader) -> tuple[bytes, dict[str, str]]:
    """A chunked body and its trailers."""
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
        if size == 0:
            break
        body += (await reader.readexactly(size + 2))[:-2]
    trailers = {}
    while True:
        line = (await reader.readuntil(b"\r\n"))[:-2]
        if not line:
            return body, trailers
        k, v = line.decode("latin-1").split(":", 1)
        trailers[k.strip().lower()] = v.strip()


async def read_message_body(reader, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """The body (and trailers) a head's framing announces."""
    if headers.get("transfer-encoding") == "chunked":
        return await read_chunked(reader)
    return await reader.readexactly(int(headers.get("content-length", "0"))), {}


async def read_response(reader) -> tuple[int, dict[str, str], bytes, dict[str, str]]:
    start, headers = await read_head(reader)
    body, trailers = await read_message_body(reader, headers)
    return int(start.split()[1]), headers, body, trailers
