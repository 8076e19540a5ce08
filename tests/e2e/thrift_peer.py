"""A Thrift provider and client helpers on thriftpy2, for tests/e2e/test_rpc_thrift.py.

Run as a process (so a test can kill it): `python thrift_peer.py NAME TRANSPORT PROTOCOL`
serves greeter.thrift's Greeter on 127.0.0.1 (a port of its own choosing, printed as
the first line of its output), a thread per connection as thriftpy2 does: each
connection's calls are answered in order. hello(name) answers "<NAME>:<name>",
sleep(ms) after that many milliseconds, ping() is one-way, and pings()/connections()
report what the provider has seen.
"""
from __future__ import annotations

import os
import sys
import threading
import time

import thriftpy2
from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.server import TThreadedServer
from thriftpy2.thrift import TProcessor
from thriftpy2.transport import TBufferedTransportFactory, TFramedTransportFactory, TServerSocket

HERE = os.path.dirname(os.path.abspath(__file__))
greeter = thriftpy2.load(os.path.join(HERE, "greeter.thrift"), module_name="greeter_thrift")

TRANSPORTS = {"framed": TFramedTransportFactory, "unframed": TBufferedTransportFactory}
PROTOCOLS = {"binary": lambda: TBinaryProtocolFactory(), "binary_lax": lambda: TBinaryProtocolFactory(
    strict_read=False, strict_write=False), "compact": lambda: TCompactProtocolFactory()}


def client(port: int, transport: str = "framed", protocol: str = "binary", timeout_ms: int = 10000):
    return make_client(greeter.Greeter, "127.0.0.1", port, proto_factory=PROTOCOLS[protocol](),
                       trans_factory=TRANSPORTS[transport](), timeout=timeout_ms)


class Handler:
    def __init__(self, name: str):
        self.name = name
        self.ping_count = 0
        self.conns = 0

    def hello(self, name: str) -> str:
        return f"{self.name}:{name}"

    def sleep(self, ms: int) -> str:
        time.sleep(ms / 1000)
        return f"{self.name}:slept {ms}"

    def ping(self, note: str) -> None:
        self.ping_count += 1

    def pings(self) -> int:
        return self.ping_count

    def connections(self) -> int:
        return self.conns


def serve(name: str, transport: str, protocol: str) -> None:
    handler = Handler(name)
    sock = TServerSocket(host="127.0.0.1", port=0)
    server = TThreadedServer(TProcessor(greeter.Greeter, handler), sock, iprot_factory=PROTOCOLS[protocol](),
                             itrans_factory=TRANSPORTS[transport](), daemon=True)
    sock.listen()
    print(sock.sock.getsockname()[1], flush=True)
    while True:
        conn = sock.accept()
        handler.conns += 1
        threading.Thread(target=server.handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    serve(*sys.argv[1:4])
