"""OTLP: the ExportTraceServiceRequest built from records, and its delivery over
gRPC to a TraceService on 127.0.0.1 and over OTLP/HTTP."""
from __future__ import annotations

import asyncio
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from mosnx.proxy.tracing.otlp import OtlpGrpc, build_request, otlp_http, scope_name, scope_spans

from .spans_data import TRACE, record


def test_request_groups_by_service_and_keeps_ids() -> None:
    req = build_request([record(), record(service="other"), record()])
    assert len(req.resource_spans) == 2
    rs = req.resource_spans[0]
    res = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
    assert res["service.name"] == "edge" and res["service.instance.id"] == "1@host"
    spans = scope_spans(rs)[0].spans
    assert len(spans) == 4 and scope_name(scope_spans(rs)[0]) == "mosnx"
    server, client = spans[0], spans[1]
    assert server.kind == trace_pb2.Span.SPAN_KIND_SERVER and client.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert server.trace_id == TRACE.to_bytes(16, "big")
    assert server.parent_span_id == (0xB2).to_bytes(8, "big") and client.parent_span_id == server.span_id
    attrs = {kv.key: kv.value for kv in server.attributes}
    assert attrs["http.response.status_code"].int_value == 200 and attrs["url.path"].string_value == "/cart"
    assert server.end_time_unix_nano - server.start_time_unix_nano == 5_000_000


def test_error_status() -> None:
    spans = scope_spans(build_request([record(attempts=2)]).resource_spans[0])[0].spans
    assert spans[1].status.code == trace_pb2.Status.STATUS_CODE_ERROR and spans[1].status.message == "upstream_reset"
    assert spans[2].status.code == trace_pb2.Status.STATUS_CODE_UNSET


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.got: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(self, request, context):
        self.got.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_grpc_export_reaches_a_trace_service() -> None:
    recv = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(recv, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        async def main() -> None:
            g = OtlpGrpc(f"127.0.0.1:{port}")
            await g.send([record()])
            await g.close()
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        server.stop(0)
    assert len(recv.got) == 1 and len(scope_spans(recv.got[0].resource_spans[0])[0].spans) == 2


def test_http_export_posts_protobuf() -> None:
    got: list[bytes] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            n = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
            assert b"content-type: application/x-protobuf" in head.lower()
            got.append(await reader.readexactly(n))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        await otlp_http(f"http://127.0.0.1:{port}/v1/traces")([record()])
        srv.close()
    asyncio.run(asyncio.wait_for(main(), 30))
    req = trace_service_pb2.ExportTraceServiceRequest.FromString(got[0])
    assert len(scope_spans(req.resource_spans[0])[0].spans) == 2
