"""WebSocket Upgrade: the handshake passes through and the connection becomes a
byte tunnel in both directions."""
from __future__ import annotations

import base64
import hashlib
import os
import struct
import threading

from websockets.sync.client import connect as ws_connect

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def _frame(opcode: int, payload: bytes, mask: bool = False) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def _read_frame(wire) -> tuple[int, bytes]:
    b0, b1 = wire.read_exact(2, what="frame header")
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", wire.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", wire.read_exact(8))[0]
    key = wire.read_exact(4) if b1 & 0x80 else None
    data = wire.read_exact(n)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, data


def ws_echo(greeting: bytes | None = None):
    """An upstream that accepts the upgrade, optionally speaks first, then echoes
    text/binary frames back (unmasked, as a server must) until a close frame."""
    def handler(conn):
        req = conn.read_request()
        if req is None:
            return
        conn.handshake = req
        key = req.header("sec-websocket-key")
        conn.send(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Accept: {_accept_key(key)}\r\n\r\n").encode())
        if greeting is not None:
            conn.send(_frame(1, greeting))
        while True:
            op, data = _read_frame(conn.wire)
            if op == 8:
                conn.send(_frame(8, data[:2]))
                return
            if op in (1, 2):
                conn.send(_frame(op, data))
            elif op == 9:
                conn.send(_frame(10, data))
    return handler


def test_websocket_echo_through_the_proxy(upstream, mosnx):
    up = upstream(handler=ws_echo())
    proxy = mosnx(up)
    with ws_connect(f"ws://127.0.0.1:{proxy.port}/chat", open_timeout=10, close_timeout=5) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        big = os.urandom(200_000)
        ws.send(big)
        assert ws.recv(timeout=10) == big
    hs = up.conns[0].handshake
    assert hs.target == "/chat"
    assert hs.header("upgrade").lower() == "websocket"
    assert "upgrade" in hs.header("connection").lower()
    assert hs.header("sec-websocket-key")


def test_websocket_upstream_speaks_first(upstream, mosnx):
    up = upstream(handler=ws_echo(greeting=b"welcome"))
    proxy = mosnx(up)
    with ws_connect(f"ws://127.0.0.1:{proxy.port}/", open_timeout=10, close_timeout=5) as ws:
        assert ws.recv(timeout=5) == "welcome"
        ws.send("after")
        assert ws.recv(timeout=5) == "after"


def _handshake(key: str) -> bytes:
    return ("GET /raw HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def test_websocket_raw_handshake_and_tunnel(upstream, mosnx):
    up = upstream(handler=ws_echo())
    proxy = mosnx(up)
    key = base64.b64encode(os.urandom(16)).decode()
    with proxy.connect() as c:
        c.send(_handshake(key))
        r = c.read_response()
        assert r.status == 101
        assert r.all("upgrade") == ["websocket"], r
        assert len(r.all("connection")) == 1 and r.header("connection").lower() == "upgrade", r
        assert r.header("sec-websocket-accept") == _accept_key(key)
        assert not r.has("content-length") and not r.has("transfer-encoding")
        for i in range(20):
            c.send(_frame(2, b"%d" % i * 100, mask=True))
            assert _read_frame(c.wire) == (2, b"%d" % i * 100)
        c.send(_frame(8, b"\x03\xe8", mask=True))
        assert _read_frame(c.wire)[0] == 8
        assert c.closed(5), "the tunnel ends when the upstream closes"


def test_websocket_bytes_sent_with_the_handshake_reach_the_upstream(upstream, mosnx):
    # a client may pipeline its first frame right behind the upgrade request
    up = upstream(handler=ws_echo())
    proxy = mosnx(up)
    key = base64.b64encode(os.urandom(16)).decode()
    with proxy.connect() as c:
        c.send(_handshake(key) + _frame(1, b"early", mask=True))
        assert c.read_response().status == 101
        assert _read_frame(c.wire) == (1, b"early")


def test_client_closing_tunnel_closes_upstream(upstream, mosnx):
    up = upstream(handler=ws_echo())
    proxy = mosnx(up)
    key = base64.b64encode(os.urandom(16)).decode()
    c = proxy.connect()
    c.send(_handshake(key))
    assert c.read_response().status == 101
    c.close()
    up.wait_for(lambda: up.conns and up.conns[0].done, what="the upstream side of the tunnel to end")
    assert proxy.wait_stat("http.ingress.downstream_rq_total", 1)


def test_upgrade_refused_by_upstream_is_an_ordinary_response(upstream, mosnx):
    up = upstream(on_request=lambda conn, req: conn.respond(426, b"no upgrade here"))
    proxy = mosnx(up)
    with proxy.connect() as c:
        c.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        r = c.read_response()
        assert r.status == 426 and r.body == b"no upgrade here"
        # nothing was switched: either the connection carries on as HTTP or it is closed
        if r.header("connection") != "close":
            assert c.request("GET", "/plain").status == 426
        else:
            assert c.closed(5)


def test_concurrent_tunnels(upstream, mosnx):
    up = upstream(handler=ws_echo())
    proxy = mosnx(up)
    errors = []

    def run(i):
        try:
            with ws_connect(f"ws://127.0.0.1:{proxy.port}/{i}", open_timeout=10, close_timeout=5) as ws:
                for j in range(10):
                    ws.send(f"{i}:{j}")
                    assert ws.recv(timeout=5) == f"{i}:{j}"
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert up.accepted == 8
