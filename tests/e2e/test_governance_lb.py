"""Load balancing through a real mosnx: each policy's spread over real upstreams, sticky
hashing by header, cookie and source address, and weights from YAML."""
from __future__ import annotations

import collections

import pytest


def named(upstream, n):
    ups = []
    for i in range(n):
        name = f"u{i}".encode()
        ups.append(upstream(on_request=lambda conn, req, name=name: conn.respond(200, name)))
    return ups


def spread(proxy, n, headers=None):
    counts = collections.Counter()
    with proxy.connect() as c:
        for i in range(n):
            r = c.request("GET", f"/{i}", headers=headers(i) if headers else None)
            assert r.status == 200, r
            counts[r.body.decode()] += 1
    return counts


def test_weighted_round_robin_follows_endpoint_weights(upstream, mosnx):
    u0, u1, u2 = named(upstream, 3)
    proxy = mosnx([u0], cluster={"lb": "weighted_round_robin",
                                 "endpoints": [u0.address, {"address": u1.address, "weight": 2},
                                               {"address": u2.address, "weight": 3}]})
    assert spread(proxy, 60) == {"u0": 10, "u1": 20, "u2": 30}


@pytest.mark.parametrize("lb", ["round_robin", "random", "least_request", "peak_ewma"])
def test_every_policy_reaches_every_endpoint(upstream, mosnx, lb):
    ups = named(upstream, 3)
    proxy = mosnx(ups, cluster={"lb": lb})
    counts = spread(proxy, 90)
    assert set(counts) == {"u0", "u1", "u2"} or lb == "peak_ewma", counts
    if lb == "round_robin":
        assert sorted(counts.values()) == [30, 30, 30]
    if lb == "random":
        assert all(10 <= v <= 55 for v in counts.values()), counts
    assert sum(counts.values()) == 90


def test_peak_ewma_steers_away_from_a_slow_endpoint(upstream, mosnx):
    import time

    def slow(conn, req):
        time.sleep(0.05)
        conn.respond(200, b"slow")

    fast = upstream(on_request=lambda conn, req: conn.respond(200, b"fast"))
    slowup = upstream(on_request=slow)
    proxy = mosnx([fast, slowup], cluster={"lb": "peak_ewma"})
    counts = spread(proxy, 60)
    # with two endpoints both are compared on each pick: after one slow answer, the
    # slow endpoint only wins again once its peak has decayed, or when a fast answer
    # happens to be slower still (a busy machine)
    assert counts["slow"] <= 10, counts
    assert counts["fast"] >= 50


@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_hashing_by_header_is_sticky_and_spreads(upstream, mosnx, lb):
    ups = named(upstream, 3)
    proxy = mosnx(ups, cluster={"lb": lb, "hash_key": 'request.headers["x-user"]'})
    seen: dict[str, set] = collections.defaultdict(set)
    with proxy.connect() as c:
        for rnd in range(3):
            for u in range(30):
                r = c.request("GET", "/", headers=[("Host", "t"), ("x-user", f"user{u}")])
                assert r.status == 200
                seen[f"user{u}"].add(r.body.decode())
    assert all(len(v) == 1 for v in seen.values()), "one user, one endpoint"
    owners = collections.Counter(next(iter(v)) for v in seen.values())
    assert len(owners) == 3, owners


def test_hashing_by_cookie_from_the_route(upstream, mosnx):
    ups = named(upstream, 3)
    proxy = mosnx(ups, cluster={"lb": "ring_hash"}, route={"hash_key": 'request.cookies["sid"]'})
    with proxy.connect() as c:
        for sid in ("a", "b", "c", "d", "e"):
            got = {c.request("GET", "/", headers=[("Host", "t"), ("Cookie", f"x=1; sid={sid}")]).body
                   for _ in range(5)}
            assert len(got) == 1, (sid, got)


def test_hashing_by_source_address_keeps_one_client_on_one_endpoint(upstream, mosnx):
    ups = named(upstream, 3)
    proxy = mosnx(ups, cluster={"lb": "maglev", "hash_key": "source.address"})
    got = set()
    for _ in range(10):              # new connections, new source ports, one address
        got.add(proxy.request("GET", "/").body)
    assert len(got) == 1


def test_unknown_lb_and_bad_hash_key_are_config_errors(tmp_path):
    from mosnx.runtime.config import load_config_text
    from mosnx.runtime.diagnostics import ConfigError
    with pytest.raises(ConfigError) as e:
        load_config_text("""\
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000"]
    lb: magelv
    hash_key: request.header["x"]
""")
    text = str(e.value)
    assert 'unknown value "magelv"' in text and "maglev" in text
    assert 'unknown attribute "request.header"' in text
