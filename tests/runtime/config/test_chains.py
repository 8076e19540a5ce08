"""runtime/config/chains.py: filter chains in mosnx.yaml load into the same model as
Envoy's, and what does not fit is a positioned ConfigError."""
from __future__ import annotations

import ipaddress

import pytest

from mosnx.runtime.config import load_config_text
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.model import ChainMatch, ListenerFilter
from mosnx.runtime.snapshot import build_snapshot

CONFIG = """
listeners:
  - name: edge
    address: 127.0.0.1:8443
    listener_filters: [tls_inspector, http_inspector]
    listener_filters_timeout: 2s
    filter_chains:
      - name: api
        match: {server_names: [API.test, "*.api.test"], transport_protocol: tls}
        route: {cluster: api}
        tls: {cert: %(cert)s, key: %(cert)s}
      - name: db
        match: {source_prefix_ranges: [10.1.0.0/16], destination_port: 8443}
        protocol: tcp
        route: {cluster: db}
        tcp: {idle_timeout: 30s}
    default_filter_chain:
      protocol: tcp
      route: {cluster: db}
clusters:
  - name: api
    endpoints: [127.0.0.1:9001]
  - name: db
    endpoints: [127.0.0.1:9002]
"""


def _load(tmp_path, text: str):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    return load_config_text(text % {"cert": cert}, str(tmp_path / "m.yaml"))


def test_chains_load_as_envoy_chains_do(tmp_path):
    cfg = _load(tmp_path, CONFIG)
    [edge] = cfg.listeners
    assert edge.protocol == "chains" and (edge.host, edge.port) == ("127.0.0.1", 8443)
    api, db = edge.filter_chains
    assert api.match == ChainMatch(server_names=("api.test", "*.api.test"), transport_protocol="tls")
    assert (api.stack.name, api.stack.host, api.stack.port, api.stack.chain_of) == ("edge/api", "127.0.0.1", 8443,
                                                                                   "edge")
    assert api.stack.protocol == "http" and api.stack.route.cluster == "api" and "tls" in api.stack.options
    assert db.match == ChainMatch(destination_port=8443, source_prefix_ranges=(ipaddress.ip_network("10.1.0.0/16"),))
    assert db.stack.protocol == "tcp" and db.stack.options["tcp"].idle_timeout == 30.0
    assert edge.default_filter_chain is not None and edge.default_filter_chain.stack.name == "edge/default"
    assert edge.listener_filters == (ListenerFilter("tls_inspector"), ListenerFilter("http_inspector"))
    assert edge.listener_filters_timeout == 2.0 and not edge.continue_on_listener_filters_timeout
    snap = build_snapshot(cfg)
    assert sorted(snap.listeners) == ["edge", "edge/api", "edge/db", "edge/default"]


@pytest.mark.parametrize("change, words", [
    # a listener with chains keeps its stack keys out
    (("    listener_filters_timeout: 2s\n", "    listener_filters_timeout: 2s\n    route: {cluster: api}\n"),
     "route: belongs in a filter chain"),
    (("        route: {cluster: api}\n        tls", "        tls"), "needs route: or rules:"),
    (("[10.1.0.0/16]", "[10.1.0.0/66]"), "prefix_ranges"),
    (('"*.api.test"', '"api.*.test"'), "wildcard"),
    (("      - name: db\n", "      - name: api\n"), 'duplicate filter chain "api"'),
    (("transport_protocol: tls", "transport_protocol: quic"), "transport_protocol"),
    (("[tls_inspector, http_inspector]", "[original_dst]"), "listener_filters"),
    (("    filter_chains:\n      - name: api\n        match",
      "    filter_chains:\n      - name: api\n        nope: 1\n        match"), 'unknown key "nope"'),
])
def test_what_chains_cannot_be(tmp_path, change, words):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, CONFIG.replace(*change))
    text = "\n".join(str(d) for d in e.value.diagnostics)
    assert words in text and "m.yaml:" in text


def test_a_listener_without_chains_still_needs_a_route(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config_text("listeners:\n  - {name: a, address: 127.0.0.1:1}\n", str(tmp_path / "m.yaml"))
    assert "needs route: or rules:" in str(e.value.diagnostics[0])
