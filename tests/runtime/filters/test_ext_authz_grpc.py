"""runtime/filters/ext_authz_grpc.py: the CheckRequest built from a stream, CheckResponses
read as verdicts, and a gRPC service with no endpoint counted as an error."""
from __future__ import annotations

import asyncio

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.rpc import status_pb2

from mosnx.runtime.actions import Pause
from mosnx.runtime.filters.ext_authz import ExtAuthzConfig, ExtAuthzFilter
from mosnx.runtime.filters.ext_authz_grpc import build_check_request, verdict_of
from mosnx.runtime.stats import Store

from .test_ext_authz import rq


def run(f, ctx):
    a = f.on_request(ctx)
    assert isinstance(a, Pause)

    async def wait():
        return await a.awaitable
    return asyncio.run(wait())


# -- gRPC -------------------------------------------------------------------------

GRPC = ExtAuthzConfig.from_dict({"grpc_service": {"envoy_grpc": {"cluster_name": "authz"}},
                                 "context_extensions": {"route": "shop"}})


def test_grpc_check_request_carries_the_requests_attributes():
    ctx = rq()
    ctx.connection_mtls, ctx.peer_subject = True, "spiffe://cluster.local/ns/a/sa/b"
    a = build_check_request(ctx, GRPC).attributes
    assert (a.source.address.socket_address.address, a.source.address.socket_address.port_value) == ("10.0.0.7", 40000)
    assert a.source.principal == "spiffe://cluster.local/ns/a/sa/b"
    assert a.destination.address.socket_address.port_value == 8080
    h = a.request.http
    assert (h.method, h.path, h.host, h.id, h.query, h.scheme) == ("POST", "/api/x?q=1", "shop.example", "rid-1", "q=1", "http")
    assert h.headers["x-user"] == "alice" and h.headers[":path"] == "/api/x?q=1"
    assert a.context_extensions["route"] == "shop"
    assert a.request.time.seconds > 0


def _hv(k, v, append=None):
    hv = base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v))
    if append is not None:
        hv.append.value = append
    return hv


def test_grpc_ok_response_to_verdict():
    resp = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=0))
    resp.ok_response.headers.extend([_hv("x-set", "1"), _hv("x-add", "2", append=True), _hv("host", "evil")])
    resp.ok_response.headers_to_remove.append("x-drop")
    v = verdict_of(resp)
    assert v.allowed and v.set_headers == (("x-set", "1"),) and v.append_headers == (("x-add", "2"),)
    assert v.remove_headers == ("x-drop",)


def test_grpc_denied_response_to_verdict():
    resp = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=7))
    resp.denied_response.status.code = http_status_pb2.Unauthorized
    resp.denied_response.body = "nope"
    resp.denied_response.headers.append(_hv("x-reason", "r"))
    v = verdict_of(resp)
    assert (v.allowed, v.status, v.body, v.client_headers) == (False, 401, b"nope", (("x-reason", "r"),))
    bare = verdict_of(external_auth_pb2.CheckResponse(status=status_pb2.Status(code=7)))
    assert bare.status == 403


def test_grpc_without_endpoint_is_an_error():
    stats = Store()
    f = ExtAuthzFilter(GRPC, "ext_authz", stats, None, lambda cluster: None, "l")
    assert run(f, rq()).status == 403
    assert stats.counter("http.l.ext_authz.error").value == 1
