"""One HTTP/1.1 POST to a collector, on a connection of its own (Connection: close).

Export calls are few (one per batch), so a connection per call costs nothing that
matters and keeps no state to go stale. Only http:// URLs; the answer's status is
all that is read (a 2xx is success), its body is bounded and dropped.
"""
from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

_MAX_ANSWER = 64 * 1024


class ExportError(Exception):
    """The collector refused the batch or could not be reached; the text says how."""


def split_url(url: str) -> tuple[str, int, str]:
    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise ValueError(f"expected an http:// URL, got {url!r}")
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.hostname, u.port or 80, path


async def post(url: str, body: bytes, content_type: str, timeout: float = 10.0) -> int:
    """POST `body`; the status, or ExportError."""
    host, port, path = split_url(url)
    try:
        return await asyncio.wait_for(_post(host, port, path, body, content_type), timeout)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
        raise ExportError(f"{url}: {type(e).__name__}: {e}") from None


async def _post(host: str, port: int, path: str, body: bytes, content_type: str) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        hosthdr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {hosthdr}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\nUser-Agent: mosnx\r\n\r\n".encode("latin-1")
                     + body)
        await writer.drain()
        line = await reader.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ExportError(f"http://{host}:{port}{path}: not an HTTP answer: {line[:80]!r}")
        status = int(parts[1])
        await reader.read(_MAX_ANSWER)
    finally:
        writer.close()
    if not 200 <= status < 300:
        raise ExportError(f"http://{host}:{port}{path}: answered {status}")
    return status
