"""Call com.example.Greeter.hello through mosnx with dubbo-ssl-python's Dubbo consumer.

    python dubbo_consumer.py [PORT]         (default 20880: mosnx's dubbo_in listener)
"""
from __future__ import annotations

import sys

from dubbo_ssl.client import DubboClient

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 20880
    client = DubboClient(interface="com.example.Greeter", group="", version="1.0.0", dubbo_version="2.7.23",
                         host=f"127.0.0.1:{port}")
    print(client.call("hello", ["mosnx"], timeout=10))
