"""runtime/envoy/rbac.py on the RBAC filters Istio compiles from AuthorizationPolicies
(istio/pilot/pkg/security/authz/builder/testdata in shared/testdata, beside the
repository; skipped when absent). Every golden loads, through Envoy's typed config and
as mosnx YAML, with nothing ignored; then each policy's intent (its -in.yaml) is put to
the filter as requests. The test proxy is workload app=httpbin, version=v1 in foo."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from mosnx.runtime.envoy import rbac as R
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink
from mosnx.runtime.filters.rbac import NetworkRbac, RbacConfig, RbacFilter
from mosnx.runtime.stats import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "filters"))
from rbac_streams import connection, jwt, stream  # noqa: E402

_ROOT = Path(__file__).resolve().parents[3]
_REL = Path("shared/testdata/istio/pilot/pkg/security/authz/builder/testdata")
CANDIDATES = [_ROOT.parent / _REL, _ROOT.parent.parent / _REL]
GOLDEN = next((p for p in CANDIDATES if p.is_dir()), None)
HTTP = sorted(GOLDEN.glob("http/*-out*.yaml")) if GOLDEN else []
TCP = sorted(GOLDEN.glob("tcp/*-out*.yaml")) if GOLDEN else []
ABSENT = f"Istio's authz builder test data is absent (looked in {', '.join(map(str, CANDIDATES))})"
needs_golden = pytest.mark.skipif(GOLDEN is None, reason=ABSENT)


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def http_filter(name: str, stats: Store | None = None) -> RbacFilter:
    """The golden `http/<name>.yaml` through the Envoy translation, as the listener builds it."""
    assert GOLDEN is not None
    hf = json_format.ParseDict(yaml.safe_load((GOLDEN / "http" / f"{name}.yaml").read_text()),
                               http_connection_manager_pb2.HttpFilter())
    sink = Sink()
    spec = R.http_filter(hf, Findings("Listener", "inbound", "http_filters[0]", sink))
    assert spec.kind == "rbac" and not sink.warnings, [w.message for w in sink.warnings]
    return RbacFilter(RbacConfig.from_dict(spec.config), spec.name, stats or Store(), "inbound")


def network_filter(name: str, stats: Store | None = None) -> NetworkRbac:
    assert GOLDEN is not None
    nf = json_format.ParseDict(yaml.safe_load((GOLDEN / "tcp" / f"{name}.yaml").read_text()),
                               listener_components_pb2.Filter())
    sink = Sink()
    n = R.network_filter(nf, Findings("Listener", "inbound", "filter_chains[0].filters[0]", sink), stats)
    assert not sink.warnings, [w.message for w in sink.warnings]
    return n


def allowed(f: RbacFilter, ctx: Any) -> bool:
    r = f.on_request(ctx)
    assert r is None or r.status == 403
    return r is None


# ---------------------------------------------------------------- every golden loads

@needs_golden
@pytest.mark.parametrize("path", HTTP, ids=_ids(HTTP))
def test_every_http_golden_loads_with_nothing_ignored(path):
    http_filter(path.stem)
    # the same message written as mosnx YAML (camelCase JSON names, as Istio writes it)
    cfg = dict(yaml.safe_load(path.read_text())["typedConfig"])
    del cfg["@type"]
    assert RbacConfig.from_dict(cfg).rules is not None


@needs_golden
@pytest.mark.parametrize("path", TCP, ids=_ids(TCP))
def test_every_tcp_golden_loads_with_nothing_ignored(path):
    n = network_filter(path.stem)
    assert n.rules is not None


def test_the_test_data_is_there_or_the_skip_says_why():
    if GOLDEN is None:
        pytest.skip(ABSENT)
    assert len(HTTP) == 9 and len(TCP) == 2


# ---------------------------------------------------------------- decisions, by each policy's intent

SPIFFE = "spiffe://cluster.local/ns/{}/sa/{}"


@needs_golden
def test_allow_full_rule():
    f = http_filter("allow-full-rule-out")
    # rule[0]: serviceAccounts my-ns/my-sa and sa-only (in foo), not my-sa-not or sa-not-only
    assert allowed(f, stream(sans=[SPIFFE.format("my-ns", "my-sa")]))
    assert allowed(f, stream(sans=["spiffe://td1/ns/foo/sa/sa-only"]))
    assert not allowed(f, stream(sans=[SPIFFE.format("my-ns", "my-sa-not")]))
    assert not allowed(f, stream(sans=[SPIFFE.format("other", "my-sa")]))
    assert not allowed(f, stream())
    # rule[1] names every field with "*" and excludes "*" again: it never matches
    rich = stream(method="method", path="/exact", host="exact.com", port=80,
                  headers=[("x-header", "header")], sans=[SPIFFE.format("ns", "principal")], sni="exact.com",
                  metadata=jwt("requestPrincipals"))
    assert f.rules is not None and f.rules.matched(rich) is None


@needs_golden
def test_allow_path():
    # paths and notPaths both hold "*": nothing is left to allow
    f = http_filter("allow-path-out")
    for p in ("/exact", "/prefix/x", "/a/suffix", "/path/template/x", "/a/b/path/template", "/"):
        assert not allowed(f, stream(path=p)), p
    # the paths part alone: each form as Istio means it
    assert f.rules is not None
    raw = yaml.safe_load((GOLDEN / "http" / "allow-path-out.yaml").read_text())  # type: ignore[operator]
    paths = raw["typedConfig"]["rules"]["policies"]["ns[foo]-policy[httpbin-1]-rule[0]"]["permissions"][0]
    only = {"andRules": {"rules": [{"orRules": {"rules": [
        r for r in paths["andRules"]["rules"][0]["orRules"]["rules"] if "safeRegex" not in str(r)]}}]}}
    from mosnx.runtime.filters.rbac_match import compile_permission
    p = compile_permission(only)
    for yes in ("/exact", "/prefix/", "/prefix/a/b", "/x/suffix", "/path/template/seg", "/a/b/path/template"):
        assert p(stream(path=yes)), yes
    for no in ("/exact/", "/prefixx", "/x/suffixx", "/path/template/a/b", "/path/template/"):
        assert not p(stream(path=no)), no


@needs_golden
def test_deny_and_allow():
    deny, allow = http_filter("deny-and-allow-out1"), http_filter("deny-and-allow-out2")

    def chain(ctx) -> bool:
        return allowed(deny, ctx) and allowed(allow, ctx)
    assert chain(stream(sans=["spiffe://allow"]))
    ctx = stream(sans=["spiffe://deny"])
    assert not chain(ctx)
    assert ctx.error_detail == "rbac_access_denied_matched_policy[ns[foo]-policy[httpbin-deny]-rule[0]]"
    assert not chain(stream(sans=["spiffe://other"]))
    assert not chain(stream())


@needs_golden
def test_deny_empty_rule():
    s = Store()
    f = http_filter("deny-empty-rule-out", s)
    for ctx in (stream(), stream(method="POST", path="/x", sans=["spiffe://a"]), stream(source="127.0.0.1")):
        assert not allowed(f, ctx)
    assert s.counters["http.inbound.rbac.denied"].value == 3
    # no shadow rules, but Envoy makes the shadow counters with Istio's prefix all the same
    assert s.counters["http.inbound.rbac.istio_dry_run_allow_shadow_denied"].value == 0


@needs_golden
def test_single_policy():
    f = http_filter("single-policy-out")
    # rule[1], from[0] and to[0]: every source field and every operation field at once
    ok = dict(method="rule[1]-to[0]-method[1]", host="RULE[1]-TO[0]-HOST[2]", port=9101,
              path="rule[1]-to[0]-path[1]", source="10.1.0.1",
              headers=[("x-forwarded-for", "172.22.3.7")],
              sans=["spiffe://rule[1]-from[0]-principal[1]", "spiffe://td/ns/rule[1]-from[0]-ns[1]/sa/a"],
              metadata=jwt("rule[1]-from[0]-requestPrincipal[2]"))
    assert allowed(f, stream(**ok))
    for change in (dict(port=9111), dict(method="GET"), dict(host="other"), dict(path="/"),
                   dict(source="10.1.0.3"), dict(headers=[]), dict(metadata=None),
                   dict(metadata=jwt("rule[1]-from[0]-requestPrincipal[2]", "someone")),
                   dict(sans=["spiffe://rule[1]-from[0]-principal[1]"]), dict(sans=None)):
        assert not allowed(f, stream(**{**ok, **change})), change
    # rule[1], from[1] with to[1]
    assert allowed(f, stream(**{**ok, "method": "rule[1]-to[1]-method[2]", "host": "rule[1]-to[1]-host[1]",
                                "port": 9112, "path": "rule[1]-to[1]-path[2]", "source": "192.1.1.2",
                                "headers": [("x-forwarded-for", "9.9.9.9, 192.168.4.200")],
                                "sans": ["spiffe://rule[1]-from[1]-principal[2]",
                                         "spiffe://td/ns/rule[1]-from[1]-ns[2]/sa/b"],
                                "metadata": jwt("rule[1]-from[1]-requestPrincipal[1]")}))


@needs_golden
def test_multiple_policies():
    f = http_filter("multiple-policies-out")
    base = dict(method="DELETE", path="/x", host="other", port=8000, source="9.9.9.9")
    assert not allowed(f, stream(**base))
    cases = {
        "httpbin-1": dict(method="GET"),
        "httpbin-2": dict(path="/v2"),
        "httpbin-3": dict(host="HTTPBIN.org"),
        "httpbin-4": dict(port=90),
        "httpbin-5": dict(sans=["spiffe://principals2"]),
        "httpbin-6": dict(metadata=jwt("requestPrincipals1")),
        "httpbin-7": dict(sans=[SPIFFE.format("namespaces1", "a")]),
        "httpbin-8": dict(source="5.6.7.8"),
        "httpbin-9": dict(headers=[("x-abc", "abc2")]),
    }
    for policy, change in cases.items():
        ctx = stream(**{**base, **change})
        assert f.rules is not None and f.rules.matched(ctx) == f"ns[foo]-policy[{policy}]-rule[0]", policy
        assert allowed(f, ctx)


@needs_golden
def test_trust_domains():
    f = http_filter("trust-domains-out")
    assert allowed(f, stream(sans=[SPIFFE.format("a", "b")]))
    assert allowed(f, stream(sans=["spiffe://another.local/ns/a/sa/b"]))
    assert allowed(f, stream(sans=["spiffe://good.example/ns/a/sa/b"]), ), "not in notTrustDomains"
    assert not allowed(f, stream(sans=["spiffe://badland/ns/a/sa/b"]))
    assert not allowed(f, stream(sans=["spiffe://untrusted/ns/a/sa/b"]))


@needs_golden
def test_simple_policy_principal_with_wildcard():
    f = http_filter("simple-policy-principal-with-wildcard-out")
    assert allowed(f, stream(sans=["spiffe://any/ns/x/sa/y"]))
    assert not allowed(f, stream()), "principals: ['*'] asks for an authenticated peer"
    assert not allowed(f, stream(sans=[])), "TLS without a certificate name is no principal"
    # from[1] alone, as the trust domain aliases expand it
    assert f.rules is not None
    eng = f.rules
    for name in ("spiffe://td1/ns/foo/sa/rule[0]-from[1]-principal[1]",
                 "spiffe://foobar/ns/foo/sa/rule[0]-from[1]-principal[1]"):
        assert eng.allows(stream(sans=[name]))


@needs_golden
def test_tcp_allow_both_http_tcp():
    s = Store()
    n = network_filter("allow-both-http-tcp-out", s)
    # only rule[3] survives on TCP: port 80 from namespace ns-1
    assert n.on_connection(connection(port=80, sans=[SPIFFE.format("ns-1", "a")]))
    assert not n.on_connection(connection(port=8080, sans=[SPIFFE.format("ns-1", "a")]))
    assert not n.on_connection(connection(port=80, sans=[SPIFFE.format("ns-2", "a")]))
    assert not n.on_connection(connection(port=80))
    assert (s.counters["tcp.rbac.allowed"].value, s.counters["tcp.rbac.denied"].value) == (1, 3)


@needs_golden
def test_tcp_deny_both_http_tcp():
    n = network_filter("deny-both-http-tcp-out")
    # a DENY rule with HTTP fields denies the whole connection on TCP
    for c in (connection(), connection(port=9, sans=["spiffe://x"]), connection(source="1.2.3.4")):
        assert not n.on_connection(c)
    assert n.rules is not None
    assert n.rules.matched(connection()) == "ns[foo]-policy[httpbin-deny]-rule[0]"


# ---------------------------------------------------------------- what the translation refuses

def test_matcher_trees_and_conditions_reject_the_listener():
    from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
    msg = json_format.ParseDict({"matcher": {"matcher_list": {"matchers": []}}}, rbac_pb2.RBAC())
    with pytest.raises(Rejected) as e:
        R.http_rbac(msg, Findings("Listener", "l", "http_filters[0].typed_config"))
    assert e.value.rejection.field_path == "http_filters[0].typed_config.matcher"
    msg = json_format.ParseDict({"rules": {"policies": {"p": {
        "permissions": [{"any": True}], "principals": [{"any": True}],
        "condition": {"const_expr": {"bool_value": True}}}}}}, rbac_pb2.RBAC())
    with pytest.raises(Rejected) as e:
        R.http_rbac(msg, Findings("Listener", "l", "x"))
    assert e.value.rejection.field_path == 'x.rules.policies["p"].condition'
    sink = Sink()
    msg = json_format.ParseDict({"rules": {}, "track_per_rule_stats": True}, rbac_pb2.RBAC())
    assert R.http_rbac(msg, Findings("Listener", "l", "x", sink)) == {"rules": {}}
    assert [w.code for w in sink.warnings] == ["X001"]



def _listener(rbac: dict) -> Any:
    from envoy.config.listener.v3 import listener_pb2
    router = {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    return json_format.ParseDict({
        "name": "inbound", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15006}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                     "HttpConnectionManager",
            "stat_prefix": "inbound", "route_config": {"virtual_hosts": [
                {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]},
            "http_filters": [{"name": "envoy.filters.http.rbac", "typed_config": rbac},
                             {"name": "envoy.filters.http.router", "typed_config": router}]}}]}]},
        listener_pb2.Listener())


def test_a_listener_keeps_the_rbac_filter_in_its_place():
    from mosnx.runtime.envoy.listeners import translate_listener
    from mosnx.runtime.envoy.protos import LISTENER
    rbac = {"@type": "type.googleapis.com/" + R.HTTP_RBAC, "rules": {"action": "DENY", "policies": {
        "no-admin": {"permissions": [{"url_path": {"path": {"prefix": "/admin"}}}], "principals": [{"any": True}]}}}}
    sink = Sink()
    lc = translate_listener(_listener(rbac), Findings(LISTENER, "inbound", "", sink))
    [spec] = lc.filters
    assert (spec.kind, spec.name) == ("rbac", "envoy.filters.http.rbac") and not sink.warnings
    f = RbacFilter(RbacConfig.from_dict(spec.config), spec.name, Store(), lc.name)
    assert f.on_request(stream(path="/admin/x")) is not None and f.on_request(stream(path="/x")) is None
    rbac["rules"]["policies"]["no-admin"]["condition"] = {"const_expr": {"bool_value": True}}
    with pytest.raises(Rejected) as e:
        translate_listener(_listener(rbac), Findings(LISTENER, "inbound"))
    assert e.value.rejection.field_path == ("filter_chains[0].filters[0].typed_config.http_filters[0].typed_config"
                                            '.rules.policies["no-admin"].condition')


def test_a_per_route_config_translates_or_turns_the_filter_off():
    from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
    per = json_format.ParseDict({"rbac": {"rules": {"action": "DENY", "policies": {
        "p": {"permissions": [{"any": True}], "principals": [{"any": True}]}}}}}, rbac_pb2.RBACPerRoute())
    cfg = R.http_rbac_per_route(per, Findings("RouteConfiguration", "r", "typed_per_filter_config"))
    assert cfg is not None and not RbacConfig.from_dict(cfg).rules.allows(stream())  # type: ignore[union-attr]
    assert R.http_rbac_per_route(rbac_pb2.RBACPerRoute(), Findings("RouteConfiguration", "r")) is None
