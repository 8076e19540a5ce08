"""apply() and needed_names(): good resources join the base config, each bad one is named."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import (ASSIGNMENT, CLUSTER, LISTENER, ROUTES, C, E, L, R, ctx, msg, pick,  # noqa: E402,F401
                           table)
from mosnx.runtime.config import load_config_text  # noqa: E402
from mosnx.runtime.envoy.apply import apply, needed_names  # noqa: E402
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
    assert needed_names(resources) == {R: {"main"}, E: {"app-eps"}}
    config, rejected = apply(_base(), resources)
    assert [(r.type_url, r.name, r.field_path) for r in rejected] == [(C, "bad", "lb_policy")]
    assert {c.name for c in config.clusters} == {"web", "canary", "users", "debug", "a", "b", "shadow", "app"}
    assert [lc.name for lc in config.listeners] == ["edge"]
    snap = build_snapshot(config)
    assert pick(snap.listeners["edge"].routes, ctx("/v1/x", "api.example.com", x_canary="yes")).action.cluster == "canary"


def test_apply_holds_a_listener_back_until_its_routes_and_clusters_come():
    config, rejected = apply(_base(), {L: {"edge": msg(L, LISTENER)}})
    assert config.listeners == () and "has not been received" in rejected[0].message
    config, rejected = apply(_base(), {L: {"edge": msg(L, LISTENER)}, R: {"main": msg(R, ROUTES)}})
    assert config.listeners == () and 'unknown cluster "a"' in rejected[0].message
