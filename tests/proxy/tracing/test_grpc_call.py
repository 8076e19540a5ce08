"""gRPC calls on the proxy's own HTTP/2 codec, against grpcio servers: unary and client
streaming, a body larger than the default flow-control windows, error statuses, a
server that is not there or does not answer, and a kept connection the server closed."""
from __future__ import annotations

import asyncio
import socket
from concurrent import futures

import grpc
import pytest

from mosnx.proxy.tracing.grpc_call import GrpcChannel, GrpcError

UNARY = "/test.Sink/Put"
STREAM = "/test.Sink/PutMany"


class Sink:
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.fail: grpc.StatusCode | None = None

    def put(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if self.fail is not None:
            context.abort(self.fail, "refused: quota")
        self.got.append(request)
        return b"ok"

    def put_many(self, requests, context: grpc.ServicerContext) -> bytes:  # type: ignore[no-untyped-def]
        for r in requests:
            self.got.append(r)
        return b""


def serve(sink: Sink) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler("test.Sink", {
        "Put": grpc.unary_unary_rpc_method_handler(sink.put),
        "PutMany": grpc.stream_unary_rpc_method_handler(sink.put_many),
    })
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_unary_and_client_streaming_calls_reach_a_grpcio_server_on_one_connection() -> None:
    sink = Sink()
    server, port = serve(sink)
    try:
        async def main() -> None:
            ch = GrpcChannel(f"127.0.0.1:{port}", timeout=10)
            await ch.call(UNARY, [b"one"])
            first = ch.conn
            await ch.call(STREAM, [b"a", b"", b"c" * 1000])
            big = bytes(range(256)) * 2000          # 512 kB: beyond the default 64 kB windows
            await ch.call(UNARY, [big])
            await asyncio.gather(*(ch.call(UNARY, [b"p%d" % i]) for i in range(5)))
            assert ch.conn is first                 # every call on the kept connection
            await ch.close()
        run(main())
    finally:
        server.stop(0)
    assert sink.got[:4] == [b"one", b"a", b"", b"c" * 1000]
    assert sink.got[4] == bytes(range(256)) * 2000
    assert sorted(sink.got[5:]) == [b"p%d" % i for i in range(5)]


def test_an_error_status_fails_the_call_with_its_code_and_message() -> None:
    sink = Sink()
    sink.fail = grpc.StatusCode.RESOURCE_EXHAUSTED
    server, port = serve(sink)
    try:
        async def main() -> None:
            ch = GrpcChannel(f"127.0.0.1:{port}", timeout=10)
            with pytest.raises(GrpcError, match="grpc-status 8: refused: quota"):
                await ch.call(UNARY, [b"x"])
            with pytest.raises(GrpcError, match="grpc-status 12"):       # UNIMPLEMENTED
                await ch.call("/test.Sink/Nope", [b"x"])
            await ch.close()
        run(main())
    finally:
        server.stop(0)


def test_nothing_listening_fails_the_call() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        ch = GrpcChannel(f"127.0.0.1:{port}", timeout=5)
        with pytest.raises(GrpcError, match="ConnectionRefusedError"):
            await ch.call(UNARY, [b"x"])
    run(main())


def test_a_peer_that_never_answers_times_the_call_out() -> None:
    async def main() -> None:
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        ch = GrpcChannel(f"127.0.0.1:{port}", timeout=0.3)
        with pytest.raises(GrpcError, match="no answer within 0.3s"):
            await ch.call(UNARY, [b"x"])
        await ch.close()
        silent.close()
    run(main())


def test_a_connection_the_server_closed_is_opened_again() -> None:
    sink = Sink()
    server, port = serve(sink)

    async def main() -> None:
        nonlocal server
        ch = GrpcChannel(f"127.0.0.1:{port}", timeout=10)
        await ch.call(UNARY, [b"before"])
        server.stop(0)
        for _ in range(100):        # the close reaches the client
            if ch.conn is not None and not ch.conn.usable:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(GrpcError):
            await ch.call(UNARY, [b"nobody"])
        server2 = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        server2.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "test.Sink", {"Put": grpc.unary_unary_rpc_method_handler(sink.put)}),))
        assert server2.add_insecure_port(f"127.0.0.1:{port}") == port
        server2.start()
        server = server2
        await ch.call(UNARY, [b"after"])
        await ch.close()
    try:
        run(main())
    finally:
        server.stop(0)
    assert sink.got == [b"before", b"after"]
