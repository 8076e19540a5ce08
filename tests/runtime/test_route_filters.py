"""runtime/route_filters.py: a listener's filters that routes configure run after
routing, in the listener's order, each with the most specific settings; the rest
stay on the listener, and a table without per-route settings is left as it is."""
from __future__ import annotations

from typing import Any, Mapping

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.model import FilterSpec
from mosnx.runtime.pipeline import HttpFilter, Pipeline
from mosnx.runtime.route_filters import bind
from mosnx.runtime.routes import (CORS_POLICY, DirectResponse, FilterOverride, Route, RouteAction, RouteTable,
                                  VirtualHost)


class Rec(HttpFilter):
    """Says who ran, on the request and on the response."""

    def __init__(self, tag: str, log: list[str]):
        self.tag, self.log = tag, log

    def on_request(self, ctx: StreamContext) -> None:
        self.log.append(self.tag)

    def on_response(self, ctx: StreamContext) -> None:
        self.log.append(self.tag + "<")


def setup(routes: list[Route], specs: list[FilterSpec]):
    log: list[str] = []
    made: list[tuple[str, Mapping[str, Any]]] = []
    built = [Rec(s.name, log) if s.own else None for s in specs]

    def make(spec: FilterSpec, config: Mapping[str, Any]) -> HttpFilter:
        made.append((spec.name, config))
        return Rec(f"{spec.name}{dict(config)}", log)
    head, table = bind(RouteTable([VirtualHost("v", ["*"], routes)]), specs, built, make)
    return head, table, log, made


def run(pipeline: Pipeline, log: list[str], cluster: str = "a") -> list[str]:
    log.clear()
    ctx = StreamContext(RequestHead("GET", "/", Headers()))
    ctx.cluster_name = cluster
    ctx.response = ResponseHead(200, Headers())
    for step in pipeline.request + pipeline.response:
        step(ctx)
    return list(log)


FWD = RouteAction(cluster="a")
SPLIT = RouteAction(weighted_clusters=(("a", 1), ("b", 1)))
SPECS = [FilterSpec("x", "first", {}), FilterSpec("y", "second", {}), FilterSpec("z", "third", {}, disabled=True)]


def test_without_route_settings_nothing_moves():
    r = Route("r", FWD)
    head, table, _, made = setup([r], SPECS)
    assert [f.tag for f in head] == ["first", "second"] and made == []
    assert table.vhosts[0].routes[0] is r


def test_configured_filters_move_onto_routes_in_order_with_their_settings():
    routes = [
        Route("own", FWD, filters={"second": FilterOverride("y", {"v": 1})}),
        Route("plain", FWD),
        Route("enables", FWD, filters={"third": FilterOverride(disabled=False)}),
        Route("off", FWD, filters={"second": FilterOverride(disabled=True)}),
    ]
    head, table, log, made = setup(routes, SPECS)
    assert [f.tag for f in head] == ["first"]          # before the first configured filter: stays
    own, plain, enables, off = table.vhosts[0].routes
    assert run(own.pipeline, log) == ["second{'v': 1}", "second{'v': 1}<"]
    assert run(plain.pipeline, log) == ["second", "second<"]
    assert run(enables.pipeline, log) == ["second", "third", "third<", "second<"]
    assert run(off.pipeline, log) == []
    assert made == [("second", {"v": 1})]


def test_routes_sharing_vhost_settings_share_one_filter():
    shared = FilterOverride("y", {"v": 2})
    head, table, log, made = setup([Route("a", FWD, filters={"second": shared}),
                                    Route("b", FWD, filters={"second": shared})], SPECS)
    assert made == [("second", {"v": 2})]


def test_a_weighted_cluster_takes_its_own_settings():
    r = Route("split", SPLIT, filters={"second": FilterOverride("y", {"v": 1})},
              cluster_filters={"b": {"second": FilterOverride(disabled=True)}})
    _, table, log, _ = setup([r], SPECS)
    p = table.vhosts[0].routes[0].pipeline
    assert run(p, log, "a") == ["second{'v': 1}", "second{'v': 1}<"]
    assert run(p, log, "b") == []


def test_a_cors_policy_goes_to_the_cors_filter_and_passes_by_direct_responses():
    specs = [FilterSpec("cors", "envoy.filters.http.cors", {}, own=False), FilterSpec("y", "after", {})]
    policy = FilterOverride("cors", {"p": 1})
    _, table, log, made = setup([Route("fwd", FWD, filters={CORS_POLICY: policy}),
                                 Route("direct", DirectResponse(200), filters={CORS_POLICY: policy}),
                                 Route("none", FWD)], specs)
    fwd, direct, none = table.vhosts[0].routes
    assert run(fwd.pipeline, log) == ["envoy.filters.http.cors{'p': 1}", "after", "after<",
                                      "envoy.filters.http.cors{'p': 1}<"]
    assert run(direct.pipeline, log) == ["after", "after<"]
    assert run(none.pipeline, log) == ["after", "after<"]     # no settings of its own: nothing to run
    by_name = FilterOverride("cors", {"p": 2})
    _, table, log, _ = setup([Route("both", FWD, filters={CORS_POLICY: policy, "envoy.filters.http.cors": by_name})],
                             specs)
    assert run(table.vhosts[0].routes[0].pipeline, log)[0] == "envoy.filters.http.cors{'p': 2}"


def test_the_routes_own_steps_run_after_the_filters():
    def mark(ctx: StreamContext) -> None:
        ctx.request.headers.set("x-route", "1")
    r = Route("r", FWD, pipeline=Pipeline(request=(mark,)), filters={"second": FilterOverride("y", {"v": 1})})
    _, table, _, _ = setup([r], SPECS)
    steps = table.vhosts[0].routes[0].pipeline.request
    assert len(steps) == 2 and steps[1] is mark
