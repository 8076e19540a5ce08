"""ext_authz over gRPC: envoy.service.auth.v3.Authorization/Check on a grpcio aio channel.

Message classes and the service stub come from xds-protos; nothing is re-declared.
The channel goes to an endpoint of the named cluster, picked by the worker's
balancer (Services.endpoint). Channels are kept per (loop, endpoint) for the
life of the process, not of the filter: a snapshot swap builds new filters, and
they reuse the connections the old ones opened instead of leaking a channel each. build_check_request is pure (a stream in, a
CheckRequest out) so its shape is tested without a server.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import grpc
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc

from ..context import StreamContext
from .ext_authz import NEVER_COPIED, CheckError, ExtAuthzConfig, Verdict

AttributeContext = attribute_context_pb2.AttributeContext
CheckRequest = external_auth_pb2.CheckRequest
CheckResponse = external_auth_pb2.CheckResponse
OK = 0
# (id of the loop, target) -> (the loop, stub): a grpc.aio channel belongs to the loop it
# was made on; holding the loop keeps its id from being reused by another
_STUBS: dict[tuple[int, str], tuple[asyncio.AbstractEventLoop, Any]] = {}


def _peer(address: str, port: int, principal: str = "") -> Any:
    p = AttributeContext.Peer(principal=principal)
    if address:
        p.address.socket_address.address = address
        p.address.socket_address.port_value = port
    return p


def build_check_request(ctx: StreamContext, config: ExtAuthzConfig) -> Any:
    r = ctx.request
    principal = ctx.peer_subject if config.include_peer_certificate or ctx.connection_mtls else ""
    attrs = AttributeContext(source=_peer(ctx.source_address, ctx.source_port, principal),
                             destination=_peer(ctx.destination_address, ctx.destination_port),
                             context_extensions=config.context_extensions)
    attrs.request.time.FromNanoseconds(int(ctx.start_wall * 1e9) if ctx.start_wall else time.time_ns())
    http = attrs.request.http
    http.id = ctx.request_id
    http.method = r.method
    http.path = r.path
    http.host = r.host
    http.scheme = r.scheme
    http.protocol = ctx.protocol
    i = r.path.find("?")
    if i >= 0:
        http.query = r.path[i + 1:]
    headers: dict[str, str] = {":authority": r.host, ":method": r.method, ":path": r.path, ":scheme": r.scheme}
    for k, v in r.headers.pairs():
        lk = k.lower()
        headers[lk] = f"{headers[lk]},{v}" if lk in headers and not lk.startswith(":") else v
    http.headers.update(headers)
    cl = r.headers.get("content-length")
    http.size = int(cl) if cl is not None and cl.isdigit() else (0 if ctx.request_bodyless else -1)
    return CheckRequest(attributes=attrs)


def verdict_of(resp: Any) -> Verdict:
    if resp.status.code == OK:
        ok = resp.ok_response
        set_h: list[tuple[str, str]] = []
        add_h: list[tuple[str, str]] = []
        for hv in ok.headers:
            k, v = hv.header.key.lower(), hv.header.value
            if not k or k in NEVER_COPIED:
                continue
            # Envoy: in an OkHttpResponse `append` defaults to false (the header is set)
            appends = hv.HasField("append") and hv.append.value
            (add_h if appends else set_h).append((k, v))
        return Verdict(True, set_headers=tuple(set_h), append_headers=tuple(add_h),
                       remove_headers=tuple(k.lower() for k in ok.headers_to_remove
                                            if k.lower() not in NEVER_COPIED and not k.startswith(":")))
    d = resp.denied_response
    code = d.status.code if d.HasField("status") and 100 <= d.status.code <= 599 else 403
    client = tuple((hv.header.key.lower(), hv.header.value) for hv in d.headers
                   if hv.header.key and hv.header.key.lower() not in NEVER_COPIED)
    return Verdict(False, code, client_headers=client, body=d.body.encode("utf-8"))


class GrpcCheck:
    def __init__(self, config: ExtAuthzConfig, endpoint: Callable[[str], tuple[str, int] | None] | None):
        self.config = config
        self._endpoint = endpoint

    def _stub(self) -> Any:
        if self._endpoint is None:
            raise CheckError("no endpoint service in this process")
        ep = self._endpoint(self.config.grpc_cluster)
        if ep is None:
            raise CheckError(f'no healthy endpoint in cluster "{self.config.grpc_cluster}"')
        host, port = ep
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        loop = asyncio.get_running_loop()
        key = (id(loop), target)
        got = _STUBS.get(key)
        if got is None or loop.is_closed():
            got = _STUBS[key] = (loop, external_auth_pb2_grpc.AuthorizationStub(grpc.aio.insecure_channel(target)))
        return got[1]

    async def check(self, ctx: StreamContext) -> Verdict:
        stub = self._stub()
        try:
            resp = await stub.Check(build_check_request(ctx, self.config), timeout=self.config.timeout)
        except grpc.aio.AioRpcError as e:
            raise CheckError(f"{e.code().name}: {e.details()}") from e
        return verdict_of(resp)
