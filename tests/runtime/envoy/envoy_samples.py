"""Envoy resources shared by the tests of runtime/envoy: a bootstrap, a route
configuration with most of what mosnx translates, a listener, a cluster and its
endpoints; and helpers that decode them and put requests to a route table."""
from __future__ import annotations

import textwrap
from typing import Any

from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.envoy import protos
from mosnx.runtime.envoy.decode import parse
from mosnx.runtime.envoy.findings import Findings, Sink
from mosnx.runtime.envoy.routes import translate_route_config
from mosnx.runtime.headers import Headers

L, R, C, E = protos.LISTENER, protos.ROUTE, protos.CLUSTER, protos.ENDPOINT

STATIC = textwrap.dedent("""\
    node:
      id: edge-1
      cluster: edge
      metadata: {zone: a, canary: true}
    admin:
      address: {socket_address: {address: 127.0.0.1, port_value: 19000}}
    dynamic_resources:
      ads_config:
        api_type: DELTA_GRPC
        transport_api_version: V3
        set_node_on_first_message_only: true
        grpc_services:
        - envoy_grpc: {cluster_name: xds}
      lds_config: {ads: {}, initial_fetch_timeout: 3s}
      cds_config: {ads: {}}
    static_resources:
      listeners:
      - name: web
        address: {socket_address: {address: 127.0.0.1, port_value: 18000}}
        filter_chains:
        - filters:
          - name: envoy.filters.network.http_connection_manager
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
              stat_prefix: web
              route_config:
                name: local
                virtual_hosts:
                - name: all
                  domains: ["*"]
                  routes:
                  - match: {prefix: "/"}
                    route: {cluster: app, timeout: 2s}
              http_filters:
              - name: envoy.filters.http.router
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
      clusters:
      - name: app
        type: STATIC
        connect_timeout: {seconds: 2}
        load_assignment:
          cluster_name: app
          endpoints:
          - lb_endpoints:
            - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18001}}}
      - name: xds
        type: STATIC
        typed_extension_protocol_options:
          envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
            "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
            explicit_http_config: {http2_protocol_options: {}}
        load_assignment:
          cluster_name: xds
          endpoints:
          - lb_endpoints:
            - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18002}}}
    """)


def msg(type_url: str, d: dict) -> Any:
    m, errors = parse(d, protos.RESOURCE_TYPES[type_url], None)
    assert not errors, errors
    return m


def ctx(path: str, host: str = "example.com", method: str = "GET", **headers: str) -> StreamContext:
    pairs = [("host", host)] + [(k.replace("_", "-"), v) for k, v in headers.items()]
    return StreamContext(RequestHead(method, path, Headers.from_pairs(pairs)))


ROUTES = {
    "name": "main",
    "response_headers_to_add": [{"header": {"key": "x-config", "value": "1"}}],
    "virtual_hosts": [
        {"name": "api", "domains": ["api.example.com", "*.api.test"],
         "request_headers_to_add": [{"header": {"key": "x-vhost", "value": "api"}, "append": False}],
         "routes": [
             {"match": {"prefix": "/v1", "headers": [{"name": "x-canary", "string_match": {"exact": "yes"}}]},
              "route": {"cluster": "canary"}},
             {"match": {"path": "/health"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}},
             {"match": {"safe_regex": {"regex": "/users/[0-9]+"}},
              "route": {"cluster": "users", "regex_rewrite": {"pattern": {"regex": "^/users/"},
                                                                "substitution": "/u/"}}},
             {"match": {"prefix": "/v1", "query_parameters": [{"name": "debug", "present_match": True}]},
              "route": {"cluster": "debug", "timeout": "0s"}},
             {"match": {"path_separated_prefix": "/v1"},
              "route": {"weighted_clusters": {"clusters": [{"name": "a", "weight": 3}, {"name": "b", "weight": 1}]},
                        "prefix_rewrite": "/api", "host_rewrite_literal": "backend",
                        "retry_policy": {"retry_on": "5xx,connect-failure,unknown-thing", "num_retries": 2,
                                         "per_try_timeout": "0.5s"},
                        "request_mirror_policies": [{"cluster": "shadow", "runtime_fraction": {
                            "default_value": {"numerator": 25}}}],
                        "hash_policy": [{"header": {"header_name": "X-User"}}]}},
         ]},
        {"name": "www", "domains": ["*"],
         "routes": [
             {"match": {"prefix": "/old", "case_sensitive": False},
              "redirect": {"prefix_rewrite": "/new", "response_code": "PERMANENT_REDIRECT"}},
             {"match": {"prefix": "/", "headers": [{"name": ":method", "string_match": {"exact": "POST"},
                                                     "invert_match": True}]},
              "route": {"cluster": "web"}},
         ]},
    ],
}


def table(sink: Sink | None = None):
    return translate_route_config(msg(R, ROUTES), Findings(R, "main", "", sink))


def pick(t, c: StreamContext):
    vh = t.vhost_of(c.request)
    return vh.match(c) if vh is not None else None


CLUSTER = {"name": "app", "type": "EDS", "eds_cluster_config": {"service_name": "app-eps"},
           "lb_policy": "LEAST_REQUEST", "connect_timeout": "0.25s",
           "circuit_breakers": {"thresholds": [{"max_connections": 7, "max_retries": 1}]},
           "outlier_detection": {"consecutive_5xx": 3, "base_ejection_time": "10s"},
           "health_checks": [{"timeout": "1s", "interval": "2s", "unhealthy_threshold": 2, "healthy_threshold": 1,
                              "http_health_check": {"path": "/healthz"}}]}
ASSIGNMENT = {"cluster_name": "app-eps", "endpoints": [{"lb_endpoints": [
    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9001}}},
     "load_balancing_weight": 3},
    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9002}}},
     "health_status": "UNHEALTHY"}]}]}


LISTENER = {"name": "edge", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18500}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": protos.HCM, "stat_prefix": "edge", "merge_slashes": True,
                "rds": {"route_config_name": "main", "config_source": {"ads": {}}},
                "http_filters": [
                    {"name": "fault", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                        "abort": {"http_status": 503, "percentage": {"numerator": 10}}}},
                    {"name": "buffer", "is_optional": True, "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                        "max_request_bytes": 1024}},
                    {"name": "router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}
