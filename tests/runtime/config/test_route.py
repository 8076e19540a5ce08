"""runtime/config/route.py: a listener's `route:` becomes a RouteAction with Envoy's
names and defaults; every part of it is checked where it is written."""
from __future__ import annotations

import pytest

from .conftest import CLUSTER, findings, listener, load

TWO = CLUSTER + "  - name: b\n    endpoints: [127.0.0.1:3]\n"


def route(text: str, clusters: str = CLUSTER) -> str:
    return listener(f"    route: {text}\n", clusters)


def test_defaults():
    r = load(route("{cluster: api}")).listeners[0].route
    assert (r.cluster, r.timeout, r.idle_timeout, r.retry, r.mirrors) == ("api", 15.0, None, None, ())


def test_a_weighted_split_with_rewrite_and_retry():
    r = load(route("{weighted_clusters: [{name: api, weight: 1}, {name: b, weight: 3}], prefix_rewrite: /v2/, "
                   "timeout: 0, retry: {retry_on: '5xx,reset', num_retries: 2}}", TWO)).listeners[0].route
    assert r.cluster is None and r.weighted_clusters == (("api", 1), ("b", 3))
    assert r.timeout is None                                   # 0 disables it
    assert r.prefix_rewrite == ("/", "/v2/")
    assert r.retry.retry_on == frozenset({"5xx", "reset"}) and r.retry.num_retries == 2
    assert (r.retry.backoff_base, r.retry.backoff_max) == (0.025, 0.25)     # Envoy's defaults


def test_a_route_needs_exactly_one_destination():
    assert findings(route("{}")) == [("C005", 4, 12, "listeners[0].route needs cluster: or weighted_clusters: or cluster_header:")]
    assert findings(route("{cluster: api, weighted_clusters: [{name: api, weight: 1}]}")) == [
        ("C004", 4, 46, "listeners[0].route has both cluster: and weighted_clusters:; keep only one")]


@pytest.mark.parametrize("text,message", [
    ("{cluster: api, retry: {retry_on: [bogus]}}", 'listeners[0].route.retry.retry_on[0]: unknown value "bogus"'),
    ("{cluster: api, regex_rewrite: {pattern: '(', substitution: x}}",
     "listeners[0].route.regex_rewrite.pattern: bad regular expression"),
    ("{cluster: api, mirror: {cluster: api, percent: 150}}",
     "listeners[0].route.mirror[0].percent: 150 is above the maximum 100"),
    ("{cluster: api, hash_key: 'request.nope'}", 'listeners[0].route.hash_key: unknown attribute "request.nope"'),
    ("{cluster: api, timeout: 5 parsecs}", 'listeners[0].route.timeout: "5 parsecs" is not a duration'),
    ("{cluster: api, retry: {backoff: {base_interval: 0s}}}",
     "listeners[0].route.retry.backoff.base_interval: must be longer than 0"),
])
def test_each_bad_part_is_one_finding_on_line_4(text, message):
    (code, line, column, got), = findings(route(text))
    assert code == "C004" and line == 4 and column > 12 and got.startswith(message)


def test_a_route_names_its_cluster_by_a_header():
    r = load(route("{cluster_header: X-Cluster}")).listeners[0].route
    assert (r.cluster, r.weighted_clusters, r.cluster_header) == (None, (), "x-cluster")
    assert r.clusters() == []                   # known per request only
    assert findings(route("{cluster: api, cluster_header: x-c}")) == [
        ("C004", 4, 43, "listeners[0].route has both cluster: and cluster_header:; keep only one")]
    [(code, line, _, message)] = findings(route("{cluster_header: 'x c'}"))
    assert (code, line) == ("C004", 4) and '"x c" is not a header name' in message


def test_cluster_header_needs_an_http_listener():
    [(code, _, _, message)] = findings(listener("    protocol: tcp\n    route: {cluster_header: x-c}\n"))
    assert code == "C004" and "cluster_header needs an HTTP listener" in message
