"""What the xDS scenario tests share: the in-repo ADS server on a thread of its own,
Envoy resources built as a control plane sends them, upstreams that answer with their
name, and a bounded load of keep-alive clients that records every answer.

Invariants: everything is on 127.0.0.1; every load loop stops at a count, at a
deadline, or when told, whichever comes first; a client connection that the proxy
closes, resets or answers with a 5xx is counted, never retried silently.
"""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine, Iterable

from google.protobuf import json_format
from google.protobuf.message import Message

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from .conftest import HOST, Client, Closed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy" / "xds"))
from ads_server import AdsServer  # noqa: E402

T = "type.googleapis.com/"
HCM = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {"@type": T + "envoy.extensions.filters.http.router.v3.Router"}}


class Control:
    """The ADS server on a loop of its own thread; the test thread pushes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = AdsServer()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port: int = self.call(self.server.start())

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def push(self, type_url: str, version: str, resources: Iterable[Message]) -> None:
        res = list(resources)

        async def go() -> None:
            self.server.push(type_url, version, res)
        self.call(go())

    def nacks(self) -> list[Any]:
        return [r for r in list(self.server.requests) if r.nack]

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# ------------------------------------------------------------------ resources
def parse(doc: dict[str, Any], msg: Message) -> Any:
    return json_format.ParseDict(doc, msg)


def http_listener(name: str, port: int, rds: str, filters: Iterable[dict[str, Any]] = (),
                  address: str = HOST) -> Any:
    """A listener whose connection manager takes its routes from RDS over ADS, with
    `filters` before the router."""
    return parse({
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM, "stat_prefix": name,
                "rds": {"route_config_name": rds, "config_source": {"ads": {}, "resource_api_version": "V3"}},
                "http_filters": [*filters, ROUTER],
            }}]}],
    }, listener_pb2.Listener())


def static_cluster(name: str, *ports: int) -> Any:
    return parse({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": p}}}} for p in ports]}]},
    }, cluster_pb2.Cluster())


def eds_cluster(name: str, service_name: str | None = None) -> Any:
    eds: dict[str, Any] = {"eds_config": {"ads": {}, "resource_api_version": "V3"}}
    if service_name is not None:
        eds["service_name"] = service_name
    return parse({"name": name, "type": "EDS", "connect_timeout": "1s", "eds_cluster_config": eds},
                 cluster_pb2.Cluster())


def assignment(name: str, *ports: int) -> Any:
    return parse({
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": HOST, "port_value": p}}}} for p in ports]}],
    }, endpoint_pb2.ClusterLoadAssignment())


def route_config(name: str, virtual_hosts: list[dict[str, Any]]) -> Any:
    return parse({"name": name, "virtual_hosts": virtual_hosts}, route_pb2.RouteConfiguration())


def split(*weights: tuple[str, int]) -> dict[str, Any]:
    """A route action: one cluster when there is one weight, else a weighted split."""
    if len(weights) == 1:
        return {"cluster": weights[0][0]}
    return {"weighted_clusters": {"clusters": [{"name": c, "weight": w} for c, w in weights]}}


# ------------------------------------------------------------------ upstreams
def answer_with(name: str) -> Callable[[Any, Any], None]:
    """An upstream's on_request: 200 with its name as the body."""
    body = name.encode()

    def on_request(conn: Any, req: Any) -> None:
        conn.respond(200, body, [("x-served-by", name)])
    return on_request


# ------------------------------------------------------------------ load
@dataclass
class Answer:
    client: int
    at: float
    status: int
    body: str
    headers: dict[str, str]


@dataclass
class Load:
    """`clients` threads, each on one keep-alive connection, sending GET `path` until
    `stop()`, `max_requests` each, or `seconds`, whichever comes first. A connection
    the proxy closed, reset or timed out counts as a failure and is opened again."""

    port: int
    clients: int = 4
    path: str = "/"
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("host", "example.com")])
    seconds: float = 30.0
    max_requests: int = 6000
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    connects: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        self.connects = [0] * self.clients
        for i in range(self.clients):
            t = threading.Thread(target=self._run, args=(i,), daemon=True, name=f"load-{i}")
            self._threads.append(t)
            t.start()
        return self

    def stop(self) -> Load:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        return self

    def _run(self, i: int) -> None:
        deadline = time.monotonic() + self.seconds
        c: Client | None = None
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() >= deadline:
                break
            try:
                if c is None:
                    c = Client(self.port, timeout=10)
                    self.connects[i] += 1
                m = c.request("GET", self.path, headers=self.headers)
            except (Closed, OSError, TimeoutError) as e:
                with self._lock:
                    self.failures.append(f"client {i}: {type(e).__name__}: {e}")
                if c is not None:
                    c.close()
                c = None
                continue
            a = Answer(i, time.monotonic(), m.status, m.body.decode(errors="replace"), dict(m.headers))
            with self._lock:
                self.answers.append(a)
                if m.status >= 500:
                    self.failures.append(f"client {i}: {m.status} {a.headers.get('x-mosnx-error', '')} {a.body[:80]}")
            if a.headers.get("connection", "").lower() == "close":
                c.close()
                c = None
        if c is not None:
            c.close()

    # what a test reads
    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def count(self, pred: Callable[[Answer], bool]) -> int:
        return sum(1 for a in self.snapshot() if pred(a))

    def wait(self, pred: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Poll `pred` while the load runs; fail with what the clients saw if it does not come."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"{len(self.answers)} answers, failures: {self.failures[:5]}")
            if not any(t.is_alive() for t in self._threads):
                raise AssertionError(f"the load ended before {what}; {len(self.answers)} answers, "
                                     f"failures: {self.failures[:5]}")
            time.sleep(0.02)
