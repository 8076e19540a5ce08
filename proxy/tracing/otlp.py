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
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from mosnx import __version__
from mosnx.runtime.tracing.span import SERVER, Span, TraceRecord

from .http_post import post

_KIND = {SERVER: trace_pb2.Span.SPAN_KIND_SERVER}
_CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT

# xds-protos ships an older copy of these modules under the same names, and which copy
# an install keeps depends on the order pip wrote them. On the wire the two are one:
# ScopeSpans (field 2 of ResourceSpans) was InstrumentationLibrarySpans, its scope
# (field 1) the InstrumentationLibrary {name, version}; so either copy serves.
# (getattr: the type stubs describe one copy only)
if hasattr(trace_pb2, "ScopeSpans"):
    _SCOPE: Any = getattr(common_pb2, "InstrumentationScope")(name="mosnx", version=__version__)

    def _scoped(spans: list[Any]) -> dict[str, Any]:
        return {"scope_spans": [getattr(trace_pb2, "ScopeSpans")(scope=_SCOPE, spans=spans)]}
else:                                   # the older copy
    _SCOPE = getattr(common_pb2, "InstrumentationLibrary")(name="mosnx", version=__version__)

    def _scoped(spans: list[Any]) -> dict[str, Any]:
        return {"instrumentation_library_spans": [
            getattr(trace_pb2, "InstrumentationLibrarySpans")(instrumentation_library=_SCOPE, spans=spans)]}


def scope_spans(rs: Any) -> list[Any]:
    """A ResourceSpans' scope spans, as either copy of the classes names them."""
    return list(rs.scope_spans if hasattr(rs, "scope_spans") else rs.instrumentation_library_spans)


def scope_name(ss: Any) -> str:
    return str(ss.scope.name if hasattr(ss, "scope") else ss.instrumentation_library.name)


def _value(v: Any) -> common_pb2.AnyValue:
    if isinstance(v, bool):
        return common_pb2.AnyValue(bool_value=v)
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v)
    if isinstance(v, float):
        return common_pb2.AnyValue(double_value=v)
    return common_pb2.AnyValue(string_value=str(v))


def _attrs(d: dict[str, Any]) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=k, value=_value(v)) for k, v in d.items()]


def _span(s: Span) -> trace_pb2.Span:
    p = trace_pb2.Span(
        trace_id=s.trace_id.to_bytes(16, "big"),
        span_id=s.span_id.to_bytes(8, "big"),
        name=s.name,
        kind=_KIND.get(s.kind, _CLIENT),
        start_time_unix_nano=s.start_ns,
        end_time_unix_nano=s.end_ns or s.start_ns,
        attributes=_attrs(s.attributes),
    )
    if s.parent_id:
        p.parent_span_id = s.parent_id.to_bytes(8, "big")
    if s.error:
        p.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        p.status.message = s.message
    return p


def build_request(records: list[TraceRecord]) -> trace_service_pb2.ExportTraceServiceRequest:
    groups: dict[tuple[str, str], list[trace_pb2.Span]] = {}
    for r in records:
        spans = groups.setdefault((r.service, r.instance), [])
        spans.extend(_span(s) for s in r.spans)
    req = trace_service_pb2.ExportTraceServiceRequest()
    for (service, instance), spans in groups.items():
        res = resource_pb2.Resource(attributes=_attrs({"service.name": service, "service.instance.id": instance,
                                                       "telemetry.sdk.name": "mosnx"}))
        req.resource_spans.append(trace_pb2.ResourceSpans(resource=res, **_scoped(spans)))
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
