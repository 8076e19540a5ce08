"""proxy/http2/server.py in process: a finished stream's objects are freed as it
ends, not left to the cycle collector. Real sockets, an `h2` client."""
import asyncio
import gc

import h2.connection
import h2.events

from mosnx.proxy.http2.server import H2Down

from .inproc import proxied, read_head


async def upstream(reader, writer):
    try:
        while True:
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def get_many(port: int, n: int) -> list[int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    c = h2.connection.H2Connection()
    c.initiate_connection()
    for i in range(n):
        c.send_headers(1 + 2 * i, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                                   (":path", "/")], end_stream=True)
    writer.write(c.data_to_send())
    statuses = []
    ended = 0
    while ended < n:
        data = await asyncio.wait_for(reader.read(65536), 10)
        assert data, "connection closed"
        for e in c.receive_data(data):
            if isinstance(e, h2.events.ResponseReceived):
                statuses.append(int(dict(e.headers)[b":status"]))
            elif isinstance(e, h2.events.StreamEnded):
                ended += 1
        writer.write(c.data_to_send())
    writer.close()
    return statuses


def test_finished_streams_are_freed_at_once(tmp_path):
    async def run():
        async with proxied(tmp_path, upstream, "") as port:
            assert await get_many(port, 2) == [200, 200]
            gc.collect()
            gc.disable()
            try:
                assert await get_many(port, 8) == [200] * 8
                await asyncio.sleep(0.05)          # the server's last write has gone out
                return [o for o in gc.get_objects() if type(o) is H2Down]
            finally:
                gc.enable()
    assert asyncio.run(run()) == []
