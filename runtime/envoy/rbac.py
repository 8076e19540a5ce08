"""Envoy's RBAC filters (HTTP and network) -> mosnx's `rbac` filter config.

The decoded message is turned into plain data (json_format, proto field names) and
compiled by runtime.filters.rbac, the same compiler a mosnx YAML `rbac` filter goes
through, so what loads here is what runs. A field mosnx cannot evaluate (CEL
conditions, matcher trees, extension matchers, route metadata) rejects the
listener (X002) at its field path; it never becomes a rule that allows. Fields
that only tune reporting (`track_per_rule_stats`, `audit_logging_options`, the
network filter's `enforcement_type` and `delay_deny`) are warnings.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2  # noqa: F401  (Any in uri_template)

from ..filters.rbac import NetworkRbac, RbacConfig, network_rbac
from ..filters.rbac_match import RbacError
from ..model import FilterSpec
from ..stats import Store
from .findings import Findings

HTTP_RBAC = "envoy.extensions.filters.http.rbac.v3.RBAC"
HTTP_RBAC_PER_ROUTE = "envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
NETWORK_RBAC = "envoy.extensions.filters.network.rbac.v3.RBAC"
_RULES = ("rules", "shadow_rules")


def _plain(msg: Any, f: Findings, supported: set[str], warned: set[str]) -> dict[str, Any]:
    for fd, _ in msg.ListFields():
        if fd.name in warned:
            f.warn("not supported by mosnx; ignored", fd.name)
        elif fd.name not in supported:
            f.reject(f"{fd.name} is not supported (rules and shadow_rules are)", fd.name)
    for key in _RULES:
        if msg.HasField(key) and getattr(msg, key).HasField("audit_logging_options"):
            f.at(key).warn("not supported by mosnx; ignored", "audit_logging_options")
    d = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    for key in warned:
        d.pop(key, None)
    for key in _RULES:
        if msg.HasField(key):
            d.setdefault(key, {}).pop("audit_logging_options", None)   # `rules: {}` stays: it denies all
    return d


def http_rbac(msg: Any, f: Findings) -> dict[str, Any]:
    """An envoy.extensions.filters.http.rbac.v3.RBAC as the `rbac` filter's config."""
    cfg = _plain(msg, f, {"rules", "rules_stat_prefix", "shadow_rules", "shadow_rules_stat_prefix"},
                 {"track_per_rule_stats"})
    try:
        RbacConfig.from_dict(cfg)
    except RbacError as e:
        f.reject(e.message, e.path)
    return cfg


def http_filter(hf: Any, f: Findings) -> FilterSpec:
    """The http_filters entry `hf` (typed_config an HTTP RBAC) as a FilterSpec; `f` is at the entry."""
    msg = http_rbac_pb2.RBAC()
    hf.typed_config.Unpack(msg)
    return FilterSpec("rbac", hf.name or "rbac", http_rbac(msg, f.at("typed_config")), disabled=hf.disabled)


def http_rbac_per_route(per_route: Any, f: Findings) -> dict[str, Any] | None:
    """An envoy.extensions.filters.http.rbac.v3.RBACPerRoute (a route's, vhost's or weighted
    cluster's typed_per_filter_config) as the `rbac` config that replaces the filter's own for
    that route's requests; None when it has no `rbac`, which turns the filter off there, as
    in Envoy. The routes translation calls it where it reads typed_per_filter_config."""
    if not per_route.HasField("rbac"):
        return None
    return http_rbac(per_route.rbac, f.at("rbac"))


def network_rbac_config(msg: Any, f: Findings) -> dict[str, Any]:
    """An envoy.extensions.filters.network.rbac.v3.RBAC as plain data NetworkRbac takes."""
    cfg = _plain(msg, f, {"rules", "shadow_rules", "shadow_rules_stat_prefix", "stat_prefix"},
                 {"enforcement_type", "delay_deny"})
    try:
        RbacConfig.from_dict(cfg, network=True)
    except RbacError as e:
        f.reject(e.message, e.path)
    return cfg


def network_filter(nf: Any, f: Findings, stats: Store | None = None) -> NetworkRbac:
    """A listener's network filter entry `nf` (typed_config a network RBAC) as the NetworkRbac a
    listener calls at connection start; `f` is at the entry."""
    msg = network_rbac_pb2.RBAC()
    nf.typed_config.Unpack(msg)
    return network_rbac(network_rbac_config(msg, f.at("typed_config")), stats)
