"""Socket options every proxied connection gets, and the addresses a proxy claims.

Workers share each listener through SO_REUSEPORT, which the kernel also grants to any
other process of the same user: a second `mosnx run` of the same config would join
the listeners silently and take part of the traffic. So the supervisor claims every
address before a worker binds it:

- a lock per address: an abstract Unix socket named after the resolved address,
  bound (never a file, so it cannot go stale) and released when the process dies;
  it listens so that a second instance can learn the holder's pid (SO_PEERCRED);
- a probe bind with the options the workers will use, so a port that a plain socket
  holds, a foreign address or an unknown host fail before any worker is spawned.

Linux only for the locks: where abstract sockets do not exist, `lock` claims nothing
and the probe alone guards.
"""
from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle: a proxy writes whole messages and must not wait for an ACK to send the next."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class AddressInUse(Exception):
    """Another mosnx process holds the lock of an address; `pid` when it could be learned."""

    def __init__(self, pid: int | None):
        super().__init__("another mosnx process" + (f" (pid {pid})" if pid else "") + " serves it")
        self.pid = pid


def show(host: str, port: int) -> str:
    """host:port as a user writes it, IPv6 in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reason(e: BaseException) -> str:
    """The short cause of a failed bind or lookup ("address already in use")."""
    if isinstance(e, socket.gaierror):
        return e.strerror.lower() if e.strerror else str(e)
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno).lower()
    return str(e)


def resolve(host: str, port: int) -> list[tuple]:
    """The socket addresses a server on host:port binds (as asyncio's create_server does)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    out = []
    for family, _, _, _, sa in infos:
        key = (family, sa[:2])
        if key not in out:
            out.append(key)
    return out


def _lock_name(sa: tuple) -> bytes:
    return b"\0mosnx/tcp/" + show(sa[0], sa[1]).encode()


def lock(host: str, port: int) -> list[socket.socket]:
    """Claim host:port for this process: one lock socket per resolved address.
    Raises AddressInUse when another process holds one; OSError when the address does
    not resolve. Port 0 (a port the kernel picks per socket) claims nothing."""
    if port == 0:
        return []
    held: list[socket.socket] = []
    try:
        for family, sa in resolve(host, port):
            s = _lock_socket(_lock_name(sa))
            if s is not None:
                held.append(s)
    except BaseException:
        for s in held:
            s.close()
        raise
    return held


def _lock_socket(name: bytes) -> socket.socket | None:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        s.bind(name)
    except OSError as e:
        s.close()
        if e.errno == errno.EADDRINUSE:
            raise AddressInUse(holder(name)) from None
        return None                  # no abstract namespace here: the probe alone guards
    s.listen(16)
    s.setblocking(False)
    return s


def holder(name: bytes) -> int | None:
    """The pid of the process holding the lock `name`, if it can be learned."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(name)
        cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", cred)[0]
        return pid or None
    except OSError:
        return None
    finally:
        s.close()


def dismiss(lock_sock: socket.socket) -> None:
    """Accept and close what connected to a lock (a second instance asking who holds it)."""
    while True:
        try:
            conn, _ = lock_sock.accept()
        except OSError:
            return
        conn.close()


def probe(host: str, port: int, reuse_port: bool) -> None:
    """Bind host:port as a server would, then let go; OSError when it cannot be bound."""
    for family, sa in resolve(host, port):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(sa)
        finally:
            s.close()


def listening(host: str, port: int) -> bool:
    """Whether some socket already listens on host:port (or on the wildcard address
    of its family, or, for a wildcard host, on any address of that port): what a
    probe bind with SO_REUSEPORT cannot tell, since another SO_REUSEPORT listener of
    the same user lets it bind. From /proc/net/tcp{,6}; False where those are absent."""
    if port == 0:
        return False
    for family, sa in resolve(host, port):
        table = "/proc/net/tcp6" if family == socket.AF_INET6 else "/proc/net/tcp"
        packed = socket.inet_pton(family, sa[0])
        ours = "".join(packed[i:i + 4][::-1].hex() for i in range(0, len(packed), 4)).upper()
        wildcard = "0" * len(ours)
        want_port = f"{port:04X}"
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) < 4 or fields[3] != "0A":        # 0A: LISTEN
                        continue
                    addr, _, p = fields[1].partition(":")
                    if p == want_port and (addr == ours or addr == wildcard or ours == wildcard):
                        return True
        except OSError:
            continue
    return False
