"""proxy.network_filters: a stack's network filters decide once per connection, in
order, compiled once per worker store; a kind registered later plugs in."""
from __future__ import annotations

from types import SimpleNamespace

from mosnx.proxy import network_filters
from mosnx.runtime.model import ListenerConfig, NetworkFilter
from mosnx.runtime.stats import Store

DENY_22 = {"stat_prefix": "tcp.", "rules": {"action": "DENY", "policies": {
    "p": {"permissions": [{"destination_port": 22}], "principals": [{"any": True}]}}}}


def stack(*filters: NetworkFilter) -> ListenerConfig:
    return ListenerConfig("l/chain", "0.0.0.0", 15006, protocol="tcp", network_filters=filters)


def test_rbac_denies_by_the_original_destination():
    worker = SimpleNamespace(stats=Store())
    s = stack(NetworkFilter("rbac", "envoy.filters.network.rbac", DENY_22))
    assert network_filters.Check(worker, s, ("10.0.0.9", 4000), ("10.1.0.5", 22), "")(None) is False
    assert network_filters.Check(worker, s, ("10.0.0.9", 4000), ("10.1.0.5", 9080), "")(None) is True
    counts = {k: v for k, v in worker.stats.dump()["counters"].items() if "rbac" in k}
    assert counts.get("tcp.rbac.denied") == 1 and counts.get("tcp.rbac.allowed") == 1, counts
    # compiled once per store and filter
    spec = s.network_filters[0]
    assert network_filters.instance(worker.stats, spec) is network_filters.instance(worker.stats, spec)


def test_filters_run_in_order_and_the_first_no_stops():
    seen: list[str] = []

    class Says:
        def __init__(self, name: str, answer: bool):
            self.name, self.answer = name, answer

        def on_connection(self, ctx) -> bool:
            seen.append(self.name)
            return self.answer

    network_filters.register("says", lambda cfg, stats: Says(cfg["name"], cfg["answer"]))
    try:
        worker = SimpleNamespace(stats=Store())
        s = stack(NetworkFilter("says", "a", {"name": "a", "answer": True}),
                  NetworkFilter("says", "b", {"name": "b", "answer": False}),
                  NetworkFilter("says", "c", {"name": "c", "answer": True}))
        assert network_filters.Check(worker, s, ("10.0.0.9", 1), ("10.1.0.5", 80), "")(None) is False
        assert seen == ["a", "b"]
    finally:
        network_filters.FACTORIES.pop("says")
