"""A canary rollout driven by the control plane, under load, with two workers.

Four keep-alive clients send requests the whole time while the in-repo ADS server
moves the route: all to v1, a 90/10 split v1/v2, 50/50, all to v2, an LDS update that
changes only the listener's HTTP filters, and a rollback to v1. Each RouteConfiguration
version adds its phase name as a response header, so every answer says which
configuration routed it, whatever the moment each worker took it. What a user of the
mesh would notice is asserted: no request failed (no connection error, no 5xx), each
phase's answers came from the versions its weights name (generous bounds: the split is
random), and no client connection was closed by the proxy: each client opened exactly one.

Then an endpoint is removed from an EDS cluster under the same load: a request the
removed endpoint holds while the update lands still completes, and the endpoint gets
no request once the clients see the update.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

pytest.importorskip("envoy.config.listener.v3.listener_pb2")

from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, ROUTE  # noqa: E402

from .conftest import HOST, Client, free_port  # noqa: E402
from .xds_scenarios import (T, Control, Load, answer_with, assignment, eds_cluster, http_listener,  # noqa: E402
                            route_config, split, static_cluster)

PER_PHASE = 200            # answers routed by each phase's configuration before the next is pushed

FAULT_BY_HEADER = {"name": "envoy.filters.http.fault", "typed_config": {
    "@type": T + "envoy.extensions.filters.http.fault.v3.HTTPFault",
    "abort": {"header_abort": {}, "percentage": {"numerator": 100}}}}


@pytest.fixture
def control() -> Iterator[Control]:
    c = Control()
    yield c
    c.stop()


def phase_routes(phase: str, *weights: tuple[str, int]) -> Any:
    return route_config("rollout", [{"name": "all", "domains": ["*"], "routes": [{
        "match": {"prefix": "/"}, "route": split(*weights),
        "response_headers_to_add": [{"header": {"key": "x-phase", "value": phase},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
    }]}])


def start_proxy(mosnx: Any, control: Control, workers: int = 2) -> Any:
    static = free_port()
    up = free_port()
    return mosnx(config={
        "listeners": [{"name": "static", "address": f"{HOST}:{static}", "route": {"cluster": "web"}}],
        "clusters": [{"name": "web", "endpoints": [f"{HOST}:{up}"]}],
        "xds": {"address": f"{HOST}:{control.port}", "node": {"id": "rollout"}, "initial_fetch_timeout": "20s"},
    }, workers=workers)


def _probe_abort(port: int) -> int:
    """A request on a new connection asking the fault filter (if there is one) to abort with 418."""
    try:
        with Client(port, timeout=5) as c:
            return c.request("GET", "/probe", headers=[("host", "example.com"),
                                                        ("x-envoy-fault-abort-request", "418")]).status
    except OSError:
        return 0


@pytest.mark.timeout(180)
def test_routes_split_shift_and_roll_back_under_load_without_a_failed_request(mosnx, control, upstream):
    v1, v2 = upstream(on_request=answer_with("v1")), upstream(on_request=answer_with("v2"))
    port = free_port()
    control.push(CLUSTER, "1", [static_cluster("reviews-v1", v1.port), static_cluster("reviews-v2", v2.port)])
    control.push(ROUTE, "p1", [phase_routes("p1", ("reviews-v1", 100))])
    control.push(LISTENER, "1", [http_listener("rollout", port, "rollout")])
    proxy = start_proxy(mosnx, control)
    proxy.wait_until(lambda: _probe_abort(port) == 200, timeout=30, what="the xDS listener serving")

    load = Load(port, clients=4, seconds=60, max_requests=5000).start()
    try:
        def served(phase: str, n: int = PER_PHASE) -> None:
            load.wait(lambda: load.count(lambda a: a.headers.get("x-phase") == phase) >= n,
                      f"{n} answers routed by phase {phase}")

        served("p1")
        for phase, weights in (("p2", (("reviews-v1", 90), ("reviews-v2", 10))),
                               ("p3", (("reviews-v1", 50), ("reviews-v2", 50))),
                               ("p4", (("reviews-v2", 100),))):
            control.push(ROUTE, phase, [phase_routes(phase, *weights)])
            served(phase)

        # LDS: only the HTTP filters change (a fault filter that acts on a request header alone)
        before = len(load.snapshot())
        control.push(LISTENER, "2", [http_listener("rollout", port, "rollout", filters=[FAULT_BY_HEADER])])
        proxy.wait_until(lambda: _probe_abort(port) == 418, timeout=30, what="the listener's new fault filter")
        load.wait(lambda: len(load.snapshot()) >= before + PER_PHASE, "answers after the listener update")

        control.push(ROUTE, "p5", [phase_routes("p5", ("reviews-v1", 100))])
        served("p5")
    finally:
        load.stop()

    assert not load.failures, load.failures[:10]
    assert not control.nacks(), control.nacks()[:3]
    by_phase: dict[str, dict[str, int]] = {}
    for a in load.answers:
        by_phase.setdefault(a.headers.get("x-phase", "?"), {}).setdefault(a.body, 0)
        by_phase[a.headers.get("x-phase", "?")][a.body] += 1
    assert set(by_phase) == {"p1", "p2", "p3", "p4", "p5"}, by_phase
    assert set(by_phase["p1"]) == {"v1"} and set(by_phase["p5"]) == {"v1"}, by_phase
    assert set(by_phase["p4"]) == {"v2"}, by_phase

    def v2_share(phase: str) -> float:
        got = by_phase[phase]
        assert set(got) <= {"v1", "v2"}, got
        return got.get("v2", 0) / sum(got.values())
    assert 0.01 <= v2_share("p2") <= 0.30, by_phase["p2"]
    assert 0.30 <= v2_share("p3") <= 0.70, by_phase["p3"]
    # every client kept the one connection it opened: the proxy closed none of them
    assert load.connects == [1, 1, 1, 1], load.connects
    assert proxy.stats()["server.reload_failure"] == 0


class HoldOne:
    """An upstream's on_request that answers with its name, but holds the first request
    that comes after `arm()` until `release()` (10 s at most)."""

    def __init__(self, name: str) -> None:
        self.answer = answer_with(name)
        self.armed = False
        self.held = threading.Event()
        self.go = threading.Event()
        self.lock = threading.Lock()

    def arm(self) -> None:
        self.armed = True

    def release(self) -> None:
        self.go.set()

    def __call__(self, conn: Any, req: Any) -> None:
        with self.lock:
            hold, self.armed = self.armed, False
        if hold:
            self.held.set()
            self.go.wait(10)
        self.answer(conn, req)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_an_endpoint_removed_under_load_gets_no_more_requests_and_none_fails(mosnx, control, upstream, mode):
    held = HoldOne("e3")
    ups = [upstream(on_request=answer_with("e1")), upstream(on_request=answer_with("e2")), upstream(on_request=held)]
    e3 = ups[2]
    port = free_port()
    control.push(CLUSTER, "1", [eds_cluster("ratings")])
    control.push(ENDPOINT, "1", [assignment("ratings", *(u.port for u in ups))])
    control.push(ROUTE, "1", [route_config("r", [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "ratings", "timeout": "20s"}}]}])])
    control.push(LISTENER, "1", [http_listener("eds", port, "r")])
    static = free_port()
    proxy = mosnx(config={
        "listeners": [{"name": "static", "address": f"{HOST}:{static}", "route": {"cluster": "web"}}],
        "clusters": [{"name": "web", "endpoints": [e3.address]}],
        "xds": {"address": f"{HOST}:{control.port}", "node": {"id": "eds-load"}, "mode": mode,
                "initial_fetch_timeout": "20s"},
    }, workers=2)
    proxy.wait_until(lambda: _probe_abort(port) == 200, timeout=30, what="the xDS listener serving")

    load = Load(port, clients=4, seconds=60, max_requests=5000).start()
    try:
        load.wait(lambda: {"e1", "e2", "e3"} <= {a.body for a in load.snapshot()}, "answers from all three")
        load.wait(lambda: len(load.snapshot()) >= 100, "100 answers")
        held.arm()
        load.wait(held.held.is_set, "a request held by e3")
        control.push(ENDPOINT, "2", [assignment("ratings", ups[0].port, ups[1].port)])

        # the update has reached every worker the clients use once a long run of answers has
        # no e3 in it (under the old membership one in three is e3's: 60 in a row is ~1e-11)
        def e3_absent_from_last(n: int) -> bool:
            got = load.snapshot()
            return len(got) >= n and all(a.body != "e3" for a in got[-n:])
        load.wait(lambda: e3_absent_from_last(60), "60 answers in a row without e3")
        # the update goes to every worker at once; a worker that only the held client uses
        # shows nothing in the answers, so it gets a generous moment to take it too
        time.sleep(1.0)
        e3_requests = len(e3.requests)
        released = time.monotonic()
        held.release()
        load.wait(lambda: load.count(lambda a: a.body == "e3" and a.at > released), "the held request's answer")
        load.wait(lambda: e3_absent_from_last(150), "150 more answers")
    finally:
        held.release()
        load.stop()

    assert not load.failures, load.failures[:10]
    # the request e3 held across the update completed, and e3 got nothing after the clients saw the update
    assert len(e3.requests) == e3_requests, (len(e3.requests), e3_requests)
    last = load.answers[-150:]
    assert {a.body for a in last} <= {"e1", "e2"}, {a.body for a in last}
    assert load.connects == [1, 1, 1, 1], load.connects
