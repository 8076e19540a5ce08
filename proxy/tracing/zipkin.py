"""Zipkin v2 JSON export (POST /api/v2/spans), which Jaeger's Zipkin endpoint takes too.

Times are microseconds; tags are strings; the proxy's cause of a failure is the
`error` tag, as Zipkin's UI reads it.
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from mosnx.runtime.tracing.span import SERVER, Record, Span

from .http_post import post


def _endpoint(peer: str) -> dict[str, Any] | None:
    host, sep, port = peer.rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]")
    key = "ipv6" if ":" in host else ("ipv4" if host.replace(".", "").isdigit() else "serviceName")
    out: dict[str, Any] = {key: host}
    out["port"] = int(port)
    return out


def zipkin_span(s: Span, service: str) -> dict[str, Any]:
    d: dict[str, Any] = {
        "traceId": f"{s.trace_id:032x}",
        "id": f"{s.span_id:016x}",
        "name": s.name,
        "kind": "SERVER" if s.kind == SERVER else "CLIENT",
        "timestamp": s.start_ns // 1000,
        "duration": max(1, (s.end_ns - s.start_ns) // 1000) if s.end_ns else 1,
        "localEndpoint": {"serviceName": service},
        "tags": {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in s.attributes.items()},
    }
    if s.parent_id:
        d["parentId"] = f"{s.parent_id:016x}"
    remote = _endpoint(s.peer) if s.peer else None
    if remote is not None:
        d["remoteEndpoint"] = remote
    if s.error:
        d["tags"]["error"] = s.message or "true"
    return d


def item(r: Record) -> bytes:
    """A record as the export queue keeps it: its spans' JSON objects, comma-separated
    (a record has its server span at least)."""
    return json.dumps([zipkin_span(s, r.service) for s in r.spans], separators=(",", ":")).encode("utf-8")[1:-1]


def encode_items(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def encode(records: list[Record]) -> bytes:
    return encode_items([item(r) for r in records])


def zipkin_http(url: str) -> Callable[[list[bytes]], Awaitable[None]]:
    async def send(items: list[bytes]) -> None:
        await post(url, encode_items(items), "application/json")
    return send
