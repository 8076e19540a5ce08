"""OTLP: the ExportTraceServiceRequest mosnx writes, decoded with opentelemetry-proto's
own classes (every attribute, id, parent, kind, status, time and the resource), from
Span objects and from the records streams leave; and its delivery over gRPC to a
TraceService on 127.0.0.1 and over OTLP/HTTP."""
from __future__ import annotations

import asyncio
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from mosnx import __version__
from mosnx.proxy.tracing import otlp
from mosnx.proxy.tracing.otlp import OtlpGrpc, encode, otlp_http, scope_name, scope_spans
from mosnx.runtime.tracing.span import F_END, F_SPAN, F_START, R_CLIENTS, Span, StreamRecord, TraceRecord

from .spans_data import TRACE, express_record, record, stream_record

SERVER, CLIENT = trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT
ERROR, UNSET = trace_pb2.Status.STATUS_CODE_ERROR, trace_pb2.Status.STATUS_CODE_UNSET
RID = "6f1c0a52-6a3f-4b6a-9d0e-5b1f8e0c2a11"


def decode(records: list[Any]) -> trace_service_pb2.ExportTraceServiceRequest:
    return trace_service_pb2.ExportTraceServiceRequest.FromString(encode(records))


def value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value"))


def attrs(span: Any) -> dict[str, Any]:
    keys = [kv.key for kv in span.attributes]
    assert len(keys) == len(set(keys)), f"a key twice: {keys}"
    return {kv.key: value(kv.value) for kv in span.attributes}


def spans_of(req: trace_service_pb2.ExportTraceServiceRequest) -> list[Any]:
    return [s for rs in req.resource_spans for ss in scope_spans(rs) for s in ss.spans]


def test_request_groups_by_service_and_keeps_ids() -> None:
    req = decode([record(), record(service="other"), record()])
    assert len(req.resource_spans) == 2
    rs = req.resource_spans[0]
    res = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
    assert res == {"service.name": "edge", "service.instance.id": "1@host", "telemetry.sdk.name": "mosnx"}
    (ss,) = scope_spans(rs)
    assert scope_name(ss) == "mosnx" and (ss.scope.version if hasattr(ss, "scope") else
                                          ss.instrumentation_library.version) == __version__
    spans = ss.spans
    assert len(spans) == 4
    server, client = spans[0], spans[1]
    assert server.kind == SERVER and client.kind == CLIENT
    assert server.trace_id == TRACE.to_bytes(16, "big") and server.span_id == (0xA1).to_bytes(8, "big")
    assert server.parent_span_id == (0xB2).to_bytes(8, "big") and client.parent_span_id == server.span_id
    assert server.name == "GET shop" and client.name == "GET web"
    assert attrs(server) == {"http.request.method": "GET", "url.path": "/cart", "http.response.status_code": 200}
    assert attrs(client) == {"mosnx.attempt": 1, "url.path": "/cart", "mosnx.cluster": "web"}
    assert server.start_time_unix_nano == 1_700_000_000_000_000_000
    assert server.end_time_unix_nano - server.start_time_unix_nano == 5_000_000
    assert spans_of(decode([record(service="other")]))[0].trace_id == server.trace_id


def test_error_status() -> None:
    spans = scope_spans(decode([record(attempts=2)]).resource_spans[0])[0].spans
    assert spans[1].status.code == ERROR and spans[1].status.message == "upstream_reset"
    assert spans[2].status.code == UNSET


def test_every_value_type_and_long_values() -> None:
    s = Span("x" * 300, "client", (1 << 128) - 1, (1 << 64) - 1, 0, 5)
    s.attributes.update({"s": "é/" + "p" * 200, "t": True, "f": False, "i": -3, "big": 1 << 40, "d": 0.25,
                         "zero": 0, "empty": "", "other": ("a", 1), "bad": "\udcff"})
    s.error = True
    (got,) = spans_of(decode([TraceRecord("svc", "i", [s], None, "", "")]))
    assert got.name == "x" * 300 and got.trace_id == b"\xff" * 16 and got.span_id == b"\xff" * 8
    assert got.parent_span_id == b"" and got.start_time_unix_nano == got.end_time_unix_nano == 5
    assert attrs(got) == {"s": "é/" + "p" * 200, "t": True, "f": False, "i": -3, "big": 1 << 40, "d": 0.25,
                          "zero": 0, "empty": "", "other": "('a', 1)", "bad": "?"}
    assert got.status.code == ERROR and got.status.message == ""


def test_a_stream_record_says_everything_the_stream_did() -> None:
    rec = stream_record()
    req = decode([rec])
    (rs,) = req.resource_spans
    assert {kv.key: kv.value.string_value for kv in rs.resource.attributes}["service.name"] == "edge"
    server, client = spans_of(req)
    f = rec.facts
    assert server.trace_id == TRACE.to_bytes(16, "big") == client.trace_id
    assert server.span_id == f[F_SPAN].to_bytes(8, "big") and server.parent_span_id == (0xB2).to_bytes(8, "big")
    assert client.span_id == f[R_CLIENTS].to_bytes(8, "big") and client.parent_span_id == server.span_id
    assert (server.kind, client.kind) == (SERVER, CLIENT)
    assert (server.name, client.name) == ("GET shop", "GET web")
    assert attrs(server) == {
        "http.request.method": "GET", "url.path": "/cart", "url.scheme": "http", "server.address": "shop.local",
        "network.peer.address": "10.0.0.9", "network.protocol.version": "1.1", "user_agent.original": "curl/8",
        "http.route": "shop", "mosnx.cluster": "web", "mosnx.upstream_host": "127.0.0.1:9001",
        "mosnx.attempts": 1, "mosnx.request_id": RID, "http.response.status_code": 200}
    assert attrs(client) == {
        "http.request.method": "GET", "url.path": "/cart", "server.address": "127.0.0.1:9001",
        "mosnx.cluster": "web", "mosnx.upstream_host": "127.0.0.1:9001", "mosnx.attempt": 1,
        "http.response.status_code": 200}
    assert server.status.code == client.status.code == UNSET
    assert server.start_time_unix_nano == f[F_START] and server.end_time_unix_nano == rec.facts[F_END]
    assert server.start_time_unix_nano <= client.start_time_unix_nano <= client.end_time_unix_nano
    assert client.end_time_unix_nano <= server.end_time_unix_nano


def test_retries_failures_and_no_answer() -> None:
    rec = stream_record(attempts=((503, ""), (0, "upstream_reset_before_response_started"), (0, "")),
                        status=504, detail="upstream_response_timeout", parent=False)
    server, c1, c2, c3 = spans_of(decode([rec]))
    assert server.parent_span_id == b""
    assert server.status.code == ERROR and server.status.message == "upstream_response_timeout"
    assert c1.status.code == ERROR and c1.status.message == ""          # a 503 answer
    assert attrs(c1)["http.response.status_code"] == 503
    assert c2.status.message == "upstream_reset_before_response_started"
    assert c3.status.message == "upstream_response_timeout"             # open when the stream ended
    assert c3.end_time_unix_nano >= c3.start_time_unix_nano
    assert attrs(c2)["http.request.resend_count"] == 1 and attrs(c3)["mosnx.attempt"] == 3
    assert "http.response.status_code" not in attrs(c3)
    assert len({c.span_id for c in (c1, c2, c3)}) == 3
    assert all(c.parent_span_id == server.span_id for c in (c1, c2, c3))


@pytest.mark.parametrize("kw", [
    {},
    {"attempts": ((503, ""), (200, ""))},
    {"attempts": ((0, "upstream_reset"), (0, "")), "status": 502, "detail": "upstream_reset", "parent": False},
    {"attempts": (), "status": 404, "detail": "route_not_found", "route": "", "ua": None},
    {"attempts": ((200, ""),), "status": None, "detail": "downstream_remote_disconnect"},
    {"path": "/" + "ü" * 150 + "?q", "tags": {"tenant": "acme", "url.path": "/replaced", "n": 3}},
    {"rpc": {"rpc.system": "dubbo", "rpc.service": "Shop", "rpc.method": "buy"}},
])
def test_a_stream_record_encodes_as_its_spans_do(kw: dict) -> None:
    """The direct encoding of a stream's facts and the encoding of the Span objects
    derived from them (what Zipkin and SkyWalking export) decode to the same spans."""
    rec = stream_record(**kw)
    fast = spans_of(decode([rec, rec]))
    assert isinstance(rec, StreamRecord) and len(fast) == 2 * rec.size
    slow = spans_of(decode([TraceRecord(rec.service, rec.instance, rec.spans, None, "", "")] * 2))
    for a, b in zip(fast, slow):
        assert attrs(a) == attrs(b)
        a.ClearField("attributes")
        b.ClearField("attributes")
        assert a == b


def test_tags_and_rpc_attributes() -> None:
    server, client = spans_of(decode([stream_record(tags={"tenant": "acme", "url.path": "/replaced"},
                                                    rpc={"rpc.system": "dubbo"})]))
    assert attrs(server)["tenant"] == "acme" and attrs(server)["url.path"] == "/replaced"
    assert attrs(client)["rpc.system"] == "dubbo" and attrs(client)["url.path"] == "/cart"


def test_memos_start_afresh_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp, "MEMO_SIZE", 3)
    for i in range(10):
        (server, _) = spans_of(decode([stream_record(path=f"/p{i}", route=f"r{i}")]))
        assert attrs(server)["url.path"] == f"/p{i}" and attrs(server)["http.route"] == f"r{i}"
    assert len(otlp._PATHS) <= 3 and len(otlp._SERVER_BLOCKS) <= 3


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
            await g.send([otlp.item(record())])
            await g.send([otlp.item(stream_record())])
            await g.close()
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        server.stop(0)
    assert len(recv.got) == 2 and len(scope_spans(recv.got[0].resource_spans[0])[0].spans) == 2
    assert attrs(spans_of(recv.got[1])[0])["mosnx.request_id"] == RID


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
        await otlp_http(f"http://127.0.0.1:{port}/v1/traces")([otlp.item(record())])
        srv.close()
    asyncio.run(asyncio.wait_for(main(), 30))
    req = trace_service_pb2.ExportTraceServiceRequest.FromString(got[0])
    assert len(scope_spans(req.resource_spans[0])[0].spans) == 2


def only_atoms(x: Any) -> bool:
    return type(x) in (bytes, str, int, float, type(None)) or type(x) is tuple and all(map(only_atoms, x))


@pytest.mark.parametrize("status,detail", [(200, ""), (503, "upstream_connect_failure")])
def test_an_express_record_encodes_as_the_record_of_its_facts(status: int, detail: str) -> None:
    # kept as it came (its facts made with its batch; bytes, numbers and strings,
    # nothing the garbage collector walks for long), it encodes to the spans its
    # StreamRecord does, but for the server span's id, drawn as the facts are made;
    # its ids are those of the context that went upstream
    rec, wire = express_record(status, detail)
    kept = otlp.item(rec)
    assert kept[1] is rec.raw and rec.made is None
    assert only_atoms(kept)
    batch = trace_service_pb2.ExportTraceServiceRequest.FromString(otlp.encode_items([kept]))
    one, other = spans_of(batch), spans_of(decode([rec.record()]))
    for server, client in (one, other):
        assert client.parent_span_id == server.span_id
        server.span_id = client.parent_span_id = b"-"
    assert one == other
    server, client = spans_of(decode([rec]))
    tp = wire[len(b"traceparent: "):-2].decode().split("-")
    assert server.trace_id.hex() == tp[1] == client.trace_id.hex() and tp[3] == "01"
    assert client.span_id.hex() == tp[2] and client.parent_span_id == server.span_id
    assert (server.status.code, client.status.code) == ((ERROR, ERROR) if detail else (UNSET, UNSET))
