"""An SDS server for tests: SecretDiscoveryService.StreamSecrets on a Unix socket (as
Istio's agent serves `sds-grpc`) or 127.0.0.1, answering as ads_server.AdsServer's
state-of-the-world side does (the same recording of requests and responses, the same
`push`). Test code only: never imported by the package."""
from __future__ import annotations

from typing import Any

import grpc.aio
from envoy.service.secret.v3 import sds_pb2_grpc

try:
    from .ads_server import AdsServer
except ImportError:         # imported by path from the e2e tests
    from ads_server import AdsServer  # type: ignore[no-redef]


class SdsServer(AdsServer, sds_pb2_grpc.SecretDiscoveryServiceServicer):
    def __init__(self, unix_path: str | None = None) -> None:
        super().__init__()
        self.unix_path = unix_path

    @property
    def target(self) -> str:
        return f"unix:{self.unix_path}" if self.unix_path else f"127.0.0.1:{self.port}"

    async def start(self) -> int:
        self._server = grpc.aio.server()
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(self, self._server)
        if self.unix_path:
            self._server.add_insecure_port(f"unix:{self.unix_path}")
        else:
            self.port = self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()
        return self.port

    async def StreamSecrets(self, request_iterator: Any, context: Any) -> Any:  # noqa: N802
        async for resp in self._serve("sotw", request_iterator):
            yield resp
