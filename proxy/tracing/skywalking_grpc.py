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
from typing import Any

from google.protobuf import json_format

from mosnx.runtime.tracing.span import Record

from .grpc_call import GrpcChannel
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


COLLECT_METHOD = "/skywalking.v3.TraceSegmentReportService/collect"


class SkyWalkingGrpc:
    """One channel to the OAP, opened on the first export."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self.pb2 = protocol()[0]
        self.channel = GrpcChannel(endpoint, timeout)

    def item(self, r: Record) -> bytes:
        """A record as the export queue keeps it: its SegmentObject, serialized."""
        return bytes(json_format.ParseDict(segment(r), self.pb2.SegmentObject()).SerializeToString())

    async def send(self, items: list[bytes]) -> None:
        # one client stream of the segments as item() wrote them; the answer (Commands) unread
        await self.channel.call(COLLECT_METHOD, items)

    async def close(self) -> None:
        await self.channel.close()
