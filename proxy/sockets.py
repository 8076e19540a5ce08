"""Socket options every proxied connection gets."""
from __future__ import annotations

import socket


def set_nodelay(transport) -> None:
    """Disable Nagle: a proxy writes whole messages and must not wait for an ACK to send the next."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
