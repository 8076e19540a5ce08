"""`protocol: tcp` listeners: bytes piped both ways to a load-balanced cluster, byte
counters, connect failures, idle timeout, half-close, SNI routing of TLS passthrough,
and the original_dst filter inside a network namespace with an iptables REDIRECT."""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from h2kit import CA, cert_common_name  # noqa: E402

from conftest import free_port, wait_until  # noqa: E402

MiB = 1024 * 1024


class TcpServer:
    """A threaded TCP server: `greeting` is sent on accept, then bytes are echoed
    (or handed to `handler(sock)`)."""

    def __init__(self, greeting: bytes = b"", handler=None, tls: ssl.SSLContext | None = None):
        self.greeting = greeting
        self.handler = handler
        self.tls = tls
        self.accepted = 0
        self.eof_seen = threading.Event()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        try:
            if self.tls is not None:
                s = self.tls.wrap_socket(s, server_side=True)
            if self.greeting:
                s.sendall(self.greeting)
            if self.handler is not None:
                return self.handler(s)
            while True:
                d = s.recv(262144)
                if not d:
                    self.eof_seen.set()
                    return
                s.sendall(d)
        except OSError:
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.lsock.close()


@pytest.fixture
def tcp_servers():
    made = []

    def make(*a, **kw):
        s = TcpServer(*a, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def _tcp_config(clusters: dict, listener: dict | None = None) -> dict:
    lst = {"name": "tcpin", "protocol": "tcp", "route": {"cluster": next(iter(clusters))}}
    lst.update(listener or {})
    return {"listeners": [lst],
            "clusters": [{"name": n, "endpoints": eps, "connect_timeout": "1s"} for n, eps in clusters.items()]}


def _recv_exact(s, n, timeout=20.0) -> bytes:
    s.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        d = s.recv(min(262144, n - len(out)))
        if not d:
            break
        out += d
    return bytes(out)


def test_bytes_flow_both_ways_with_counters(tcp_servers, mosnx):
    up = tcp_servers()
    proxy = mosnx(config=_tcp_config({"backend": [up.address]}))
    payload = os.urandom(8 * MiB)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as s:
        got = bytearray()

        def reader():
            got.extend(_recv_exact(s, len(payload), timeout=60))
        t = threading.Thread(target=reader)
        t.start()
        s.sendall(payload)
        t.join(60)
    assert bytes(got) == payload
    wait_until(lambda: proxy.stat("tcp.tcpin.downstream_cx_tx_bytes_total") >= len(payload), what="tx counter")
    assert proxy.stat("tcp.tcpin.downstream_cx_rx_bytes_total") == len(payload)
    assert proxy.stat("cluster.backend.upstream_cx_total") >= 1


def test_connections_are_balanced_across_endpoints(tcp_servers, mosnx):
    a = tcp_servers(greeting=b"A")
    b = tcp_servers(greeting=b"B")
    proxy = mosnx(config=_tcp_config({"backend": [a.address, b.address]}))
    seen = []
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            seen.append(_recv_exact(s, 1))
    assert sorted(seen) == [b"A", b"A", b"B", b"B"]


def test_refused_endpoint_closes_the_client(mosnx):
    proxy = mosnx(config=_tcp_config({"backend": [f"127.0.0.1:{free_port()}"]}))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.settimeout(10)
        assert s.recv(10) == b""
    proxy.wait_stat("tcp.tcpin.upstream_cx_connect_fail", 1)
    assert proxy.stat("cluster.backend.upstream_cx_connect_fail") >= 1


def test_idle_timeout_closes_quiet_connections(tcp_servers, mosnx):
    up = tcp_servers()
    proxy = mosnx(config=_tcp_config({"backend": [up.address]}, {"tcp": {"idle_timeout": "500ms"}}))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"ping")
        assert _recv_exact(s, 4) == b"ping"
        t0 = time.monotonic()
        s.settimeout(10)
        assert s.recv(10) == b""
        assert time.monotonic() - t0 < 8
    proxy.wait_stat("tcp.tcpin.idle_timeout", 1)


def test_half_close_is_passed_on(tcp_servers, mosnx):
    def handler(s):
        data = bytearray()
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.sendall(b"got %d" % len(data))
    up = tcp_servers(handler=handler)
    proxy = mosnx(config=_tcp_config({"backend": [up.address]}))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"x" * 1000)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        reply = b""
        while True:
            d = s.recv(100)
            if not d:
                break
            reply += d
    assert reply == b"got 1000"


def test_sni_routes_tls_passthrough(tcp_servers, mosnx, tmp_path):
    ca = CA(tmp_path)
    a = tcp_servers(tls=ca.server_context(ca.issue("a.test"), alpn=("http/1.1",)))
    b = tcp_servers(tls=ca.server_context(ca.issue("b.test", dns=("b.test", "x.b.test")), alpn=("http/1.1",)))
    d = tcp_servers(tls=ca.server_context(ca.issue("default.test"), alpn=("http/1.1",)))
    cfg = _tcp_config({"fallback": [d.address], "a": [a.address], "b": [b.address]},
                      {"tcp": {"sni_routes": [{"server_names": ["a.test"], "cluster": "a"},
                                              {"server_names": ["*.b.test", "b.test"], "cluster": "b"}]}})
    proxy = mosnx(config=cfg)
    ctx = ca.client_context(alpn=("http/1.1",))
    ctx.check_hostname = False

    def cn(name):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                s.sendall(b"hello")
                assert _recv_exact(s, 5) == b"hello"
                return cert_common_name(s)
    assert cn("a.test") == "a.test"            # the upstream's own certificate: not terminated
    assert cn("x.b.test") == "b.test"
    assert cn("other.test") == "default.test"
    assert proxy.stat("tcp.tcpin.sni_routed") == 2


def test_sni_routes_leave_non_tls_to_the_default(tcp_servers, mosnx):
    up = tcp_servers(greeting=b"")
    cfg = _tcp_config({"fallback": [up.address]},
                      {"tcp": {"sni_routes": [{"server_names": ["a.test"], "cluster": "fallback"}],
                               "client_hello_timeout": "300ms"}})
    proxy = mosnx(config=cfg)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"plain bytes")
        assert _recv_exact(s, 11) == b"plain bytes"


_NETNS_SCRIPT = textwrap.dedent('''
    import json, os, socket, subprocess, sys, threading, time, yaml
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    def serve(tag):
        ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0)); ls.listen(8)
        def run():
            while True:
                s, _ = ls.accept(); s.sendall(tag); s.close()
        threading.Thread(target=run, daemon=True).start()
        return ls.getsockname()[1]
    target = serve(b"original")
    fallback = serve(b"fallback")
    port, admin = 15001, 15002
    cfg = {"admin": {"address": f"127.0.0.1:{admin}"},
           "listeners": [{"name": "tproxy", "address": f"127.0.0.1:{port}", "protocol": "tcp",
                          "route": {"cluster": "fallback"}, "tcp": {"original_dst": True}}],
           "clusters": [{"name": "fallback", "endpoints": [f"127.0.0.1:{fallback}"]}]}
    path = os.path.join(sys.argv[1], "netns.yaml")
    open(path, "w").write(yaml.safe_dump(cfg))
    # only connections from 127.0.0.5 are intercepted, so the proxy's own connect is not
    subprocess.run(["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-s", "127.0.0.5",
                    "-j", "REDIRECT", "--to-ports", str(port)], check=True)
    p = subprocess.Popen([sys.executable, "-m", "mosnx", "run", "-c", path, "--workers", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
            except OSError:
                time.sleep(0.05)
        def via(dst_port, src):
            s = socket.socket(); s.settimeout(10); s.bind((src, 0))
            s.connect(("127.0.0.1", dst_port))
            data = s.recv(100); s.close(); return data.decode()
        print(json.dumps({"redirected": via(target, "127.0.0.5"), "direct": via(port, "127.0.0.1")}))
    finally:
        p.terminate(); p.wait(20)
''')


def _netns_unavailable() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    if shutil.which("iptables") is None:
        return "iptables is not installed"
    r = subprocess.run(["unshare", "-n", "iptables", "-t", "nat", "-L", "OUTPUT"], capture_output=True, timeout=20)
    if r.returncode != 0:
        return "cannot make a network namespace with iptables NAT here: " + r.stderr.decode(errors="replace").strip()
    return None


def test_original_dst_in_a_network_namespace(tmp_path):
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", _NETNS_SCRIPT, str(tmp_path)],
                       capture_output=True, timeout=120, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"redirected": "original", "direct": "fallback"}
