"""A proxy fed by xds-fileserver (go-control-plane serving a resources file), SotW and delta ADS.

The control plane is go-control-plane's snapshot cache in ADS mode; the file only holds
resources, and replacing it pushes a new version. Its `-v` log shows what the client
really sent (REQ, ACK/REQ, NACK with the error for SotW; REQ with err= for delta).
Upstreams are two gcp-upstream echo servers answering "backend_a" and "backend_b".

Scenarios: the example listener -> RDS route -> EDS cluster serves; a route change pushed
by replacing the file is followed; a resource the client must reject is NACKed and the
old configuration keeps serving; the control plane killed for 30 s and restarted does not
stop traffic (keep-alive clients meanwhile see no failure), and the client reconnects and
takes updates again; a delta client reconnecting with initial_resource_versions is sent
nothing it already has.
"""
from __future__ import annotations

import http.client
import os
import re
import signal
import threading
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


class KeepAliveLoad:
    """`clients` threads, each on one keep-alive connection to the listener, sending GET /
    every `pause` seconds until `stop()`, `seconds` or `max_requests` each. A failure is
    any answer but 200 with the expected body, or a connection error (then it reconnects)."""

    def __init__(self, port: int, expect: str, clients: int = 2, seconds: float = 60.0,
                 max_requests: int = 3000, pause: float = 0.02) -> None:
        self.port, self.expect, self.seconds, self.max_requests, self.pause = port, expect, seconds, max_requests, pause
        self.ok = 0
        self.failures: list[str] = []
        self.connects = 0
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        conn: http.client.HTTPConnection | None = None
        for _ in range(self.max_requests):
            if self.halt.is_set() or time.monotonic() >= deadline:
                break
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    with self.lock:
                        self.connects += 1
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read().decode(errors="replace")
                with self.lock:
                    if r.status == 200 and body == self.expect:
                        self.ok += 1
                    else:
                        self.failures.append(f"{r.status} {body[:80]}")
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append(f"{type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
            self.halt.wait(self.pause)
        if conn is not None:
            conn.close()

    def stop(self) -> KeepAliveLoad:
        self.halt.set()
        for t in self.threads:
            t.join(15)
        return self


DOWN = 30.0     # seconds the control plane stays dead


@pytest.mark.timeout(300)
@pytest.mark.parametrize("plane", MODES, indirect=True)
def test_control_plane_restart(plane: Plane) -> None:
    load = KeepAliveLoad(plane.listener_port, "backend_a", seconds=DOWN + 20)
    try:
        os.killpg(plane.fileserver.pid, signal.SIGKILL)
        plane.fileserver.popen.wait(timeout=10)
        down_until = time.monotonic() + DOWN
        answers = []
        for _ in range(int(DOWN / 0.2) + 1):    # DOWN s at most, a request on a new connection every 0.2 s or so
            if time.monotonic() >= down_until:
                break
            answers.append(plane.get())
            time.sleep(0.2)
    finally:
        load.stop()
    assert answers and set(answers) == {"backend_a"}, answers
    # the keep-alive clients: no failed request while the control plane was gone
    assert not load.failures and load.ok > 100, (load.ok, load.failures[:10])

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


@pytest.mark.timeout(180)
@pytest.mark.parametrize("plane", ["delta"], indirect=True)
def test_delta_reconnect_resends_nothing_the_proxy_has(plane: Plane) -> None:
    """A delta client that reconnects names the versions it has (initial_resource_versions);
    go-control-plane, restarted with the same resources (so the same version hashes), then
    sends none of them again: its log shows no response with resources on the new stream,
    but a change made afterwards arrives."""
    os.killpg(plane.fileserver.pid, signal.SIGKILL)
    plane.fileserver.popen.wait(timeout=10)
    assert plane.get() == "backend_a"
    fs = plane.start_fileserver()
    subscribed = re.compile(r"\[delta \d+\] REQ type=\S*ClusterLoadAssignment ")
    wait_until("the proxy to reconnect and ask for endpoints", lambda: subscribed.search(fs.output()), timeout=60,
               interval=0.2, alive=(plane.proxy,))
    time.sleep(2)       # what the server would resend, it sends at once
    resent = re.findall(r"\[delta \d+\] RESP type=(\S+) .*resources=([1-9]\d*)", fs.output())
    assert not resent, f"resent after reconnecting: {resent}\n{fs.output()[-3000:]}"
    # the wildcard types were answered on the new stream, with nothing in them
    for kind in ("Listener", "Cluster"):
        assert re.search(rf"\[delta \d+\] RESP type=\S*\.{kind} .*resources=0 ", fs.output()), fs.output()[-3000:]
    assert plane.get() == "backend_a"

    plane.push(example_resources("v2", plane.listener_port, plane.port_a, plane.port_b, route_to="backend_b"))
    plane.serves("backend_b")
    changed = re.findall(r"\[delta \d+\] RESP type=\S*\.(\w+) .*resources=([1-9]\d*)", fs.output())
    assert changed == [("RouteConfiguration", "1")], changed
