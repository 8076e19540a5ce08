"""proxy/http2/server.py in process: a finished stream's objects are freed as it
ends, not left to the cycle collector. Real sockets, an `h2` client."""
import asyncio
import gc

import h2.connection
import h2.events
import h2.settings

from mosnx.proxy.http2.downstream import H2Down

from ..inproc import proxied, read_head


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


async def big_upstream(reader, writer):
    body = b"x" * (8 << 20)
    try:
        while True:
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


def test_a_client_that_does_not_read_is_not_read_until_it_does(tmp_path):
    import socket

    from mosnx.proxy.http2.server import Http2Server

    async def run():
        workers = []
        async with proxied(tmp_path, big_upstream, "", workers) as port:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            c = h2.connection.H2Connection()
            c.initiate_connection()
            c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2 ** 31 - 1})
            c.increment_flow_control_window(2 ** 31 - 1 - 65535)
            c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/")],
                           end_stream=True)
            writer.write(c.data_to_send())
            server = None
            for _ in range(200):                    # up to 10 s for the write buffer to fill
                await asyncio.sleep(0.05)
                conns = [x for x in workers[0].connections if isinstance(x, Http2Server)]
                if conns and conns[0].write_paused:
                    server = conns[0]
                    break
            assert server is not None, "the proxy's writes never paused"
            assert not server.transport.is_reading()
            got = 0
            for _ in range(2000):                   # read it all: reading resumes
                data = await asyncio.wait_for(reader.read(1 << 20), 10)
                assert data
                for e in c.receive_data(data):
                    if isinstance(e, h2.events.DataReceived):
                        got += e.flow_controlled_length
                        c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                writer.write(c.data_to_send())
                if got >= 8 << 20:
                    break
            assert got == 8 << 20
            await asyncio.sleep(0.05)
            assert server.transport.is_reading()
            writer.close()
    asyncio.run(run())
