"""`protocol: dubbo` routed by an `.mdsl` rpc block, end to end: a real Dubbo consumer
(dubbo-ssl-python) calls through mosnx providers built on python-hessian; calls go by
service, version and method, and a `respond` is the Dubbo error the consumer raises,
with the rule's message."""
from __future__ import annotations

import pytest

from .test_rpc_dubbo import consumer, dubbo_config, providers  # noqa: F401  # the fixture

RULES = """\
rpc calls {
  route v2 when rpc.service == "com.example.UserService" and rpc.version == "2.0.0" { to users-v2 }
  route retired when rpc.method == "report" { respond 404 "retired by rule" }
  route users when rpc.service == "com.example.UserService" and rpc.method in {"getUser", "listUsers"} {
    to users-v1 timeout 5s
  }
}
"""


def test_calls_routed_by_service_version_and_method(mosnx, providers, tmp_path):
    v1, v2 = providers("V1"), providers("V2")
    rules = tmp_path / "calls.mdsl"
    rules.write_text(RULES)
    cfg = dubbo_config({"users-v1": [v1.address], "users-v2": [v2.address]})
    cfg["listeners"][0]["rules"] = str(rules)
    proxy = mosnx(config=cfg)
    assert consumer(proxy.port, "com.example.UserService").call("getUser", ["u1"], timeout=10) \
        == "V1:com.example.UserService:1.0.0:getUser:u1"
    assert consumer(proxy.port, "com.example.UserService", "2.0.0").call("report", ["u2"], timeout=10) \
        == "V2:com.example.UserService:2.0.0:report:u2"
    with pytest.raises(Exception, match="mosnx: retired by rule"):
        consumer(proxy.port, "com.example.UserService").call("report", ["x"], timeout=10)
    with pytest.raises(Exception, match="mosnx: no route for the call"):
        consumer(proxy.port, "com.example.UserService").call("deleteUser", ["x"], timeout=10)
    st = proxy.stats()
    assert st["dubbo.dubbo_in.response_success"] == 2
    assert st["dubbo.dubbo_in.local_reply_no_route"] == 2
    assert v1.requests == 1 and v2.requests == 1
