"""runtime/config/names.py: names declared twice are reported at the repeat, pointing
back at the first; references resolve once the whole document is read, with a
suggestion for a near miss."""
from __future__ import annotations

from .conftest import CLUSTER, LISTENER, findings, listener, load


def test_a_repeated_cluster_name_points_at_the_first():
    doc = listener("    route: {cluster: api}\n", CLUSTER + "  - name: api\n    endpoints: [127.0.0.1:3]\n")
    assert findings(doc) == [("C006", 8, 11, 'duplicate cluster name "api" (first at line 6)')]


def test_repeated_listener_names_and_addresses_are_each_reported():
    second = "    route: {cluster: api}\n  - name: l\n    address: 127.0.0.1:5\n    route: {cluster: api}\n"
    assert findings(listener(second)) == [("C006", 5, 11, 'duplicate listener name "l" (first at line 2)')]
    same_address = "    route: {cluster: api}\n  - name: m\n    address: 127.0.0.1:1\n    route: {cluster: api}\n"
    assert findings(listener(same_address)) == [
        ("C006", 6, 14, 'duplicate listener address "127.0.0.1:1" (first at line 3)')]


def test_an_unknown_cluster_suggests_the_near_one():
    assert findings(listener("    route: {cluster: apii}\n")) == [
        ("C101", 4, 22, 'unknown cluster "apii" (did you mean "api"?)')]


def test_a_reference_may_come_before_its_declaration():
    # clusters first, then the listener that names one: and the other way round
    cfg = load(CLUSTER + LISTENER + "    route: {cluster: api}\n")
    assert cfg.listeners[0].route.cluster == "api"
    cfg = load(listener("    route: {cluster: api}\n"))
    assert [c.name for c in cfg.clusters] == ["api"]
