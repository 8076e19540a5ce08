"""Envoy Listener -> ListenerConfig: HTTP filters kept, skipped or refused; RDS; tcp_proxy."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import (ASSIGNMENT, CLUSTER, LISTENER, ROUTES, C, E, L, R, ctx, msg, pick,  # noqa: E402,F401
                           table)
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.listeners import translate_listener  # noqa: E402


def test_listener_filters_and_rds():
    sink = Sink()
    lc = translate_listener(msg(L, LISTENER), Findings(L, "edge", "", sink), {"main": table()})
    assert lc.route_config == "main" and lc.route_table is not None
    [fault] = lc.filters
    assert fault.kind == "fault" and fault.config == {"abort": {"percentage": 10.0, "http_status": 503}}
    assert lc.path_normalization.merge_slashes and not lc.path_normalization.normalize
    assert any("Buffer" in w.message and "skipped" in w.message for w in sink.warnings)
    required = dict(LISTENER)
    hcm = required["filter_chains"][0]["filters"][0]["typed_config"]
    del hcm["http_filters"][1]["is_optional"]
    with pytest.raises(Rejected) as e:
        translate_listener(msg(L, required), Findings(L, "edge"), {"main": table()})
    assert e.value.rejection.field_path == "filter_chains[0].filters[0].typed_config.http_filters[1]"
    hcm["http_filters"][1]["is_optional"] = True


def test_tcp_proxy_listener():
    lc = translate_listener(msg(L, {
        "name": "db", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15432}},
        "filter_chains": [{"filters": [{"name": "tcp", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "db", "cluster": "pg", "idle_timeout": "30s"}}]}]}), Findings(L, "db"))
    assert (lc.protocol, lc.route.cluster, lc.timeouts.idle, lc.port) == ("tcp", "pg", 30.0, 15432)


def test_what_a_listener_cannot_be():
    two = {"name": "x", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
           "filter_chains": [{"filters": []}, {"filters": []}]}
    with pytest.raises(Rejected) as e:
        translate_listener(msg(L, two), Findings(L, "x"))
    assert e.value.rejection.field_path == "filter_chains[0].filters"
    none = {**two, "filter_chains": []}
    with pytest.raises(Rejected) as e:
        translate_listener(msg(L, none), Findings(L, "x"))
    assert e.value.rejection.field_path == "filter_chains"
    no_router = msg(L, LISTENER)
    with pytest.raises(Rejected) as e:
        translate_listener(no_router, Findings(L, "edge"), {})
    assert "has not been received" in e.value.rejection.message


def test_wasm_filter_becomes_mosnx_wasm():
    d = {"name": "authz", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "authz", "root_id": "root", "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue", "value": '{"deny": "/admin"}'},
            "vm_config": {"vm_id": "vm1", "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": "filters/authz.wasm"}}}}}}
    hcm_msg = msg(L, {**LISTENER, "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
        **LISTENER["filter_chains"][0]["filters"][0]["typed_config"],
        "http_filters": [d, LISTENER["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][-1]]}}]}]})
    lc = translate_listener(hcm_msg, Findings(L, "edge"), {"main": table()})
    [w] = lc.filters
    assert (w.kind, w.name) == ("wasm", "authz")
    assert w.config == {"module": "filters/authz.wasm", "root_id": "root", "vm_id": "vm1", "fail_open": False,
                        "config": '{"deny": "/admin"}'}


# ---------------------------------------------------------------- transparent interception
_TCP_PROXY = {"name": "tcp", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "t",
    "cluster": "c"}}
_ORIGINAL_DST = {"name": "envoy.filters.listener.original_dst", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}}

def _capture(before: list | None = None, **more) -> tuple:
    d = {"name": "l", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
         "filter_chains": [{"filters": [*(before or []), _TCP_PROXY]}], **more}
    sink = Sink()
    return translate_listener(msg(L, d), Findings(L, "l", "", sink)), sink


def test_capture_listener_fields():
    lc, sink = _capture(use_original_dst=True, transparent=True, listener_filters=[_ORIGINAL_DST],
                        socket_options=[{"level": 1, "name": 36, "int_value": 1337}])
    assert lc.use_original_dst and lc.original_dst and lc.transparent and lc.bind_to_port
    assert [(o.level, o.name, o.value) for o in lc.socket_options] == [(1, 36, 1337)]
    assert not sink.warnings


def test_bind_to_port_false_is_kept_and_defaults_hold():
    lc, _ = _capture(bind_to_port=False)
    assert not lc.bind_to_port and not lc.use_original_dst and not lc.original_dst and not lc.transparent


def test_interception_belongs_to_the_listener_not_its_chains():
    d = {"name": "vo", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
         "use_original_dst": True,
         "filter_chains": [{"name": "a", "filter_chain_match": {"destination_port": 15001}, "filters": [_TCP_PROXY]},
                           {"name": "b", "filters": [_TCP_PROXY]}]}
    lc = translate_listener(msg(L, d), Findings(L, "vo"))
    assert lc.protocol == "chains" and lc.use_original_dst
    assert not any(c.stack.use_original_dst for c in lc.filter_chains)
