"""`tracing:` at the top of mosnx.yaml (where spans go) and in a listener (which
formats it reads and writes, and how much it samples).

Percentages are written `1%`, `0.5%` or as a plain number (0..100). An exporter
is a one-key mapping naming its kind: `{otlp: {endpoint}}`, `{zipkin: {endpoint}}`,
`{skywalking: {endpoint}}`; model.TraceExporter checks that the endpoint suits it.
"""
from __future__ import annotations

from typing import Any

from yaml.nodes import ScalarNode

from ..model import TRACE_EXPORTERS, TRACE_FORMATS, ListenerTracing, TraceExporter, TracingConfig
from .compound import ListOf
from .reader import Reader
from .scalars import Duration, Enum, Int, Scalar, Str
from .schema import Field, Obj, exactly_one


class Percent(Scalar):
    """0..100, as `25%` or `25`; a float."""
    tags = frozenset({"str", "int", "float"})
    label = "a percentage such as 1% or 100%"
    name = "percent"

    def parse(self, node: ScalarNode, r: Reader) -> Any:
        text = node.value.strip()
        if text.endswith("%"):
            text = text[:-1].strip()
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{node.value!r} is not a percentage (write 1% or 100%)") from None
        if not 0.0 <= v <= 100.0:          # NaN fails this too
            raise ValueError(f"{node.value} is outside 0%..100%")
        return v


def _exporter(kwargs: dict) -> TraceExporter:
    (kind, settings), = kwargs.items()
    return TraceExporter(kind, settings["endpoint"])


_ENDPOINT = {"endpoint": Field(Str(), "host:port (gRPC) or an http:// URL", required=True)}

EXPORTER = Obj({
    "otlp": Field(Obj(dict(_ENDPOINT)), "OpenTelemetry collector: host:port for OTLP/gRPC "
                  "(127.0.0.1:4317), or http://host:4318/v1/traces for OTLP/HTTP protobuf"),
    "zipkin": Field(Obj(dict(_ENDPOINT)), "Zipkin v2 JSON: http://127.0.0.1:9411/api/v2/spans "
                    "(Jaeger's Zipkin endpoint too)"),
    "skywalking": Field(Obj(dict(_ENDPOINT)), "SkyWalking OAP: host:port for its gRPC segment "
                        "reporter (127.0.0.1:11800; needs mosnx[skywalking]), or its HTTP API "
                        "http://127.0.0.1:12800 (segments are posted to /v3/segments)"),
}, build=lambda kwargs, span: _exporter(kwargs),
   checks=[exactly_one(*TRACE_EXPORTERS, what="one exporter kind per item")],
   label="a mapping {otlp | zipkin | skywalking: {endpoint}}")

TRACING = Obj({
    "service_name": Field(Str(), "service.name of the spans; default: the listener's name"),
    "service_instance": Field(Str(), "service.instance.id; default: the worker's pid@hostname"),
    "exporters": Field(ListOf(EXPORTER), "collectors the spans go to, several at once if need be"),
    "max_queue": Field(Int(1, 1_000_000), "spans waiting per exporter; more are dropped and counted "
                       "(tracing.<exporter>.spans_dropped)"),
    "batch_size": Field(Int(1, 100_000), "spans sent in one export call"),
    "batch_delay": Field(Duration(positive=True), "longest a span waits for its batch to fill"),
}, build=TracingConfig)

LISTENER_TRACING = Obj({
    "propagation": Field(ListOf(Enum(*TRACE_FORMATS), min_items=1, single=True),
                         "formats read (the first present, in this order) and written (all): "
                         "w3c (traceparent, tracestate), b3 (b3, x-b3-*), sw8 (SkyWalking v3)"),
    "random_sampling": Field(Percent(), "share of requests traced (Envoy's random_sampling)"),
    "client_sampling": Field(Percent(), "share traced of requests with x-client-trace-id"),
    "overall_sampling": Field(Percent(), "share kept of what the other two sample"),
}, build=ListenerTracing)
