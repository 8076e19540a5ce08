"""A real grpcio server implementing grpc.health.v1.Health/Check for health-check tests.

grpc_health is not a dependency, so the service is a generic handler on raw bytes,
and the two one-field messages are coded here independently of the code under test.
Listens on 127.0.0.1 only; `statuses` maps a service name to its ServingStatus and
may be changed while the server runs; a name not in it answers NOT_FOUND, as the
reference implementation does. Other methods (`Echo`) answer the server's `name`.
"""
from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc

SERVING, NOT_SERVING = 1, 2
HEALTH = "grpc.health.v1.Health"
ECHO = "test.Named"


def decode_request(msg: bytes) -> str:
    """HealthCheckRequest.service: field 1, length-delimited (short names only)."""
    if not msg:
        return ""
    assert msg[0] == 0x0A and msg[1] < 0x80, msg
    return msg[2:2 + msg[1]].decode()


def encode_response(status: int) -> bytes:
    return bytes((0x08, status))


class HealthServer:
    def __init__(self, statuses: dict[str, int] | None = None, name: str = "",
                 tls: tuple[str, str] | None = None):
        self.statuses = dict(statuses if statuses is not None else {"": SERVING})
        self.name = name
        self.asked: list[str] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        health = {"Check": grpc.unary_unary_rpc_method_handler(self._check)}
        echo = {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: self.name.encode())}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(HEALTH, health),
                                              grpc.method_handlers_generic_handler(ECHO, echo)))
        if tls is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            creds = grpc.ssl_server_credentials([(Path(tls[1]).read_bytes(), Path(tls[0]).read_bytes())])
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def _check(self, req: bytes, ctx) -> bytes:
        service = decode_request(req)
        self.asked.append(service)
        if service not in self.statuses:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return encode_response(self.statuses[service])

    def stop(self) -> None:
        self.server.stop(grace=None)
