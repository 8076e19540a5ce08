"""The admin endpoints Istio's agent calls, over real sockets (proxy/admin.py): what
each answers, that each mutating one is POST only, and what it asks of the backend.
Also the backend's side (proxy/admin_backend.py): Envoy's server states and the stats
the agent reads for readiness, the listeners /drain_listeners?inboundonly selects,
and /stats?usedonly keeping server.state at 0."""
from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvloop

from mosnx.proxy import admin_format
from mosnx.proxy.admin import start_admin
from mosnx.proxy.admin_backend import AdminBackend
from mosnx.runtime.stats import Store


class AgentBackend:
    def __init__(self) -> None:
        self.failed = False
        self.quits = 0
        self.drains: list[tuple[bool, bool]] = []
        self.levels: dict[str, str] = {"mosnx": "info", "mosnx.upstream": "info"}

    def ready(self) -> bool:
        return not self.failed

    def server_info(self) -> dict:
        return {"state": "DRAINING" if self.failed else "LIVE"}

    def fail_health_check(self, failed: bool) -> None:
        self.failed = failed

    def quit(self) -> bool:
        self.quits += 1
        return True

    def listeners(self) -> list[dict[str, Any]]:
        return [{"name": "virtualInbound", "host": "0.0.0.0", "port": 15006, "traffic_direction": "INBOUND"},
                {"name": "v6", "host": "::1", "port": 15001, "traffic_direction": None}]

    async def drain_listeners(self, inbound_only: bool, graceful: bool) -> list[str]:
        self.drains.append((inbound_only, graceful))
        return []

    async def set_log_levels(self, levels: dict[str, str]) -> dict[str, str]:
        self.levels.update(levels)
        return dict(self.levels)

    def log_levels(self) -> dict[str, str]:
        return dict(self.levels)


@pytest.fixture
def backend() -> AgentBackend:
    return AgentBackend()


@pytest.fixture
def client(backend):
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start_admin("127.0.0.1", 0, backend), loop).result(5)  # type: ignore[arg-type]
    port = server.sockets[0].getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
        yield c
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.mark.parametrize("path", ["/quitquitquit", "/healthcheck/fail", "/healthcheck/ok", "/drain_listeners",
                                  "/logging"])
def test_mutating_endpoints_are_post_only(client, backend, path):
    r = client.get(path)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert (backend.quits, backend.failed, backend.drains) == (0, False, [])


def test_healthcheck_fail_makes_ready_answer_503_until_ok(client, backend):
    assert client.post("/healthcheck/fail").text == "OK\n"
    r = client.get("/ready")
    assert (r.status_code, r.text) == (503, "DRAINING\n")
    assert client.post("/healthcheck/ok").text == "OK\n"
    r = client.get("/ready")
    assert (r.status_code, r.text) == (200, "LIVE\n")


def test_quitquitquit_asks_the_proxy_to_stop(client, backend):
    r = client.post("/quitquitquit")
    assert (r.status_code, r.text, backend.quits) == (200, "OK\n", 1)


def test_drain_listeners_passes_inboundonly_and_graceful(client, backend):
    assert client.post("/drain_listeners").status_code == 200
    assert client.post("/drain_listeners?inboundonly&graceful").status_code == 200
    assert client.post("/drain_listeners?graceful").status_code == 200
    assert backend.drains == [(False, False), (True, True), (False, True)]
    r = client.post("/drain_listeners?inbound")
    assert r.status_code == 400 and "inbound" in r.text


def test_listeners_in_envoys_text_and_json(client):
    assert client.get("/listeners").text == "virtualInbound::0.0.0.0:15006\nv6::[::1]:15001\n"
    assert client.get("/listeners?format=json").json() == {"listener_statuses": [
        {"name": "virtualInbound", "local_address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}}},
        {"name": "v6", "local_address": {"socket_address": {"address": "::1", "port_value": 15001}}}]}
    assert client.get("/listeners?format=yaml").status_code == 400


def test_logging_sets_levels_by_envoys_names(client, backend):
    r = client.post("/logging?level=warn")
    assert r.status_code == 200 and "  mosnx: warning\n" in r.text
    client.post("/logging?upstream=trace")
    assert backend.levels["mosnx.upstream"] == "debug"
    assert client.post("/logging").text.startswith("active loggers:\n")
    r = client.post("/logging?level=loud")
    assert r.status_code == 400 and "loud" in r.text
    r = client.post("/logging?nosuch=info")
    assert r.status_code == 400 and "unknown logger 'nosuch'" in r.text
    assert "mosnx.nosuch" not in backend.levels


# --- the backend --------------------------------------------------------------------

def supervisor(state: str = "LIVE", xds_ready: bool | None = None) -> Any:
    xds = None if xds_ready is None else SimpleNamespace(ready=lambda: xds_ready)
    lst = {"in": SimpleNamespace(config=SimpleNamespace(host="127.0.0.1", port=1,
                                                        chain_of=None, options={"traffic_direction": "INBOUND"})),
           "out": SimpleNamespace(config=SimpleNamespace(host="127.0.0.1", port=2, chain_of=None, options={}))}
    asked: list[tuple[str, dict]] = []

    class Handle:
        async def ask(self, op: str, timeout: float = 5.0, **kw: Any) -> dict:
            asked.append((op, kw))
            return {}

    return SimpleNamespace(state=state, xds=xds, stats=Store(), workers=[Handle(), Handle()],
                           snapshot=SimpleNamespace(listeners=lst), drain_timeout=lambda: 7.0, asked=asked)


@pytest.mark.parametrize("sup_state, xds_ready, failed, want", [
    ("PRE_INITIALIZING", None, False, "PRE_INITIALIZING"),
    ("LIVE", False, False, "INITIALIZING"),
    ("LIVE", True, False, "LIVE"),
    ("LIVE", None, True, "DRAINING"),
    ("DRAINING", None, False, "DRAINING"),
])
def test_envoys_server_states(sup_state, xds_ready, failed, want):
    b = AdminBackend(supervisor(sup_state, xds_ready))
    b.fail_health_check(failed)
    assert b.state() == want and b.ready() == (want == "LIVE")
    gauges = b.sup.stats.dump()["gauges"]
    assert gauges["server.state"] == {"LIVE": 0, "DRAINING": 1, "PRE_INITIALIZING": 2, "INITIALIZING": 3}[want]
    assert gauges["server.live"] == int(want == "LIVE")
    assert gauges["listener_manager.workers_started"] == int(sup_state != "PRE_INITIALIZING")


def test_usedonly_keeps_server_state_at_zero_as_envoy_does():
    b = AdminBackend(supervisor())
    kept = admin_format.select(b.sup.stats.dump(), admin_format.compile_filter(r"^server\.state"), True)
    assert kept["gauges"] == {"server.state": 0}


def test_inboundonly_drains_the_inbound_listeners_of_every_worker():
    sup = supervisor()
    b = AdminBackend(sup)
    assert asyncio.run(b.drain_listeners(True, True)) == ["in"]
    assert sup.asked == [("drain_listeners", {"names": ["in"], "graceful": True, "after": 7.0})] * 2
    sup.asked.clear()
    assert asyncio.run(b.drain_listeners(False, False)) == ["in", "out"]
    assert sup.asked[0] == ("drain_listeners", {"names": ["in", "out"], "graceful": False, "after": 0.0})


def test_log_levels_apply_here_and_in_every_worker():
    sup = supervisor()
    b = AdminBackend(sup)
    old = logging.getLogger("mosnx.admin").level
    try:
        now = asyncio.run(b.set_log_levels({"mosnx.admin": "error"}))
        assert now["mosnx.admin"] == "error"
        assert sup.asked == [("log_levels", {"levels": {"mosnx.admin": "error"}})] * 2
    finally:
        logging.getLogger("mosnx.admin").setLevel(old)
