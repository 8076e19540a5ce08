"""SkyWalking export: one trace segment per stream, posted as JSON to the OAP's
HTTP API (POST <base>/v3/segments, a list of SegmentObject).

The segment is the proxy's part of the trace, as SkyWalking's agents report it:
the server span is the Entry span (id 0; with a CrossProcess ref to the caller's
segment when the request came with sw8), each upstream attempt an Exit span (id =
its attempt number, parent 0) whose peer is the upstream host, the id the sw8
written upstream names. So SkyWalking's topology shows client -> mosnx -> upstream.
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from mosnx.runtime.tracing.span import SERVER, Record

from .http_post import post

# SkyWalking's component id for Python ("General" in its Python agent); spans are HTTP
COMPONENT_ID = 7000


def segment(r: Record) -> dict[str, Any]:
    spans: list[dict[str, Any]] = []
    exit_id = 0
    for s in r.spans:
        entry = s.kind == SERVER
        if entry:
            span_id, parent = 0, -1
            op = str(s.attributes.get("url.path", s.name))
        else:
            exit_id = int(s.attributes.get("mosnx.attempt", exit_id + 1))
            span_id, parent = exit_id, 0
            op = str(s.attributes.get("url.path", s.name))
        d: dict[str, Any] = {
            "operationName": op,
            "startTime": s.start_ns // 1_000_000,
            "endTime": (s.end_ns or s.start_ns) // 1_000_000,
            "spanType": "Entry" if entry else "Exit",
            "spanId": span_id,
            "parentSpanId": parent,
            "isError": s.error,
            "spanLayer": "Http",
            "componentId": COMPONENT_ID,
            "peer": s.peer,
            "skipAnalysis": False,
            "tags": [{"key": k, "value": str(v)} for k, v in s.attributes.items()]
                    + ([{"key": "error.message", "value": s.message}] if s.message else []),
        }
        p = r.sw_parent
        if entry and p is not None:
            d["refs"] = [{
                "refType": "CrossProcess",
                "traceId": p.trace_id,
                "parentTraceSegmentId": p.segment_id,
                "parentSpanId": p.span_id,
                "parentService": p.service,
                "parentServiceInstance": p.instance,
                "parentEndpoint": p.endpoint,
                "networkAddressUsedAtPeer": p.address,
            }]
        spans.append(d)
    return {"traceId": r.sw_trace, "traceSegmentId": r.segment_id, "service": r.service,
            "serviceInstance": r.instance, "spans": spans, "isSizeLimited": False}


def item(r: Record) -> bytes:
    """A record as the export queue keeps it: its segment's JSON."""
    return json.dumps(segment(r), separators=(",", ":")).encode("utf-8")


def encode_items(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def encode(records: list[Record]) -> bytes:
    return encode_items([item(r) for r in records])


def skywalking_http(base: str) -> Callable[[list[bytes]], Awaitable[None]]:
    url = base.rstrip("/") + "/v3/segments"

    async def send(items: list[bytes]) -> None:
        await post(url, encode_items(items), "application/json")
    return send
