"""SkyWalking export over gRPC: the segments skywalking.segment() describes, sent on the
OAP's TraceSegmentReportService (`collect`, one client stream per batch, as SkyWalking's
own agents report), to a host:port endpoint (the OAP's gRPC port, 11800 by default).

The messages are SkyWalking's own generated classes, from the apache-skywalking
distribution (the `mosnx[skywalking]` extra); nothing of the protocol is declared here.
The segment dict is already in the protocol's JSON mapping (camelCase names, enum
names), so one ParseDict turns it into a SegmentObject: the HTTP and gRPC reporters
cannot drift apart.
"""
from __future__ import annotations

import importlib
from typing import Any, Iterator

import grpc
from google.protobuf import json_format

from mosnx.runtime.tracing.span import Record

from .skywalking import segment

PROTOCOL = "skywalking.protocol.language_agent.Tracing_pb2"
INSTALL_HINT = "SkyWalking's gRPC reporter needs its protocol classes: pip install 'mosnx[skywalking]'"


def protocol() -> tuple[Any, Any]:
    """SkyWalking's Tracing_pb2 and Tracing_pb2_grpc modules; ImportError names the extra."""
    try:
        pb2 = importlib.import_module(PROTOCOL)
        pb2_grpc = importlib.import_module(PROTOCOL + "_grpc")
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    return pb2, pb2_grpc


def available() -> bool:
    try:
        protocol()
    except ImportError:
        return False
    return True


def segments(pb2: Any, records: list[Record]) -> list[Any]:
    return [json_format.ParseDict(segment(r), pb2.SegmentObject()) for r in records]


class SkyWalkingGrpc:
    """One channel to the OAP, opened on the first export."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.pb2, self.pb2_grpc = protocol()
        self.channel: grpc.aio.Channel | None = None
        self.stub: Any = None

    async def send(self, records: list[Record]) -> None:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.endpoint)
            self.stub = self.pb2_grpc.TraceSegmentReportServiceStub(self.channel)
        batch = segments(self.pb2, records)

        def stream() -> Iterator[Any]:
            yield from batch
        await self.stub.collect(stream(), timeout=self.timeout)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
