"""`protocol: bolt` routed by `.mdsl` rpc blocks, end to end with SOFARPC's Node
implementation (sofa-bolt-node) on both sides: calls routed by service, version and
method to three providers, a route's timeout, `respond` answered with the Bolt status
its HTTP status picks, a call no route takes answered "no route", and a rule file
edited under a running proxy routing the next calls its new way.

The peers are installed by `make test-peers`; without them these tests are skipped."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import wait_until  # noqa: E402
from test_rpc_bolt import (NO_PROCESSOR, SERVER_THREADPOOL_BUSY, SUCCESS, SVC_A, SVC_B, TIMEOUT,  # noqa: E402
                           bolt_config, call, greet, pytestmark, providers)  # noqa: F401  # the skip, the fixture

RULES = """\
rpc calls {
  route billing when rpc.service == "com.example.Billing" and rpc.version == "1.0" { to billing timeout 300ms }
  route hello when rpc.service == "com.example.Greeter" and rpc.method == "hello" { to greeters-b }
  route retired when rpc.method == "legacy" { respond 404 "method retired" }
  route shed when rpc.method == "hot" { respond 503 "shed" }
  route rest when rpc.service prefix "com.example." { to greeters-a }
}
"""


def rules_proxy(mosnx, tmp_path, clusters: dict[str, list[str]], text: str = RULES):
    path = tmp_path / "calls.mdsl"
    path.write_text(text)
    cfg = bolt_config(clusters)
    cfg["listeners"][0]["rules"] = str(path)
    return mosnx(config=cfg), path


def test_calls_routed_by_service_version_and_method(mosnx, providers, tmp_path):
    a, b, c = providers("A"), providers("B"), providers("C")
    proxy, _ = rules_proxy(mosnx, tmp_path, {"greeters-a": [a.address], "greeters-b": [b.address],
                                             "billing": [c.address]})
    res = call(proxy.port, [greet("x"), greet("y", method="bye"), greet("z", SVC_B, "charge"),
                            greet("w", "com.example.Billing:2.0", "charge")])
    assert res == [
        {"ok": f"B:{SVC_A}:hello:x", "status": SUCCESS},
        {"ok": f"A:{SVC_A}:bye:y", "status": SUCCESS},
        {"ok": f"C:{SVC_B}:charge:z", "status": SUCCESS},
        {"ok": "A:com.example.Billing:2.0:charge:w", "status": SUCCESS},     # version 2.0: not the billing route
    ]
    st = proxy.stats()
    assert st["cluster.greeters-a.upstream_rq_2xx"] == 2
    assert st["cluster.greeters-b.upstream_rq_2xx"] == 1
    assert st["cluster.billing.upstream_rq_2xx"] == 1


def test_replies_timeout_and_no_route_in_bolt_format(mosnx, providers, tmp_path):
    a, c = providers("A"), providers("C")
    proxy, _ = rules_proxy(mosnx, tmp_path, {"greeters-a": [a.address], "greeters-b": [a.address],
                                             "billing": [c.address]})
    res = call(proxy.port, [greet("1", method="legacy"), greet("2", method="hot"),
                            greet("2000", SVC_B, "sleep"), greet("3", "org.other.Svc:1.0")])
    assert res[0]["status"] == NO_PROCESSOR and "error" in res[0]
    assert res[1]["status"] == SERVER_THREADPOOL_BUSY and "error" in res[1]
    assert res[2]["status"] == TIMEOUT and "error" in res[2]
    assert res[3]["status"] == NO_PROCESSOR and "error" in res[3]
    st = proxy.stats()
    assert st["bolt.rpc_in.local_reply_no_route"] == 2
    assert st["bolt.rpc_in.local_reply_overflow"] == 1
    assert st["bolt.rpc_in.local_reply_timeout"] == 1


def test_an_edited_rule_file_routes_the_next_calls(mosnx, providers, tmp_path):
    a, b = providers("A"), providers("B")
    proxy, path = rules_proxy(mosnx, tmp_path, {"greeters-a": [a.address], "greeters-b": [b.address],
                                                "billing": [b.address]})
    assert call(proxy.port, [greet("x", method="bye")]) == [{"ok": f"A:{SVC_A}:bye:x", "status": SUCCESS}]
    path.write_text(RULES.replace('rpc.method == "hello"', 'rpc.method in {"hello", "bye"}'))
    proxy.reload()

    def routed_to_b():
        return call(proxy.port, [greet("y", method="bye")])[0].get("ok", "").startswith("B:")
    wait_until(routed_to_b, 20.0, "the edited rules to serve")
