"""proxy.original_dst: sockaddr parsing (what SO_ORIGINAL_DST returns), the
use_original_dst hand-off choice, and the ORIGINAL_DST cluster's host choice."""
from __future__ import annotations

import socket
import struct

from mosnx.proxy.original_dst import handoff, handoff_table, parse_sockaddr
from mosnx.proxy.upstream.original_dst import parse_host


def _sin(ip: str, port: int) -> bytes:
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(ip) + b"\0" * 8


def _sin6(ip: str, port: int) -> bytes:
    return (struct.pack("=H", socket.AF_INET6) + struct.pack("!H", port) + b"\0" * 4
            + socket.inet_pton(socket.AF_INET6, ip) + b"\0" * 4)


def test_sockaddr_v4_and_v6():
    assert parse_sockaddr(_sin("10.96.0.10", 80)) == ("10.96.0.10", 80)
    assert parse_sockaddr(_sin6("fd00::7", 9080)) == ("fd00::7", 9080)
    # a v4 destination seen through a dual-stack socket comes back as v4
    assert parse_sockaddr(_sin6("::ffff:10.0.0.1", 443)) == ("10.0.0.1", 443)


def test_sockaddr_that_is_not_one():
    assert parse_sockaddr(b"") is None
    assert parse_sockaddr(b"\x01\x00" + b"\0" * 14) is None           # AF_UNIX
    assert parse_sockaddr(_sin6("fd00::7", 1)[:12]) is None            # cut short


TABLE = handoff_table([
    ("virtualOutbound", "0.0.0.0", 15001, False),
    ("0.0.0.0_80", "0.0.0.0", 80, False),
    ("10.96.0.10_80", "10.96.0.10", 80, False),
    ("v6_80", "::", 8080, False),
    ("virtualOutbound/catchall", "0.0.0.0", 15001, True),       # a chain's stack: never a target
])


def test_handoff_exact_then_wildcard():
    assert handoff(("10.96.0.10", 80), TABLE, "virtualOutbound") == "10.96.0.10_80"
    assert handoff(("10.96.0.11", 80), TABLE, "virtualOutbound") == "0.0.0.0_80"
    assert handoff(("fd00::1", 8080), TABLE, "virtualOutbound") == "v6_80"
    assert handoff(("::ffff:10.96.0.10", 80), TABLE, "virtualOutbound") == "10.96.0.10_80"


def test_handoff_none_keeps_the_capture_listener():
    assert handoff(("10.96.0.10", 5432), TABLE, "virtualOutbound") is None     # no listener of that port
    assert handoff(("127.0.0.1", 15001), TABLE, "virtualOutbound") is None     # itself
    assert handoff(("10.0.0.1", 8080), TABLE, "virtualOutbound") is None       # v6 wildcard takes no v4


def test_original_dst_host_header():
    assert parse_host("10.0.0.1:8080") == ("10.0.0.1", 8080)
    assert parse_host("[fd00::1]:443") == ("fd00::1", 443)
    for bad in ("10.0.0.1", "example.com:80", "10.0.0.1:0", "10.0.0.1:99999", "[fd00::1]", ":80"):
        assert parse_host(bad) is None, bad
