"""The separate SDS stream, end to end: an Envoy bootstrap with no ADS whose static TLS
listener names its certificate `default` and its client CA `ROOTCA` with an
`sds_config.api_config_source` on the `sds-grpc` cluster, a Unix socket (as Istio's
agent serves them). mosnx opens SecretDiscoveryService.StreamSecrets there, the
listener warms (no handshake) until both secrets come, then serves mutual TLS with
them; a rotated certificate is seen by the next handshake while a connection already
open keeps its first one; a secret that does not translate is NACKed by name with
error_detail and the last good one keeps serving; a lost SDS server is found again."""
from __future__ import annotations

import asyncio
import base64
import http.client
import ssl
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("envoy.service.secret.v3.sds_pb2_grpc")

from google.protobuf import json_format  # noqa: E402

from mosnx.runtime.envoy.protos import RESOURCE_TYPES, SECRET  # noqa: E402

from .conftest import HOST, free_port, wait_until  # noqa: E402
from .test_envoy_bootstrap import _get, serving  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy" / "xds"))
from pemkit import PemCA, serial_of  # noqa: E402
from sds_server import SdsServer  # noqa: E402

SDS = ('{api_config_source: {api_type: GRPC, transport_api_version: V3, '
       'grpc_services: [{envoy_grpc: {cluster_name: sds-grpc}}]}, resource_api_version: V3}')

BOOTSTRAP = """
node: {{id: "sidecar~127.0.0.1~edge.default~default.svc.cluster.local", cluster: edge.default}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - name: edge
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: [http/1.1]
            tls_certificate_sds_secret_configs:
            - {{name: default, sds_config: {sds}}}
            validation_context_sds_secret_config: {{name: ROOTCA, sds_config: {sds}}}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: "tls ok"}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: sds-grpc
    type: STATIC
    load_assignment:
      cluster_name: sds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{pipe: {{path: {sock}}}}}}}
"""


class Sds:
    """The SDS server on a loop of its own thread; pushes from the test thread."""

    def __init__(self, path: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = SdsServer(path)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def push(self, version: str, secrets) -> None:
        async def go():
            self.server.push(SECRET, version, secrets)
        self.call(go())

    def requests(self):
        return list(self.server.requests)

    def stop(self) -> None:
        self.call(self.server.stop())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def res(d: dict):
    return json_format.ParseDict(d, RESOURCE_TYPES[SECRET]())


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def cert_secret(cert: bytes, key: bytes, name: str = "default"):
    return res({"name": name, "tls_certificate": {"certificate_chain": {"inline_bytes": _b64(cert)},
                                                  "private_key": {"inline_bytes": _b64(key)}}})


def ca_secret(ca: PemCA, name: str = "ROOTCA"):
    return res({"name": name, "validation_context": {"trusted_ca": {"inline_bytes": _b64(ca.pem)}}})


def _handshake(port: int, ca: PemCA, client: tuple[Path, Path]) -> tuple[int, int]:
    """(the server certificate's serial, the status) of a new mutual-TLS connection; (0, 0) if refused."""
    ctx = ssl.create_default_context(cadata=ca.pem.decode())
    ctx.check_hostname = False
    ctx.load_cert_chain(str(client[0]), str(client[1]))
    conn = http.client.HTTPSConnection(HOST, port, timeout=10, context=ctx)
    try:
        conn.request("GET", "/", headers={"host": "edge"})
        r = conn.getresponse()
        r.read()
        assert conn.sock is not None
        return serial_of(conn.sock.getpeercert(binary_form=True)), r.status
    except OSError:
        return 0, 0
    finally:
        conn.close()


@pytest.fixture
def short_dir():
    # a Unix socket path must fit in 108 bytes: pytest's tmp_path may not
    import tempfile
    import shutil
    d = Path(tempfile.mkdtemp(prefix="mosnx-sds-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_static_tls_listener_warms_until_its_secrets_come_over_the_sds_stream(tmp_path, short_dir, workers):
    ca = PemCA()
    client = ca.issue("client", dns=("client",))
    cpath, kpath = tmp_path / "client.pem", tmp_path / "client.key"
    cpath.write_bytes(client[0])
    kpath.write_bytes(client[1])
    sock = str(short_dir / "sds.sock")
    sds = Sds(sock)
    ports = {"admin": free_port(), "listen": free_port()}
    path = tmp_path / "envoy.yaml"
    path.write_text(BOOTSTRAP.format(sds=SDS, sock=sock, **ports))
    try:
        with serving(path, ports["admin"], workers):
            # one stream asks for both names; the listener warms meanwhile
            wait_until(lambda: any(set(r.names) == {"default", "ROOTCA"} for r in sds.requests()),
                       what="the SDS stream asking for default and ROOTCA")
            assert _handshake(ports["listen"], ca, (cpath, kpath)) == (0, 0)
            first = sds.requests()[0]
            assert first.node is not None and first.node.id.startswith("sidecar~")
            cert, key = ca.issue("edge", dns=("edge",), serial=2001)
            sds.push("1", [cert_secret(cert, key), ca_secret(ca)])
            wait_until(lambda: all(_handshake(ports["listen"], ca, (cpath, kpath)) == (2001, 200)
                                   for _ in range(4)), what="the listener serving with the SDS certificate")
            acks = [r for r in sds.requests() if r.version == "1" and not r.nack]
            assert acks, sds.requests()
            # the client CA came by SDS too: a client without a certificate is refused
            ctx = ssl.create_default_context(cadata=ca.pem.decode())
            ctx.check_hostname = False
            bare = http.client.HTTPSConnection(HOST, ports["listen"], timeout=10, context=ctx)
            with pytest.raises((OSError, http.client.HTTPException)):
                bare.request("GET", "/")
                bare.getresponse().read()
            bare.close()
            held_ctx = ssl.create_default_context(cadata=ca.pem.decode())
            held_ctx.check_hostname = False
            held_ctx.load_cert_chain(str(cpath), str(kpath))
            held = http.client.HTTPSConnection(HOST, ports["listen"], timeout=10, context=held_ctx)
            held.request("GET", "/")
            assert held.getresponse().read() == b"tls ok"
            # rotation: the next handshake sees the new certificate, the open connection keeps working
            cert2, key2 = ca.issue("edge", dns=("edge",), serial=2002)
            sds.push("2", [cert_secret(cert2, key2), ca_secret(ca)])
            # (with two workers, each must have it: a few handshakes in a row all see it)
            wait_until(lambda: all(_handshake(ports["listen"], ca, (cpath, kpath)) == (2002, 200)
                                   for _ in range(4)), what="the rotated certificate")
            held.request("GET", "/")
            assert held.getresponse().read() == b"tls ok"
            assert held.sock is not None and serial_of(held.sock.getpeercert(binary_form=True)) == 2001
            held.close()
            # a secret that does not translate: NACKed by name, the last good one serves
            bad = res({"name": "default", "tls_certificate": {
                "certificate_chain": {"inline_string": "not pem"}, "private_key": {"inline_string": "nor this"}}})
            sds.push("3", [bad, ca_secret(ca)])
            wait_until(lambda: any(r.nack and "default" in r.error.message for r in sds.requests()),
                       what="the NACK of the bad secret")
            nack = next(r for r in sds.requests() if r.nack)
            assert nack.version == "2" and nack.error.code == 3         # INVALID_ARGUMENT, the last good version
            assert _handshake(ports["listen"], ca, (cpath, kpath)) == (2002, 200)
            # the SDS server goes away and comes back: asked again, served again
            sds.stop()
            cert3, key3 = ca.issue("edge", dns=("edge",), serial=2003)
            sds.server.resources.clear()
            sds.call(sds.server.start())
            sds.push("4", [cert_secret(cert3, key3), ca_secret(ca)])
            wait_until(lambda: all(_handshake(ports["listen"], ca, (cpath, kpath)) == (2003, 200)
                                   for _ in range(4)), timeout=30,
                       what="the rotated certificate after the SDS server came back")
            text = _get(ports["admin"], "/stats", f"127.0.0.1:{ports['admin']}")[2].decode()
            stats = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
            # (the server resends the refused version once, refused again)
            assert int(stats["sds.update_rejected"]) >= 1 and int(stats["sds.update_success"]) >= 3, text
            assert stats["sds_stream.connected_state"] == "1", text
    finally:
        sds.close()
