"""ORIGINAL_DST clusters (lb_policy CLUSTER_PROVIDED): the host is where the client
was going.

Istio's PassthroughCluster and its inbound clusters are of this kind: a connection
that iptables redirected to the proxy goes on to its original destination. The
destination comes from the stream: the `x-envoy-original-dst-host` header (or the
header original_dst_lb_config names) when use_http_header is set and the request
has one, else the downstream connection's destination (proxy.filter_chain puts the
original one there). upstream_port_override replaces its port.

Invariants:
- Hosts are made on demand, one per address, and join the cluster's hosts (so pools,
  /clusters and the idle sweep see them); a host unused for a whole cleanup_interval,
  with no request or connection open, is dropped (its pool retired), as Envoy does.
- A header that is not an ip:port picks no host (the request gets 503) and counts
  cluster.<name>.original_dst_host_invalid, as in Envoy; names are never resolved
  here.
- The cleanup timer runs only while the cluster has hosts.
"""
from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING, Any

from mosnx.runtime.model import Endpoint

if TYPE_CHECKING:
    from .cluster import Cluster, Host

DEFAULT_HEADER = "x-envoy-original-dst-host"


def parse_host(value: str) -> tuple[str, int] | None:
    """"ip:port" or "[ipv6]:port" as (ip, port); None when it is not one."""
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    p = int(port)
    if not 0 < p < 65536:
        return None
    return str(ip), p


class Balancer:
    """The load balancer of an ORIGINAL_DST cluster (lb "cluster_provided")."""
    name = "cluster_provided"

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        opts: dict[str, Any] = cluster.config.options.get("original_dst") or {}
        self.header: str | None = opts.get("http_header")
        self.port_override: int = opts.get("port_override", 0)
        self.interval: float = opts.get("cleanup_interval", 5.0)
        self.by_address: dict[tuple[str, int], Host] = {}
        self.used: set[tuple[str, int]] = set()
        self.timer: asyncio.TimerHandle | None = None

    def address(self, ctx: Any) -> tuple[str, int] | None:
        if ctx is None:
            return None
        if self.header is not None and ctx.request is not None:
            value = ctx.request.headers.get(self.header)
            if value:
                got = parse_host(value.decode("latin-1") if isinstance(value, bytes) else value)
                if got is None:
                    self.cluster.c["original_dst_host_invalid"].value += 1
                    return None
                return (got[0], self.port_override or got[1])
        host, port = ctx.destination_address, ctx.destination_port
        if not host or not port:
            return None
        return host, self.port_override or port

    def pick(self, ctx: Any, exclude: Any = None) -> Host | None:
        addr = self.address(ctx)
        if addr is None:
            return None
        h = self.by_address.get(addr)
        if h is None:
            h = self._add(addr)
        self.used.add(addr)
        return h

    def _add(self, addr: tuple[str, int]) -> Host:
        from .cluster import Host
        c = self.cluster
        h = Host(c, Endpoint(addr[0], addr[1]))
        self.by_address[addr] = h
        c.hosts.append(h)
        c.membership_gauge.value = len(c.hosts)
        c.healthy_gauge.value = len(c.hosts)
        if self.timer is None and self.interval > 0:
            self.timer = asyncio.get_running_loop().call_later(self.interval, self.cleanup)
        return h

    def cleanup(self) -> None:
        """Drop the hosts no stream picked since the last cleanup and nothing uses."""
        self.timer = None
        c = self.cluster
        for addr, h in list(self.by_address.items()):
            if addr in self.used or h.rq_active or h.pool.cx_active:
                continue
            del self.by_address[addr]
            if h in c.hosts:
                c.hosts.remove(h)
            h.pool.retire()
        self.used.clear()
        c.membership_gauge.value = c.healthy_gauge.value = len(c.hosts)
        if self.by_address and self.interval > 0:
            self.timer = asyncio.get_running_loop().call_later(self.interval, self.cleanup)
