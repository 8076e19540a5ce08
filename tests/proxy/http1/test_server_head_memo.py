"""Response heads an upstream repeats are stripped and encoded once, then remembered:
what the client gets must be exactly what the full work would give, whatever the
connection's state (keep-alive or closing, HEAD or GET)."""
import asyncio

from ..inproc import proxied, read_head

HEADS = {
    "/a": b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Same: a\r\nContent-Length: 2\r\n\r\n",
    "/b": b"HTTP/1.1 200 OK\r\nX-Same: b\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\n",
}


async def upstream(reader, writer):
    try:
        while True:
            start, _ = await read_head(reader)
            method, path = start.split()[:2]
            writer.write(HEADS[path] + (b"" if method == "HEAD" else b"ok"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def raw_exchange(port, requests: list[bytes]) -> list[bytes]:
    """Each response's head as sent (bodies read and dropped)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    heads = []
    for raw in requests:
        writer.write(raw)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not raw.startswith(b"HEAD"):
            await reader.readexactly(2)
        heads.append(head)
    writer.close()
    return heads


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra)


def test_repeated_heads_come_out_as_the_first_did(tmp_path):
    async def run():
        async with proxied(tmp_path, upstream, "") as port:
            return await raw_exchange(port, [
                get("/a"), get("/b"), get("/a"),
                b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n",
                get("/a", b"Connection: close\r\n")])
    a1, b, a2, head, closing = asyncio.run(run())
    # hop-by-hop headers, and those Connection names, never reach the client
    assert a1 == b"HTTP/1.1 200 OK\r\nx-same: a\r\ncontent-length: 2\r\n\r\n"
    assert a2 == a1
    assert b == b"HTTP/1.1 200 OK\r\nx-same: b\r\ncontent-length: 2\r\n\r\n"
    # a HEAD answer keeps the upstream's own length line; a closing one says so
    assert head == b"HTTP/1.1 200 OK\r\nx-same: a\r\ncontent-length: 2\r\n\r\n"
    assert closing == b"HTTP/1.1 200 OK\r\nx-same: a\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
