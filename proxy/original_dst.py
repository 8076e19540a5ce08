"""Transparent interception: where a redirected connection was going, and which
listener takes it.

Istio's iptables rules REDIRECT (NAT) a pod's traffic to the proxy's capture ports
(15001 outbound, 15006 inbound); the kernel keeps the address the client asked for,
and SO_ORIGINAL_DST reads it back. With TPROXY (IP_TRANSPARENT on the listening
socket) nothing is rewritten: the socket's local address is the original one.

Invariants:
- original_destination() reads the option once per connection; a connection no NAT
  touched (ENOENT, or any other failure) has its local address as destination, as
  Envoy's original_dst filter does.
- parse_sockaddr() and handoff() are pure: bytes in, address out; an address and a
  table in, a listener name out.
- The hand-off table is built once per snapshot (handoff_table), never per connection.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from typing import Any, Iterable, Mapping

SOL_IP = 0
SOL_IPV6 = 41
SO_ORIGINAL_DST = 80           # linux/netfilter_ipv4.h
IP6T_SO_ORIGINAL_DST = 80      # linux/netfilter_ipv6/ip6_tables.h
IP_TRANSPARENT = 19            # linux/in.h
IPV6_TRANSPARENT = 75          # linux/in6.h
SO_MARK = 36                   # asm-generic/socket.h

AF_INET = 2
AF_INET6 = 10

Address = tuple[str, int]


def parse_sockaddr(raw: bytes) -> Address | None:
    """A Linux struct sockaddr_in / sockaddr_in6 as (host, port); None when it is
    neither (or too short). The family is in host byte order, the port in network
    order; an IPv4-mapped IPv6 address comes back as IPv4."""
    if len(raw) < 8:
        return None
    family = struct.unpack_from("=H", raw, 0)[0]
    port = struct.unpack_from("!H", raw, 2)[0]
    if family == AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if family == AF_INET6 and len(raw) >= 24:
        ip = ipaddress.IPv6Address(raw[8:24])
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped), port
        return str(ip), port
    return None


def original_destination(sock: Any) -> Address | None:
    """Where the connection on `sock` was going before a NAT redirect; None when no
    redirect happened (the caller then takes the local address)."""
    if sock is None or not sys.platform.startswith("linux"):
        return None
    try:
        if sock.family == socket.AF_INET6:
            raw = sock.getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST, 28)
        else:
            raw = sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None                # ENOENT: no conntrack entry with NAT, the usual case
    return parse_sockaddr(raw)


def destination(transport: Any, original: bool) -> Address:
    """The address a connection was going to: its original destination when `original`
    and it was redirected, else the socket's local address."""
    if original:
        got = original_destination(transport.get_extra_info("socket"))
        if got is not None:
            return got
    local = transport.get_extra_info("sockname") or ("", 0)
    return _plain(local[0]), local[1]


def _plain(host: str) -> str:
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


# ---------------------------------------------------------------- the hand-off
Table = Mapping[Address, str]


def handoff_table(listeners: Iterable[tuple[str, str, int, bool]]) -> dict[Address, str]:
    """(name, host, port, is a chain's stack) of each listener -> {(host, port): name},
    the listeners a use_original_dst listener can hand a connection to. A chain's stack
    is never one (its listener is). The first listener of an address keeps it."""
    out: dict[Address, str] = {}
    for name, host, port, stack in listeners:
        if stack:
            continue
        key = (_norm(host), port)
        out.setdefault(key, name)
    return out


def _norm(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def handoff(dst: Address, table: Table, own: str) -> str | None:
    """The listener that takes a connection whose original destination is `dst`, as
    Envoy's use_original_dst: the listener of that exact address, else the one of the
    wildcard address of its family and that port; None (the capture listener `own`
    serves it with its own chains) when neither exists or it is `own` itself."""
    host, port = _norm(dst[0]), dst[1]
    name = table.get((host, port))
    if name is None:
        wildcard = "::" if ":" in host else "0.0.0.0"
        name = table.get((wildcard, port))
    if name == own:
        return None
    return name


_tables: dict[int, tuple[Any, dict[Address, str]]] = {}


def table_of(snapshot: Any) -> dict[Address, str]:
    """handoff_table() of a snapshot, made once and kept while it is the latest."""
    got = _tables.get(id(snapshot))
    if got is not None and got[0] is snapshot:
        return got[1]
    t = handoff_table((n, l.config.host, l.config.port, l.config.chain_of is not None)
                      for n, l in snapshot.listeners.items())
    _tables.clear()               # one snapshot serves at a time; the old table goes
    _tables[id(snapshot)] = (snapshot, t)
    return t


# ---------------------------------------------------------------- listening sockets
def listening_socket(host: str, port: int, transparent: bool, options: Iterable[Any]) -> socket.socket:
    """A bound (not yet listening) socket for a listener that needs options asyncio
    cannot set: IP_TRANSPARENT (set before bind, so a TPROXY listener may bind an
    address that is not local) and Envoy's socket_options (SO_MARK, ...)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sa = infos[0]
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if transparent:
            if family == socket.AF_INET6:
                s.setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1)
            else:
                s.setsockopt(SOL_IP, IP_TRANSPARENT, 1)
        for o in options:
            s.setsockopt(o.level, o.name, o.value)
        s.bind(sa)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s
