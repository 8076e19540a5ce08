"""The ADS client against the in-repo server (ads_server.py), on loopback, every wait bounded."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Callable, Coroutine

import pytest
import uvloop
from google.protobuf.message import Message

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from mosnx.proxy.xds import CDS, EDS, LDS, RDS, SDS, AdsClient, Backoff, Rejection, make_node
from mosnx.proxy.xds.ads import version_hash
from mosnx.runtime.stats import Store

from .ads_server import AdsServer, pack


def run(coro: Coroutine[Any, Any, None], *, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as r:
        r.run(asyncio.wait_for(coro, 25))


def cluster(name: str, port: int = 0) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name)
    c.connect_timeout.FromMilliseconds(250 + port)
    return c


def listener(name: str, route: str = "") -> listener_pb2.Listener:
    l = listener_pb2.Listener(name=name)
    l.address.socket_address.address = "127.0.0.1"
    l.address.socket_address.port_value = 10000
    if route:
        l.stat_prefix = route           # a stand-in for an HCM naming an RDS route
    return l


def route(name: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name)


def cla(name: str) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=name)


class Sink:
    """What the supervisor's translator will be: holds resources, rejects the names in `bad`."""

    def __init__(self) -> None:
        self.subs: dict[str, set[str] | None] = {LDS: None, CDS: None, RDS: set(), EDS: set(), SDS: set()}
        self.held: dict[str, dict[str, Message]] = {t: {} for t in self.subs}
        self.applied: list[tuple[str, str, dict[str, Message], set[str]]] = []
        self.bad: set[str] = set()
        self.client: AdsClient | None = None
        self.raise_on: str | None = None

    def subscriptions(self, type_url: str) -> set[str] | None:
        s = self.subs.get(type_url, set())
        return None if s is None else set(s)

    def apply(self, type_url: str, version: str, resources: dict[str, Message],
              removed: set[str]) -> list[Rejection]:
        if self.raise_on == type_url:
            raise RuntimeError("translator bug")
        self.applied.append((type_url, version, dict(resources), set(removed)))
        held = self.held[type_url]
        for n in removed:
            held.pop(n, None)
        rejected = [Rejection(n, "port 0 is not allowed") for n in sorted(resources) if n in self.bad]
        for n, m in resources.items():
            if n not in self.bad:
                held[n] = m
        if type_url == LDS and self.client is not None:
            # a listener names its RDS route: the route subscription follows the listeners
            names = {l.stat_prefix for l in held.values() if isinstance(l, listener_pb2.Listener) and l.stat_prefix}
            if names != self.subs[RDS]:
                self.subs[RDS] = names
                self.client.resubscribe(RDS)
        return rejected


@contextlib.asynccontextmanager
async def rig(mode: str = "sotw", **kw: Any) -> AsyncIterator[tuple[AdsServer, AdsClient, Sink, Store]]:
    server = AdsServer()
    await server.start()
    sink, stats = Sink(), Store()
    kw.setdefault("backoff", Backoff(0.05, 0.2))
    kw.setdefault("nack_backoff", Backoff(0.2, 0.4))
    client = AdsClient(server.target, make_node("mosnx~10.0.0.1~a.default~cluster.local", "mosnx-test",
                                                {"ISTIO_VERSION": "1.24", "labels": {"app": "a"}}),
                       sink, stats, mode=mode, **kw)  # type: ignore[arg-type]
    sink.client = client
    client.start()
    try:
        yield server, client, sink, stats
    finally:
        await client.close()
        await server.stop()


def answers(server: AdsServer, type_url: str, **kw: Any) -> list[Any]:
    return [r for r in server.of(type_url, **kw) if r.nonce]


def test_ack_echoes_version_and_nonce() -> None:
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            assert not await client.initial_fetch(0.2)   # nothing to fetch yet
            server.push(CDS, "v1", [cluster("c1"), cluster("c2")])
            assert not await client.initial_fetch(0.2)   # listeners still missing
            server.push(LDS, "7", [listener("l1")])
            assert await client.initial_fetch(5)
            ack = await server.wait(lambda: [r for r in server.of(CDS) if r.version == "v1"], "CDS ACK")
            first = server.of(CDS)[0]
            assert (first.version, first.nonce, first.names, first.error) == ("", "", (), None)
            resp = [r for r in server.responses if r.type_url == CDS][0]
            assert ack[0].nonce == resp.nonce and ack[0].error is None
            await server.wait(lambda: [r for r in server.of(LDS) if r.version == "7"], "LDS ACK")
            assert set(sink.held[CDS]) == {"c1", "c2"} and set(sink.held[LDS]) == {"l1"}
            assert isinstance(sink.held[CDS]["c1"], cluster_pb2.Cluster)
            # first requests in ADS order: clusters before listeners
            order = [r.type_url for r in server.requests if not r.nonce]
            assert order.index(CDS) < order.index(LDS)
            # named types with nothing named ask for nothing
            assert not server.of(RDS) and not server.of(EDS) and not server.of(SDS)
            assert stats.gauges["control_plane.connected_state"].value == 1
            assert stats.counters["cluster_manager.cds.update_success"].value == 1
            assert stats.counters["listener_manager.lds.update_success"].value == 1
            assert stats.counters["cluster_manager.cds.update_rejected"].value == 0
            assert stats.gauges["cluster_manager.cds.version"].value == version_hash("v1")
            assert stats.gauges["cluster_manager.cds.update_time"].value > 0
            d = client.dump()
            assert d["connected"] and d["types"][CDS] == {"version": "v1", "nonce": resp.nonce, "resources": 2,
                                                         "last_error": ""}
    run(main())


def test_ack_on_uvloop() -> None:
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            server.push(CDS, "v1", [cluster("c1")])
            await server.wait(lambda: [r for r in server.of(CDS) if r.version == "v1"], "CDS ACK")
            assert set(sink.held[CDS]) == {"c1"}
    run(main(), loop_factory=uvloop.new_event_loop)


def test_nack_names_the_bad_resource_applies_the_good_and_keeps_the_last_version() -> None:
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            server.push(CDS, "v1", [cluster("c1")])
            await server.wait(lambda: [r for r in server.of(CDS) if r.version == "v1"], "ACK of v1")
            sink.bad = {"c3"}
            server.push(CDS, "v2", [cluster("c1"), cluster("c2"), cluster("c3")])
            nack = (await server.wait(lambda: [r for r in server.of(CDS) if r.nack], "NACK"))[0]
            assert nack.version == "v1"             # the last version accepted, not the refused one
            assert nack.error.code == 3
            assert "c3: port 0 is not allowed" in nack.error.message and "v2" in nack.error.message
            assert "c2" not in nack.error.message
            v2 = [r for r in server.responses if r.type_url == CDS and r.version == "v2"][0]
            assert nack.nonce == v2.nonce
            assert set(sink.held[CDS]) == {"c1", "c2"}  # the good ones of v2 are applied
            assert stats.counters["cluster_manager.cds.update_rejected"].value >= 1
            assert stats.gauges["cluster_manager.cds.version"].value == version_hash("v1")
            assert client.types[CDS].version == "v1" and "c3" in client.types[CDS].last_error
    run(main())


def test_no_request_storm_after_nack_and_a_fixed_version_is_taken() -> None:
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            sink.bad = {"bad"}
            server.push(CDS, "v1", [cluster("ok"), cluster("bad")])
            await server.wait(lambda: [r for r in server.of(CDS) if r.nack], "NACK")
            # the server resends v1 on every NACK; the client answers each resend once, held back
            await asyncio.sleep(1.0)
            reqs = answers(server, CDS)
            sent = [r for r in server.responses if r.type_url == CDS]
            assert 2 <= len(reqs) <= 12, f"{len(reqs)} requests in a second after a NACK"
            assert len(sent) <= len(reqs) + 1
            nonces = [r.nonce for r in reqs]
            assert len(nonces) == len(set(nonces))  # each response answered once
            assert {r.nonce for r in sent} - set(nonces) <= {sent[-1].nonce}  # only the newest may be held
            assert stats.counters["control_plane.rate_limit_enforced"].value >= 1
            sink.bad = set()
            server.push(CDS, "v2", [cluster("ok"), cluster("bad", 1)])
            await server.wait(lambda: [r for r in server.of(CDS) if r.version == "v2" and not r.nack],
                              "ACK of the fixed version")
            assert set(sink.held[CDS]) == {"ok", "bad"} and client.types[CDS].last_error == ""
    run(main())


def test_a_state_of_the_world_resend_parses_only_what_changed() -> None:
    """Every assignment comes again on each change; the unchanged ones reach the sink
    as the messages it was given before, and only the changed one is parsed."""
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            names = [f"c{i}" for i in range(40)]
            sink.subs[EDS] = set(names)
            server.push(EDS, "1", [endpoint_pb2.ClusterLoadAssignment(cluster_name=n) for n in names])
            await server.wait(lambda: [r for r in server.of(EDS) if r.version == "1"], "EDS ACK 1")
            st = client.types[EDS]
            assert st.parsed == 40
            first = sink.applied[-1][2]
            changed = endpoint_pb2.ClusterLoadAssignment(cluster_name="c5")
            changed.endpoints.add().priority = 1
            server.push(EDS, "2", [changed if n == "c5" else endpoint_pb2.ClusterLoadAssignment(cluster_name=n)
                                   for n in names])
            await server.wait(lambda: [r for r in server.of(EDS) if r.version == "2"], "EDS ACK 2")
            assert st.parsed == 41
            second = sink.applied[-1][2]
            assert second["c5"] == changed and second["c5"] is not first["c5"]
            assert all(second[n] is first[n] for n in names if n != "c5")
            assert server.of(EDS)[-1].names == tuple(sorted(names))
            # refused, then sent again unchanged: refused again (as any resend of it), not parsed again
            sink.bad = {"c9"}
            server.push(EDS, "3", [changed if n == "c5" else endpoint_pb2.ClusterLoadAssignment(cluster_name=n)
                                   for n in names])
            nack = (await server.wait(lambda: [r for r in server.of(EDS) if r.nack], "NACK"))[0]
            assert nack.version == "2" and "c9: port 0 is not allowed" in nack.error.message
            assert st.parsed == 41 and sink.applied[-1][2]["c9"] is first["c9"]
    run(main())


def test_a_name_given_twice_is_rejected_for_that_name() -> None:
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            server.push(CDS, "v1", [cluster("twice"), cluster("twice", 5), cluster("once")])
            nack = (await server.wait(lambda: [r for r in server.of(CDS) if r.nack], "NACK"))[0]
            assert "twice: named more than once" in nack.error.message
            assert set(sink.held[CDS]) == {"once"}
            assert "twice" not in sink.applied[0][2]
    run(main())


def test_wildcard_types_remove_what_a_response_leaves_out_named_types_do_not() -> None:
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            sink.subs[EDS] = {"c1", "c2"}
            server.push(LDS, "1", [listener("l1"), listener("l2")])
            server.push(EDS, "1", [cla("c1"), cla("c2")])
            await server.wait(lambda: [r for r in server.of(LDS) if r.version == "1"], "LDS ACK")
            await server.wait(lambda: [r for r in server.of(EDS) if r.version == "1"], "EDS ACK")
            assert server.of(EDS)[0].names == ("c1", "c2")
            server.push(LDS, "2", [listener("l2")])
            server.push(EDS, "2", [cla("c1")])
            await server.wait(lambda: [r for r in server.of(LDS) if r.version == "2"], "LDS ACK 2")
            await server.wait(lambda: [r for r in server.of(EDS) if r.version == "2"], "EDS ACK 2")
            lds = [a for a in sink.applied if a[0] == LDS]
            assert lds[-1][3] == {"l1"} and set(sink.held[LDS]) == {"l2"}
            eds = [a for a in sink.applied if a[0] == EDS]
            assert eds[-1][3] == set() and set(sink.held[EDS]) == {"c1", "c2"}
    run(main())


def test_resubscribe_asks_for_the_routes_a_new_listener_names() -> None:
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            server.push(RDS, "r1", [route("r-a"), route("r-b"), route("r-other")])
            server.push(LDS, "1", [listener("l1", "r-a")])
            rq = await server.wait(lambda: [r for r in server.of(RDS) if r.names == ("r-a",)], "RDS request")
            assert rq[0].version == ""
            await server.wait(lambda: "r-a" in sink.held[RDS], "route r-a applied")
            server.push(LDS, "2", [listener("l1", "r-a"), listener("l2", "r-b")])
            await server.wait(lambda: [r for r in server.of(RDS) if r.names == ("r-a", "r-b")], "RDS names grow")
            await server.wait(lambda: "r-b" in sink.held[RDS], "route r-b applied")
            assert "r-other" not in sink.held[RDS]
            # a listener update and a route update back to back: the route answer carries the
            # new names, and no response is answered twice
            server.push(LDS, "3", [listener("l1", "r-a"), listener("l2", "r-b"), listener("l3", "r-other")])
            server.push(RDS, "r2", [route("r-a"), route("r-b"), route("r-other")])
            await server.wait(lambda: "r-other" in sink.held[RDS] and [
                r for r in server.of(RDS) if r.version == "r2" and r.names == ("r-a", "r-b", "r-other")], "r2 ACK")
            await asyncio.sleep(0.1)
            # (a request repeating a nonce is a new subscription, so its names differ)
            asked = [(r.nonce, r.version, r.names) for r in server.of(RDS)]
            assert len(asked) == len(set(asked)), asked
            # nothing new named: no request
            n = len(server.of(RDS))
            client.resubscribe(RDS)
            await asyncio.sleep(0.1)
            assert len(server.of(RDS)) == n
            with pytest.raises(ValueError):
                client.resubscribe("type.googleapis.com/foo.Bar")
    run(main())


def test_delta_subscribe_unsubscribe_removed_and_initial_versions_after_restart() -> None:
    async def main() -> None:
        async with rig("delta") as (server, client, sink, stats):
            sink.subs[EDS] = {"c1"}
            server.push(CDS, "v1", [cluster("c1"), cluster("c2")])
            server.push(EDS, "e1", [cla("c1"), cla("c2")])
            await server.wait(lambda: answers(server, CDS), "CDS ACK")
            first = server.of(CDS)[0]
            assert first.subscribe == () and first.initial == {}      # wildcard
            assert server.of(EDS)[0].subscribe == ("c1",)
            await server.wait(lambda: answers(server, EDS), "EDS ACK")
            assert set(sink.held[EDS]) == {"c1"} and set(sink.held[CDS]) == {"c1", "c2"}
            ack = answers(server, CDS)[0]
            assert ack.error is None and ack.nonce == [r for r in server.responses if r.type_url == CDS][0].nonce
            sink.subs[EDS] = {"c2"}
            client.resubscribe(EDS)
            swap = await server.wait(lambda: [r for r in server.of(EDS) if r.subscribe == ("c2",)], "EDS swap")
            assert swap[0].unsubscribe == ("c1",)
            await server.wait(lambda: "c2" in sink.held[EDS], "c2 endpoints")
            server.push(CDS, "v2", [cluster("c2")])
            await server.wait(lambda: [a for a in sink.applied if a[0] == CDS and a[3] == {"c1"}], "c1 removed")
            assert client.types[CDS].version == "v2"
            assert set(sink.held[CDS]) == {"c2"}
            # the control plane restarts: the new stream says what the client has
            await server.stop()
            await server.wait(lambda: not client.connected, "disconnected")
            assert set(sink.held[CDS]) == {"c2"}        # nothing dropped while away
            await server.start()
            again = await server.wait(lambda: [r for r in server.of(CDS) if r.stream > first.stream], "new CDS stream")
            assert again[0].initial == {"c2": "v1"} and again[0].subscribe == ()
            eds = await server.wait(lambda: [r for r in server.of(EDS) if r.stream > first.stream], "new EDS")
            assert eds[0].subscribe == ("c2",) and eds[0].initial == {"c2": "e1"}
            await asyncio.sleep(0.2)
            # nothing changed, so nothing was sent again
            assert not [r for r in server.responses if r.stream == again[0].stream and r.type_url == CDS]
    run(main())


def test_delta_nack_by_nonce_keeps_the_good_resources() -> None:
    async def main() -> None:
        async with rig("delta") as (server, client, sink, stats):
            sink.bad = {"c3"}
            server.push(CDS, "v1", [cluster("c1"), cluster("c3")])
            nack = (await server.wait(lambda: [r for r in server.of(CDS) if r.nack], "delta NACK"))[0]
            assert nack.nonce == [r for r in server.responses if r.type_url == CDS][0].nonce
            assert nack.error.code == 3 and "c3" in nack.error.message
            assert set(sink.held[CDS]) == {"c1"}
            assert client.types[CDS].held == {"c1": "v1"} and client.types[CDS].version == ""
            await asyncio.sleep(0.3)
            assert len(server.of(CDS)) == 2              # the delta server does not resend: no more requests
    run(main())


def test_reconnect_with_back_off_resends_the_accepted_versions() -> None:
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            server.push(CDS, "v1", [cluster("c1")])
            server.push(LDS, "v9", [listener("l1")])
            await server.wait(lambda: [r for r in server.of(LDS) if r.version == "v9"], "LDS ACK")
            await server.stop()
            await server.wait(lambda: stats.gauges["control_plane.connected_state"].value == 0, "disconnected")
            await asyncio.sleep(0.5)            # some attempts fail while the server is away
            assert stats.counters["cluster_manager.cds.update_failure"].value >= 1
            assert set(sink.held[CDS]) == {"c1"} and set(sink.held[LDS]) == {"l1"}
            streams = client.streams
            assert 2 <= streams <= 40           # backed off: not a busy loop (0.05 s base, 0.2 s cap)
            await server.start()
            cds = await server.wait(lambda: [r for r in server.of(CDS) if r.stream > 1], "CDS on a new stream")
            assert (cds[0].version, cds[0].nonce) == ("v1", "")
            lds = await server.wait(lambda: [r for r in server.of(LDS) if r.stream > 1], "LDS on a new stream")
            assert (lds[0].version, lds[0].nonce) == ("v9", "")
            await server.wait(lambda: client.connected, "connected again")
            await asyncio.sleep(0.1)
            # versions are current: the server keeps the watches open, nothing is re-sent
            assert not [r for r in server.responses if r.stream > 1]
    run(main())


def test_node_goes_on_the_first_request_of_each_stream() -> None:
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            server.push(CDS, "v1", [cluster("c1")])
            server.push(LDS, "v1", [listener("l1")])
            await server.wait(lambda: len(answers(server, LDS)) and len(answers(server, CDS)), "ACKs")
            with_node = [r for r in server.requests if r.node is not None]
            assert with_node == [server.requests[0]]
            node = with_node[0].node
            assert node.id == "mosnx~10.0.0.1~a.default~cluster.local" and node.cluster == "mosnx-test"
            assert node.user_agent_name == "mosnx" and node.user_agent_version
            assert list(node.client_features) == ["xds.config.resource-in-sotw"]
            assert node.metadata["ISTIO_VERSION"] == "1.24" and node.metadata["labels"]["app"] == "a"
            await server.stop()
            await server.start()
            await server.wait(lambda: [r for r in server.requests if r.stream > 1], "a new stream")
            await asyncio.sleep(0.1)
            again = [r for r in server.requests if r.stream > 1]
            assert again[0].node is not None and all(r.node is None for r in again[1:])

        async with rig(set_node_on_first_message_only=False) as (server, client, sink, stats):
            server.push(CDS, "v1", [cluster("c1")])
            await server.wait(lambda: answers(server, CDS), "ACK")
            assert all(r.node is not None for r in server.requests)
    run(main())


def test_unknown_type_and_a_failing_sink_cost_a_nack_not_the_stream() -> None:
    async def main() -> None:
        async with rig() as (server, client, sink, stats):
            server.push(CDS, "v1", [cluster("c1")])
            await server.wait(lambda: answers(server, CDS), "ACK")
            server.send_sotw("type.googleapis.com/foo.Bar", "1", [pack(cluster("x"))])
            bar = (await server.wait(lambda: server.of("type.googleapis.com/foo.Bar"), "NACK of foo.Bar"))[0]
            assert bar.nack and "foo.Bar" in bar.error.message
            # a resource of another type inside a CDS response
            server.send_sotw(CDS, "v2", [pack(cluster("c1")), pack(listener("l1"))])
            mixed = (await server.wait(lambda: [r for r in server.of(CDS) if r.nack], "NACK of a mixed response"))[0]
            assert "envoy.config.listener.v3.Listener" in mixed.error.message and mixed.version == "v1"
            sink.raise_on = LDS
            server.push(LDS, "1", [listener("l1")])
            lds = (await server.wait(lambda: [r for r in server.of(LDS) if r.nack], "NACK of LDS"))[0]
            assert "l1: internal error" in lds.error.message
            assert client.streams == 1
    run(main())


@pytest.mark.parametrize("target,mode,why", [("", "sotw", "host:port"), ("localhost", "sotw", "host:port"),
                                             (":1", "sotw", "host:port"), ("127.0.0.1:1", "incremental", "mode")])
def test_bad_settings_are_refused_with_a_clear_error(target: str, mode: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        AdsClient(target, make_node("n"), Sink(), Store(), mode=mode)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown xDS type"):
        AdsClient("127.0.0.1:1", make_node("n"), Sink(), Store(), types=["type.googleapis.com/foo.Bar"])
    with pytest.raises(ValueError, match="JSON values"):
        make_node("n", metadata={"k": object()})
