"""Envoy filter chains -> a "chains" ListenerConfig: matches, stacks, default chain,
listener filters, a chain's TLS; and the snapshot builds each chain's stack."""
from __future__ import annotations

import ipaddress
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import L, msg  # noqa: E402
from mosnx.runtime.config.protocols import ServerTls  # noqa: E402
from mosnx.runtime.envoy.apply import apply, needed_names  # noqa: E402
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.listeners import rds_names, translate_listener  # noqa: E402
from mosnx.runtime.envoy.protos import LISTENER, ROUTE  # noqa: E402
from mosnx.runtime.model import ChainMatch, ClusterConfig, Config, Endpoint  # noqa: E402
from mosnx.runtime.snapshot import build_snapshot  # noqa: E402

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {"name": "router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
TCP = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


def hcm(cluster: str | None = None, rds: str | None = None) -> dict:
    tc: dict = {"@type": HCM, "stat_prefix": "x", "http_filters": [ROUTER]}
    if rds:
        tc["rds"] = {"route_config_name": rds, "config_source": {"ads": {}}}
    else:
        tc["route_config"] = {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]}
    return {"name": "hcm", "typed_config": tc}


def tcp(cluster: str) -> dict:
    return {"name": "tcp", "typed_config": {"@type": TCP, "stat_prefix": "t", "cluster": cluster}}


def tls(**common) -> dict:
    c = {"tls_certificates": [{"certificate_chain": {"filename": "/certs/a.pem"},
                               "private_key": {"filename": "/certs/a.key"}}], **common}
    return {"name": "tls", "typed_config": {"@type": TLS, "common_tls_context": c}}


def listener(*chains: dict, **more) -> dict:
    return {"name": "in", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15006}},
            "filter_chains": list(chains), **more}


def test_chains_matches_stacks_and_default():
    sink = Sink()
    lc = translate_listener(msg(L, listener(
        {"name": "web", "filter_chain_match": {"destination_port": 8080, "server_names": ["API.Example.com"],
                                               "transport_protocol": "tls", "application_protocols": ["h2"],
                                               "prefix_ranges": [{"address_prefix": "10.0.0.0", "prefix_len": 8}],
                                               "source_type": "SAME_IP_OR_LOOPBACK", "source_ports": [1234]},
         "filters": [hcm("web")], "transport_socket": tls(alpn_protocols=["h2", "istio"])},
        {"name": "db", "filter_chain_match": {"source_prefix_ranges": [{"address_prefix": "127.0.0.2",
                                                                        "prefix_len": 32}]},
         "filters": [tcp("pg")]},
        {"name": "db", "filters": [tcp("pg2")]},
        default_filter_chain={"filters": [tcp("blackhole")]},
        listener_filters=[{"name": "envoy.filters.listener.tls_inspector"},
                          {"name": "x", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters."
                                                                  "listener.http_inspector.v3.HttpInspector"},
                           "filter_disabled": {"destination_port_range": {"start": 80, "end": 81}}}],
        listener_filters_timeout="2s", continue_on_listener_filters_timeout=True)),
        Findings(L, "in", "", sink))
    assert lc.protocol == "chains" and (lc.host, lc.port) == ("127.0.0.1", 15006)
    web, db, db2 = lc.filter_chains
    assert web.match == ChainMatch(destination_port=8080, server_names=("api.example.com",),
                                   transport_protocol="tls", application_protocols=("h2",),
                                   prefix_ranges=(ipaddress.ip_network("10.0.0.0/8"),), source_type="local",
                                   source_ports=(1234,))
    assert (web.stack.name, web.stack.protocol, web.stack.chain_of) == ("in/web", "http", "in")
    # any ALPN string is offered (Istio's "istio" among them)
    assert web.stack.options["tls"] == ServerTls(cert="/certs/a.pem", key="/certs/a.key", alpn=("h2", "istio"))
    # two chains of one name get the index; an unnamed default chain is "default"
    assert [db.stack.name, db2.stack.name] == ["in/db#1", "in/db#2"]
    assert db.stack.route.cluster == "pg" and db2.match == ChainMatch()
    assert lc.default_filter_chain is not None and lc.default_filter_chain.stack.name == "in/default"
    assert [(f.kind, f.disabled_ports) for f in lc.listener_filters] == [
        ("tls_inspector", ()), ("http_inspector", ((80, 81),))]
    assert (lc.listener_filters_timeout, lc.continue_on_listener_filters_timeout) == (2.0, True)
    assert [s.name for s in lc.stacks()] == ["in/web", "in/db#1", "in/db#2", "in/default"]


def test_one_chain_without_a_match_is_a_plain_listener():
    lc = translate_listener(msg(L, listener({"filters": [tcp("pg")]})), Findings(L, "in"))
    assert (lc.protocol, lc.name, lc.filter_chains) == ("tcp", "in", ())
    # a match, even on one chain, makes it a chains listener
    lc = translate_listener(msg(L, listener({"filter_chain_match": {"destination_port": 5432},
                                             "filters": [tcp("pg")]})), Findings(L, "in"))
    assert lc.protocol == "chains" and lc.filter_chains[0].stack.name == "in/0"


@pytest.mark.parametrize("chain, path, words", [
    ({"filter_chain_match": {"prefix_ranges": [{"address_prefix": "not-an-ip", "prefix_len": 8}]},
      "filters": [tcp("pg")]}, "filter_chains[0].filter_chain_match.prefix_ranges[0]", "address range"),
    ({"filters": [tcp("pg")], "transport_socket": {"name": "alts", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.alts.v3.Alts"}}},
     "filter_chains[0].transport_socket.typed_config", "DownstreamTlsContext"),
])
def test_what_a_chain_cannot_be(chain, path, words):
    two = listener(chain, {"filters": [tcp("other")]})
    with pytest.raises(Rejected) as e:
        translate_listener(msg(L, two), Findings(L, "in"))
    assert e.value.rejection.field_path == path and words in e.value.rejection.message


def test_a_chain_no_inspector_can_detect_is_skipped():
    sink = Sink()
    lc = translate_listener(msg(L, listener({"filter_chain_match": {"transport_protocol": "quic"},
                                             "filters": [tcp("a")]}, {"filters": [tcp("b")]})),
                            Findings(L, "in", "", sink))
    assert [c.stack.route.cluster for c in lc.filter_chains] == ["b"]
    assert any("quic" in w.message for w in sink.warnings)


def test_every_chain_asks_rds_and_the_listener_waits_for_all():
    d = listener({"filter_chain_match": {"transport_protocol": "tls"}, "filters": [hcm(rds="a")]},
                 {"filters": [hcm(rds="b")]}, default_filter_chain={"filters": [hcm(rds="a")]})
    assert rds_names(msg(L, d)) == ["a", "b"]
    assert needed_names({LISTENER: {"in": msg(L, d)}})[ROUTE] == {"a", "b"}
    routes = {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "web"}}]}]}
    base = Config(path="<test>", admin=None, listeners=(), clusters=(
        ClusterConfig("web", (Endpoint("127.0.0.1", 9),)),))
    sink = Sink()
    got, rejected = apply(base, {LISTENER: {"in": msg(L, d)}, ROUTE: {"a": msg(ROUTE, {"name": "a", **routes})}}, sink)
    assert got.listeners == () and not rejected and "b" in str(sink.waiting[0])
    got, rejected = apply(base, {LISTENER: {"in": msg(L, d)}, ROUTE: {
        "a": msg(ROUTE, {"name": "a", **routes}),
        "b": msg(ROUTE, {"name": "b", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "nowhere"}}]}]})}})
    # a chain naming a cluster that is not there keeps the whole listener out
    assert got.listeners == () and [r.message for r in rejected] == ['its routes name unknown cluster "nowhere"']


def test_snapshot_builds_each_chain_as_a_listener_never_bound():
    lc = translate_listener(msg(L, listener(
        {"filter_chain_match": {"transport_protocol": "raw_buffer"}, "filters": [hcm("web")]},
        {"filters": [tcp("web")]})), Findings(L, "in"))
    config = Config(path="<test>", admin=None, listeners=(lc,), clusters=(
        ClusterConfig("web", (Endpoint("127.0.0.1", 9),)),))
    snap = build_snapshot(config)
    assert sorted(snap.listeners) == ["in", "in/0", "in/1"]
    assert snap.listeners["in/0"].config.protocol == "http" and snap.listeners["in/1"].config.protocol == "tcp"
    assert {n for n, lst in snap.listeners.items() if lst.config.chain_of is None} == {"in"}
