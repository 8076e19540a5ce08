"""Locality-weighted load balancing through a real mosnx: endpoints of mosnx.yaml with a
locality and its weight share the requests by locality weight first, then by the
cluster's policy inside a locality; a locality of weight 0 gets nothing."""
from __future__ import annotations

from .test_governance_lb import named, spread


def test_requests_follow_locality_weights_then_the_policy_inside(upstream, mosnx):
    a, b1, b2, idle = named(upstream, 4)
    proxy = mosnx([a], cluster={"lb": "round_robin", "endpoints": [
        {"address": a.address, "locality": "eu/a", "locality_weight": 1},
        {"address": b1.address, "locality": "eu/b", "locality_weight": 3},
        {"address": b2.address, "locality": "eu/b", "locality_weight": 3},
        {"address": idle.address, "locality": "eu/c", "locality_weight": 0}]})
    counts = spread(proxy, 400)
    assert "u3" not in counts                                   # weight 0: no traffic
    assert 40 <= counts["u0"] <= 170, counts                    # 1/4 expected: 100
    assert counts["u1"] + counts["u2"] == 400 - counts["u0"]
    assert abs(counts["u1"] - counts["u2"]) <= 4, counts       # round robin inside eu/b
