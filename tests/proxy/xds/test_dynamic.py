"""The supervisor's xDS sink: what it accepts, refuses by name and keeps; a listener
waiting for its routes is warmed, not refused; a resend that brings nothing new costs
nothing; the subscriptions follow what the listeners and EDS clusters name; the
workers' payload round-trips."""
from __future__ import annotations

import asyncio

from google.protobuf import json_format

from mosnx.proxy.xds.dynamic import DynamicConfig, decode, effective
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, RESOURCE_TYPES, ROUTE
from mosnx.runtime.model import Config
from mosnx.runtime.snapshot import build_snapshot

BASE = Config(path="/nonexistent/mosnx.yaml", admin=None, listeners=(), clusters=())


def msg(type_url, d):
    return json_format.ParseDict(d, RESOURCE_TYPES[type_url]())


def cluster(name, **extra):
    return msg(CLUSTER, {"name": name, "type": "EDS", "connect_timeout": "1s",
                         "eds_cluster_config": {"eds_config": {"ads": {}}}, **extra})


def cla(name, port):
    return msg(ENDPOINT, {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]})


def routes(name, target="up"):
    return msg(ROUTE, {"name": name, "virtual_hosts": [{"name": "v", "domains": ["*"],
                                                         "routes": [{"match": {"prefix": "/"}, "route": {"cluster": target}}]}]})


def listener(name, port, rds):
    return msg(LISTENER, {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                          "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                              "stat_prefix": name, "rds": {"route_config_name": rds, "config_source": {"ads": {}}},
                              "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                                  "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})


class Harness:
    def __init__(self):
        self.pushes = 0
        self.asked: list[str] = []
        self.d = DynamicConfig(lambda: BASE, lambda c: build_snapshot(c, 2), self.changed)
        self.d.resubscribe = self.asked.append

    def changed(self):
        self.pushes += 1


def run(fn):
    async def go():
        r = fn()
        await asyncio.sleep(0)      # let the resubscriptions it scheduled run
        return r
    return asyncio.run(go())


def test_a_whole_configuration_is_taken_and_its_subscriptions_follow():
    h = Harness()
    assert h.d.subscriptions(LISTENER) is None and h.d.subscriptions(CLUSTER) is None
    assert h.d.subscriptions(ROUTE) == set()
    assert run(lambda: h.d.apply(CLUSTER, "1", {"up": cluster("up")}, set())) == []
    assert h.d.subscriptions(ENDPOINT) == {"up"} and h.asked == [ENDPOINT]
    assert run(lambda: h.d.apply(LISTENER, "1", {"l": listener("l", 18001, "r")}, set())) == []
    assert h.d.subscriptions(ROUTE) == {"r"}
    assert not h.d.ready() or {LISTENER, CLUSTER} <= h.d.received
    run(lambda: h.d.apply(ROUTE, "1", {"r": routes("r")}, set()))
    run(lambda: h.d.apply(ENDPOINT, "1", {"up": cla("up", 9000)}, set()))
    config = effective(BASE, h.d.payload())
    assert [lc.name for lc in config.listeners] == ["l"] and [c.name for c in config.clusters] == ["up"]
    assert h.d.ready() and h.pushes == 4


def test_a_listener_waiting_for_its_routes_is_not_refused():
    h = Harness()
    assert run(lambda: h.d.apply(LISTENER, "1", {"l": listener("l", 18001, "later")}, set())) == []
    assert effective(BASE, h.d.payload()).listeners == ()


def test_a_bad_resource_is_refused_by_name_and_its_last_good_version_kept():
    h = Harness()
    run(lambda: h.d.apply(CLUSTER, "1", {"up": cluster("up")}, set()))
    bad = cluster("up", lb_policy="CLUSTER_PROVIDED")
    rejected = run(lambda: h.d.apply(CLUSTER, "2", {"up": bad, "other": cluster("other")}, set()))
    assert [r.name for r in rejected] == ["up"] and "lb_policy" in rejected[0].detail
    assert h.d.resources[CLUSTER]["up"] == cluster("up") and "other" in h.d.resources[CLUSTER]
    assert (CLUSTER, "up") in h.d.failed
    # a good version of it clears the error state
    run(lambda: h.d.apply(CLUSTER, "3", {"up": cluster("up", connect_timeout="2s"), "other": cluster("other")}, set()))
    assert (CLUSTER, "up") not in h.d.failed


def test_an_update_that_does_not_build_is_refused_whole():
    def refuse(config):
        if any(c.name == "boom" for c in config.clusters):
            raise ConfigError([])
    h = Harness()
    h.d.validate = refuse
    rejected = run(lambda: h.d.apply(CLUSTER, "1", {"boom": cluster("boom")}, set()))
    assert [r.name for r in rejected] == ["boom"] and h.d.resources[CLUSTER] == {} and h.pushes == 0


def test_a_resend_with_nothing_new_costs_nothing():
    h = Harness()
    run(lambda: h.d.apply(CLUSTER, "1", {"up": cluster("up")}, set()))
    pushes = h.pushes
    h.d.validate = lambda c: (_ for _ in ()).throw(AssertionError("built again"))
    assert run(lambda: h.d.apply(CLUSTER, "2", {"up": cluster("up")}, set())) == []
    assert h.pushes == pushes and h.d.versions[CLUSTER] == "2"


def test_removal_and_unknown_types():
    h = Harness()
    run(lambda: h.d.apply(CLUSTER, "1", {"a": cluster("a"), "b": cluster("b")}, set()))
    run(lambda: h.d.apply(CLUSTER, "2", {}, {"a"}))
    assert set(h.d.resources[CLUSTER]) == {"b"}
    rejected = h.d.apply("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", "1",
                         {"s": cluster("s")}, set())
    assert [r.name for r in rejected] == ["s"]


def test_the_payload_round_trips():
    h = Harness()
    run(lambda: h.d.apply(CLUSTER, "1", {"up": cluster("up")}, set()))
    back = decode(h.d.payload())
    assert back[CLUSTER]["up"] == cluster("up")


def test_a_worker_keeps_the_messages_whose_bytes_did_not_change():
    from mosnx.proxy.xds.dynamic import Decoded
    h = Harness()
    run(lambda: h.d.apply(CLUSTER, "1", {"up": cluster("up"), "b": cluster("b")}, set()))
    memory = Decoded()
    first = decode(h.d.payload(), memory)
    again = decode(h.d.payload(), memory)
    assert again[CLUSTER]["up"] is first[CLUSTER]["up"]
    run(lambda: h.d.apply(CLUSTER, "2", {"up": cluster("up", connect_timeout="3s"), "b": cluster("b")}, set()))
    third = decode(h.d.payload(), memory)
    assert third[CLUSTER]["up"] is not first[CLUSTER]["up"] and third[CLUSTER]["b"] is first[CLUSTER]["b"]


# ---- secrets (SDS) ----

SDS = {"ads": {}}
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def tls_cluster(name, port):
    return msg(CLUSTER, {"name": name, "type": "STATIC", "connect_timeout": "1s",
                         "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                             "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
                         "transport_socket": {"name": "tls", "typed_config": {
                             "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                             "common_tls_context": {
                                 "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": SDS}],
                                 "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": SDS}}}}})


def pem_secret(name, **kind):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e"))
    from pemkit import PemCA
    ca = PemCA()
    if kind.get("ca"):
        return msg(SECRET, {"name": name, "validation_context": {"trusted_ca": {"inline_string": ca.pem.decode()}}})
    cert, key = ca.issue("w", uris=("spiffe://cluster.local/ns/a/sa/b",))
    return msg(SECRET, {"name": name, "tls_certificate": {"certificate_chain": {"inline_string": cert.decode()},
                                                          "private_key": {"inline_string": key.decode()}}})


def test_a_cluster_warms_until_its_secrets_come_and_the_subscription_follows():
    import pytest
    pytest.importorskip("cryptography")
    h = Harness()
    assert h.d.subscriptions(SECRET) == set()
    assert run(lambda: h.d.apply(CLUSTER, "1", {"up": tls_cluster("up", 9000)}, set())) == []   # no NACK
    assert h.d.subscriptions(SECRET) == {"default", "ROOTCA"} and SECRET in h.asked
    assert "up" not in {c.name for c in effective(BASE, h.d.payload()).clusters}      # warming
    assert run(lambda: h.d.apply(SECRET, "s1", {"default": pem_secret("default"),
                                                "ROOTCA": pem_secret("ROOTCA", ca=True)}, set())) == []
    up = next(c for c in effective(BASE, h.d.payload()).clusters if c.name == "up")
    assert up.options["tls"].key.source == "default"
    # a rotated certificate reaches the workers' translation too
    run(lambda: h.d.apply(SECRET, "s2", {"default": pem_secret("default"),
                                         "ROOTCA": h.d.resources[SECRET]["ROOTCA"]}, set()))
    again = next(c for c in effective(BASE, h.d.payload()).clusters if c.name == "up")
    assert again.options["tls"].cert != up.options["tls"].cert
    # a secret that is not PEM is refused by name; the last good one keeps serving
    bad = msg(SECRET, {"name": "default", "tls_certificate": {"certificate_chain": {"inline_string": "x"},
                                                              "private_key": {"inline_string": "y"}}})
    rejected = run(lambda: h.d.apply(SECRET, "s3", {"default": bad}, set()))
    assert [r.name for r in rejected] == ["default"] and "not PEM" in rejected[0].detail
    still = next(c for c in effective(BASE, h.d.payload()).clusters if c.name == "up")
    assert still.options["tls"].cert == again.options["tls"].cert
