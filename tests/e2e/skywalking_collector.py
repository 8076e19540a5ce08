"""A SkyWalking OAP stand-in for the tests: TraceSegmentReportService (collect and
collectInSync) and the ManagementService an agent calls, on SkyWalking's own generated
classes (apache-skywalking), over grpcio on 127.0.0.1. It keeps every segment."""
from __future__ import annotations

import threading
from concurrent import futures
from typing import Any

import grpc
from skywalking.protocol.common import Command_pb2
from skywalking.protocol.language_agent import Tracing_pb2_grpc
from skywalking.protocol.management import Management_pb2_grpc


class SkyWalkingCollector(Tracing_pb2_grpc.TraceSegmentReportServiceServicer,
                          Management_pb2_grpc.ManagementServiceServicer):
    def __init__(self, host: str, port: int) -> None:
        self.port = port
        self.segments: list[Any] = []
        self.instances: list[str] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        Tracing_pb2_grpc.add_TraceSegmentReportServiceServicer_to_server(self, self.server)
        Management_pb2_grpc.add_ManagementServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"{host}:{port}")
        self.server.start()

    def collect(self, request_iterator, context):
        for seg in request_iterator:
            with self.lock:
                self.segments.append(seg)
        return Command_pb2.Commands()

    def collectInSync(self, request, context):
        with self.lock:
            self.segments.extend(request.segments)
        return Command_pb2.Commands()

    def reportInstanceProperties(self, request, context):
        with self.lock:
            self.instances.append(request.serviceInstance)
        return Command_pb2.Commands()

    def keepAlive(self, request, context):
        return Command_pb2.Commands()

    def of(self, service: str) -> list[Any]:
        with self.lock:
            return [s for s in self.segments if s.service == service]

    def stop(self) -> None:
        self.server.stop(0)
