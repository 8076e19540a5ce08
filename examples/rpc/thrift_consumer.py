"""Call greeter.thrift's Greeter through mosnx with thriftpy2 (framed transport, binary protocol).

    python thrift_consumer.py [PORT]        (default 9090: mosnx's thrift_in listener)

Prints the answer to hello("mosnx"), then what slow(2000) raises: mosnx's route gives
it 500 ms, so the proxy answers a TApplicationException (INTERNAL_ERROR) itself.
"""
from __future__ import annotations

import os
import sys

import thriftpy2
from thriftpy2.rpc import make_client
from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import TFramedTransportFactory

greeter = thriftpy2.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "greeter.thrift"),
                         module_name="greeter_thrift")


def main(port: int) -> int:
    client = make_client(greeter.Greeter, "127.0.0.1", port, trans_factory=TFramedTransportFactory(),
                         timeout=10_000)
    try:
        print(client.hello("mosnx"))
        try:
            client.slow(2000)
            print("slow: answered (no timeout?)")
            return 1
        except TApplicationException as e:
            print(f"slow: TApplicationException type={e.type} message={e.message!r}")
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 9090))
