"""The separate SDS stream beside ADS (XdsControl with an Envoy bootstrap): secrets whose
sds_config names the `sds-grpc` cluster (a Unix socket) are asked for on
SecretDiscoveryService.StreamSecrets and nowhere else, the rest stay on ADS; what the
stream brings goes into the same DynamicConfig (a reload, a NACK naming the bad
secret); a source naming no known cluster falls back to ADS. On loopback and a Unix
socket in a temporary folder, every wait bounded."""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from envoy.config.listener.v3 import listener_pb2
from mosnx.proxy.xds.control import XdsControl
from mosnx.runtime.config import load_config
from mosnx.runtime.envoy.protos import CLUSTER, LISTENER, RESOURCE_TYPES, SECRET
from mosnx.runtime.envoy.secrets import stream_sources
from mosnx.runtime.stats import Store

from .ads_server import AdsServer
from .sds_server import SdsServer
from .test_ads import run

pytest.importorskip("cryptography")

CERT = b"""-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQ2Vy
-----END CERTIFICATE-----
"""
KEY = b"""-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEG
-----END PRIVATE KEY-----
"""
DOWN = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


def sds_via(cluster: str | None) -> dict:
    if cluster is None:
        return {"ads": {}, "resource_api_version": "V3"}
    return {"api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
                                  "grpc_services": [{"envoy_grpc": {"cluster_name": cluster}}]},
            "resource_api_version": "V3"}


def tls_listener(name: str, port: int, secrets: dict[str, str | None]) -> listener_pb2.Listener:
    refs = [{"name": n, "sds_config": sds_via(c)} for n, c in secrets.items()]
    return json_format.ParseDict({
        "name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"transport_socket": {"name": "tls", "typed_config": {
            "@type": DOWN, "common_tls_context": {"tls_certificate_sds_secret_configs": refs}}},
            "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": name, "cluster": "static"}}]}]}, listener_pb2.Listener())


def cert_secret(name: str, cert: bytes = CERT, key: bytes = KEY) -> Any:
    return json_format.ParseDict({"name": name, "tls_certificate": {
        "certificate_chain": {"inline_bytes": base64.b64encode(cert).decode()},
        "private_key": {"inline_bytes": base64.b64encode(key).decode()}}}, RESOURCE_TYPES[SECRET]())


def bootstrap(path: Path, ads_port: int, sock: str) -> None:
    path.write_text(json.dumps({
        "node": {"id": "n1", "cluster": "c1"},
        "dynamic_resources": {"lds_config": {"ads": {}}, "cds_config": {"ads": {}},
                              "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                                             "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]}},
        "static_resources": {"clusters": [
            {"name": "xds-grpc", "type": "STATIC", "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": ads_port}}}}]}]}},
            {"name": "static", "type": "STATIC", "load_assignment": {"cluster_name": "static", "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": 9}}}}]}]}},
            {"name": "sds-grpc", "type": "STATIC", "load_assignment": {"cluster_name": "sds-grpc", "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": sock}}}}]}]}}]}}))


@pytest.fixture
def short_dir():
    d = Path(tempfile.mkdtemp(prefix="mosnx-sds-"))      # a socket path must fit in 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_stream_sources_names_the_cluster_of_each_grpc_config_source():
    lst = tls_listener("l", 10001, {"default": "sds-grpc", "ROOTCA": "sds-grpc", "other": None})
    assert stream_sources([lst], []) == {"default": "sds-grpc", "ROOTCA": "sds-grpc"}


def test_secrets_of_the_sds_cluster_go_on_their_own_stream_and_the_rest_on_ads(tmp_path, short_dir):
    async def go() -> None:
        ads, sds = AdsServer(), SdsServer(str(short_dir / "sds.sock"))
        await ads.start()
        await sds.start()
        path = tmp_path / "envoy.json"
        bootstrap(path, ads.port, sds.unix_path)
        x = load_config(str(path)).xds
        assert x.grpc_targets == {"sds-grpc": f"unix:{sds.unix_path}", "xds-grpc": f"127.0.0.1:{ads.port}",
                                  "static": "127.0.0.1:9"}
        reloads: list[str] = []

        async def reload(why: str) -> None:
            reloads.append(why)

        control = XdsControl(str(path), x, Store(), reload, lambda: len(reloads) + 2)
        control.start()
        try:
            ads.push(CLUSTER, "1", [])
            ads.push(LISTENER, "1", [tls_listener("edge", 10443, {"default": "sds-grpc", "ads-cert": None}),
                                     tls_listener("odd", 10444, {"odd-cert": "nowhere"})])
            await sds.wait(lambda: sds.of(SECRET) and sds.of(SECRET)[-1].names == ("default",),
                           "the SDS stream asking for default")
            # ADS asks for the others only, once the SDS stream is open (unknown cluster: ADS as before)
            await ads.wait(lambda: ads.of(SECRET) and set(ads.of(SECRET)[-1].names) == {"ads-cert", "odd-cert"},
                           "ADS asking for ads-cert and odd-cert, not default")
            assert not any("default" in r.names for r in ads.of(SECRET)[1:])
            sds.push(SECRET, "s1", [cert_secret("default")])
            ads.push(SECRET, "a1", [cert_secret("ads-cert"), cert_secret("odd-cert")])
            await sds.wait(lambda: any(r.version == "s1" and not r.nack for r in sds.of(SECRET)), "the SDS ACK")
            await ads.wait(lambda: any(r.version == "a1" and not r.nack for r in ads.of(SECRET)), "the ADS ACK")
            assert set(control.dynamic.resources[SECRET]) == {"default", "ads-cert", "odd-cert"}
            assert {lc.name for lc in control.config().listeners} == {"edge", "odd"}
            assert reloads
            # a bad secret on the SDS stream: NACKed by name, the last good one kept
            bad = json_format.ParseDict({"name": "default", "tls_certificate": {
                "certificate_chain": {"inline_string": "x"}, "private_key": {"inline_string": "y"}}},
                RESOURCE_TYPES[SECRET]())
            sds.push(SECRET, "s2", [bad])
            nack = await sds.wait(lambda: next((r for r in sds.of(SECRET) if r.nack), None), "the SDS NACK")
            assert nack.version == "s1" and "default" in nack.error.message
            assert control.dynamic.resources[SECRET]["default"] == cert_secret("default")
            assert control.sds.dump()["cluster"] == "sds-grpc"
        finally:
            await control.close()
            await ads.stop()
            await sds.stop()
    run(go())
