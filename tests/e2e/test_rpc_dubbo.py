"""`protocol: dubbo` end to end: a real Dubbo consumer from PyPI (dubbo-ssl-python, its
own Hessian 2 codec) calls through mosnx a Dubbo 2 provider built here on
python-hessian. Covered: calls answered with the body passed through, routing by
service and version to two providers, by group and by any attachment, a weighted
split between two provider versions, heartbeats answered, the proxy's own answers
(no route, timeout) as Dubbo error statuses the consumer raises, and trace context
read from the consumer's attachments and carried to the provider in its own."""
from __future__ import annotations

import io
import os
import socket
import struct
import threading
import time

import pytest

from .conftest import wait_until

pyhessian = pytest.importorskip("pyhessian", reason="python-hessian is a test dependency (pip install .[test])")
dubbo_client = pytest.importorskip("dubbo_ssl.client", reason="dubbo-ssl-python is a test dependency")
from pyhessian.encoder import Encoder  # noqa: E402
from pyhessian.parser import Parser  # noqa: E402

OK, SERVER_TIMEOUT, SERVICE_NOT_FOUND = 20, 31, 60


def _parser(body: bytes) -> Parser:
    """A python-hessian Hessian 2 reader over `body`, one value per read_object()."""
    p = Parser()
    p.version = 2
    p._stream = io.BytesIO(body)
    return p


def _arg_count(desc: str) -> int:
    """Arguments in a JVM parameter descriptor such as "Ljava/lang/String;I"."""
    n, i = 0, 0
    while i < len(desc):
        c = desc[i]
        while c == "[":
            i += 1
            c = desc[i]
        i = desc.index(";", i) + 1 if c == "L" else i + 1
        n += 1
    return n


class DubboProvider:
    """A Dubbo 2 provider: answers "<name>:<path>:<version>:<method>:<first arg>"; method
    "sleep" answers after <first arg> ms; heartbeats are answered. Counts requests and
    keeps each request's attachments."""

    def __init__(self, name: str):
        self.name = name
        self.requests = 0
        self.attachments: list[dict] = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        lock = threading.Lock()
        buf = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
                while len(buf) >= 16:
                    flag, rid, blen = buf[2], struct.unpack(">q", buf[4:12])[0], struct.unpack(">I", buf[12:16])[0]
                    if len(buf) < 16 + blen:
                        break
                    body, buf = buf[16:16 + blen], buf[16 + blen:]
                    if flag & 0x20:                  # heartbeat: answer it
                        s.sendall(struct.pack(">2sBBqI", b"\xda\xbb", 0x22, OK, rid, 1) + b"N")
                        continue
                    self.requests += 1
                    self._call(s, lock, rid, body)
        except OSError:
            return

    def _call(self, s, lock, rid: int, body: bytes) -> None:
        p = _parser(body)
        _dubbo_version, path, version, method, desc = (p.read_object() for _ in range(5))
        args = [p.read_object() for _ in range(_arg_count(desc or ""))]
        self.attachments.append(dict(p.read_object() or {}))
        text = f"{self.name}:{path}:{version}:{method}:{args[0] if args else ''}"
        enc = Encoder()
        out = enc.encode(1) + enc.encode(text)          # RESPONSE_VALUE, then the value

        def answer():
            with lock:
                s.sendall(struct.pack(">2sBBqI", b"\xda\xbb", 0x02, OK, rid, len(out)) + out)
        if method == "sleep":
            threading.Timer(float(args[0]) / 1000, answer).start()
        else:
            answer()

    def stop(self) -> None:
        self.lsock.close()


@pytest.fixture
def providers():
    made: list[DubboProvider] = []

    def make(name: str) -> DubboProvider:
        p = DubboProvider(name)
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


def consumer(port: int, interface: str, version: str = "1.0.0", group: str = ""):
    return dubbo_client.DubboClient(interface=interface, group=group, version=version, dubbo_version="2.7.23",
                                    host=f"127.0.0.1:{port}")


def dubbo_config(clusters: dict[str, list[str]], route: dict | None = None, rpc: dict | None = None) -> dict:
    lst: dict = {"name": "dubbo_in", "protocol": "dubbo"}
    if route is not None:
        lst["route"] = route
    if rpc is not None:
        lst["rpc"] = rpc
    return {"listeners": [lst], "clusters": [{"name": n, "protocol": "dubbo", "endpoints": eps,
                                              "connect_timeout": "1s"} for n, eps in clusters.items()]}


def test_calls_routed_by_service_and_version(mosnx, providers):
    v1, v2 = providers("V1"), providers("V2")
    proxy = mosnx(config=dubbo_config(
        {"users_v1": [v1.address], "users_v2": [v2.address]},
        rpc={"routes": [
            {"match": {"service": "com.example.UserService", "version": "2.0.0"}, "route": {"cluster": "users_v2"}},
            {"match": {"service": "com.example.UserService"}, "route": {"cluster": "users_v1"}},
        ]}))
    assert consumer(proxy.port, "com.example.UserService").call("getUser", ["u1"], timeout=10) \
        == "V1:com.example.UserService:1.0.0:getUser:u1"
    assert consumer(proxy.port, "com.example.UserService", "2.0.0").call("getUser", ["u2"], timeout=10) \
        == "V2:com.example.UserService:2.0.0:getUser:u2"
    st = proxy.stats()
    assert st["dubbo.dubbo_in.response_success"] == 2
    assert v1.requests == 1 and v2.requests == 1


def test_no_route_and_timeout_are_dubbo_errors(mosnx, providers):
    p = providers("P")
    proxy = mosnx(config=dubbo_config(
        {"orders": [p.address]},
        rpc={"routes": [{"match": {"service": "com.example.OrderService"},
                         "route": {"cluster": "orders", "timeout": "300ms"}}]}))
    with pytest.raises(Exception, match="mosnx: no route for the call"):
        consumer(proxy.port, "com.example.Unknown").call("get", ["x"], timeout=10)
    with pytest.raises(Exception, match="mosnx: cluster orders: upstream timeout"):
        consumer(proxy.port, "com.example.OrderService").call("sleep", ["2000"], timeout=10)
    # the connection stays usable after both errors
    assert consumer(proxy.port, "com.example.OrderService").call("get", ["o1"], timeout=10) \
        == "P:com.example.OrderService:1.0.0:get:o1"
    st = proxy.stats()
    assert st["dubbo.dubbo_in.local_reply_no_route"] == 1
    assert st["dubbo.dubbo_in.local_reply_timeout"] == 1
    proxy.wait_stat("cluster.orders.dubbo.response_late", 1)


def test_error_statuses_on_the_wire_and_heartbeat(mosnx, providers):
    """The same answers, read as raw frames: Dubbo's statuses and the request ids kept."""
    from mosnx.proxy.rpc import dubbo
    p = providers("P")
    proxy = mosnx(config=dubbo_config({"orders": [p.address]},
                                      rpc={"routes": [{"match": {"service": "com.example.OrderService"},
                                                       "route": {"cluster": "orders", "timeout": "300ms"}}]}))
    enc = Encoder()
    args = enc.encode("o7")
    frames = [dubbo.encode_heartbeat(7),
              dubbo.encode_request(8, dubbo.request_body("com.example.OrderService", "get", "1.0.0", args,
                                                         "Ljava/lang/String;")),
              dubbo.encode_request(9, dubbo.request_body("com.example.Other", "get", "1.0.0", args,
                                                         "Ljava/lang/String;")),
              dubbo.encode_request(10, dubbo.request_body("com.example.OrderService", "sleep", "1.0.0",
                                                          enc.encode("1500"), "Ljava/lang/String;"))]
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"".join(frames))
        got: dict[int, tuple[int, int, bytes]] = {}
        buf = b""
        deadline = time.monotonic() + 10
        while len(got) < 4 and time.monotonic() < deadline:
            buf += s.recv(65536)
            while (f := dubbo.CODEC.decode(buf, 0, 1 << 20)) is not None:
                buf = buf[len(f.raw):]
                got[f.request_id] = (f.meta[0], f.status, f.raw[16:])
    assert got[7] == (0x22, OK, b"N")                                   # heartbeat answered
    assert got[8][1] == OK and b"P:com.example.OrderService:1.0.0:get:o7" in got[8][2]
    assert got[9][1] == SERVICE_NOT_FOUND and b"mosnx: no route for the call" in got[9][2]
    assert got[10][1] == SERVER_TIMEOUT
    # the connection's errors closed nothing: another client is served
    assert consumer(proxy.port, "com.example.OrderService").call("get", ["o8"], timeout=10) \
        == "P:com.example.OrderService:1.0.0:get:o8"


def test_malformed_or_oversized_frame_closes_only_that_connection(mosnx, providers):
    from mosnx.proxy.rpc import dubbo
    p = providers("P")
    proxy = mosnx(config=dubbo_config({"orders": [p.address]}, route={"cluster": "orders"},
                                      rpc={"max_frame_size": "4KiB"}))
    for bad in (b"GET / HTTP/1.1\r\n\r\n",                                    # not Dubbo at all
                dubbo._HEAD.pack(b"\xda\xbb", 0xC2, 0, 1, 1 << 20)):          # above max_frame_size
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(bad)
            s.settimeout(10)
            assert s.recv(100) == b""                                        # closed, nothing answered
    assert proxy.stat("dubbo.dubbo_in.request_decoding_error") == 2
    assert p.requests == 0
    assert consumer(proxy.port, "com.example.OrderService").call("get", ["ok"], timeout=10) \
        == "P:com.example.OrderService:1.0.0:get:ok"


def test_calls_routed_by_group_and_by_attachment(mosnx, providers):
    blue, gz, rest = providers("BLUE"), providers("GZ"), providers("REST")
    proxy = mosnx(config=dubbo_config(
        {"blue": [blue.address], "gz": [gz.address], "rest": [rest.address]}, route={"cluster": "rest"},
        rpc={"routes": [
            {"match": {"service": "com.example.UserService", "group": "blue"}, "route": {"cluster": "blue"}},
            {"match": {"headers": {"zone": "gz"}}, "route": {"cluster": "gz"}},
        ]}))
    svc = "com.example.UserService"
    assert consumer(proxy.port, svc, group="blue").call("get", ["a"], timeout=10) == f"BLUE:{svc}:1.0.0:get:a"
    assert consumer(proxy.port, svc).call("get", ["b"], context={"zone": "gz"}, timeout=10) \
        == f"GZ:{svc}:1.0.0:get:b"
    assert consumer(proxy.port, svc, group="green").call("get", ["c"], context={"zone": "sh"}, timeout=10) \
        == f"REST:{svc}:1.0.0:get:c"
    # the attachments reach the provider as the consumer wrote them
    assert blue.attachments[0]["group"] == "blue" and gz.attachments[0]["zone"] == "gz"
    assert (blue.requests, gz.requests, rest.requests) == (1, 1, 1)


def test_weighted_split_between_two_provider_versions(mosnx, providers):
    v1, v2 = providers("V1"), providers("V2")
    proxy = mosnx(config=dubbo_config(
        {"users_v1": [v1.address], "users_v2": [v2.address]},
        rpc={"routes": [{"match": {"service": "com.example.UserService"},
                         "route": {"weighted_clusters": {"users_v1": 3, "users_v2": 1}}}]}))
    c = consumer(proxy.port, "com.example.UserService")
    n = 200
    got = [c.call("get", [str(i)], timeout=10).split(":")[0] for i in range(n)]
    assert got.count("V1") + got.count("V2") == n
    # 3:1 expects 150:50; a wide band keeps a fair split from failing by chance
    assert 110 <= got.count("V1") <= 185, got.count("V1")
    assert v1.requests + v2.requests == n


def test_trace_context_from_attachments_reaches_the_provider(mosnx, providers, tmp_path):
    p = providers("P")
    log = tmp_path / "dubbo.log"
    cfg = dubbo_config({"orders": [p.address]}, route={"cluster": "orders"}, rpc={"method_stats": True})
    cfg["listeners"][0]["tracing"] = {"propagation": ["w3c", "sw8"], "random_sampling": "100%"}
    cfg["listeners"][0]["access_log"] = {"path": str(log), "json_format": {
        "service": "%rpc.service%", "method": "%rpc.method%", "group": "%rpc.group%", "status": "%rpc.status%",
        "code": "%response.code%", "trace": "%trace.id%", "protocol": "%rpc.protocol%"}}
    proxy = mosnx(config=cfg)
    TID, PID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    svc = "com.example.OrderService"
    assert consumer(proxy.port, svc, group="g1").call(
        "get", ["o1"], context={"traceparent": f"00-{TID}-{PID}-01", "zone": "gz"}, timeout=10) \
        == f"P:{svc}:1.0.0:get:o1"
    seen = p.attachments[0]
    version, tid, sid, flags = seen["traceparent"].split("-")
    assert (version, tid, flags) == ("00", TID, "01") and sid != PID
    assert seen["sw8"].startswith("1-") and seen["zone"] == "gz" and seen["group"] == "g1"
    import json
    wait_until(lambda: log.exists() and log.read_text().strip(), what="an access-log line")
    (line,) = log.read_text().splitlines()
    assert json.loads(line) == {"service": svc, "method": "get", "group": "g1", "status": OK, "code": 200,
                                "trace": TID, "protocol": "dubbo"}
    st = proxy.stats()
    assert st[f"dubbo.dubbo_in.method.{svc}.get.request"] == 1
    assert st[f"dubbo.dubbo_in.method.{svc}.get.response_success"] == 1


def test_ring_hash_on_an_attachment_keeps_a_user_on_one_provider(mosnx, providers):
    ps = [providers(f"P{i}") for i in range(3)]
    cfg = dubbo_config({"users": [p.address for p in ps]}, route={"cluster": "users"})
    cfg["clusters"][0].update({"lb": "ring_hash", "hash_key": 'request.headers["user"]'})
    proxy = mosnx(config=cfg)
    c = consumer(proxy.port, "com.example.UserService")
    where: dict[str, set[str]] = {}
    for i in range(60):
        user = f"u{i % 12}"
        got = c.call("get", [user], context={"user": user}, timeout=10).split(":")[0]
        where.setdefault(user, set()).add(got)
    assert all(len(v) == 1 for v in where.values()), where      # each user always met the same provider
    assert len({next(iter(v)) for v in where.values()}) >= 2     # and 12 users are spread over more than one
