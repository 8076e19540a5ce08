"""strict_dns clusters: names resolved into endpoints, re-resolved, failures keep the last answer."""
from __future__ import annotations

import asyncio
import socket

from mosnx.proxy.upstream.cluster import Cluster
from mosnx.proxy.upstream.dns import DnsResolver
from mosnx.runtime.model import ClusterConfig, Endpoint
from mosnx.runtime.stats import Store


def answers(table):
    """A getaddrinfo that answers from `table` (name -> list of addresses), or fails."""
    async def getaddrinfo(host, port, family=0, type=0):
        addrs = table.get(host)
        if addrs is None:
            raise socket.gaierror(-2, "Name or service not known")
        out = []
        for a in addrs:
            fam = socket.AF_INET6 if ":" in a else socket.AF_INET
            if family in (0, fam):
                out.append((fam, socket.SOCK_STREAM, 6, "", (a, port)))
        return out
    return getaddrinfo


def cluster(family=None, **eps):
    opts = {"type": "strict_dns", "dns_refresh_rate": 0.05}
    if family:
        opts["dns_lookup_family"] = family
    endpoints = tuple(Endpoint(name, port) for name, port in eps.items())
    return ClusterConfig("svc", endpoints, options=opts)


def test_resolution_families():
    async def main():
        loop = asyncio.get_running_loop()
        loop.getaddrinfo = answers({"svc": ["10.0.0.1", "10.0.0.2", "fd00::1"], "v6": ["fd00::2"]})
        c = Cluster(cluster(svc=80, v6=81), Store())
        c.close()
        r = DnsResolver(c)
        got = [e.address for e in await r.resolve()]
        assert got == ["10.0.0.1:80", "10.0.0.2:80", "[fd00::2]:81"], "v4 preferred, v6 when there is no v4"
        r.family = "all"
        assert len(await r.resolve()) == 4
        c2 = Cluster(cluster(svc=80), Store())
        c2.close()
        r2 = DnsResolver(c2)
        r2.family = "v4_only"
        assert [e.address for e in await r2.resolve()] == ["10.0.0.1:80", "10.0.0.2:80"]
    asyncio.run(main())


def test_membership_follows_dns_and_survives_a_failed_lookup():
    async def main():
        loop = asyncio.get_running_loop()
        table = {"svc": ["10.0.0.1", "10.0.0.2"]}
        loop.getaddrinfo = answers(table)
        c = Cluster(cluster(svc=80), Store())
        await c.warm(5)
        assert [h.address for h in c.hosts] == ["10.0.0.1:80", "10.0.0.2:80"]
        kept = c.hosts[1]
        table["svc"] = ["10.0.0.2", "10.0.0.3"]
        for _ in range(100):
            await asyncio.sleep(0.02)
            if [h.address for h in c.hosts] == ["10.0.0.2:80", "10.0.0.3:80"]:
                break
        assert [h.address for h in c.hosts] == ["10.0.0.2:80", "10.0.0.3:80"]
        assert c.hosts[0] is kept, "an address that stays keeps its Host (pool, health)"
        del table["svc"]
        await asyncio.sleep(0.2)
        assert [h.address for h in c.hosts] == ["10.0.0.2:80", "10.0.0.3:80"], "a failed lookup changes nothing"
        assert c.stats.counters["cluster.svc.update_failure"].value >= 1
        c.close()
        await asyncio.sleep(0)
        assert c.dns.task is None
    asyncio.run(asyncio.wait_for(main(), 30))
