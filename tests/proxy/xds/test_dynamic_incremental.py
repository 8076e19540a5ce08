"""An update costs what changed: after a change of one cluster or one route
configuration, the translations and compiled objects of everything else are the
very objects they were (supervisor and worker), and a worker is handed only the
changed resources (a delta), which it applies when it holds the generation the
delta starts from and refuses as stale otherwise."""
from __future__ import annotations

from mosnx.proxy.xds.dynamic import Decoded, DynamicConfig, held_config
from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, ROUTE
from mosnx.runtime.model import Snapshot
from mosnx.runtime.snapshot import build_snapshot

from .test_dynamic import BASE, cla, cluster, listener, routes, run


class Proxy:
    """The supervisor's sink, validating as XdsControl does (each build given the
    last), and one worker's memory of the resources, fed by deltas."""

    def __init__(self) -> None:
        self.checked: Snapshot | None = None
        self.d = DynamicConfig(lambda: BASE, self.validate, lambda: None)
        self.worker = Decoded()
        self.worker_snap: Snapshot | None = None
        self.given = 0

    def validate(self, config) -> None:
        self.checked = build_snapshot(config, 2, previous=self.checked)

    def push(self, type_url: str, resources: dict, removed: set[str] = frozenset()) -> dict:
        """One accepted update, then the delta a worker gets and its build."""
        assert run(lambda: self.d.apply(type_url, "v", resources, set(removed))) == []
        delta = self.d.delta(self.given)
        self.given = delta["gen"]
        if self.worker.generation is None:
            self.worker.load(self.d.payload(), delta["gen"])
        else:
            assert self.worker.take(delta)
        self.worker_snap = build_snapshot(held_config(BASE, self.worker), 2, previous=self.worker_snap)
        return delta


def started() -> Proxy:
    p = Proxy()
    p.push(CLUSTER, {"a": cluster("a"), "b": cluster("b")})
    p.push(ENDPOINT, {"a": cla("a", 9001), "b": cla("b", 9002)})
    p.push(ROUTE, {"ra": routes("ra", "a"), "rb": routes("rb", "b")})
    p.push(LISTENER, {"la": listener("la", 18011, "ra"), "lb": listener("lb", 18012, "rb")})
    assert p.checked is not None and p.worker_snap is not None
    assert set(p.checked.listeners) == {"la", "lb"} and set(p.worker_snap.clusters) == {"a", "b"}
    return p


def test_a_cluster_change_keeps_every_other_cluster_and_every_listener():
    p = started()
    sup, wrk = p.checked, p.worker_snap
    delta = p.push(CLUSTER, {"a": cluster("a", connect_timeout="3s"), "b": p.d.resources[CLUSTER]["b"]})
    assert delta["set"] == {CLUSTER: {"a": p.d.resources[CLUSTER]["a"].SerializeToString()}}
    assert delta["removed"] == {}
    for before, after in ((sup, p.checked), (wrk, p.worker_snap)):
        assert after is not before
        assert after.clusters["b"] is before.clusters["b"]
        assert after.clusters["a"] is not before.clusters["a"] and after.clusters["a"].connect_timeout == 3.0
        assert after.listeners["la"] is before.listeners["la"] and after.listeners["lb"] is before.listeners["lb"]


def test_a_route_change_rebuilds_only_the_listener_using_it():
    p = started()
    sup, wrk = p.checked, p.worker_snap
    delta = p.push(ROUTE, {"ra": routes("ra", "b"), "rb": p.d.resources[ROUTE]["rb"]})
    assert set(delta["set"]) == {ROUTE} and set(delta["set"][ROUTE]) == {"ra"}
    for before, after in ((sup, p.checked), (wrk, p.worker_snap)):
        assert after.listeners["lb"] is before.listeners["lb"]
        assert after.listeners["lb"].routes is before.listeners["lb"].routes
        assert after.listeners["la"] is not before.listeners["la"]
        assert after.listeners["la"].routes.clusters() == {"b"}
        assert all(after.clusters[n] is before.clusters[n] for n in ("a", "b"))


def test_the_worker_decodes_only_what_the_delta_brings():
    p = started()
    kept = {n: m for n, m in p.worker.resources[ENDPOINT].items()}
    delta = p.push(ENDPOINT, {"a": cla("a", 9101)}, removed={"b"})
    assert delta["set"] == {ENDPOINT: {"a": cla("a", 9101).SerializeToString()}}
    assert delta["removed"] == {ENDPOINT: ["b"]}
    assert set(p.worker.resources[ENDPOINT]) == {"a"} and p.worker.resources[ENDPOINT]["a"] is not kept["a"]
    # nothing else was decoded again: the other types' messages are the ones held
    assert p.worker.resources[CLUSTER]["b"] is p.worker.messages[(CLUSTER, "b")][1]
    assert [e.port for e in p.worker_snap.clusters["a"].endpoints] == [9101]
    assert p.worker_snap.clusters["b"].endpoints == ()


def test_a_delta_from_another_generation_is_refused_and_changes_nothing():
    p = started()
    held = p.worker.generation
    assert held is not None
    assert run(lambda: p.d.apply(CLUSTER, "v", {"c": cluster("c")}, set())) == []
    skipped = p.d.delta(p.given)            # never handed to the worker
    assert run(lambda: p.d.apply(CLUSTER, "v", {"d": cluster("d")}, set())) == []
    later = p.d.delta(skipped["gen"])
    assert set(later["set"][CLUSTER]) == {"d"}
    assert not p.worker.take(later)
    assert p.worker.generation == held and "d" not in p.worker.resources[CLUSTER]
    # given everything instead, it holds what the sink holds
    p.worker.load(p.d.payload(), later["gen"])
    assert set(p.worker.resources[CLUSTER]) == {"a", "b", "c", "d"} and p.worker.generation == later["gen"]
