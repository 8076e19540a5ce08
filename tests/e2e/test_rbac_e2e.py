"""The rbac filter through a real mosnx on 127.0.0.1: requests allowed and denied by
path, method, header, source and forwarded address, Envoy's 403 and stats, shadow rules
counted without denying; an Envoy bootstrap running the RBAC filter Istio compiles for
several AuthorizationPolicies; and mTLS clients whose certificates carry SPIFFE ids,
allowed or denied by principal over HTTP/1.1 and HTTP/2."""
from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, os.path.dirname(__file__))
from conftest import Wire, encode_request, free_port, read_message  # noqa: E402
from h2kit import CA, H2Client  # noqa: E402
from test_envoy_bootstrap import serving  # noqa: E402

_REL = Path("shared/testdata/istio/pilot/pkg/security/authz/builder/testdata/http")
_ROOT = Path(__file__).resolve().parents[2]
GOLDEN = next((p for p in (_ROOT.parent / _REL, _ROOT.parent.parent / _REL) if p.is_dir()), None)
ABSENT = "Istio's authz builder test data (shared/testdata beside the repository) is absent"

LOG = "%response.code% %response.flags% %source.principal%"


def _log_lines(path: Path, n: int, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def header(name: str, exact: str) -> dict:
    return {"header": {"name": name, "string_match": {"exact": exact}}}


RULES = {
    "action": "ALLOW",
    "policies": {
        "public-read": {"permissions": [{"and_rules": {"rules": [
            header(":method", "GET"), {"url_path": {"path": {"prefix": "/public/"}}}]}}],
            "principals": [{"any": True}]},
        "admin": {"permissions": [{"url_path": {"path": {"prefix": "/admin"}}}],
                  "principals": [{"and_ids": {"ids": [header("x-role", "admin"),
                                                      {"source_ip": {"address_prefix": "127.0.0.0",
                                                                     "prefix_len": 8}}]}}]},
        "office": {"permissions": [{"url_path": {"path": {"exact": "/reports"}}}],
                   "principals": [{"remote_ip": {"address_prefix": "192.0.2.0", "prefix_len": 24}}]},
        "far-away": {"permissions": [{"any": True}],
                     "principals": [{"direct_remote_ip": {"address_prefix": "198.51.100.0", "prefix_len": 24}}]},
    },
}
SHADOW = {"action": "DENY", "policies": {"no-secrets": {
    "permissions": [{"url_path": {"path": {"suffix": "/secret"}}}], "principals": [{"any": True}]}}}


def test_allow_and_deny_by_request_and_source(upstream, mosnx, tmp_path):
    up = upstream()
    log = tmp_path / "access.log"
    proxy = mosnx([up], listener={
        "filters": [{"rbac": {"rules": RULES, "shadow_rules": SHADOW,
                              "shadow_rules_stat_prefix": "dry_"}}],
        "access_log": {"path": str(log), "format": LOG}})
    assert proxy.request("GET", "/public/a").status == 200
    r = proxy.request("POST", "/public/a", body=b"x")
    assert (r.status, r.body, r.header("x-mosnx-error")) == (403, b"RBAC: access denied", "rbac_access_denied")
    assert proxy.request("GET", "/admin", headers=[("Host", "t"), ("x-role", "admin")]).status == 200
    assert proxy.request("GET", "/admin", headers=[("Host", "t"), ("x-role", "guest")]).status == 403
    assert proxy.request("GET", "/reports", headers=[("Host", "t"), ("x-forwarded-for", "192.0.2.9")]).status == 200
    assert proxy.request("GET", "/reports").status == 403, "the peer itself is not in the office range"
    # shadow rules deny /public/secret in a dry run only
    assert proxy.request("GET", "/public/secret").status == 200
    assert len(up.requests) == 4
    assert proxy.stat("http.ingress.rbac.allowed") == 4
    assert proxy.stat("http.ingress.rbac.denied") == 3
    assert proxy.stat("http.ingress.rbac.dry_shadow_denied") == 1
    assert proxy.stat("http.ingress.rbac.dry_shadow_allowed") == 6
    lines = _log_lines(log, 7)
    assert lines[1] == "403 rbac_access_denied_matched_policy[none] -", lines


BOOTSTRAP = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: inbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: httpbin}}
          http_filters:
          - {rbac}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: httpbin
    type: STATIC
    load_assignment:
      cluster_name: httpbin
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {web}}}}}}}
"""


@pytest.mark.skipif(GOLDEN is None, reason=ABSENT)
def test_envoy_bootstrap_runs_istios_rbac_filter(upstream, tmp_path):
    """Istio's multiple-policies golden as the bootstrap's RBAC filter, with shadow rules added."""
    assert GOLDEN is not None
    rbac = yaml.safe_load((GOLDEN / "multiple-policies-out.yaml").read_text())
    rbac["typedConfig"]["shadowRules"] = SHADOW
    up = upstream()
    ports = {"admin": free_port(), "listen": free_port(), "web": up.port}
    path = tmp_path / "envoy.yaml"
    path.write_text(BOOTSTRAP.format(rbac=json.dumps(rbac), **ports))
    import http.client

    def call(method: str, target: str, **headers: str) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", ports["listen"], timeout=10)
        try:
            c.request(method, target, headers={"Host": headers.pop("host", "httpbin.foo"), **headers})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()
    with serving(path, ports["admin"]):
        assert call("GET", "/anything")[0] == 200                       # httpbin-1: GET or POST
        assert call("DELETE", "/anything") == (403, b"RBAC: access denied")
        assert call("DELETE", "/v1")[0] == 200                           # httpbin-2: paths
        assert call("DELETE", "/x", host="httpbin.org")[0] == 200        # httpbin-3: hosts
        assert call("DELETE", "/x", **{"x-abc": "abc1"})[0] == 200       # httpbin-9: a header
        assert call("PUT", "/secret")[0] == 403
        c = http.client.HTTPConnection("127.0.0.1", ports["admin"], timeout=10)
        c.request("GET", "/stats?format=json")
        stats = {s["name"]: s["value"] for s in json.loads(c.getresponse().read())["stats"] if "name" in s}
        c.close()
    assert len(up.requests) == 4
    assert stats["http.inbound.rbac.allowed"] == 4 and stats["http.inbound.rbac.denied"] == 2
    assert stats["http.inbound.rbac.istio_dry_run_allow_shadow_denied"] == 1
    assert stats["http.inbound.rbac.istio_dry_run_allow_shadow_allowed"] == 5


# ---------------------------------------------------------------- mTLS and SPIFFE principals

def https_status(port: int, ctx: ssl.SSLContext, path: str = "/") -> int:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="proxy.test")
    try:
        s.sendall(encode_request("GET", path, [("Host", "proxy.test")]))
        return read_message(Wire(s), request=False, timeout=10).status
    finally:
        s.close()


def test_spiffe_principals_over_mtls(upstream, mosnx, tmp_path):
    pytest.importorskip("cryptography")
    ca = CA(tmp_path)
    cert, key = ca.issue("proxy.test", dns=("proxy.test",))
    log = tmp_path / "access.log"
    # Istio's trust-domains policy, written as mosnx YAML: cluster.local and another.local
    # are trusted; from elsewhere, anything but bad* and untrusted
    rules = {"policies": {"trusted": {"permissions": [{"any": True}], "principals": [
        {"orIds": {"ids": [{"authenticated": {"principalName": {"prefix": "spiffe://cluster.local/"}}},
                           {"authenticated": {"principalName": {"prefix": "spiffe://another.local/"}}}]}}]},
        "payments-only": {"permissions": [{"urlPath": {"path": {"prefix": "/pay"}}}], "principals": [
            {"authenticated": {"principalName": {"exact": "spiffe://partner.example/ns/pay/sa/api"}}}]}}}
    up = upstream()
    proxy = mosnx([up], listener={
        "tls": {"cert": cert, "key": key, "client_ca": str(ca.path), "require_client_cert": True},
        "filters": [{"rbac": {"rules": rules}}],
        "access_log": {"path": str(log), "format": LOG}})
    # client certificates as Istio's workloads carry them: the SPIFFE id is the one URI SAN
    good = ca.issue("good", client=True, uris=("spiffe://cluster.local/ns/foo/sa/sleep",))
    partner = ca.issue("partner", client=True, uris=("spiffe://partner.example/ns/pay/sa/api",))
    stranger = ca.issue("stranger", client=True, uris=("spiffe://untrusted/ns/foo/sa/sleep",))
    ctx = lambda c: ca.client_context(alpn=("http/1.1",), cert=c)  # noqa: E731
    assert https_status(proxy.port, ctx(good)) == 200
    assert https_status(proxy.port, ctx(partner), "/pay/1") == 200
    assert https_status(proxy.port, ctx(partner), "/other") == 403
    assert https_status(proxy.port, ctx(stranger)) == 403
    with H2Client(proxy.port, tls=ca.client_context(alpn=("h2",), cert=good), server_name="proxy.test") as c:
        assert c.request("GET", "/h2", authority="proxy.test").status == 200
    with H2Client(proxy.port, tls=ca.client_context(alpn=("h2",), cert=stranger), server_name="proxy.test") as c:
        assert c.request("GET", "/h2", authority="proxy.test").status == 403
    lines = _log_lines(log, 6)
    assert lines[0] == "200 - spiffe://cluster.local/ns/foo/sa/sleep", lines
    assert lines[3] == "403 rbac_access_denied_matched_policy[none] spiffe://untrusted/ns/foo/sa/sleep", lines
    assert proxy.stat("http.ingress.rbac.allowed") == 3 and proxy.stat("http.ingress.rbac.denied") == 3
