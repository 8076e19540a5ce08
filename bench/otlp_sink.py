#!/usr/bin/env python3
"""An OTLP/gRPC trace sink for bench/tracing.py: accepts ExportTraceServiceRequest on
127.0.0.1:PORT and counts the spans; the count is written to COUNT_FILE on SIGTERM.

  otlp_sink.py PORT COUNT_FILE
"""
from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans = 0
        self.lock = threading.Lock()

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        n = 0
        for rs in request.resource_spans:
            groups = rs.scope_spans if hasattr(rs, "scope_spans") else rs.instrumentation_library_spans
            n += sum(len(g.spans) for g in groups)
        with self.lock:
            self.spans += n
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> None:
    port, count_file = int(sys.argv[1]), sys.argv[2]
    sink = Sink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(0)
    with open(count_file, "w") as f:
        f.write(str(sink.spans))


if __name__ == "__main__":
    main()
