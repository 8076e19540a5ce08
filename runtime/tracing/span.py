"""What a traced stream leaves behind: its spans, grouped as one record per stream.

A Span is plain data an exporter turns into its wire format (OTLP, Zipkin JSON,
SkyWalking segments). A TraceRecord is one stream's spans (the server span first,
then a client span per upstream attempt) with who recorded them and, when the
request came with sw8, the SkyWalking reference its segment points back to.
"""
from __future__ import annotations

from typing import Any

from .sw8 import Sw8

SERVER, CLIENT = "server", "client"


class Span:
    __slots__ = ("name", "kind", "trace_id", "span_id", "parent_id", "start_ns", "end_ns",
                 "attributes", "error", "message", "peer")

    def __init__(self, name: str, kind: str, trace_id: int, span_id: int, parent_id: int,
                 start_ns: int) -> None:
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id          # 0: a root span
        self.start_ns = start_ns
        self.end_ns = 0
        self.attributes: dict[str, Any] = {}
        self.error = False
        self.message = ""                   # the x-mosnx-error cause, when the proxy failed it
        self.peer = ""                      # host:port of the other side

    def __repr__(self) -> str:
        return f"Span({self.kind} {self.name!r} {self.trace_id:032x}/{self.span_id:016x}<-{self.parent_id:016x})"


class TraceRecord:
    __slots__ = ("service", "instance", "spans", "sw_parent", "sw_trace", "segment_id")

    def __init__(self, service: str, instance: str, spans: list[Span], sw_parent: Sw8 | None,
                 sw_trace: str, segment_id: str) -> None:
        self.service = service
        self.instance = instance
        self.spans = spans
        self.sw_parent = sw_parent          # the sw8 the request came with, if any
        self.sw_trace = sw_trace            # the trace id as SkyWalking spells it
        self.segment_id = segment_id        # this stream's SkyWalking segment
