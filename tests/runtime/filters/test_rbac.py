"""runtime/filters/rbac.py: the engine's policies and actions, the filter's decisions,
replies, shadow rules and stats, the network form, and the config it refuses."""
from __future__ import annotations

import os
import sys

import pytest

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.filters.rbac import RbacConfig, RbacFilter, compile_rbac, network_rbac, stat_join
from mosnx.runtime.filters.rbac_match import RbacError
from mosnx.runtime.stats import Store

from .conftest import build

sys.path.insert(0, os.path.dirname(__file__))
from rbac_streams import connection, stream  # noqa: E402


def allow(permissions: list, principals: list | None = None, action: str = "ALLOW") -> dict:
    return {"action": action, "policies": {"p": {"permissions": permissions,
                                                 "principals": principals or [{"any": True}]}}}


# ---------------------------------------------------------------- engine and filter

def test_policies_are_tried_by_name_and_the_first_match_names_the_denial():
    eng = compile_rbac({"action": "DENY", "policies": {
        "b-admin": {"permissions": [{"url_path": {"path": {"prefix": "/admin"}}}], "principals": [{"any": True}]},
        "a-all": {"permissions": [{"any": True}], "principals": [{"source_ip": {"address_prefix": "9.9.9.9", "prefix_len": 32}}]}}})
    assert [n for n, _ in eng.policies] == ["a-all", "b-admin"]
    assert eng.matched(stream(path="/admin", source="9.9.9.9")) == "a-all"
    assert not eng.allows(stream(path="/admin")) and eng.allows(stream(path="/"))


def test_the_filter_denies_with_envoys_reply_and_counts(tmp_path):
    f, stats = build("rbac", {"rules": allow([{"header": {"name": ":method", "string_match": {"exact": "GET"}}}])})
    assert f.on_request(stream()) is None
    ctx = stream(method="POST")
    r = f.on_request(ctx)
    assert r == LocalReply(403, b"RBAC: access denied", detail="rbac_access_denied")
    assert ctx.error_detail == "rbac_access_denied_matched_policy[none]"
    assert stats.counters["http.l.rbac.allowed"].value == 1
    assert stats.counters["http.l.rbac.denied"].value == 1


def test_deny_names_its_policy_and_rules_stat_prefix():
    f, stats = build("rbac", {"rules": allow([{"any": True}], action="DENY"), "rules_stat_prefix": "mine_"})
    ctx = stream()
    assert f.on_request(ctx).status == 403 and ctx.error_detail == "rbac_access_denied_matched_policy[p]"
    assert stats.counters["http.l.rbac.mine_denied"].value == 1


def test_shadow_rules_count_without_denying():
    f, stats = build("rbac", {"shadow_rules": allow([{"destination_port": 80}]),
                              "shadow_rules_stat_prefix": "istio_dry_run_allow_"})
    a, b = stream(port=80), stream(port=81)
    assert f.on_request(a) is None and f.on_request(b) is None
    assert stats.counters["http.l.rbac.istio_dry_run_allow_shadow_allowed"].value == 1
    assert stats.counters["http.l.rbac.istio_dry_run_allow_shadow_denied"].value == 1
    assert a.metadata["envoy.filters.http.rbac"] == {
        "istio_dry_run_allow_shadow_engine_result": "allowed", "istio_dry_run_allow_shadow_effective_policy_id": "p"}
    assert b.metadata["envoy.filters.http.rbac"] == {"istio_dry_run_allow_shadow_engine_result": "denied"}
    assert stats.counters["http.l.rbac.allowed"].value == 0, "no rules: nothing enforced"


def test_empty_rules_deny_everything_and_log_allows_everything():
    f, _ = build("rbac", {"rules": {}})
    assert f.on_request(stream()).status == 403
    log, stats = build("rbac", {"rules": allow([{"destination_port": 80}], action="LOG")})
    a, b = stream(port=80), stream(port=81)
    assert log.on_request(a) is None and log.on_request(b) is None
    assert a.metadata["envoy.common"] == {"access_log_hint": True}
    assert b.metadata["envoy.common"] == {"access_log_hint": False}
    assert stats.counters["http.l.rbac.allowed"].value == 2


def test_network_rbac_has_no_request():
    n = network_rbac({"stat_prefix": "tcp.", "rules": allow(
        [{"destination_port": 5432}], [{"authenticated": {"principal_name": {"prefix": "spiffe://td/"}}}])})
    assert n.on_connection(connection(port=5432, sans=["spiffe://td/ns/a/sa/b"]))
    assert not n.on_connection(connection(port=5432))
    only_get = network_rbac({"rules": allow([{"header": {"name": ":method", "string_match": {"exact": "GET"}}}]),
                             "stat_prefix": "db"})
    assert not only_get.on_connection(connection()), "a header matcher meets an empty header map"
    s = Store()
    n = network_rbac({"stat_prefix": "tcp.", "rules": {"action": "DENY", "policies": {}}}, s)
    assert n.on_connection(connection()) and s.counters["tcp.rbac.allowed"].value == 1


def test_stat_join_is_envoys():
    assert stat_join("http.l.", "rbac.") == "http.l.rbac." and stat_join("tcp", "rbac.") == "tcp.rbac."
    assert stat_join("", "x") == "x" and stat_join("a.", "") == "a."


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("rules,where", [
    (allow([{"matcher": {"name": "x"}}]), "matcher"),
    (allow([{"any": True}], [{"custom": {"name": "x"}}]), "custom"),
    ({"policies": {"p": {"permissions": [{"any": True}], "principals": [{"any": True}],
                         "condition": {"const_expr": {"bool_value": True}}}}}, "condition"),
    (allow([{"any": False}]), "any"),
    (allow([{"and_rules": {"rules": []}}]), "and_rules.rules"),
    (allow([{"destination_port": 70000}]), "destination_port"),
    (allow([{"url_path": {"path": {"safe_regex": {"regex": "("}}}}]), "safe_regex.regex"),
    (allow([{"header": {"name": "x", "exact_match": "a", "prefix_match": "b"}}]), "header"),
    (allow([{"sourced_metadata": {"metadata_matcher": {"filter": "f", "path": [{"key": "k"}],
                                                       "value": {"present_match": True}},
                                  "metadata_source": "ROUTE"}}]), "metadata_source"),
    (allow([{"destination_port": 1, "any": True}]), "permissions[0]"),
    (allow([{"bogus": 1}]), "permissions[0]"),
    ({"action": "MAYBE", "policies": {}}, "action"),
    ({"policies": {"p": {"permissions": [], "principals": [{"any": True}]}}}, "permissions"),
])
def test_what_cannot_be_evaluated_is_refused_at_its_field(rules, where):
    with pytest.raises(RbacError) as e:
        RbacConfig.from_dict({"rules": rules})
    assert where in e.value.path, e.value.path


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match="known: rules, shadow_rules"):
        build("rbac", {"rule": {}})


def test_the_filter_is_cheap_when_it_has_nothing_to_do():
    f = RbacFilter(RbacConfig())
    assert f.on_request(stream()) is None
