"""One Envoy listener, several filter chains, each connection served by the chain its
first bytes and addresses match: TLS chains chosen by SNI (two names, two clusters,
two certificates; a third terminates TLS before a tcp_proxy), a plaintext HTTP chain chosen by the http_inspector, a tcp_proxy
chain for one source address; a connection no chain takes is closed and counted,
and a client that says nothing meets listener_filters_timeout: closed, or, with
continue_on_listener_filters_timeout, served by the default chain."""
from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import free_port, wait_until  # noqa: E402
from h2kit import CA, H2Client, cert_common_name  # noqa: E402
from test_envoy_bootstrap import serving  # noqa: E402
from test_tcp_proxy import TcpServer, tcp_servers  # noqa: E402,F401  (a fixture)

pytest.importorskip("cryptography")

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TCP = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


def _hcm(cluster: str) -> dict:
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM, "stat_prefix": cluster,
        "route_config": {"name": cluster, "virtual_hosts": [
            {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}


def _tls(cert: tuple[str, str]) -> dict:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": TLS, "common_tls_context": {
            "alpn_protocols": ["http/1.1"],
            "tls_certificates": [{"certificate_chain": {"filename": cert[0]}, "private_key": {"filename": cert[1]}}]}}}


def _cluster(name: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def _bootstrap(admin: int, listen: int, a_cert, b_cert, db_cert, ports: dict[str, int]) -> dict:
    chains = [
        {"name": "tls-db", "filter_chain_match": {"server_names": ["db.test"], "transport_protocol": "tls"},
         "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
             "@type": TCP, "stat_prefix": "db", "cluster": "echo"}}], "transport_socket": _tls(db_cert)},
        {"name": "tls-a", "filter_chain_match": {"server_names": ["a.test"], "transport_protocol": "tls"},
         "filters": [_hcm("a")], "transport_socket": _tls(a_cert)},
        {"name": "tls-b", "filter_chain_match": {"server_names": ["*.b.test"], "transport_protocol": "tls"},
         "filters": [_hcm("b")], "transport_socket": _tls(b_cert)},
        {"name": "plain-http", "filter_chain_match": {"transport_protocol": "raw_buffer",
                                                      "application_protocols": ["http/1.1", "h2c"]},
         "filters": [_hcm("web")]},
        {"name": "tcp-from-127.0.0.2", "filter_chain_match": {
            "transport_protocol": "raw_buffer",
            "source_prefix_ranges": [{"address_prefix": "127.0.0.2", "prefix_len": 32}]},
         "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
             "@type": TCP, "stat_prefix": "echo", "cluster": "echo"}}]},
    ]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "edge",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "listener_filters": [
                    {"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}},
                    {"name": "envoy.filters.listener.http_inspector", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}],
                "listener_filters_timeout": "1s",
                "filter_chains": chains}],
            "clusters": [_cluster(n, p) for n, p in ports.items()]}}


def _lazy(listen: int) -> dict:
    """A listener that does not wait long for a client to speak: a server-first protocol
    (the client waits for a greeting) goes to the default chain once the inspectors
    give up, as Istio sets it (continue_on_listener_filters_timeout)."""
    return {
        "name": "lazy",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
        "listener_filters": [{"name": "envoy.filters.listener.http_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}],
        "listener_filters_timeout": "0.3s",
        "continue_on_listener_filters_timeout": True,
        "filter_chains": [{"name": "http", "filter_chain_match": {"application_protocols": ["http/1.1"]},
                           "filters": [_hcm("web")]}],
        "default_filter_chain": {"name": "greeter", "filters": [{
            "name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": TCP, "stat_prefix": "greeter", "cluster": "greeter"}}]}}


@pytest.fixture(scope="module")
def edge(tmp_path_factory, module_upstream):
    tmp = tmp_path_factory.mktemp("chains")
    ca = CA(tmp)
    a_cert = ca.issue("a.test", dns=("a.test",))
    b_cert = ca.issue("api.b.test", dns=("*.b.test",))
    db_cert = ca.issue("db.test", dns=("db.test",))
    ups = {n: module_upstream() for n in ("a", "b", "web")}
    echo, greeter = TcpServer(), TcpServer(greeting=b"220 hello\r\n")
    ports = {"admin": free_port(), "listen": free_port(), "lazy": free_port()}
    path = tmp / "envoy.json"
    doc = _bootstrap(ports["admin"], ports["listen"], a_cert, b_cert, db_cert,
                     {**{n: u.port for n, u in ups.items()}, "echo": echo.port, "greeter": greeter.port})
    doc["static_resources"]["listeners"].append(_lazy(ports["lazy"]))
    path.write_text(json.dumps(doc))
    with serving(path, ports["admin"]):
        yield ports, ups, ca
    echo.stop()
    greeter.stop()


def _stats(admin: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?format=json", timeout=10) as r:
        return {s["name"]: s["value"] for s in json.loads(r.read())["stats"] if "name" in s}


def _https(port: int, ca: CA, name: str) -> tuple[int, str, bytes]:
    ctx = ssl.create_default_context(cafile=str(ca.path))
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            cn = cert_common_name(s)
            s.sendall(f"GET /hello HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), cn, body


def _closed(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Whether the proxy closed `sock` (EOF or reset) within `timeout`, sending nothing."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_sni_picks_the_tls_chain_its_certificate_and_its_cluster(edge):
    ports, ups, ca = edge
    status, cn, body = _https(ports["listen"], ca, "a.test")
    assert (status, cn, body) == (200, "a.test", b"ok")
    status, cn, body = _https(ports["listen"], ca, "api.b.test")
    assert (status, cn, body) == (200, "api.b.test", b"ok")
    assert [r.target for r in ups["a"].requests] == ["/hello"]
    assert [r.target for r in ups["b"].requests] == ["/hello"]
    # a name no chain serves: no chain takes the connection, so no handshake
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _https(ports["listen"], ca, "c.test")


def test_tls_terminated_before_tcp_proxy(edge):
    ports, _, ca = edge
    ctx = ssl.create_default_context(cafile=str(ca.path))
    with socket.create_connection(("127.0.0.1", ports["listen"]), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="db.test") as s:
            assert cert_common_name(s) == "db.test"
            for line in (b"select 1;", b"select 2;"):     # the echo server answers in plaintext behind
                s.sendall(line)
                got = b""
                while len(got) < len(line):
                    got += s.recv(64)
                assert got == line


def test_plaintext_http_goes_to_the_http_chain(edge):
    ports, ups, _ = edge
    c = http.client.HTTPConnection("127.0.0.1", ports["listen"], timeout=10)
    try:
        for path in ("/one", "/two"):             # one connection, two requests
            c.request("GET", path, headers={"Host": "web.test"})
            r = c.getresponse()
            assert (r.status, r.read()) == (200, b"ok")
    finally:
        c.close()
    assert [r.target for r in ups["web"].requests][-2:] == ["/one", "/two"]


def test_h2c_prior_knowledge_goes_to_the_http_chain(edge):
    ports, ups, _ = edge
    with H2Client(ports["listen"]) as c:          # the HTTP/2 preface is what the inspector sees
        r = c.request("GET", "/h2c", authority="web.test")
    assert (r.status, r.body) == (200, b"ok")
    assert ups["web"].requests[-1].target == "/h2c"


def test_tcp_chain_by_source_address_and_no_match_closes(edge):
    ports, _, _ = edge
    with socket.create_connection(("127.0.0.1", ports["listen"]), timeout=10, source_address=("127.0.0.2", 0)) as s:
        s.sendall(b"\x00\x01 not http, not tls")
        got = b""
        while len(got) < 20:
            got += s.recv(64)
        assert got == b"\x00\x01 not http, not tls"
    before = _stats(ports["admin"]).get("listener.127.0.0.1_%d.no_filter_chain_match" % ports["listen"], 0)
    # the same bytes from 127.0.0.1: no chain takes them
    with socket.create_connection(("127.0.0.1", ports["listen"]), timeout=10) as s:
        s.sendall(b"\x00\x01 not http, not tls")
        assert _closed(s)
    name = "listener.127.0.0.1_%d.no_filter_chain_match" % ports["listen"]
    wait_until(lambda: _stats(ports["admin"]).get(name, 0) >= before + 1, what=name)


def test_a_silent_client_meets_listener_filters_timeout(edge):
    ports, _, _ = edge
    name = "listener.127.0.0.1_%d.downstream_pre_cx_timeout" % ports["listen"]
    before = _stats(ports["admin"]).get(name, 0)
    with socket.create_connection(("127.0.0.1", ports["listen"]), timeout=10) as s:
        assert _closed(s)                         # after about 1 s, well within 10
    wait_until(lambda: _stats(ports["admin"]).get(name, 0) >= before + 1, what=name)


def test_continue_on_timeout_serves_a_server_first_protocol_by_the_default_chain(edge):
    ports, ups, _ = edge
    with socket.create_connection(("127.0.0.1", ports["lazy"]), timeout=10) as s:
        got = b""
        while not got.endswith(b"\r\n"):
            got += s.recv(64)                     # said nothing: the greeting comes after 0.3 s
        assert got == b"220 hello\r\n"
        s.sendall(b"HELO x\r\n")                 # the greeter echoes
        got = b""
        while len(got) < 8:
            got += s.recv(64)
        assert got == b"HELO x\r\n"
    # an HTTP client on the same listener is told apart by its request line
    c = http.client.HTTPConnection("127.0.0.1", ports["lazy"], timeout=10)
    try:
        c.request("GET", "/lazy", headers={"Host": "web.test"})
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"ok")
    finally:
        c.close()
    assert ups["web"].requests[-1].target == "/lazy"


def test_chains_from_mosnx_yaml(upstream, mosnx, tcp_servers):
    """The same model from mosnx.yaml: an HTTP chain for what the http_inspector calls
    HTTP, a tcp default chain for the rest; each chain's stack has its own stats."""
    web, echo = upstream(), tcp_servers()
    proxy = mosnx(config={
        "listeners": [{"name": "edge", "listener_filters": ["http_inspector"], "listener_filters_timeout": "2s",
                       "filter_chains": [{"name": "web", "match": {"application_protocols": ["http/1.1"]},
                                          "route": {"cluster": "web"}}],
                       "default_filter_chain": {"name": "raw", "protocol": "tcp", "route": {"cluster": "echo"}}}],
        "clusters": [{"name": "web", "endpoints": [web.address]}, {"name": "echo", "endpoints": [echo.address]}]})
    accepted = f"listener.127.0.0.1_{proxy.port}.downstream_cx_total"
    before = proxy.stat(accepted)                # the fixture's readiness probe is one
    with proxy.connect() as c:
        r = c.request("GET", "/y", headers=[("Host", "web.test")])
        assert (r.status, r.body) == (200, b"ok")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"\x05\x01\x00")               # SOCKS-ish bytes: not HTTP
        got = b""
        while len(got) < 3:
            got += s.recv(16)
        assert got == b"\x05\x01\x00"
    assert proxy.wait_stat("http.edge/web.downstream_rq_total", 1) == 1
    assert proxy.wait_stat("tcp.edge/raw.downstream_cx_total", 1) == 1
    assert proxy.stat(accepted) == before + 2


def test_the_admin_lists_the_listener_not_its_chains(edge):
    ports, _, _ = edge
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['admin']}/listeners?format=json", timeout=10) as r:
        names = [s["name"] for s in json.loads(r.read())["listener_statuses"]]
    assert names and not [n for n in names if "/" in n], names
