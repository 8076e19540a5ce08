"""A Dubbo 2 provider of com.example.Greeter on python-hessian (Hessian 2 serialization).

    python dubbo_provider.py [PORT]         (default 20881, on 127.0.0.1)

Answers any method with "hello, <first argument>" and heartbeats with heartbeats.
A thread per connection; each connection's calls are answered in order.
"""
from __future__ import annotations

import io
import socket
import struct
import sys
import threading

from pyhessian.encoder import Encoder
from pyhessian.parser import Parser

OK = 20
HEAD = struct.Struct(">2sBBqI")          # magic, flag, status, request id, body length


def read_values(body: bytes, n: int) -> list:
    p = Parser()
    p.version = 2
    p._stream = io.BytesIO(body)
    return [p.read_object() for _ in range(n)]


def serve(conn: socket.socket) -> None:
    buf = b""
    with conn:
        while data := conn.recv(65536):
            buf += data
            while len(buf) >= 16:
                _, flag, _, rid, blen = HEAD.unpack_from(buf)
                if len(buf) < 16 + blen:
                    break
                body, buf = buf[16:16 + blen], buf[16 + blen:]
                if flag & 0x20:              # a heartbeat
                    conn.sendall(HEAD.pack(b"\xda\xbb", 0x22, OK, rid, 1) + b"N")
                    continue
                # dubbo version, service path, version, method, parameter types, first argument
                _, path, _, method, desc, arg = read_values(body, 6) if body else [None] * 6
                enc = Encoder()
                out = enc.encode(1) + enc.encode(f"hello, {arg}")      # RESPONSE_VALUE, the value
                conn.sendall(HEAD.pack(b"\xda\xbb", 0x02, OK, rid, len(out)) + out)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 20881
    lsock = socket.create_server(("127.0.0.1", port))
    print(f"dubbo provider on 127.0.0.1:{port}", flush=True)
    while True:
        c, _ = lsock.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
