"""gRPC through the proxy with real grpcio clients and servers: the four call kinds,
status and trailing metadata intact, deadlines, cancellation, large messages, and
errors made by the proxy itself as trailers-only responses with a gRPC status."""
from __future__ import annotations

import os
import sys
import threading
import time
from concurrent import futures

import grpc
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from h2kit import H2Client  # noqa: E402

MiB = 1024 * 1024
OPTS = [("grpc.max_send_message_length", 32 * MiB), ("grpc.max_receive_message_length", 32 * MiB)]
SERVICE = "test.Echo"


class Service:
    def __init__(self):
        self.cancelled = threading.Event()
        self.metadata: list = []

    def unary(self, req, ctx):
        self.metadata.append(dict(ctx.invocation_metadata()))
        if req == b"fail":
            ctx.set_trailing_metadata((("x-why", "asked"),))
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        if req.startswith(b"sleep:"):
            time.sleep(float(req[6:]))
        ctx.set_trailing_metadata((("x-served-by", "grpc-test"),))
        return b"echo:" + req

    def server_stream(self, req, ctx):
        n = int(req)
        ctx.add_callback(self.cancelled.set)
        for i in range(n):
            if not ctx.is_active():
                return
            yield b"m%d" % i
            if n > 1000:
                time.sleep(0.01)

    def client_stream(self, it, ctx):
        return b"|".join(it)

    def bidi(self, it, ctx):
        for m in it:
            yield m.upper()


def _server(svc: Service):
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(svc.unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(svc.server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(svc.client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(svc.bidi),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture(scope="module")
def grpc_backend():
    svc = Service()
    server, port = _server(svc)
    yield svc, port
    server.stop(grace=None)


@pytest.fixture(scope="module")
def proxy(grpc_backend, module_mosnx):
    _, port = grpc_backend
    return module_mosnx(f"127.0.0.1:{port}", cluster={"protocol": "http2"}, route={"timeout": "30s"})


@pytest.fixture
def channel(proxy):
    ch = grpc.insecure_channel(f"127.0.0.1:{proxy.port}", options=OPTS)
    yield ch
    ch.close()


def _m(kind: str) -> str:
    return f"/{SERVICE}/{kind}"


def test_unary_call_with_metadata_and_trailers(channel, grpc_backend):
    svc, _ = grpc_backend
    call = channel.unary_unary(_m("Unary"))
    resp, c = call.with_call(b"hello", metadata=(("x-tenant", "t1"),), timeout=20)
    assert resp == b"echo:hello"
    assert c.code() == grpc.StatusCode.OK
    assert ("x-served-by", "grpc-test") in tuple(c.trailing_metadata())
    assert svc.metadata[-1].get("x-tenant") == "t1"


def test_server_streaming(channel):
    got = list(channel.unary_stream(_m("ServerStream"))(b"200", timeout=20))
    assert got == [b"m%d" % i for i in range(200)]


def test_client_streaming(channel):
    resp = channel.stream_unary(_m("ClientStream"))(iter([b"a", b"b", b"c"] * 50), timeout=20)
    assert resp == b"|".join([b"a", b"b", b"c"] * 50)


def test_bidi_streaming_interleaves(channel):
    q: list = []
    cond = threading.Condition()
    done = object()

    def requests():
        for i in range(20):
            with cond:
                q.append(b"msg%d" % i)
            yield b"msg%d" % i
            # the next message only after its answer arrived: a true ping-pong
            with cond:
                cond.wait_for(lambda: len(q) == 0, timeout=10)
        yield from ()

    answers = []
    for r in channel.stream_stream(_m("Bidi"))(requests(), timeout=30):
        answers.append(r)
        with cond:
            q.clear()
            cond.notify_all()
    assert answers == [b"MSG%d" % i for i in range(20)]
    assert done is not None


def test_error_status_and_message_pass_through(channel):
    with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary(_m("Unary"))(b"fail", timeout=20)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "no such thing"
    assert ("x-why", "asked") in tuple(e.value.trailing_metadata())


def test_large_messages(channel):
    big = os.urandom(8 * MiB)
    assert channel.unary_unary(_m("Unary"))(big, timeout=60) == b"echo:" + big
    got = channel.stream_unary(_m("ClientStream"))(iter([big[:3 * MiB], big[3 * MiB:]]), timeout=60)
    assert got == big[:3 * MiB] + b"|" + big[3 * MiB:]


def test_client_deadline(channel):
    with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary(_m("Unary"))(b"sleep:3", timeout=0.5)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_cancellation_reaches_the_server(channel, grpc_backend):
    svc, _ = grpc_backend
    svc.cancelled.clear()
    call = channel.unary_stream(_m("ServerStream"))(b"100000", timeout=60)
    assert next(call) == b"m0"
    call.cancel()
    assert svc.cancelled.wait(20)


def test_grpc_timeout_is_enforced_by_the_proxy(proxy):
    # no client-side deadline: the proxy alone ends the call, as DEADLINE_EXCEEDED
    with H2Client(proxy.port) as c:
        r = c.request("POST", _m("Unary"), headers=[("content-type", "application/grpc"), ("te", "trailers"),
                                                    ("grpc-timeout", "300m")],
                      body=b"\x00\x00\x00\x00\x07sleep:3", timeout=20)
    assert r.status == 200
    assert r.header("grpc-status") == "4"            # trailers-only: in the one header block
    assert r.header("content-type") == "application/grpc"
    assert r.body == b"" and r.trailers == []
    assert r.header("grpc-message") == "upstream_response_timeout"


def test_unreachable_upstream_is_unavailable(module_mosnx, free_port):
    p = module_mosnx(free_port(), cluster={"protocol": "http2"})
    ch = grpc.insecure_channel(f"127.0.0.1:{p.port}")
    try:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary(_m("Unary"))(b"x", timeout=20)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert e.value.details() == "upstream_connect_failure"
    finally:
        ch.close()


def test_grpc_error_for_an_http1_client_too(proxy):
    # a gRPC request that came over HTTP/1.1 still gets a gRPC status, here in headers
    r = proxy.request("POST", _m("Unary"), headers=[("Content-Type", "application/grpc"), ("TE", "trailers"),
                                                    ("grpc-timeout", "200m")],
                      body=b"\x00\x00\x00\x00\x07sleep:3", timeout=20)
    assert r.status == 200 and r.header("grpc-status") == "4"


def test_grpc_timeout_never_extends_the_route_timeout(grpc_backend, module_mosnx):
    _, port = grpc_backend
    p = module_mosnx(f"127.0.0.1:{port}", cluster={"protocol": "http2"}, route={"timeout": "500ms"})
    with H2Client(p.port) as c:
        # the call would succeed after 3 s; the 500 ms route timeout ends it first
        r = c.request("POST", _m("Unary"), headers=[("content-type", "application/grpc"), ("te", "trailers"),
                                                    ("grpc-timeout", "20S")],
                      body=b"\x00\x00\x00\x00\x07sleep:3", timeout=20)
    assert r.header("grpc-status") == "4"
    assert r.header("grpc-message") == "upstream_response_timeout"
