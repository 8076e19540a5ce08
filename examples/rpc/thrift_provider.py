"""A Thrift provider of greeter.thrift on thriftpy2 (framed transport, binary protocol).

    python thrift_provider.py [PORT]        (default 9091, on 127.0.0.1)
"""
from __future__ import annotations

import os
import sys
import time

import thriftpy2
from thriftpy2.rpc import make_server
from thriftpy2.transport import TFramedTransportFactory

greeter = thriftpy2.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "greeter.thrift"),
                         module_name="greeter_thrift")


class Greeter:
    def hello(self, name: str) -> str:
        return f"hello, {name}"

    def slow(self, ms: int) -> str:
        time.sleep(min(ms, 10_000) / 1000)
        return f"slept {ms} ms"


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9091
    server = make_server(greeter.Greeter, Greeter(), "127.0.0.1", port, trans_factory=TFramedTransportFactory())
    print(f"thrift provider on 127.0.0.1:{port}", flush=True)
    server.serve()
