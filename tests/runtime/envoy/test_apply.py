"""apply() and needed_names(): good resources join the base config, each bad one is named."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import (ASSIGNMENT, CLUSTER, LISTENER, ROUTES, STATIC, C, E, L, R, ctx, msg,  # noqa: E402,F401
                           pick, table)
from mosnx.runtime.config import load_config_text  # noqa: E402
from mosnx.runtime.envoy.apply import apply, needed_names  # noqa: E402
from mosnx.runtime.envoy.bootstrap import load_bootstrap_text  # noqa: E402
from mosnx.runtime.envoy.findings import Sink  # noqa: E402
from mosnx.runtime.envoy.protos import SECRET as S  # noqa: E402
from mosnx.runtime.snapshot import build_snapshot  # noqa: E402


def _base():
    return load_config_text("clusters:\n- {name: web, endpoints: [127.0.0.1:9100]}\n", "<base>")


def test_apply_adds_good_resources_and_names_the_bad():
    from mosnx import plugins
    plugins.load()          # the fault filter's factory
    resources = {
        L: {"edge": msg(L, LISTENER)},
        R: {"main": msg(R, ROUTES)},
        C: {n: msg(C, {"name": n, "load_assignment": {"cluster_name": n, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9200}}}}]}]}})
            for n in ("canary", "users", "debug", "a", "b", "shadow")} | {
            "app": msg(C, CLUSTER),
            "bad": msg(C, {"name": "bad", "lb_policy": "CLUSTER_PROVIDED"})},
        E: {"app-eps": msg(E, ASSIGNMENT)},
    }
    assert needed_names(resources) == {R: {"main"}, E: {"app-eps"}, S: set()}
    config, rejected = apply(_base(), resources)
    assert [(r.type_url, r.name, r.field_path) for r in rejected] == [(C, "bad", "lb_policy")]
    assert {c.name for c in config.clusters} == {"web", "canary", "users", "debug", "a", "b", "shadow", "app"}
    assert [lc.name for lc in config.listeners] == ["edge"]
    snap = build_snapshot(config)
    assert pick(snap.listeners["edge"].routes, ctx("/v1/x", "api.example.com", x_canary="yes")).action.cluster == "canary"


def test_apply_holds_a_listener_back_until_its_routes_and_clusters_come():
    sink = Sink()
    config, rejected = apply(_base(), {L: {"edge": msg(L, LISTENER)}}, sink)
    # waiting for RDS is not an error (nothing to NACK): a warning, and the name to ask for
    assert config.listeners == () and rejected == []
    assert [r.field_path for r in sink.waiting] == ["filter_chains[0].filters[0].typed_config.rds.route_config_name"]
    assert sink.warnings[0].code == "X004" and needed_names({L: {"edge": msg(L, LISTENER)}})[R] == {"main"}
    config, rejected = apply(_base(), {L: {"edge": msg(L, LISTENER)}, R: {"main": msg(R, ROUTES)}})
    assert config.listeners == () and 'unknown cluster "a"' in rejected[0].message


ADS_BOOTSTRAP = STATIC.replace("route_config:\n", "rds: {route_config_name: main, config_source: {ads: {}}}\n"
                               "          unused_route_config:\n").replace("""  - name: app
    type: STATIC
""", """  - name: app
    type: EDS
    eds_cluster_config: {service_name: app-eps, eds_config: {ads: {}}}
""")


def test_the_bootstraps_own_resources_wait_for_the_stream():
    base, warnings = load_bootstrap_text(_strip_inline_routes(ADS_BOOTSTRAP), "<envoy>")
    assert base.listeners == () and [c.name for c in base.clusters] == ["app", "xds"]
    assert base.clusters[0].endpoints == ()
    assert any(w.code == "X004" and '"main"' in w.message for w in warnings)
    assert needed_names({}, base) == {R: {"main"}, E: {"app-eps"}, S: set()}
    routes = {"name": "main", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "app"}}]}]}
    config, rejected = apply(base, {R: {"main": msg(R, routes)}, E: {"app-eps": msg(E, ASSIGNMENT)}})
    assert rejected == []
    assert [lc.name for lc in config.listeners] == ["web"]
    assert [e.address for e in config.clusters[0].endpoints] == ["127.0.0.1:9001"]
    build_snapshot(config)


def _strip_inline_routes(text: str) -> str:
    """The bootstrap with its inline route_config (now under an unused key) cut out."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith("          unused_route_config:"):
            skipping = True
            continue
        if skipping and line.startswith("            "):
            continue
        skipping = False
        out.append(line)
    return "\n".join(out) + "\n"


def test_translations_are_kept_for_the_messages_that_did_not_change():
    from mosnx.runtime.envoy.apply import Translations
    base = _base()
    eds = {"name": "app", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}}}
    one = {"cluster_name": "app", "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9201}}}}]}]}
    two = {"cluster_name": "app", "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9202}}}}]}]}
    resources = {C: {"app": msg(C, eds), "other": msg(C, {"name": "other", "lb_policy": "CLUSTER_PROVIDED"})},
                 E: {"app": msg(E, one)}}
    cache = Translations()
    first, rejected = apply(base, resources, cache=cache)
    again, rejected_again = apply(base, resources, cache=cache)
    app = next(c for c in first.clusters if c.name == "app")
    # the same messages: the same translations (and the same rejection), not made again
    assert next(c for c in again.clusters if c.name == "app") is app
    assert [r.name for r in rejected_again] == [r.name for r in rejected] == ["other"]
    # a new assignment: that cluster alone is translated again, with its new endpoint
    resources[E] = {"app": msg(E, two)}
    moved, _ = apply(base, resources, cache=cache)
    new = next(c for c in moved.clusters if c.name == "app")
    assert new is not app and [e.port for e in new.endpoints] == [9202]
    # another file config: nothing is taken from before
    other_base = _base()
    fresh, _ = apply(other_base, resources, cache=cache)
    assert next(c for c in fresh.clusters if c.name == "app") is not new


def test_a_changed_route_configuration_translates_only_its_changed_routes():
    from mosnx.runtime.envoy.apply import Translations
    base = load_config_text("clusters:\n- {name: a, endpoints: [127.0.0.1:9100]}\n"
                            "- {name: b, endpoints: [127.0.0.1:9101]}\n", "<base>")

    def rc(flip: int) -> object:
        return msg(R, {"name": "main", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": f"/r{i}/"}, "route": {"cluster": "b" if i == flip else "a"}}
            for i in range(20)]}]})

    listener = msg(L, LISTENER)
    cache = Translations()
    first, rejected = apply(base, {L: {"edge": listener}, R: {"main": rc(3)}}, cache=cache)
    assert rejected == []
    again, _ = apply(base, {L: {"edge": listener}, R: {"main": rc(4)}}, cache=cache)

    def routes(config: object) -> list:
        return list(next(iter(config.listeners)).route_table.vhosts[0].routes)   # type: ignore[attr-defined]
    before, after = routes(first), routes(again)
    assert [i for i, (x, y) in enumerate(zip(before, after)) if x is not y] == [3, 4]
    assert (after[3].action.cluster, after[4].action.cluster) == ("a", "b")
    # another file config: every route is translated afresh
    fresh, _ = apply(load_config_text("clusters:\n- {name: a, endpoints: [127.0.0.1:9100]}\n"
                                      "- {name: b, endpoints: [127.0.0.1:9101]}\n", "<base>"),
                     {L: {"edge": listener}, R: {"main": rc(4)}}, cache=cache)
    assert not set(map(id, routes(fresh))) & set(map(id, after))


def test_a_tcp_listener_whose_cluster_went_waits_and_the_clusters_are_taken():
    # a CDS update that replaces every cluster arrives before the listeners naming the
    # new ones: the old tcp_proxy listener is held back, not the clusters refused
    tcp = {"name": "t", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18610}},
           "filter_chains": [{"filters": [{"name": "tcp", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
               "stat_prefix": "t", "cluster": "old"}}]}]}
    config, rejected = apply(_base(), {L: {"t": msg(L, tcp)}})
    assert config.listeners == ()
    assert [(r.type_url, r.name) for r in rejected] == [(L, "t")] and 'unknown cluster "old"' in rejected[0].message
    build_snapshot(config)          # what is left builds
