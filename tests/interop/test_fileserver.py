"""A proxy fed by xds-fileserver (go-control-plane serving a resources file), SotW and delta ADS.

The control plane is go-control-plane's snapshot cache in ADS mode; the file only holds
resources, and replacing it pushes a new version. Its `-v` log shows what the client
really sent (REQ, ACK/REQ, NACK with the error for SotW; REQ with err= for delta).
Upstreams are two gcp-upstream echo servers answering "backend_a" and "backend_b".

Scenarios: the example listener -> RDS route -> EDS cluster serves; a route change pushed
by replacing the file is followed; a resource the client must reject is NACKed and the
old configuration keeps serving; the control plane killed for 10 s and restarted does not
stop traffic, and the client reconnects and takes updates again.
"""
from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import pytest

from xdsharness import (T, Proc, Procs, bootstrap, example_resources, free_port, http_get, port_open,
                        proxy_argv, route_config, wait_until, write_json, xds_bin)

MODES = ["sotw", "delta"]


@dataclass
class Plane:
    procs: Procs
    resources: Path
    xds_port: int
    listener_port: int
    port_a: int
    port_b: int
    fileserver: Proc
    proxy: Proc

    def start_fileserver(self) -> Proc:
        self.fileserver = self.procs.start("xds-fileserver", [
            str(xds_bin("xds-fileserver")), "-addr", f"127.0.0.1:{self.xds_port}", "-config", str(self.resources),
            "-ads=true", "-poll", "50ms", "-v=true"])
        wait_until("xds-fileserver listening", lambda: port_open(self.xds_port), timeout=20,
                   alive=(self.fileserver,))
        return self.fileserver

    def push(self, doc: dict[str, Any]) -> None:
        write_json(self.resources, doc)
        wait_until(f"fileserver to load version {doc['version']}",
                   lambda: f'snapshot version "{doc["version"]}" set' in self.fileserver.output(),
                   timeout=10, alive=(self.fileserver,))

    def get(self) -> str:
        status, body = http_get(self.listener_port, "/")
        return body if status == 200 else f"<{status} {body[:80]}>"

    def serves(self, body: str, timeout: float = 30) -> None:
        wait_until(f"the listener to answer {body!r}", lambda: self.get() == body, timeout=timeout,
                   interval=0.1, alive=(self.proxy,))


@pytest.fixture
def plane(request: pytest.FixtureRequest, procs: Procs, proxy_kind: str, tmp_path: Path) -> Iterator[Plane]:
    mode = request.param
    xds, listener, port_a, port_b, admin = (free_port() for _ in range(5))
    for name, port in (("backend_a", port_a), ("backend_b", port_b)):
        up = procs.start(f"upstream-{name}", [str(xds_bin("gcp-upstream")), "-upstream", str(port),
                                              "-message", name])
        wait_until(f"{name} listening", partial(port_open, port), timeout=20, alive=(up,))
    resources = write_json(tmp_path / "resources.json", example_resources("v1", listener, port_a, port_b))
    p = Plane(procs, resources, xds, listener, port_a, port_b, fileserver=None, proxy=None)  # type: ignore[arg-type]
    p.start_fileserver()
    boot = write_json(tmp_path / "bootstrap.yaml",
                      bootstrap(node_id="interop-1", xds_port=xds, admin_port=admin, delta=mode == "delta"))
    p.proxy = procs.start(proxy_kind, proxy_argv(proxy_kind, boot))
    p.serves("backend_a")
    yield p


def _acks(log: str, kind: str) -> bool:
    """Whether the client accepted a response of this resource type (SotW ACK or a delta REQ answering a nonce)."""
    return bool(re.search(rf'(ACK/REQ type=\S*{kind} |\[delta \d+\] REQ type=\S*{kind} nonce="\d)', log))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("plane", MODES, indirect=True)
def test_listener_rds_eds_serves(plane: Plane) -> None:
    for _ in range(5):
        assert plane.get() == "backend_a"
    log = plane.fileserver.output()
    for kind in ("Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"):
        assert _acks(log, kind), f"no ACK of a {kind} in the fileserver log:\n{log[-3000:]}"
    assert "NACK" not in log and not re.search(r"err=[^<\s]", log)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("plane", MODES, indirect=True)
def test_route_change_is_followed(plane: Plane) -> None:
    plane.push(example_resources("v2", plane.listener_port, plane.port_a, plane.port_b, route_to="backend_b"))
    plane.serves("backend_b")
    assert [plane.get() for _ in range(5)] == ["backend_b"] * 5
    plane.push(example_resources("v3", plane.listener_port, plane.port_a, plane.port_b, route_to="backend_a"))
    plane.serves("backend_a")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("plane", MODES, indirect=True)
def test_bad_resource_is_nacked_and_old_config_serves(plane: Plane) -> None:
    doc = example_resources("v2-bad", plane.listener_port, plane.port_a, plane.port_b, route_to="backend_b")
    bad = route_config("local_route", [("/", "backend_b")])
    # "(" is no regular expression: the whole RouteConfiguration must be refused, so "/" stays on backend_a
    bad["virtual_hosts"][0]["routes"].insert(
        0, {"match": {"safe_regex": {"regex": "("}}, "route": {"cluster": "backend_b"}})
    doc["resources"] = [bad if r["@type"] == T + "config.route.v3.RouteConfiguration" else r
                        for r in doc["resources"]]
    plane.push(doc)
    nack = re.compile(r'(NACK type=\S*RouteConfiguration |\[delta \d+\] REQ type=\S*RouteConfiguration .* err=[^<\s])')
    wait_until("a NACK of the route configuration", lambda: nack.search(plane.fileserver.output()),
               timeout=30, interval=0.1, alive=(plane.proxy,))
    assert [plane.get() for _ in range(10)] == ["backend_a"] * 10


@pytest.mark.timeout(180)
@pytest.mark.parametrize("plane", MODES, indirect=True)
def test_control_plane_restart(plane: Plane) -> None:
    os.killpg(plane.fileserver.pid, signal.SIGKILL)
    plane.fileserver.popen.wait(timeout=10)
    down_until = time.monotonic() + 10
    answers = []
    for _ in range(100):                    # 10 s at most, a request every 0.2 s or so
        if time.monotonic() >= down_until:
            break
        answers.append(plane.get())
        time.sleep(0.2)
    assert answers and set(answers) == {"backend_a"}, answers

    # the same file, now announcing the change to backend_b: taken only over a new stream
    write_json(plane.resources, example_resources("v2", plane.listener_port, plane.port_a, plane.port_b,
                                                  route_to="backend_b"))
    before = len(plane.procs.procs)
    fs = plane.start_fileserver()
    assert len(plane.procs.procs) == before + 1
    # Envoy's reconnect backoff doubles from 0.5 s up to 30 s (with jitter), so give it a minute
    wait_until("the proxy to reconnect", lambda: re.search(r"\] REQ type=", fs.output()), timeout=60,
               interval=0.2, alive=(plane.proxy,))
    plane.serves("backend_b", timeout=30)
