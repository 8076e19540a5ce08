"""The ADS client against go-control-plane itself (xds-fileserver), when that program is built.

xds-fileserver serves the resources of one JSON/YAML file through go-control-plane's
server and snapshot cache; all protocol logic on the other side is go-control-plane's.
With -v it logs every request (REQ, ACK/REQ, NACK with the client's error_detail) and
response, which is what these tests read. Skipped when the program is absent.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any, Callable, Coroutine

import pytest
from google.protobuf.message import Message

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from mosnx.proxy.xds import CDS, EDS, LDS, RDS, AdsClient, Backoff, Rejection, make_node
from mosnx.runtime.stats import Store

BIN = Path(os.environ.get("MOSNX_XDS_HOME", "/var/cache/mosnx-xds")) / "bin" / "xds-fileserver"
pytestmark = pytest.mark.skipif(not BIN.exists(), reason=f"go-control-plane's xds-fileserver is not built ({BIN})")

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def listener(name: str, port: int, route: str) -> dict[str, Any]:
    return {"@type": LDS, "name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": {"@type": HCM, "stat_prefix": name,
                                                             "rds": {"route_config_name": route,
                                                                     "config_source": {"ads": {}}}}}]}]}


def route(name: str, cluster: str) -> dict[str, Any]:
    return {"@type": RDS, "name": name, "virtual_hosts": [
        {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]}


def cluster(name: str) -> dict[str, Any]:
    return {"@type": CDS, "name": name, "type": "EDS", "connect_timeout": "1s",
            "eds_cluster_config": {"eds_config": {"ads": {}}}}


def cla(name: str, port: int) -> dict[str, Any]:
    return {"@type": EDS, "cluster_name": name, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}


def static_cluster(name: str) -> dict[str, Any]:
    return {"@type": CDS, "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name}}


def world(version: str, clusters: list[str], extra: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    res = [listener("l0", 10300, "r0"), route("r0", clusters[0])]
    res += [cluster(c) for c in clusters] + [cla(c, 18380 + i) for i, c in enumerate(clusters)]
    return {"version": version, "resources": res + list(extra)}


class FileServer:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "resources.json"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def write(self, doc: dict[str, Any]) -> None:
        tmp = self.tmp / "next.json"
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.config)        # whole, as the server must see it

    async def start(self) -> None:
        log = self.tmp / f"server-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen([str(BIN), "-addr", f"127.0.0.1:{self.port}", "-config", str(self.config),
                                          "-poll", "100ms", "-v=true"], stdout=out, stderr=subprocess.STDOUT)
        for _ in range(500):
            if "xDS server on" in self.log():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"xds-fileserver did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None

    def log(self, i: int = -1) -> str:
        return self.logs[i].read_text(errors="replace") if self.logs else ""

    def lines(self, pattern: str, i: int = -1) -> list[str]:
        return [l for l in self.log(i).splitlines() if re.search(pattern, l)]

    async def wait(self, pred: Callable[[], Any], what: str, timeout: float = 8.0) -> Any:
        end = asyncio.get_running_loop().time() + timeout
        while not (got := pred()):
            if asyncio.get_running_loop().time() > end:
                raise AssertionError(f"timed out waiting for {what}; server log:\n{self.log()[-4000:]}")
            await asyncio.sleep(0.02)
        return got


class Sink:
    """Subscribes as the translator will: RDS names from the listeners' HTTP connection
    managers, EDS names from the EDS clusters; rejects the clusters named in `bad`."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, Message]] = {LDS: {}, CDS: {}, RDS: {}, EDS: {}}
        self.versions: dict[str, str] = {}
        self.removed: list[tuple[str, set[str]]] = []
        self.bad: set[str] = set()
        self.client: AdsClient | None = None

    def subscriptions(self, type_url: str) -> set[str] | None:
        if type_url in (LDS, CDS):
            return None
        if type_url == RDS:
            names = set()
            for l in self.held[LDS].values():
                assert isinstance(l, listener_pb2.Listener)
                for chain in l.filter_chains:
                    for f in chain.filters:
                        h = hcm_pb2.HttpConnectionManager()
                        if f.typed_config.Unpack(h) and h.HasField("rds"):
                            names.add(h.rds.route_config_name)
            return names
        if type_url == EDS:
            return {n for n, c in self.held[CDS].items()
                    if isinstance(c, cluster_pb2.Cluster) and c.type == cluster_pb2.Cluster.EDS}
        return set()

    def apply(self, type_url: str, version: str, resources: dict[str, Message],
              removed: set[str]) -> list[Rejection]:
        held = self.held[type_url]
        for n in removed:
            held.pop(n, None)
        if removed:
            self.removed.append((type_url, set(removed)))
        held.update({n: m for n, m in resources.items() if n not in self.bad})
        self.versions[type_url] = version
        # as a translator does: a route or endpoint set no listener or cluster names goes with it
        for named in (RDS, EDS):
            wanted = self.subscriptions(named) or set()
            for n in set(self.held[named]) - wanted:
                del self.held[named][n]
        if self.client is not None and type_url in (LDS, CDS):
            self.client.resubscribe(RDS if type_url == LDS else EDS)
        return [Rejection(n, "refused by the test") for n in sorted(resources) if n in self.bad]


def run(test: Callable[[FileServer, AdsClient, Sink], Coroutine[Any, Any, None]], tmp: Path, mode: str,
        doc: dict[str, Any]) -> None:
    async def main() -> None:
        server = FileServer(tmp)
        server.write(doc)
        await server.start()
        sink = Sink()
        client = AdsClient(f"127.0.0.1:{server.port}", make_node("mosnx-test", "test"), sink, Store(), mode=mode,
                           backoff=Backoff(0.05, 0.3), nack_backoff=Backoff(0.2, 0.4))  # type: ignore[arg-type]
        sink.client = client
        client.start()
        try:
            await test(server, client, sink)
        finally:
            await client.close()
            server.stop()
    asyncio.run(asyncio.wait_for(main(), 40))


def holds_all(sink: Sink, clusters: list[str]) -> bool:
    return (set(sink.held[LDS]) == {"l0"} and set(sink.held[RDS]) == {"r0"}
            and set(sink.held[CDS]) == set(clusters) and set(sink.held[EDS]) == set(clusters))


def test_sotw_ack_and_update(tmp_path: Path) -> None:
    async def body(server: FileServer, client: AdsClient, sink: Sink) -> None:
        await server.wait(lambda: holds_all(sink, ["a", "b"]), "every resource of v1")
        for t in (LDS, CDS, RDS, EDS):
            await server.wait(lambda: server.lines(f'ACK/REQ type={re.escape(t)} version_info="v1"'), f"ACK {t}")
        assert not server.lines("NACK")
        server.write(world("v2", ["a", "b", "c"]))
        await server.wait(lambda: holds_all(sink, ["a", "b", "c"]), "v2 with cluster c")
        await server.wait(lambda: server.lines(f'ACK/REQ type={re.escape(EDS)} version_info="v2" .*names=\\[a b c\\]'),
                          "EDS ACK of v2 naming c")
        assert client.connected and client.streams == 1
    run(body, tmp_path, "sotw", world("v1", ["a", "b"]))


def test_sotw_nack_then_no_storm_then_recovery(tmp_path: Path) -> None:
    async def body(server: FileServer, client: AdsClient, sink: Sink) -> None:
        await server.wait(lambda: holds_all(sink, ["a", "b"]), "v1")
        # static clusters: the EDS subscription stays as it is (go-control-plane 0.13's ADS
        # server can drop the answer to a subscription change that crosses a pending response)
        sink.bad = {"bad"}
        server.write(world("v2", ["a", "b"], (static_cluster("good"), static_cluster("bad"))))
        nack = (await server.wait(lambda: server.lines("NACK"), "a NACK"))[0]
        assert f"type={CDS}" in nack and 'version_info="v1"' in nack and "bad: refused by the test" in nack
        await server.wait(lambda: "good" in sink.held[CDS], "the good cluster of v2 applied")
        await asyncio.sleep(1.0)        # go-control-plane resends v2 after every NACK
        nacks = server.lines("NACK")
        assert 1 <= len(nacks) <= 12, f"{len(nacks)} NACKs in about a second"
        sink.bad = set()
        server.write(world("v3", ["a", "b"], (static_cluster("good"),)))
        await server.wait(lambda: server.lines(f'ACK/REQ type={re.escape(CDS)} version_info="v3"'), "ACK of v3")
        await server.wait(lambda: set(sink.held[CDS]) == {"a", "b", "good"}, "v3")
        assert "bad" not in client.types[CDS].held and client.types[CDS].last_error == ""
    run(body, tmp_path, "sotw", world("v1", ["a", "b"]))


def test_delta_removal_unsubscribe_and_restart(tmp_path: Path) -> None:
    async def body(server: FileServer, client: AdsClient, sink: Sink) -> None:
        await server.wait(lambda: holds_all(sink, ["a", "b"]), "v1")
        assert server.lines(r"\[delta 1\] REQ type=" + re.escape(EDS) + r" .*subscribe=\[a b\]")
        server.write(world("v2", ["a"]))
        await server.wait(lambda: (CDS, {"b"}) in sink.removed, "cluster b removed")
        await server.wait(lambda: server.lines(r"REQ type=" + re.escape(EDS) + r" .*unsubscribe=\[b\]"), "unsubscribe b")
        assert holds_all(sink, ["a"])
        sink.bad = {"x"}
        server.write(world("v3", ["a", "x"]))
        await server.wait(lambda: server.lines(r"\[delta 1\] REQ type=" + re.escape(CDS) + r' nonce="\d+".*err=.*x: refused'),
                          "delta NACK of x")
        sink.bad = set()
        server.write(world("v2", ["a"]))
        await server.wait(lambda: (CDS, {"x"}) in sink.removed or "x" not in client.types[CDS].held, "x gone")
        # the control plane restarts; the client says what it has, so nothing is resent
        server.stop()
        await server.wait(lambda: not client.connected, "disconnected")
        await server.start()
        await server.wait(lambda: server.lines(r"REQ type=" + re.escape(RDS)), "requests on the new stream")
        await asyncio.sleep(0.5)
        resent = [l for l in server.lines(r"RESP type=") if "resources=0" not in l]
        assert not resent, resent
        assert holds_all(sink, ["a"]) and client.connected and client.streams >= 2
    run(body, tmp_path, "delta", world("v1", ["a", "b"]))
