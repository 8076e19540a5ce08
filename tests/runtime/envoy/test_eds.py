"""runtime/envoy/eds.py: a changed ClusterLoadAssignment checked on its own (refused
by its own name and field path), the clusters using it found (dynamic ones and the
bootstrap's own), and their new configs made from the translations apply() kept,
equal to what apply() makes of the same resources; nothing in place when those
translations are not of the messages held."""
from __future__ import annotations

import dataclasses

from google.protobuf import json_format

from mosnx.runtime.envoy import eds
from mosnx.runtime.envoy.apply import Translations, apply
from mosnx.runtime.envoy.clusters import translate_cluster
from mosnx.runtime.envoy.findings import Findings, Rejection
from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, RESOURCE_TYPES
from mosnx.runtime.model import Config, Endpoint, XdsConfig

BASE = Config(path="/nonexistent/mosnx.yaml", admin=None, listeners=(), clusters=())


def cluster(name, service=""):
    d = {"name": name, "type": "EDS", "connect_timeout": "2s", "lb_policy": "LEAST_REQUEST",
         "eds_cluster_config": {"eds_config": {"ads": {}}, **({"service_name": service} if service else {})}}
    return json_format.ParseDict(d, RESOURCE_TYPES[CLUSTER]())


def cla(name, *ports):
    return json_format.ParseDict({"cluster_name": name, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}} for p in ports]}]},
        RESOURCE_TYPES[ENDPOINT]())


def held(**assignments):
    return {CLUSTER: {"a": cluster("a"), "b": cluster("b", "shared"), "c": cluster("c", "shared")},
            ENDPOINT: dict(assignments)}


def test_an_assignment_is_checked_on_its_own():
    assert eds.check("a", cla("a", 9000, 9001)) == (Endpoint("127.0.0.1", 9000), Endpoint("127.0.0.1", 9001))
    bad = eds.check("a", cla("a", 9000, 0))
    assert isinstance(bad, Rejection) and bad.type_url == ENDPOINT and bad.name == "a"
    assert bad.field_path == "endpoints[0].lb_endpoints[1].endpoint" and "port 0" in bad.message


def test_the_clusters_using_an_assignment():
    u = eds.users(held(), BASE)
    assert u.dynamic == {"a": ("a",), "shared": ("b", "c")} and u.static == {}


def test_the_index_memo_follows_changed_and_removed_clusters():
    memo: dict = {}
    resources = held()
    assert eds.users(resources, BASE, memo) == eds.users(resources, BASE)
    assert set(memo) == {"a", "b", "c"}
    # b now names an assignment of its own, c is gone, d is new; a is the same message
    a = resources[CLUSTER]["a"]
    resources[CLUSTER] = {"a": a, "b": cluster("b"), "d": cluster("d", "shared")}
    u = eds.users(resources, BASE, memo)
    assert u.dynamic == {"a": ("a",), "b": ("b",), "shared": ("d",)}
    assert set(memo) == {"a", "b", "d"} and memo["a"][0] is a
    # a cluster that stops being EDS leaves the index but stays in the memo
    static = cluster("a")
    static.type = 0
    resources[CLUSTER]["a"] = static
    assert "a" not in eds.users(resources, BASE, memo).dynamic and memo["a"] == (static, None)


def test_new_configs_are_what_apply_makes_and_are_kept_for_it():
    resources = held(a=cla("a", 9000), shared=cla("shared", 9100))
    cache = Translations()
    apply(BASE, resources, cache=cache)
    new = cla("shared", 9200, 9201)
    got = eds.reassign(BASE, resources, {"shared": (new, eds.check("shared", new))}, cache,
                       eds.users(resources, BASE))
    assert set(got) == {"b", "c"}
    assert [e.port for e in got["b"].endpoints] == [9200, 9201] and got["b"].lb == "least_request"
    after = {**resources, ENDPOINT: {**resources[ENDPOINT], "shared": new}}
    config, _ = apply(BASE, after, cache=cache)
    whole = {c.name: c for c in config.clusters}
    assert whole["b"] is got["b"] and whole["c"] is got["c"]       # taken from the translations as kept
    assert whole["b"] == translate_cluster(cluster("b", "shared"), Findings(CLUSTER, "b"), new)


def test_nothing_in_place_without_a_translation_of_what_is_held():
    resources = held(a=cla("a", 9000))
    cache = Translations()
    apply(BASE, resources, cache=cache)
    u = eds.users(resources, BASE)
    change = {"a": (cla("a", 9300), (Endpoint("127.0.0.1", 9300),))}
    # another file config, or a cluster message the translations were not made of
    assert eds.reassign(dataclasses.replace(BASE, workers=2), resources, change, cache, u) is None
    other = {**resources, CLUSTER: {**resources[CLUSTER], "a": cluster("a")}}
    assert eds.reassign(BASE, other, change, cache, u) is None
    assert cache.clusters["a"][1] is resources[ENDPOINT]["a"]        # and nothing recorded


def test_the_bootstraps_own_eds_cluster_fed_over_the_stream():
    boot = cluster("boot")
    empty = translate_cluster(boot, Findings(CLUSTER, "boot"), None)
    base = dataclasses.replace(BASE, clusters=(empty,),
                               xds=XdsConfig("127.0.0.1", 18000, static_resources={CLUSTER: {"boot": boot}}))
    resources = {CLUSTER: {}, ENDPOINT: {"boot": cla("boot", 9000)}}
    cache = Translations()
    apply(base, resources, cache=cache)
    u = eds.users(resources, base)
    assert u.static == {"boot": ("boot",)}
    new = cla("boot", 9400)
    got = eds.reassign(base, resources, {"boot": (new, eds.check("boot", new))}, cache, u)
    assert [e.port for e in got["boot"].endpoints] == [9400]
    config, _ = apply(base, {**resources, ENDPOINT: {"boot": new}}, cache=cache)
    assert config.clusters[0] == got["boot"]
    # its assignment removed: the cluster as the bootstrap made it, as apply() leaves it
    assert eds.reassign(base, resources, {"boot": (None, ())}, cache, u) == {"boot": empty}
