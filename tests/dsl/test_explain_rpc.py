"""`mosnx explain --rpc`: the route a call takes on an RPC listener, from the snapshot's
compiled rpc blocks (or its YAML rpc.routes), each route tried shown with its verdict;
and the snapshot an RPC listener's rules build (Listener.rpc_rules), checked as a config."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

from mosnx import tooling
from mosnx.__main__ import main as mosnx
from mosnx.dsl.explain_rpc import call_headers, explain_call, render_call
from mosnx.dsl.request import RequestError
from mosnx.dsl.rpc import RpcRouter
from mosnx.runtime.snapshot import build_snapshot

RULES = """\
rpc calls {
  route billing when rpc.service == "com.example.Billing" and rpc.headers["zone"] == "gz" { to billing timeout 2s }
  route gone when rpc.method == "legacy" { respond 404 "retired" }
  route greet when rpc.service prefix "com.example." { to greeters }
}
"""
CONFIG = """\
listeners:
  - name: rpc_in
    address: 127.0.0.1:12299
    protocol: bolt
    rules: calls.mdsl
  - name: yaml_in
    address: 127.0.0.1:12298
    protocol: bolt
    route: {cluster: greeters}
    rpc: {routes: [{match: {service: com.example.Billing}, route: {cluster: billing}}]}
clusters:
  - name: billing
    protocol: bolt
    endpoints: ["127.0.0.1:9001"]
  - name: greeters
    protocol: bolt
    endpoints: ["127.0.0.1:9002"]
"""


@pytest.fixture
def config(tmp_path):
    (tmp_path / "calls.mdsl").write_text(RULES)
    (tmp_path / "mosnx.yaml").write_text(CONFIG)
    return str(tmp_path / "mosnx.yaml")


def test_the_snapshot_carries_the_compiled_router(config):
    snap = tooling.snapshot(config)
    lst = snap.listeners["rpc_in"]
    assert isinstance(lst.rpc_rules, RpcRouter) and lst.rpc_rules.names == ("billing", "gone", "greet")
    assert snap.listeners["yaml_in"].rpc_rules is None


def test_each_route_tried_with_its_verdict(config):
    snap = tooling.snapshot(config)
    e = explain_call(snap, "rpc_in", call_headers("com.example.Billing pay", ["zone: sh", ":version: 1.0"]))
    assert [(t["route"], t["holds"]) for t in e["tried"]] == [("billing", False), ("gone", False), ("greet", True)]
    assert e["tried"][0]["when"] == 'rpc.service == "com.example.Billing" and rpc.headers["zone"] == "gz"'
    assert e["tried"][0]["where"].endswith("calls.mdsl:2:3")
    assert (e["route"], e["action"]) == ("greet", "to cluster greeters, timeout 15s")
    assert e["call"] == {":service": "com.example.Billing", ":method": "pay", "zone": "sh", ":version": "1.0"}
    e = explain_call(snap, "rpc_in", call_headers("x.Y legacy", []))
    assert e["action"] == "answered with the protocol's error for 404 (no route): retired"
    e = explain_call(snap, "rpc_in", call_headers("org.Other m", []))
    assert e["route"] is None and e["action"] == "answered with the protocol's error for 404 (no route)"
    text = render_call(explain_call(snap, "rpc_in", call_headers("com.example.Billing pay", ["zone: gz"])))
    assert "route     billing\naction    to cluster billing, timeout 2s\n" in text


def test_yaml_rpc_routes_then_the_default_route(config):
    snap = tooling.snapshot(config)
    e = explain_call(snap, "yaml_in", call_headers("com.example.Billing pay", []))
    assert (e["route"], e["action"]) == ("rpc.routes[0]", "to cluster billing, timeout 15s")
    e = explain_call(snap, "yaml_in", call_headers("com.example.Greeter hello", []))
    assert (e["route"], e["action"]) == ("the default route", "to cluster greeters, timeout 15s")


def test_bad_input_is_a_request_error(config):
    snap = tooling.snapshot(config)
    with pytest.raises(RequestError, match="'SERVICE METHOD'"):
        call_headers("only-a-service", [])
    with pytest.raises(RequestError, match="unknown pseudo-key ':zone'"):
        call_headers("s m", [":zone: x"])
    with pytest.raises(RequestError, match="name one with --listener"):
        explain_call(snap, None, {})
    with pytest.raises(RequestError, match='no RPC listener "web"'):
        explain_call(snap, "web", {})


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = mosnx(argv)
        except SystemExit as e:
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_command_line(config):
    code, out, _ = run(["explain", "-c", config, "--listener", "rpc_in", "--rpc", "com.example.Billing pay",
                        "-H", "zone: gz", "--format", "json"])
    assert code == 0 and json.loads(out)["route"] == "billing"
    code, _, err = run(["explain", "-c", config, "--rpc", "x"])
    assert code == 2 and "'SERVICE METHOD'" in err


def test_check_rejects_http_rules_on_an_rpc_listener(config, tmp_path):
    (tmp_path / "calls.mdsl").write_text(RULES + 'route web when request.path == "/" { to greeters }\n')
    code, out, _ = run(["check", config])
    assert code == 1
    assert "calls.mdsl:6:7: P504 route in rules of an RPC listener" in out
