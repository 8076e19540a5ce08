"""An Envoy bootstrap's routes and per-route filter settings, served by `mosnx run`
with real sockets and real upstreams on 127.0.0.1: cluster_header, runtime_fraction,
typed_per_filter_config for fault and local_ratelimit at vhost, route and
weighted-cluster level, and CORS by typed policy and by the `cors` fields; then
the same cors filter and cluster_header from mosnx's own YAML."""
from __future__ import annotations

import http.client
import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import free_port  # noqa: E402
from test_envoy_bootstrap import serving  # noqa: E402

T = "type.googleapis.com/"
HF = T + "envoy.extensions.filters.http."

BOOTSTRAP = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: edge
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          http_filters:
          - name: envoy.filters.http.cors
            typed_config: {{"@type": {hf}cors.v3.Cors}}
          - name: envoy.filters.http.fault
            typed_config:
              "@type": {hf}fault.v3.HTTPFault
              abort: {{http_status: 503, percentage: {{numerator: 0}}}}
          - name: envoy.filters.http.local_ratelimit
            typed_config: {{"@type": {hf}local_ratelimit.v3.LocalRateLimit, stat_prefix: rl}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": {hf}router.v3.Router}}
          route_config:
            name: local
            virtual_hosts:
            - name: faulty
              domains: ["faulty.test"]
              typed_per_filter_config:
                envoy.filters.http.fault:
                  "@type": {hf}fault.v3.HTTPFault
                  abort: {{http_status: 418, percentage: {{numerator: 100}}}}
              routes:
              - match: {{prefix: /healthy}}
                route: {{cluster: a}}
                typed_per_filter_config:
                  envoy.filters.http.fault: {{"@type": {t}envoy.config.route.v3.FilterConfig, disabled: true}}
              - match: {{prefix: /}}
                route: {{cluster: a}}
            - name: legacy
              domains: ["legacy.test"]
              cors:
                allow_origin_string_match: [{{suffix: .legacy.example}}]
                allow_methods: GET
              routes:
              - match: {{prefix: /}}
                route: {{cluster: a}}
            - name: rest
              domains: ["*"]
              routes:
              - match: {{prefix: /by-header}}
                route: {{cluster_header: x-cluster}}
              - match:
                  prefix: /frac
                  runtime_fraction: {{default_value: {{numerator: 50, denominator: HUNDRED}}, runtime_key: frac}}
                route: {{cluster: a}}
              - match: {{prefix: /frac}}
                route: {{cluster: b}}
              - match: {{prefix: /limited}}
                route: {{cluster: a}}
                typed_per_filter_config:
                  envoy.filters.http.local_ratelimit:
                    "@type": {hf}local_ratelimit.v3.LocalRateLimit
                    stat_prefix: rl
                    token_bucket: {{max_tokens: 2, tokens_per_fill: 1, fill_interval: 1000s}}
                    filter_enabled: {{default_value: {{numerator: 100}}}}
                    filter_enforced: {{default_value: {{numerator: 100}}}}
              - match: {{prefix: /split}}
                route:
                  weighted_clusters:
                    clusters:
                    - {{name: a, weight: 1}}
                    - name: b
                      weight: 1
                      typed_per_filter_config:
                        envoy.filters.http.fault:
                          "@type": {hf}fault.v3.HTTPFault
                          abort: {{http_status: 451, percentage: {{numerator: 100}}}}
              - match: {{prefix: /cors}}
                route: {{cluster: a}}
                typed_per_filter_config:
                  envoy.filters.http.cors:
                    "@type": {hf}cors.v3.CorsPolicy
                    allow_origin_string_match: [{{exact: "https://a.example"}}, {{prefix: "https://app."}}]
                    allow_methods: "GET, PUT"
                    allow_headers: x-a
                    expose_headers: x-e
                    max_age: "600"
                    allow_credentials: true
              - match: {{prefix: /}}
                route: {{cluster: a}}
  clusters:
  - name: a
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {a}}}}}}}}}]}}]
  - name: b
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: b
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {b}}}}}}}}}]}}]
"""


def request(port: int, path: str, host: str = "x.test", method: str = "GET",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, headers={"Host": host, **(headers or {})})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def stats(admin: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?format=json", timeout=10) as r:
        return {s["name"]: s["value"] for s in json.loads(r.read())["stats"] if "name" in s}


@pytest.fixture(scope="module")
def edge(tmp_path_factory, module_upstream):
    a, b = module_upstream(), module_upstream()
    ports = {"admin": free_port(), "listen": free_port(), "a": a.port, "b": b.port}
    path = Path(tmp_path_factory.mktemp("envoy")) / "envoy.yaml"
    path.write_text(BOOTSTRAP.format(hf=HF, t=T, **ports))
    with serving(path, ports["admin"]):
        yield ports, a, b


def test_cluster_header_picks_the_cluster_or_answers_503(edge):
    ports, a, b = edge
    na, nb = len(a.requests), len(b.requests)
    assert request(ports["listen"], "/by-header", headers={"x-cluster": "b"})[0] == 200
    assert (len(a.requests), len(b.requests)) == (na, nb + 1)
    for headers in ({}, {"x-cluster": "nope"}):
        status, h, _ = request(ports["listen"], "/by-header", headers=headers)
        assert (status, h.get("x-mosnx-error")) == (503, "cluster_not_found")
    assert (len(a.requests), len(b.requests)) == (na, nb + 1)


def test_runtime_fraction_sends_about_its_share(edge):
    ports, a, b = edge
    na, nb = len(a.requests), len(b.requests)
    for _ in range(60):
        assert request(ports["listen"], "/frac")[0] == 200
    got_a, got_b = len(a.requests) - na, len(b.requests) - nb
    assert got_a + got_b == 60 and 10 <= got_a <= 50      # 50% of 60; the chance to miss is below 1e-6


def test_fault_settings_by_vhost_route_and_weighted_cluster(edge):
    ports, a, b = edge
    assert request(ports["listen"], "/any", "faulty.test")[0] == 418           # the vhost's abort
    assert request(ports["listen"], "/healthy", "faulty.test")[0] == 200       # the route turns it off
    assert request(ports["listen"], "/any")[0] == 200                          # the listener's 0%
    nb = len(b.requests)
    got = {request(ports["listen"], "/split")[0] for _ in range(40)}
    assert got == {200, 451} and len(b.requests) == nb                         # b's picks aborted before it


def test_a_route_rate_limit_with_its_own_bucket(edge):
    ports, _, _ = edge
    got = [request(ports["listen"], "/limited")[0] for _ in range(4)]
    assert got == [200, 200, 429, 429]
    assert all(request(ports["listen"], "/other")[0] == 200 for _ in range(4))  # no bucket of its own there


def test_cors_by_typed_policy_and_by_the_cors_field(edge):
    ports, a, _ = edge
    before = stats(ports["admin"])
    n = len(a.requests)
    status, h, body = request(ports["listen"], "/cors", method="OPTIONS",
                              headers={"Origin": "https://a.example", "Access-Control-Request-Method": "PUT"})
    assert (status, body, len(a.requests)) == (200, b"", n)                    # answered here
    assert {k: v for k, v in h.items() if k.startswith("access-control")} == {
        "access-control-allow-origin": "https://a.example", "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, PUT", "access-control-allow-headers": "x-a",
        "access-control-max-age": "600", "access-control-expose-headers": "x-e"}
    status, h, _ = request(ports["listen"], "/cors", headers={"Origin": "https://app.shop"})
    assert (status, h["access-control-allow-origin"], h["access-control-expose-headers"]) == \
        (200, "https://app.shop", "x-e")
    status, h, _ = request(ports["listen"], "/cors", headers={"Origin": "https://evil.example"})
    assert status == 200 and not any(k.startswith("access-control") for k in h)
    status, h, _ = request(ports["listen"], "/cors", method="OPTIONS",
                           headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"})
    assert len(a.requests) == n + 3                                            # passed on upstream
    status, h, _ = request(ports["listen"], "/", "legacy.test", headers={"Origin": "https://x.legacy.example"})
    assert h["access-control-allow-origin"] == "https://x.legacy.example"
    status, h, _ = request(ports["listen"], "/plain", headers={"Origin": "https://a.example"})
    assert not any(k.startswith("access-control") for k in h)                  # no policy on that route
    after = stats(ports["admin"])
    assert after["http.edge.cors.origin_valid"] - before.get("http.edge.cors.origin_valid", 0) == 3
    assert after["http.edge.cors.origin_invalid"] - before.get("http.edge.cors.origin_invalid", 0) == 2


def test_a_route_bucket_is_the_proxys_with_two_workers(tmp_path, upstream):
    """One connection per request, so both workers take some: the route's bucket of 4
    admits 4 in all, not 4 per worker."""
    a, b = upstream(), upstream()
    ports = {"admin": free_port(), "listen": free_port(), "a": a.port, "b": b.port}
    path = tmp_path / "envoy.yaml"
    path.write_text(BOOTSTRAP.format(hf=HF, t=T, **ports).replace("max_tokens: 2", "max_tokens: 4"))
    with serving(path, ports["admin"], workers=2):
        got = [request(ports["listen"], "/limited")[0] for _ in range(16)]
    assert got.count(200) == 4 and got.count(429) == 12, got


def test_yaml_cors_filter_and_cluster_header(upstream, mosnx):
    web, other = upstream(), upstream()
    proxy = mosnx([web.address], route={"cluster": None, "timeout": None, "cluster_header": "x-cluster"},
                  clusters={"other": [other.address]},
                  listener={"filters": [{"cors": {"allow_origin_string_match": [{"suffix": ".example"}],
                                                  "allow_methods": ["GET", "POST"], "max_age": 30}}]})
    status, h, _ = request(proxy.port, "/", headers={"x-cluster": "other", "Origin": "https://a.example"})
    assert (status, h["access-control-allow-origin"], len(other.requests), len(web.requests)) == \
        (200, "https://a.example", 1, 0)
    status, h, _ = request(proxy.port, "/", method="OPTIONS", headers={
        "Origin": "https://a.example", "Access-Control-Request-Method": "POST"})
    assert (status, h["access-control-allow-methods"], h["access-control-max-age"]) == (200, "GET, POST", "30")
    assert request(proxy.port, "/")[0] == 503                                   # no header: no cluster
    assert proxy.stat("http.ingress.cors.origin_valid") == 2
