"""An upstream service instrumented by SkyWalking's Python agent (apache-skywalking):
the agent's http.server plugin continues the trace from the sw8 header the proxy wrote
and reports its segment over gRPC. Run as: python sw_agent_upstream.py PORT OAP."""
from __future__ import annotations

import sys

from skywalking import agent, config

port, oap = int(sys.argv[1]), sys.argv[2]
config.init(agent_collector_backend_services=oap, agent_protocol="grpc", agent_name="reviews",
            agent_instance_name="reviews-1", agent_profile_active=False, agent_log_reporter_active=False,
            agent_meter_reporter_active=False, agent_pvm_meter_reporter_active=False)
agent.start()

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402  (after the agent patched it)


class Reviews(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"reviews"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Reviews)
print("serving", flush=True)
server.serve_forever()
