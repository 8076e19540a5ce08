"""ext_authz through a real mosnx: a gRPC authorization server on grpcio (the service
classes from xds-protos) and an HTTP one, both on 127.0.0.1 behind clusters; each
allows (adding headers), denies with its own status, headers and body, or is too
slow, with failure_mode_allow off and on."""
from __future__ import annotations

import os
import sys
import threading
import time
from concurrent import futures

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import status_pb2

sys.path.insert(0, os.path.dirname(__file__))
from conftest import HOST  # noqa: E402
from h2kit import H2Client  # noqa: E402

SLOW = 2.0          # how long the "slow" answers take; the filter's timeout is far shorter
TIMEOUT = "0.3s"


class Authz(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self):
        self.seen: list = []
        self.lock = threading.Lock()
        self.release = threading.Event()          # what "/hold" checks wait for

    def Check(self, request, context):
        with self.lock:
            self.seen.append(request)
        http = request.attributes.request.http
        path = http.path.split("?")[0]
        if path.startswith("/slow"):
            time.sleep(SLOW)
        if path.startswith("/hold"):
            self.release.wait(10)
        if path.startswith("/deny"):
            resp = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=7))
            resp.denied_response.status.code = 451
            resp.denied_response.body = "blocked by policy"
            resp.denied_response.headers.append(base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="x-denied-by", value="grpc-authz")))
            return resp
        resp = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=0))
        resp.ok_response.headers.append(base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="x-auth-user", value=http.headers.get("x-user", "nobody"))))
        resp.ok_response.headers_to_remove.append("x-secret")
        return resp


@pytest.fixture
def grpc_authz():
    servicer = Authz()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    servicer.address = f"{HOST}:{port}"
    yield servicer
    server.stop(0)


def grpc_filter(**extra) -> dict:
    return {"ext_authz": {"grpc_service": {"envoy_grpc": {"cluster_name": "authz"}, "timeout": TIMEOUT}, **extra}}


def test_grpc_authz_allows_denies_and_fails_closed(mosnx, upstream, grpc_authz):
    app = upstream()
    m = mosnx(app, listener={"filters": [grpc_filter()]}, clusters={"authz": grpc_authz.address})

    r = m.request("GET", "/ok?q=1", headers=[("Host", "shop.test"), ("x-user", "alice"), ("x-secret", "s")])
    assert r.status == 200
    seen = app.requests[-1]
    assert seen.header("x-auth-user") == "alice" and seen.header("x-secret") is None
    a = grpc_authz.seen[-1].attributes
    assert (a.request.http.method, a.request.http.path, a.request.http.host) == ("GET", "/ok?q=1", "shop.test")
    assert a.request.http.headers["x-user"] == "alice"
    assert a.source.address.socket_address.address == HOST and a.source.address.socket_address.port_value > 0
    assert a.destination.address.socket_address.port_value == m.port

    r = m.request("POST", "/deny", body=b"{}")
    assert (r.status, r.body, r.header("x-denied-by")) == (451, b"blocked by policy", "grpc-authz")

    started = time.monotonic()
    r = m.request("GET", "/slow")
    assert r.status == 403 and time.monotonic() - started < SLOW      # the filter's timeout, not the server's pace
    assert len(app.requests) == 1
    stats = m.stats()
    assert (stats["http.ingress.ext_authz.ok"], stats["http.ingress.ext_authz.denied"],
            stats["http.ingress.ext_authz.error"]) == (1, 1, 1)


def test_grpc_authz_failure_mode_allow(mosnx, upstream, grpc_authz):
    app = upstream()
    m = mosnx(app, listener={"filters": [grpc_filter(failure_mode_allow=True, failure_mode_allow_header_add=True)]},
              clusters={"authz": grpc_authz.address})
    r = m.request("GET", "/slow")
    assert r.status == 200
    assert app.requests[-1].header("x-envoy-auth-failure-mode-allowed") == "true"
    assert m.request("GET", "/deny").status == 451                  # a denial is still a denial
    stats = m.stats()
    assert (stats["http.ingress.ext_authz.error"], stats["http.ingress.ext_authz.failure_mode_allowed"]) == (1, 1)


def test_grpc_authz_unreachable_is_status_on_error(mosnx, upstream, free_port):
    app = upstream()
    m = mosnx(app, listener={"filters": [grpc_filter(status_on_error=503)]},
              clusters={"authz": f"{HOST}:{free_port()}"})
    assert m.request("GET", "/").status == 503
    assert app.requests == []


def test_a_pending_check_holds_only_its_own_stream(mosnx, upstream, grpc_authz):
    """Two HTTP/2 streams on one connection: the first one's check is held by the
    server; the second is checked, forwarded and answered meanwhile."""
    app = upstream()
    m = mosnx(app, listener={"filters": [{"ext_authz": {"grpc_service": {
        "envoy_grpc": {"cluster_name": "authz"}, "timeout": "10s"}}}]}, clusters={"authz": grpc_authz.address})
    with H2Client(m.port) as h2c:
        held = h2c.start("GET", "/hold")
        deadline = time.monotonic() + 10
        while not grpc_authz.seen:                 # the server has the held check
            assert time.monotonic() < deadline, "the held check never reached the server"
            time.sleep(0.01)
        quick = h2c.request("GET", "/ok", headers=[("x-user", "carol")])
        assert quick.status == 200 and not h2c.responses[held].done
        grpc_authz.release.set()
        assert h2c.response(held).status == 200
    assert [r.target for r in app.requests] == ["/ok", "/hold"]


def http_authz_server(upstream):
    def check(conn, req):
        path = req.target.removeprefix("/authz")
        if path.startswith("/slow"):
            time.sleep(SLOW)
        if path.startswith("/deny"):
            conn.respond(401, b"who are you", [("WWW-Authenticate", "Basic"), ("x-internal", "no")])
        else:
            conn.respond(200, b"", [("x-auth-user", req.header("x-user") or "nobody"), ("x-internal", "no")])
    srv = upstream(on_request=check)
    return srv


def http_filter(**extra) -> dict:
    return {"ext_authz": {"http_service": {
        "server_uri": {"uri": "http://authz.test", "cluster": "authz", "timeout": TIMEOUT},
        "path_prefix": "/authz",
        "authorization_request": {"allowed_headers": {"patterns": [{"exact": "x-user"}]}},
        "authorization_response": {"allowed_upstream_headers": {"patterns": [{"exact": "x-auth-user"}]},
                                   "allowed_client_headers": {"patterns": [{"exact": "www-authenticate"}]}}},
        **extra}}


def test_http_authz_allows_denies_and_times_out(mosnx, upstream):
    app = upstream()
    authz = http_authz_server(upstream)
    m = mosnx(app, listener={"filters": [http_filter()]}, clusters={"authz": authz})

    r = m.request("GET", "/ok?q=1", headers=[("Host", "shop.test"), ("x-user", "bob"), ("Cookie", "c=1"),
                                              ("Authorization", "Bearer t")])
    assert r.status == 200
    check = authz.requests[-1]
    assert (check.method, check.target, check.header("host")) == ("GET", "/authz/ok?q=1", "shop.test")
    assert check.header("x-user") == "bob" and check.header("authorization") == "Bearer t"
    assert check.header("cookie") is None
    seen = app.requests[-1]
    assert seen.header("x-auth-user") == "bob" and seen.header("x-internal") is None

    r = m.request("GET", "/deny")
    assert (r.status, r.body, r.header("www-authenticate"), r.header("x-internal")) == (401, b"who are you", "Basic", None)

    assert m.request("GET", "/slow").status == 403
    assert len(app.requests) == 1
    stats = m.stats()
    assert (stats["http.ingress.ext_authz.ok"], stats["http.ingress.ext_authz.denied"],
            stats["http.ingress.ext_authz.error"]) == (1, 1, 1)


def test_http_authz_failure_mode_allow(mosnx, upstream):
    app = upstream()
    authz = http_authz_server(upstream)
    m = mosnx(app, listener={"filters": [http_filter(failure_mode_allow=True)]}, clusters={"authz": authz})
    r = m.request("GET", "/slow")
    assert r.status == 200
    assert app.requests[-1].header("x-envoy-auth-failure-mode-allowed") is None   # not asked to add it
    assert m.stat("http.ingress.ext_authz.failure_mode_allowed") == 1
