"""OTLP export: spans as opentelemetry-proto's ExportTraceServiceRequest, over gRPC
(TraceService/Export, a host:port endpoint) or OTLP/HTTP protobuf (an http:// URL,
as http://127.0.0.1:4318/v1/traces).

Records are grouped by (service.name, service.instance.id), one ResourceSpans each,
with the proxy as the instrumentation scope. Span and trace ids are the 8 and 16
big-endian bytes of the ids the proxy wrote in its headers.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from mosnx import __version__
from mosnx.runtime.tracing.span import SERVER, Span, TraceRecord

from .http_post import post

_KIND = {SERVER: trace_pb2.Span.SPAN_KIND_SERVER}
_CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
_ERROR = trace_pb2.Status.STATUS_CODE_ERROR

# xds-protos ships an older copy of these modules under the same names, and which copy
# an install keeps depends on the order pip wrote them. On the wire the two are one:
# ScopeSpans (field 2 of ResourceSpans) was InstrumentationLibrarySpans, its scope
# (field 1) the InstrumentationLibrary {name, version}; so either copy serves.
# (getattr: the type stubs describe one copy only)
if hasattr(trace_pb2, "ScopeSpans"):
    _SCOPE: Any = getattr(common_pb2, "InstrumentationScope")(name="mosnx", version=__version__)

    def _scope_group(rs: Any) -> Any:
        g = rs.scope_spans.add()
        g.scope.CopyFrom(_SCOPE)
        return g
else:                                   # the older copy
    _SCOPE = getattr(common_pb2, "InstrumentationLibrary")(name="mosnx", version=__version__)

    def _scope_group(rs: Any) -> Any:
        g = rs.instrumentation_library_spans.add()
        g.instrumentation_library.CopyFrom(_SCOPE)
        return g


def scope_spans(rs: Any) -> list[Any]:
    """A ResourceSpans' scope spans, as either copy of the classes names them."""
    return list(rs.scope_spans if hasattr(rs, "scope_spans") else rs.instrumentation_library_spans)


def scope_name(ss: Any) -> str:
    return str(ss.scope.name if hasattr(ss, "scope") else ss.instrumentation_library.name)


# Messages are filled where they stand (add(), then field by field): building them
# apart and handing them to a constructor copies each one again.
def _set_attrs(repeated: Any, attrs: dict[str, Any]) -> None:
    add = repeated.add
    for k, v in attrs.items():
        kv = add()
        kv.key = k
        if isinstance(v, str):
            kv.value.string_value = v
        elif isinstance(v, bool):
            kv.value.bool_value = v
        elif isinstance(v, int):
            kv.value.int_value = v
        elif isinstance(v, float):
            kv.value.double_value = v
        else:
            kv.value.string_value = str(v)


def _fill(p: Any, s: Span) -> None:
    p.trace_id = s.trace_id.to_bytes(16, "big")
    p.span_id = s.span_id.to_bytes(8, "big")
    if s.parent_id:
        p.parent_span_id = s.parent_id.to_bytes(8, "big")
    p.name = s.name
    p.kind = _KIND.get(s.kind, _CLIENT)
    p.start_time_unix_nano = s.start_ns
    p.end_time_unix_nano = s.end_ns or s.start_ns
    _set_attrs(p.attributes, s.attributes)
    if s.error:
        p.status.code = _ERROR
        p.status.message = s.message


def build_request(records: list[TraceRecord]) -> trace_service_pb2.ExportTraceServiceRequest:
    groups: dict[tuple[str, str], list[TraceRecord]] = {}
    for r in records:
        groups.setdefault((r.service, r.instance), []).append(r)
    req = trace_service_pb2.ExportTraceServiceRequest()
    for (service, instance), recs in groups.items():
        rs = req.resource_spans.add()
        _set_attrs(rs.resource.attributes, {"service.name": service, "service.instance.id": instance,
                                            "telemetry.sdk.name": "mosnx"})
        add = _scope_group(rs).spans.add
        for r in recs:
            for s in r.spans:
                _fill(add(), s)
    return req


class OtlpGrpc:
    """One channel to the collector, opened on the first export."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.channel: grpc.aio.Channel | None = None
        self.stub: Any = None

    async def send(self, records: list[TraceRecord]) -> None:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.endpoint)
            self.stub = trace_service_pb2_grpc.TraceServiceStub(self.channel)
        await self.stub.Export(build_request(records), timeout=self.timeout)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None


def otlp_http(url: str) -> Callable[[list[TraceRecord]], Awaitable[None]]:
    async def send(records: list[TraceRecord]) -> None:
        await post(url, build_request(records).SerializeToString(), "application/x-protobuf")
    return send
