"""EDS in place, as the sink and the supervisor see it (proxy/xds/dynamic.py; with
proxy/xds/control.py, runtime/snapshot.py and the worker):
an update that changes only ClusterLoadAssignments is handed on as the new configs
of the clusters using them, with no translation or build of the rest; a state-of-the-
world response counts only the assignments whose content changed; a bad assignment
is refused by its name and the last good one serves; anything else still reloads;
the resources and translations held afterwards are those a full update would hold,
so the next full one starts from them. The supervisor's pushes keep the order of
what was accepted, and a worker changes the membership where it is."""
from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

from google.protobuf import json_format

from mosnx.proxy.xds.control import XdsControl
from mosnx.proxy.xds.dynamic import DynamicConfig, decode, effective
from mosnx.runtime.envoy.apply import apply
from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, RESOURCE_TYPES, ROUTE
from mosnx.runtime.model import ClusterConfig, Config, Endpoint, XdsConfig
from mosnx.runtime.snapshot import build_snapshot, with_clusters
from mosnx.runtime.stats import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_dynamic import cluster, listener, routes  # noqa: E402

BASE = Config(path="/nonexistent/mosnx.yaml", admin=None, listeners=(), clusters=())


def cla(name, *ports, health=None, weights=None):
    eps = []
    for i, p in enumerate(ports):
        e = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
        if health and i in health:
            e["health_status"] = health[i]
        if weights:
            e["load_balancing_weight"] = weights[i]
        eps.append(e)
    return json_format.ParseDict({"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]},
                                 RESOURCE_TYPES[ENDPOINT]())


class Harness:
    """The sink as the supervisor holds it: reloads (changed) and in-place changes
    (reassigned) counted; validate() counts the builds."""

    def __init__(self, in_place=True):
        self.reloads = 0
        self.builds = 0
        self.reassigned: list[dict[str, ClusterConfig]] = []
        self.d = DynamicConfig(lambda: BASE, self.validate, self.changed)
        self.d.resubscribe = lambda t: None
        if in_place:
            self.d.reassigned = self.reassigned.append

    def validate(self, config):
        self.builds += 1
        build_snapshot(config, 2)

    def changed(self):
        self.reloads += 1

    def apply(self, type_url, version, resources, removed=()):
        async def go():
            return self.d.apply(type_url, version, resources, set(removed))
        return asyncio.run(go())

    def serving(self, n=3):
        """A listener routing to EDS clusters c0..c{n-1}, each with an assignment."""
        self.apply(CLUSTER, "1", {f"c{i}": cluster(f"c{i}") for i in range(n)})
        self.apply(ROUTE, "1", {"r": routes("r", "c0")})
        self.apply(LISTENER, "1", {"l": listener("l", 18001, "r")})
        self.apply(ENDPOINT, "1", {f"c{i}": cla(f"c{i}", 9000 + i) for i in range(n)})
        self.reloads = self.builds = 0
        self.reassigned.clear()


def ports(cfg: ClusterConfig):
    return [e.port for e in cfg.endpoints]


def test_an_endpoint_change_is_handed_on_without_a_build_or_a_reload():
    h = Harness()
    h.serving()
    assert h.apply(ENDPOINT, "2", {"c1": cla("c1", 9100, 9101)}) == []
    assert h.reloads == 0 and h.builds == 0
    assert len(h.reassigned) == 1 and list(h.reassigned[0]) == ["c1"]
    assert ports(h.reassigned[0]["c1"]) == [9100, 9101]
    assert h.d.resources[ENDPOINT]["c1"] == cla("c1", 9100, 9101) and h.d.versions[ENDPOINT] == "2"


def test_a_state_of_the_world_resend_counts_only_what_changed():
    h = Harness()
    h.serving(n=4)
    held = dict(h.d.resources[ENDPOINT])
    # every assignment again, the unchanged ones as the very messages held (as the client gives them)
    again = {**held, "c2": cla("c2", 9200)}
    assert h.apply(ENDPOINT, "2", again) == []
    assert [list(r) for r in h.reassigned] == [["c2"]] and h.reloads == 0
    # the same response once more: nothing new, nothing handed on
    assert h.apply(ENDPOINT, "3", dict(h.d.resources[ENDPOINT])) == []
    assert len(h.reassigned) == 1 and h.reloads == 0 and h.d.versions[ENDPOINT] == "3"
    # an equal message that is not the one held (parsed again from other bytes) is no change
    # either; beside it, one that changed is the only one handed on
    again = {**h.d.resources[ENDPOINT], "c0": cla("c0", 9000), "c3": cla("c3", 9303)}
    assert again["c0"] is not h.d.resources[ENDPOINT]["c0"]
    assert h.apply(ENDPOINT, "4", again) == []
    assert [list(r) for r in h.reassigned] == [["c2"], ["c3"]] and h.reloads == 0


def test_the_translator_rules_hold_in_place():
    h = Harness()
    h.serving()
    # UNHEALTHY (2) and DRAINING (3) endpoints are left out; weights are kept
    h.apply(ENDPOINT, "2", {"c0": cla("c0", 9001, 9002, 9003, 9004, health={1: "UNHEALTHY", 2: "DRAINING"},
                                      weights=[5, 1, 1, 2])})
    cfg = h.reassigned[-1]["c0"]
    assert [(e.port, e.weight) for e in cfg.endpoints] == [(9001, 5), (9004, 2)]
    # and it is what the whole translation makes of the same resources
    whole = {c.name: c for c in effective(BASE, h.d.payload()).clusters}
    assert whole["c0"] == cfg


def test_the_next_full_update_starts_from_the_new_endpoints():
    h = Harness()
    h.serving()
    h.apply(ENDPOINT, "2", {"c1": cla("c1", 9111)})
    moved = h.reassigned[-1]["c1"]
    # the supervisor's next build takes the held translation as it is now
    config, rejected = apply(BASE, h.d.resources, cache=h.d.translations)
    assert rejected == [] and next(c for c in config.clusters if c.name == "c1") is moved
    # a cluster update reloads, and the payload the workers get carries the new assignment
    assert h.apply(CLUSTER, "2", {**h.d.resources[CLUSTER], "c9": cluster("c9")}) == []
    assert h.reloads == 1 and h.builds == 1
    back = decode(h.d.payload())
    assert back[ENDPOINT]["c1"] == cla("c1", 9111)
    assert ports(next(c for c in effective(BASE, h.d.payload()).clusters if c.name == "c1")) == [9111]


def test_a_bad_assignment_is_refused_by_name_and_the_last_good_endpoints_kept():
    h = Harness()
    h.serving()
    rejected = h.apply(ENDPOINT, "2", {"c0": cla("c0", 0), "c1": cla("c1", 9101)})
    assert [r.name for r in rejected] == ["c0"] and "port 0" in rejected[0].detail
    assert "endpoints[0].lb_endpoints[0]" in rejected[0].detail
    assert h.d.resources[ENDPOINT]["c0"] == cla("c0", 9000)           # the last good one
    assert (ENDPOINT, "c0") in h.d.failed and h.reloads == 0
    assert [list(r) for r in h.reassigned] == [["c1"]]
    # the listener and the cluster serve on
    config = effective(BASE, h.d.payload())
    assert [lc.name for lc in config.listeners] == ["l"]
    assert ports(next(c for c in config.clusters if c.name == "c0")) == [9000]
    # a good version clears the error state
    h.apply(ENDPOINT, "3", {"c0": cla("c0", 9005)})
    assert (ENDPOINT, "c0") not in h.d.failed


def test_a_bad_assignment_is_refused_by_name_when_the_update_reloads_too():
    h = Harness(in_place=False)
    h.serving()
    rejected = h.apply(ENDPOINT, "2", {"c0": cla("c0", 0)})
    assert [r.name for r in rejected] == ["c0"]
    config = effective(BASE, h.d.payload())
    assert [lc.name for lc in config.listeners] == ["l"]
    assert ports(next(c for c in config.clusters if c.name == "c0")) == [9000]


def test_a_removed_assignment_leaves_its_cluster_without_endpoints():
    h = Harness()
    h.serving()
    assert h.apply(ENDPOINT, "2", {}, removed={"c2"}) == []
    assert ports(h.reassigned[-1]["c2"]) == [] and "c2" not in h.d.resources[ENDPOINT]
    assert ports(next(c for c in effective(BASE, h.d.payload()).clusters if c.name == "c2")) == []


def test_one_assignment_shared_by_two_clusters_changes_both():
    h = Harness()
    shared = {"eds_cluster_config": {"eds_config": {"ads": {}}, "service_name": "svc"}}
    h.apply(CLUSTER, "1", {"a": cluster("a", **shared), "b": cluster("b", **shared)})
    h.apply(ENDPOINT, "1", {"svc": cla("svc", 9000)})
    assert sorted(h.reassigned[-1]) == ["a", "b"] and h.reloads == 1      # the clusters' own update reloaded
    h.apply(ENDPOINT, "2", {"svc": cla("svc", 9300)})
    assert sorted(h.reassigned[-1]) == ["a", "b"] and h.reloads == 1
    assert all(ports(c) == [9300] for c in h.reassigned[-1].values())


def test_what_it_cannot_do_in_place_is_applied_whole():
    h = Harness()
    h.serving()
    # the sink's translations were made for another file config: the whole config again
    other = dataclasses.replace(BASE, workers=2)
    h.d.base = lambda: other
    assert h.apply(ENDPOINT, "2", {"c1": cla("c1", 9400)}) == []
    assert h.reloads == 1 and h.builds == 1 and h.reassigned == []
    # once translated with it, in place again
    assert h.apply(ENDPOINT, "3", {"c1": cla("c1", 9401)}) == []
    assert h.reloads == 1 and len(h.reassigned) == 1


def test_with_clusters_replaces_only_the_clusters_named():
    clusters = tuple(ClusterConfig(name=f"c{i}", endpoints=(Endpoint("127.0.0.1", 9000 + i),)) for i in range(3))
    snap = build_snapshot(dataclasses.replace(BASE, clusters=clusters), 7)
    new = dataclasses.replace(clusters[1], endpoints=(Endpoint("127.0.0.1", 9500),))
    after = with_clusters(snap, {"c1": new, "gone": clusters[0]})
    assert after.version == 7 and after.listeners is snap.listeners and after.built_at == snap.built_at
    assert after.clusters == {"c0": clusters[0], "c1": new, "c2": clusters[2]}
    assert after.config.clusters == (clusters[0], new, clusters[2])
    assert snap.clusters["c1"] is clusters[1]               # the old snapshot is as it was


def control(tmp_path, log):
    cfg = tmp_path / "mosnx.yaml"
    cfg.write_text("xds: {address: 127.0.0.1:18000}\n")

    async def reload(why):
        log.append(("reload",))
        await asyncio.sleep(0)

    async def reassign(endpoints):
        log.append(("reassign", {n: [e.port for e in eps] for n, eps in endpoints.items()}))
        await asyncio.sleep(0)
        return not endpoints.get("fail")

    return XdsControl(str(cfg), XdsConfig("127.0.0.1", 18000), Store(), reload, lambda: 2, reassign)


def cfg(name, *ports_):
    return ClusterConfig(name=name, endpoints=tuple(Endpoint("127.0.0.1", p) for p in ports_))


def test_pushes_keep_the_order_of_what_was_accepted(tmp_path):
    log: list = []
    c = control(tmp_path, log)

    async def go():
        # endpoint changes accepted together go as one; the later of two wins
        c._reassigned({"a": cfg("a", 1)})
        c._reassigned({"a": cfg("a", 2), "b": cfg("b", 3)})
        await c._push
        # a reload accepted after endpoint changes takes their place (it reads them all)
        c._reassigned({"a": cfg("a", 4)})
        c._changed()
        await c._push
        # a worker that missed an endpoint change: a reload makes it good
        c._reassigned({"fail": cfg("fail", 5)})
        await c._push
    asyncio.run(go())
    assert log == [("reassign", {"a": [2], "b": [3]}), ("reload",), ("reassign", {"fail": [5]}), ("reload",)]
    assert c.in_place.value == 4


def test_a_worker_changes_the_membership_where_it_is():
    from mosnx.proxy.worker import Worker
    clusters = (cfg("c0", 9000, 9001), cfg("c1", 9100))
    w = Worker("/nonexistent/mosnx.yaml", 0)
    snap = build_snapshot(dataclasses.replace(BASE, clusters=clusters), 3)
    w.snapshot = snap
    w.clusters.update(snap.clusters)
    c0, c1 = w.clusters.get("c0"), w.clusters.get("c1")
    staying = c0.hosts[0]
    moved = (Endpoint("127.0.0.1", 9000), Endpoint("127.0.0.1", 9002))
    reply = asyncio.run(w.reassign({"c0": moved, "c1": clusters[1].endpoints, "unknown": moved}))
    assert reply == {"ok": True, "changed": 1}
    # the same cluster, the staying endpoint's Host (its pool, health and ejection state) kept
    assert w.clusters.get("c0") is c0 and c0.hosts[0] is staying and staying.pool is c0.hosts[0].pool
    assert [h.port for h in c0.hosts] == [9000, 9002] and c0.membership_gauge.value == 2
    assert w.clusters.get("c1") is c1
    assert w.snapshot.version == 3 and w.snapshot.listeners is snap.listeners
    assert w.snapshot.clusters["c0"].endpoints == moved and "unknown" not in w.snapshot.clusters
    # a reload of the same configuration finds the cluster as it is and keeps it
    w.clusters.update(w.snapshot.clusters)
    assert w.clusters.get("c0") is c0
