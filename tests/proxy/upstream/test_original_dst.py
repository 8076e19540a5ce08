"""ORIGINAL_DST clusters: a host per destination, made when a stream asks and
dropped after cleanup_interval unused; the override header, and the port override."""
from __future__ import annotations

import asyncio

from mosnx.proxy.upstream.cluster import Cluster
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.model import ClusterConfig
from mosnx.runtime.stats import Store


def cluster(**od) -> Cluster:
    cfg = ClusterConfig("PassthroughCluster", (), lb="cluster_provided",
                        options={"original_dst": {"cleanup_interval": 5.0, **od}})
    return Cluster(cfg, Store())


def ctx(dst: tuple[str, int], **headers: str) -> StreamContext:
    return StreamContext(RequestHead("GET", "/", Headers.from_pairs(list(headers.items())), "http"),
                         "l", "HTTP/1.1", ("10.0.0.9", 40000), dst)


def test_a_host_per_destination_made_on_demand():
    async def run():
        c = cluster()
        a = c.pick(ctx(("10.96.0.10", 80)))
        b = c.pick(ctx(("10.96.0.11", 80)))
        assert (a.host, a.port, b.host, b.port) == ("10.96.0.10", 80, "10.96.0.11", 80)
        assert c.pick(ctx(("10.96.0.10", 80))) is a                  # the same host again
        assert c.hosts == [a, b] and c.membership_gauge.value == 2
        assert c.pick(ctx(("", 0))) is None                           # no destination, no host
        c.close()
    asyncio.run(run())


def test_unused_hosts_go_after_cleanup_interval():
    async def run():
        c = cluster()
        a = c.pick(ctx(("10.96.0.10", 80)))
        c.pick(ctx(("10.96.0.11", 80)))
        lb = c.lb
        lb.cleanup()                       # both were used in this interval: kept
        assert len(c.hosts) == 2
        c.pick(ctx(("10.96.0.11", 80)))
        a.rq_active = 1                    # in use: kept though not picked
        lb.cleanup()
        assert len(c.hosts) == 2
        a.rq_active = 0
        lb.cleanup()                       # neither picked since the last cleanup, nothing open: both go
        assert c.hosts == [] and c.membership_gauge.value == 0
        assert lb.timer is None            # nothing left to clean: no timer
        c.close()
    asyncio.run(run())


def test_the_override_header_and_the_port_override():
    async def run():
        c = cluster(http_header="x-envoy-original-dst-host")
        h = c.pick(ctx(("10.96.0.10", 80), **{"x-envoy-original-dst-host": "127.0.0.7:9000"}))
        assert (h.host, h.port) == ("127.0.0.7", 9000)
        assert c.pick(ctx(("10.96.0.10", 80), **{"x-envoy-original-dst-host": "reviews:9080"})) is None
        assert c.c["original_dst_host_invalid"].value == 1                # counted, as Envoy does
        h = c.pick(ctx(("10.96.0.10", 80)))                          # no header: the destination
        assert (h.host, h.port) == ("10.96.0.10", 80)
        c.close()
        p = cluster(port_override=15443)
        h = p.pick(ctx(("10.96.0.10", 80)))
        assert (h.host, h.port) == ("10.96.0.10", 15443)
        p.close()
    asyncio.run(run())
