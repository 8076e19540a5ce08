"""The gRPC reporter sends the same segments as the HTTP one, as SkyWalking's own
SegmentObject messages (tests/e2e/test_tracing_skywalking.py streams them to a
collector through a running proxy)."""
from __future__ import annotations

import asyncio
import socket

import pytest
from google.protobuf import json_format

from mosnx.proxy.tracing.skywalking import segment
from mosnx.proxy.tracing.skywalking_grpc import SkyWalkingGrpc, protocol
from mosnx.runtime.tracing.sw8 import Sw8

from .spans_data import record

pytest.importorskip("skywalking.protocol.language_agent.Tracing_pb2")


def test_segment_object_holds_what_the_json_segment_holds() -> None:
    parent = Sw8(True, "sw.trace", "sw.seg", 3, "caller", "c-1", "/buy", "mosnx:80")
    r = record(attempts=2, sw_parent=parent)
    pb2, _ = protocol()
    seg = pb2.SegmentObject.FromString(SkyWalkingGrpc("127.0.0.1:11800").item(r))
    assert seg.traceId == "sw.trace" and seg.service == "edge"
    entry, exit1, exit2 = seg.spans
    assert entry.spanType == pb2.Entry and exit1.spanType == pb2.Exit and entry.spanLayer == pb2.Http
    assert entry.refs[0].refType == pb2.CrossProcess and entry.refs[0].parentSpanId == 3
    assert exit1.peer == "127.0.0.1:9000" and exit1.isError and not exit2.isError
    back = json_format.MessageToDict(seg, always_print_fields_with_no_presence=True)
    want = segment(r)
    assert back["spans"][0]["refs"] == want["spans"][0]["refs"]
    assert [s["spanId"] for s in back["spans"][1:]] == [s["spanId"] for s in want["spans"][1:]]


def test_an_unreachable_oap_fails_the_send() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go() -> None:
        reporter = SkyWalkingGrpc(f"127.0.0.1:{port}", timeout=2.0)
        try:
            with pytest.raises(Exception):
                await reporter.send([reporter.item(record())])
        finally:
            await reporter.close()
    asyncio.run(go())
