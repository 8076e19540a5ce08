"""Active health checks against real sockets on 127.0.0.1: TCP, HTTP and gRPC checks over
the cluster's own transport (cleartext or TLS) and protocol (HTTP/1.1 or HTTP/2),
thresholds, endpoints leaving and rejoining rotation, and the checkers' lifecycle
with the cluster. Certificates are made for each test."""
from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import replace

import pytest

from mosnx.proxy.upstream.cluster import Cluster, ClusterManager
from mosnx.runtime.config.cluster import GrpcHealthCheck, HealthCheck, HttpHealthCheck
from mosnx.runtime.config.protocols import ClientTls
from mosnx.runtime.model import ClusterConfig, Endpoint
from mosnx.runtime.stats import Store

import h2.config
import h2.connection
import h2.events
import h2.exceptions

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "e2e"))
from h2kit import CA  # noqa: E402

FAST = HealthCheck(interval=0.05, timeout=0.5, unhealthy_threshold=2, healthy_threshold=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer:
    """Answers every request with `status`, recording request heads."""

    def __init__(self, status: int = 200):
        self.status = status
        self.heads: list[bytes] = []
        self.server = None
        self.port = 0

    async def start(self, port: int = 0, ssl=None) -> "HttpServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port, ssl=ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % self.status)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


class H2Request:
    def __init__(self, headers):
        self.headers = {k.decode(): v.decode() for k, v in headers}
        self.body = b""

    @property
    def line(self) -> tuple:
        h = self.headers
        return h[":method"], h[":path"], h[":authority"], h[":scheme"]


class H2Server:
    """An HTTP/2-only endpoint (h2c, or h2 by ALPN with `ssl`). `answer(request)` gives
    (headers, body, trailers) for each request once it has ended."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[H2Request] = []
        self.server = None
        self.port = 0

    async def start(self, ssl=None) -> "H2Server":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader, writer):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        pending: dict[int, H2Request] = {}
        try:
            while data := await reader.read(65536):
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        pending[ev.stream_id] = H2Request(ev.headers)
                    elif isinstance(ev, h2.events.DataReceived):
                        pending[ev.stream_id].body += ev.data
                    if getattr(ev, "stream_ended", None) is not None:
                        self._respond(conn, ev.stream_id, pending.pop(ev.stream_id))
                writer.write(conn.data_to_send())
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    def _respond(self, conn, sid: int, req: H2Request) -> None:
        self.requests.append(req)
        headers, body, trailers = self.answer(req)
        conn.send_headers(sid, headers, end_stream=not body and not trailers)
        if body:
            conn.send_data(sid, body, end_stream=not trailers)
        if trailers:
            conn.send_headers(sid, trailers, end_stream=True)

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def until(pred, timeout=10.0, what="condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def config(ports, hc: HealthCheck, name="web", panic: float = 0.0, protocol: str = "http1",
           tls: ClientTls | None = None) -> ClusterConfig:
    """Panic mode off unless asked for: these tests watch single hosts leave rotation."""
    eps = tuple(Endpoint("127.0.0.1", p) for p in ports)
    options = {"health_check": hc, "common_lb_config": {"healthy_panic_threshold": panic}}
    if tls is not None:
        options["tls"] = tls
    return ClusterConfig(name, eps, protocol=protocol, options=options)


def counter(c: Cluster, stat: str) -> int:
    return c.stats.counters[f"cluster.{c.name}.health_check.{stat}"].value


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 30))


def test_tcp_check_takes_a_refused_endpoint_out_and_brings_it_back():
    async def main():
        live = await HttpServer().start()
        dead_port = free_port()
        c = Cluster(config([live.port, dead_port], FAST), Store())
        dead = c.hosts[1]
        try:
            await until(lambda: not dead.healthy, what="the refused endpoint to leave rotation")
            assert dead.describe()["health"] == "unhealthy"
            assert all(c.pick(None) is c.hosts[0] for _ in range(10))
            revived = await HttpServer().start(dead_port)
            await until(lambda: dead.healthy, what="the endpoint to come back")
            assert dead.describe()["health"] == "healthy"
            assert {c.pick(None).port for _ in range(10)} == {live.port, dead_port}
            await revived.stop()
        finally:
            c.close()
            await live.stop()
        assert c.stats.counters["cluster.web.health_check.network_failure"].value >= 1
    run(main())


def test_http_check_uses_path_host_and_expected_statuses():
    async def main():
        srv = await HttpServer(200).start()
        hc = replace(FAST, http=HttpHealthCheck("/healthz", frozenset({200, 204})))
        c = Cluster(config([srv.port], hc, name="reviews"), Store())
        h = c.hosts[0]
        try:
            await until(lambda: len(srv.heads) >= 1, what="a check")
            head = srv.heads[0].decode()
            assert head.startswith("GET /healthz HTTP/1.1\r\n")
            assert "\r\nHost: reviews\r\n" in head, "the Host header defaults to the cluster's name"
            srv.status = 503
            await until(lambda: not h.healthy, what="503 to fail the check")
            srv.status = 204
            await until(lambda: h.healthy, what="204 to pass it")
        finally:
            c.close()
            await srv.stop()
    run(main())


def test_thresholds_need_failures_and_passes_in_a_row():
    c = Cluster(config([1], HealthCheck(unhealthy_threshold=3, healthy_threshold=2)), Store())
    from mosnx.proxy.upstream.health import HealthChecker
    hc = HealthChecker(c, c.config.options["health_check"])
    h = c.hosts[0]
    hc._record(h, True)          # the first result decides at once
    assert h.healthy
    for ok in (False, False, True, False, False):
        hc._record(h, ok)
        assert h.healthy, "never three failures in a row"
    hc._record(h, False)
    assert not h.healthy
    hc._record(h, True)
    assert not h.healthy, "one pass is not enough with healthy_threshold 2"
    hc._record(h, True)
    assert h.healthy


def test_a_never_checked_endpoint_that_fails_its_first_check_leaves_at_once():
    c = Cluster(config([1], HealthCheck(unhealthy_threshold=5)), Store())
    from mosnx.proxy.upstream.health import HealthChecker
    HealthChecker(c, c.config.options["health_check"])._record(c.hosts[0], False)
    assert not c.hosts[0].healthy


def test_checkers_stop_with_the_cluster_and_restart_on_change():
    async def main():
        srv = await HttpServer().start()
        mgr = ClusterManager(Store())
        base = asyncio.all_tasks()
        mgr.update({"web": config([srv.port], FAST)})
        first = mgr.get("web").health.task
        await until(lambda: mgr.stats.counters["cluster.web.health_check.success"].value >= 1,
                    what="a first check")
        # unchanged config: the same cluster and checker keep running
        mgr.update({"web": config([srv.port], FAST)})
        assert mgr.get("web").health.task is first
        slower = replace(FAST, interval=0.1)
        for _ in range(20):          # repeated reloads must not pile up tasks
            mgr.update({"web": config([srv.port], slower if _ % 2 else FAST)})
        await asyncio.sleep(0.05)
        assert first.done()
        extra = [t for t in asyncio.all_tasks() - base if not t.done()]
        assert len(extra) == 1, extra
        mgr.update({})
        await asyncio.sleep(0.05)
        assert [t for t in asyncio.all_tasks() - base if not t.done()] == []
        await srv.stop()
    run(main())


def test_removing_health_check_returns_hosts_to_rotation():
    c = Cluster(config([1], HealthCheck()), Store())
    c.hosts[0].hc_failed = True
    c.hosts[0].set_health()
    plain = Cluster(replace(c.config, options={}), c.stats, c)
    assert plain.hosts[0].healthy


@pytest.mark.parametrize("path", ["/", "/status/ready"])
def test_health_check_config_from_yaml(path):
    from mosnx.runtime.config import load_config_text
    c = load_config_text(f"""\
clusters:
  - name: reviews
    endpoints: ["127.0.0.1:9081"]
    health_check: {{ http: {{ path: {path}, expected: [200] }}, interval: 2s, timeout: 1s,
                    unhealthy_threshold: 2, healthy_threshold: 1 }}
""")
    hc = c.clusters[0].options["health_check"]
    assert hc == HealthCheck(2.0, 1.0, 2, 1, HttpHealthCheck(path, frozenset({200})))


def test_panic_mode_puts_every_host_back_below_the_threshold():
    c = Cluster(config([1, 2, 3, 4], HealthCheck(), panic=50.0), Store())
    from mosnx.proxy.upstream.health import HealthChecker
    hc = HealthChecker(c, c.config.options["health_check"])
    a, b, _, _ = c.hosts
    hc._record(a, False)
    assert not a.healthy and not c.panic
    hc._record(b, False)
    assert not b.healthy, "two of four healthy is not below 50%"
    hc._record(c.hosts[2], False)
    assert c.panic and all(h.healthy for h in c.hosts), "one of four: spread over all"
    assert c.hosts[2].describe()["health"] == "unhealthy", "/clusters still tells the truth"
    c.pick(None)
    assert c.stats.counters["cluster.web.lb_healthy_panic"].value == 1
    hc._record(c.hosts[2], True)
    assert not c.panic and not a.healthy and c.hosts[2].healthy


def test_health_check_config_errors_are_positioned():
    from mosnx.runtime.config import load_config_text
    from mosnx.runtime.diagnostics import ConfigError
    with pytest.raises(ConfigError) as e:
        load_config_text("""\
clusters:
  - name: a
    endpoints: ["127.0.0.1:9081"]
    health_check: {http: {path: /h}, tcp: {}}
  - name: b
    endpoints: ["127.0.0.1:9082"]
    health_check: {http: {path: /h, expected: [700]}, intervall: 1s}
""")
    text = str(e.value)
    assert "has both http: and tcp:" in text
    assert ":7:" in text and "700 is above the maximum 599" in text
    assert 'unknown key "intervall"' in text and 'did you mean "interval"' in text


def test_expected_statuses_ranges_as_envoy():
    from mosnx.proxy.upstream.health import HealthChecker
    from mosnx.runtime.config import load_config_text
    c = load_config_text("""\
clusters:
  - name: web
    endpoints: ["127.0.0.1:9081"]
    health_check: {http: {path: /, expected: [204], expected_statuses: [{start: 300, end: 302}]}}
""")
    hc = c.clusters[0].options["health_check"]
    assert hc.http.expected == frozenset({204, 300, 301})
    plain = Cluster(config([1], replace(hc, http=HttpHealthCheck("/"))), Store())
    assert HealthChecker(plain, plain.config.options["health_check"]).expected == frozenset({200})


# ------------------------------------------------------------------ the cluster's transport and protocol
@pytest.fixture
def ca(tmp_path):
    pytest.importorskip("cryptography")
    return CA(tmp_path)


@pytest.fixture
def grpc_kit():
    pytest.importorskip("grpc")
    import grpchealth
    return grpchealth


def _h2_server(status: dict, tls=None):
    """An HTTP/2-only endpoint (h2c, or h2 by ALPN with `tls`) answering status["code"]."""
    return H2Server(lambda req: ([(":status", str(status["code"]))], b"ok", None)).start(tls)


def test_http_check_over_tls_uses_the_clusters_ca_sni_and_client_certificate(ca):
    async def main():
        server_ctx = ca.server_context(ca.issue("web.test"), alpn=("http/1.1",), client_ca=True)
        srv = await HttpServer(200).start(ssl=server_ctx)
        client = ca.issue("mosnx", client=True)
        hc = replace(FAST, http=HttpHealthCheck("/healthz"))
        tls = ClientTls(ca=str(ca.path), sni="web.test", cert=client[0], key=client[1])
        good = Cluster(config([srv.port], hc, tls=tls), Store())
        no_cert = Cluster(config([srv.port], hc, name="nocert", tls=replace(tls, cert=None, key=None)), Store())
        plain = Cluster(config([srv.port], hc, name="plain"), Store())
        try:
            await until(lambda: counter(good, "success") >= 2, what="checks over TLS to pass")
            assert srv.heads[0].startswith(b"GET /healthz HTTP/1.1\r\n")
            assert good.hosts[0].healthy and counter(good, "failure") == 0
            await until(lambda: not no_cert.hosts[0].healthy, what="the server to refuse a check without a certificate")
            await until(lambda: not plain.hosts[0].healthy, what="a cleartext check of a TLS endpoint to fail")
            srv.status = 503
            await until(lambda: not good.hosts[0].healthy, what="503 over TLS to fail the check")
        finally:
            for c in (good, no_cert, plain):
                c.close()
            await srv.stop()
    run(main())


def test_http_check_on_an_http2_cluster_speaks_h2c():
    async def main():
        status = {"code": 200}
        srv = await _h2_server(status)
        hc = replace(FAST, http=HttpHealthCheck("/healthz", host="reviews.svc"))
        c = Cluster(config([srv.port], hc, protocol="http2"), Store())
        h = c.hosts[0]
        try:
            await until(lambda: counter(c, "success") >= 1, what="an HTTP/2 check to pass")
            assert srv.requests[0].line == ("GET", "/healthz", "reviews.svc", "http")
            status["code"] = 503
            await until(lambda: not h.healthy, what=":status 503 to fail the check")
            status["code"] = 200
            await until(lambda: h.healthy, what=":status 200 to pass it")
            assert counter(c, "network_failure") == 0
        finally:
            c.close()
            await srv.stop()
    run(main())


def test_http_check_on_an_http2_cluster_over_tls_offers_h2_by_alpn(ca):
    async def main():
        srv = await _h2_server({"code": 200}, tls=ca.server_context(ca.issue("web.test"), alpn=("h2",)))
        hc = replace(FAST, http=HttpHealthCheck("/ready"))
        c = Cluster(config([srv.port], hc, protocol="http2", tls=ClientTls(ca=str(ca.path), sni="web.test")),
                    Store())
        try:
            await until(lambda: counter(c, "success") >= 1, what="an h2 check over TLS to pass")
            assert srv.requests[0].line == ("GET", "/ready", "web", "https")
            assert c.hosts[0].healthy
        finally:
            c.close()
            await srv.stop()
    run(main())


def test_grpc_check_asks_each_service_and_needs_serving(grpc_kit):
    async def main():
        srv = grpc_kit.HealthServer({"": grpc_kit.SERVING, "reviews": grpc_kit.SERVING,
                                     "ratings": grpc_kit.NOT_SERVING})

        def cluster(name, service):
            hc = replace(FAST, grpc=GrpcHealthCheck(service))
            return Cluster(config([srv.port], hc, name=name, protocol="http2"), Store())
        whole, reviews, ratings, unknown = (cluster("whole", ""), cluster("reviews", "reviews"),
                                            cluster("ratings", "ratings"), cluster("unknown", "nope"))
        try:
            await until(lambda: not ratings.hosts[0].healthy, what="NOT_SERVING to fail the check")
            await until(lambda: not unknown.hosts[0].healthy, what="an unknown service (NOT_FOUND) to fail")
            await until(lambda: counter(reviews, "success") >= 2 and counter(whole, "success") >= 2,
                        what="SERVING to pass")
            assert reviews.hosts[0].healthy and whole.hosts[0].healthy
            assert {"", "reviews", "ratings", "nope"} <= set(srv.asked)
            srv.statuses["reviews"] = grpc_kit.NOT_SERVING
            await until(lambda: not reviews.hosts[0].healthy, what="reviews to stop serving")
            srv.statuses["reviews"] = grpc_kit.SERVING
            await until(lambda: reviews.hosts[0].healthy, what="reviews to serve again")
            # an answer that says "not serving" is a failed check, not a network failure
            assert all(counter(c, "network_failure") == 0 for c in (whole, reviews, ratings, unknown))
        finally:
            for c in (whole, reviews, ratings, unknown):
                c.close()
            srv.stop()
    run(main())


def test_grpc_check_over_tls(ca, grpc_kit):
    async def main():
        srv = grpc_kit.HealthServer(tls=ca.issue("web.test"))
        hc = replace(FAST, grpc=GrpcHealthCheck())
        c = Cluster(config([srv.port], hc, protocol="http2", tls=ClientTls(ca=str(ca.path), sni="web.test")),
                    Store())
        try:
            await until(lambda: counter(c, "success") >= 1, what="a gRPC check over TLS to pass")
            assert c.hosts[0].healthy and counter(c, "failure") == 0
        finally:
            c.close()
            srv.stop()
    run(main())


def test_grpc_check_request_and_trailers_only_answers():
    async def main():
        answer = {"status": "12"}

        def health(req):
            head = [(":status", "200"), ("content-type", "application/grpc")]
            if answer["status"] != "0":     # trailers-only: grpc-status in the head
                return head + [("grpc-status", answer["status"])], b"", None
            return head, b"\x00\x00\x00\x00\x02\x08\x01", [("grpc-status", "0")]
        srv = await H2Server(health).start()
        hc = replace(FAST, grpc=GrpcHealthCheck("reviews", authority="health.svc"))
        c = Cluster(config([srv.port], hc, protocol="http2"), Store())
        try:
            await until(lambda: not c.hosts[0].healthy, what="grpc-status 12 to fail the check")
            req = srv.requests[0]
            assert req.line == ("POST", "/grpc.health.v1.Health/Check", "health.svc", "http")
            assert req.headers["content-type"] == "application/grpc" and req.headers["te"] == "trailers"
            assert req.body == b"\x00\x00\x00\x00\x09\x0a\x07reviews"
            answer["status"] = "0"
            await until(lambda: c.hosts[0].healthy, what="SERVING with grpc-status 0 to pass")
        finally:
            c.close()
            await srv.stop()
    run(main())


def test_a_check_that_gets_no_answer_is_bounded_and_closes_its_connection():
    async def main():
        ended = []

        async def silent(reader, writer):
            ended.append(await reader.read() is not None)     # read until the checker goes away
            writer.close()
        srv = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        hc = replace(FAST, timeout=0.2, grpc=GrpcHealthCheck())
        c = Cluster(config([port], hc, protocol="http2"), Store())
        try:
            await until(lambda: not c.hosts[0].healthy, what="the silent endpoint to fail its check")
            assert counter(c, "network_failure") >= 1
            await until(lambda: len(ended) >= 1, timeout=2.0, what="the timed-out check's connection to close")
        finally:
            c.close()
            srv.close()
            await srv.wait_closed()
    run(main())


def test_an_http1_endpoint_fails_the_check_of_an_http2_cluster():
    async def main():
        srv = await HttpServer(200).start()
        c = Cluster(config([srv.port], replace(FAST, http=HttpHealthCheck("/")), protocol="http2"), Store())
        try:
            await until(lambda: not c.hosts[0].healthy, what="the HTTP/1.1 endpoint to fail an HTTP/2 check")
            assert counter(c, "network_failure") >= 1 and counter(c, "success") == 0
        finally:
            c.close()
            await srv.stop()
    run(main())


def test_grpc_health_check_config_from_yaml():
    from mosnx.runtime.config import load_config_text
    c = load_config_text("""\
clusters:
  - name: reviews
    protocol: http2
    endpoints: ["127.0.0.1:9081"]
    health_check: { grpc: { service_name: reviews.v1, authority: reviews.svc }, interval: 100ms }
  - name: whole
    protocol: http2
    endpoints: ["127.0.0.1:9082"]
    health_check: { grpc: {} }
  - name: named
    protocol: http2
    endpoints: ["127.0.0.1:9083"]
    health_check: { grpc: { service_name: "" } }
""")
    a, b, c = (cl.options["health_check"] for cl in c.clusters)
    assert a == HealthCheck(interval=0.1, grpc=GrpcHealthCheck("reviews.v1", "reviews.svc"))
    assert b.grpc == GrpcHealthCheck("", None) and b.kind == "grpc"
    assert c == b, 'service_name "" is the default: the whole server, as Envoy'



def test_grpc_check_config_errors_are_positioned():
    from mosnx.runtime.config import load_config_text
    from mosnx.runtime.diagnostics import ConfigError
    with pytest.raises(ConfigError) as e:
        load_config_text("""\
clusters:
  - name: a
    endpoints: ["127.0.0.1:9081"]
    health_check:
      grpc: { service_name: a }
  - name: b
    protocol: http2
    endpoints: ["127.0.0.1:9082"]
    health_check: {grpc: {}, tcp: {}}
""", "mosnx.yaml")
    text = str(e.value)
    assert "mosnx.yaml:5:13:" in text and "gRPC health check needs protocol: http2" in text
    assert "mosnx.yaml:9:" in text and "has both grpc: and tcp:" in text
