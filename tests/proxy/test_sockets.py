"""proxy/sockets.py: addresses as a user writes them, and the claim on an address that
keeps a second mosnx from joining the listeners of the first. Loopback only."""
from __future__ import annotations

import os
import socket
import sys

import pytest

from mosnx.proxy import sockets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_show_and_reason():
    assert sockets.show("127.0.0.1", 80) == "127.0.0.1:80" and sockets.show("::1", 80) == "[::1]:80"
    assert sockets.reason(OSError(98, "x")) == os.strerror(98).lower()
    assert sockets.reason(ValueError("bad")) == "bad"
    assert str(sockets.AddressInUse(42)) == "another mosnx process (pid 42) serves it"
    assert str(sockets.AddressInUse(None)) == "another mosnx process serves it"


def test_resolve_gives_each_address_once():
    assert sockets.resolve("127.0.0.1", 8080) == [(socket.AF_INET, ("127.0.0.1", 8080))]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract Unix sockets are Linux's")
def test_a_second_claim_on_an_address_names_the_holder():
    port = free_port()
    held = sockets.lock("127.0.0.1", port)
    try:
        assert len(held) == 1
        with pytest.raises(sockets.AddressInUse) as e:
            sockets.lock("127.0.0.1", port)
        assert e.value.pid == os.getpid()
        sockets.dismiss(held[0])            # the asker's connection is accepted and closed
    finally:
        for s in held:
            s.close()
    again = sockets.lock("127.0.0.1", port)  # released with its socket
    for s in again:
        s.close()
    assert sockets.lock("127.0.0.1", 0) == []


def test_probe_and_listening_see_a_plain_listener():
    port = free_port()
    assert not sockets.listening("127.0.0.1", port)
    sockets.probe("127.0.0.1", port, reuse_port=True)        # free: binds and lets go
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        if os.path.exists("/proc/net/tcp"):
            assert sockets.listening("127.0.0.1", port)
        with pytest.raises(OSError):
            sockets.probe("127.0.0.1", port, reuse_port=True)
    assert not sockets.listening("127.0.0.1", 0)
