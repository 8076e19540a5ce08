"""`protocol: bolt` end to end, with SOFARPC's own Node implementation (sofa-bolt-node)
on both sides of the proxy: calls answered, routing by service to two providers,
heartbeats answered by the proxy, a timeout and "no route" answered with Bolt's
statuses, a provider killed under calls in flight, retries of idempotent methods
only, and 200 concurrent calls multiplexed over at most 2 upstream connections.

The peers are installed by `make test-peers` (tests/e2e/rpc_peers, pinned by its
package-lock.json); without node or them these tests are skipped, saying so."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import free_port, wait_until  # noqa: E402

PEERS = os.path.join(os.path.dirname(__file__), "rpc_peers")
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not os.path.isdir(os.path.join(PEERS, "node_modules", "sofa-bolt-node")),
    reason="the Node Bolt peers are not installed: run `make test-peers` (needs node and npm)")

# Bolt response statuses (com.alipay.remoting.ResponseStatus)
SUCCESS, SERVER_THREADPOOL_BUSY, NO_PROCESSOR, TIMEOUT, CONNECTION_CLOSED = 0, 4, 6, 7, 0x10
SVC_A, SVC_B = "com.example.Greeter:1.0", "com.example.Billing:1.0"


class BoltProvider:
    """bolt_server.js: answers "<name>:<service>:<method>:<arg>"; method "sleep" waits <arg> ms."""

    def __init__(self, name: str, port: int | None = None):
        self.name = name
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([NODE, "bolt_server.js", str(self.port), name], cwd=PEERS,  # type: ignore[list-item]
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "ready", line
        self.connections = 0

    def count_connections(self) -> int:
        """Connections accepted so far (one line each on stdout)."""
        import select
        out = self.proc.stdout
        while select.select([out], [], [], 0.2)[0]:
            line = out.readline()  # type: ignore[union-attr]
            if not line:
                break
            if line.strip() == "connection":
                self.connections += 1
        return self.connections

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def providers():
    made: list[BoltProvider] = []

    def make(name: str) -> BoltProvider:
        p = BoltProvider(name)
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


def call(port: int, steps: list[dict], wait_ms: int = 20000) -> list[dict]:
    """Run bolt_client.js: every step on one connection at once; the result of each."""
    out = subprocess.run([NODE, "bolt_client.js", str(port), json.dumps(steps)], cwd=PEERS,  # type: ignore[list-item]
                         capture_output=True, text=True, timeout=wait_ms / 1000 + 30,
                         env={**os.environ, "CLIENT_WAIT_MS": str(wait_ms)})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def greet(arg, service: str = SVC_A, method: str = "hello") -> dict:
    return {"service": service, "method": method, "arg": str(arg)}


def bolt_config(clusters: dict[str, list[str]], route: dict | None = None, rpc: dict | None = None,
                cluster_extra: dict | None = None) -> dict:
    lst: dict = {"name": "rpc_in", "protocol": "bolt"}
    if route is not None:
        lst["route"] = route
    if rpc is not None:
        lst["rpc"] = rpc
    cls = []
    for name, eps in clusters.items():
        c = {"name": name, "protocol": "bolt", "endpoints": eps, "connect_timeout": "1s"}
        c.update(cluster_extra or {})
        cls.append(c)
    return {"listeners": [lst], "clusters": cls}


def test_calls_routed_by_service_and_heartbeats_answered(mosnx, providers):
    a, b = providers("A"), providers("B")
    proxy = mosnx(config=bolt_config(
        {"greeters": [a.address], "billing": [b.address]},
        route={"cluster": "greeters"},
        rpc={"routes": [{"match": {"service": "com.example.Billing", "version": "1.0"},
                         "route": {"cluster": "billing"}}]}))
    res = call(proxy.port, [greet("x"), greet("y", SVC_B, "charge"), {"heartbeat": True}, greet("z")])
    assert res == [
        {"ok": f"A:{SVC_A}:hello:x", "status": SUCCESS},
        {"ok": f"B:{SVC_B}:charge:y", "status": SUCCESS},
        {"heartbeat": "ack", "status": SUCCESS},
        {"ok": f"A:{SVC_A}:hello:z", "status": SUCCESS},
    ]
    st = proxy.stats()
    assert st["bolt.rpc_in.request"] == 3
    assert st["bolt.rpc_in.request_heartbeat"] == 1
    assert st["bolt.rpc_in.response_success"] == 3
    assert st["cluster.greeters.upstream_rq_2xx"] == 2
    assert st["cluster.billing.upstream_rq_2xx"] == 1


def test_no_route_and_timeout_answered_in_bolt_format(mosnx, providers):
    a = providers("A")
    proxy = mosnx(config=bolt_config(
        {"greeters": [a.address]},
        rpc={"routes": [{"match": {"service": "com.example.Greeter"},
                         "route": {"cluster": "greeters", "timeout": "300ms"}}]}))
    res = call(proxy.port, [greet("2000", method="sleep"), greet("x", SVC_B), greet("y")])
    assert res[0]["status"] == TIMEOUT and "error" in res[0]
    assert res[1]["status"] == NO_PROCESSOR and "error" in res[1]
    assert res[2] == {"ok": f"A:{SVC_A}:hello:y", "status": SUCCESS}
    st = proxy.stats()
    assert st["bolt.rpc_in.local_reply_timeout"] == 1
    assert st["bolt.rpc_in.local_reply_no_route"] == 1
    assert st["cluster.greeters.upstream_rq_timeout"] == 1
    # the provider's answer comes after the timeout: dropped and counted
    proxy.wait_stat("cluster.greeters.bolt.response_late", 1)


def test_200_concurrent_calls_over_two_connections(mosnx, providers):
    a = providers("A")
    proxy = mosnx(config=bolt_config({"greeters": [a.address]}, route={"cluster": "greeters"},
                                     cluster_extra={"rpc": {"connections": 2}}))
    n = 200
    res = call(proxy.port, [greet(i) for i in range(n)])
    assert res == [{"ok": f"A:{SVC_A}:hello:{i}", "status": SUCCESS} for i in range(n)]
    st = proxy.stats()
    assert st["bolt.rpc_in.response_success"] == n
    assert 1 <= st["cluster.greeters.upstream_cx_total"] <= 2
    assert 1 <= a.count_connections() <= 2


def test_provider_killed_fails_only_its_calls(mosnx, providers):
    slow, fast = providers("S"), providers("F")
    proxy = mosnx(config=bolt_config(
        {"slow": [slow.address], "fast": [fast.address]}, route={"cluster": "slow", "timeout": "30s"},
        rpc={"routes": [{"match": {"service": "com.example.Billing"}, "route": {"cluster": "fast"}}]}))
    import threading
    results: list = []
    t = threading.Thread(target=lambda: results.append(call(proxy.port, [greet("20000", method="sleep")] * 5)))
    t.start()
    proxy.wait_stat("cluster.slow.upstream_rq_total", 5)
    slow.stop()
    t.join(40)
    assert results, "the client's calls were never answered"
    assert all(r["status"] == CONNECTION_CLOSED and "error" in r for r in results[0]), results
    # another cluster's connection is untouched
    assert call(proxy.port, [greet("k", SVC_B)]) == [{"ok": f"F:{SVC_B}:hello:k", "status": SUCCESS}]
    st = proxy.stats()
    assert st["bolt.rpc_in.local_reply_reset"] == 5
    assert st["cluster.slow.upstream_rq_rx_reset"] == 5


def test_retry_only_for_idempotent_methods(mosnx, providers):
    a = providers("A")
    dead = f"127.0.0.1:{free_port()}"
    proxy = mosnx(config=bolt_config(
        {"mixed": [dead, a.address], "gone": [dead]},
        route={"cluster": "mixed", "retry": {"num_retries": 1}},
        rpc={"idempotent_methods": ["hello"],
             "routes": [{"match": {"service": "com.example.Billing"},
                         "route": {"cluster": "gone", "retry": {"num_retries": 3}}}]},
        # every call may meet the refused endpoint first: room for all their retries at once
        cluster_extra={"circuit_breakers": {"max_retries": 100}}))
    # round robin over a refused endpoint and a live one: an idempotent call that meets the
    # refused one is retried on the other
    res = call(proxy.port, [greet(i) for i in range(6)])
    assert res == [{"ok": f"A:{SVC_A}:hello:{i}", "status": SUCCESS} for i in range(6)]
    assert proxy.stat("cluster.mixed.upstream_rq_retry") >= 1
    # a method not listed is never retried: the refused endpoint's error comes back
    res = call(proxy.port, [greet("p", SVC_B, "charge")])
    assert res[0]["status"] == CONNECTION_CLOSED and "error" in res[0]
    assert proxy.stat("cluster.gone.upstream_rq_retry") == 0


def test_circuit_breaker_answers_busy(mosnx, providers):
    a = providers("A")
    proxy = mosnx(config=bolt_config({"greeters": [a.address]}, route={"cluster": "greeters"},
                                     cluster_extra={"circuit_breakers": {"max_requests": 2}}))
    res = call(proxy.port, [greet("500", method="sleep")] * 2 + [greet("x")])
    assert [r["status"] for r in res] == [SUCCESS, SUCCESS, SERVER_THREADPOOL_BUSY]
    assert proxy.stat("bolt.rpc_in.local_reply_overflow") == 1
    # the breaker's count is given back: the next calls go through
    wait_until(lambda: call(proxy.port, [greet("y")])[0]["status"] == SUCCESS, what="a call after the burst")


def test_rate_limit_and_fault_answer_in_bolt_format(mosnx, providers):
    a = providers("A")
    proxy = mosnx(config=bolt_config(
        {"greeters": [a.address]},
        route={"cluster": "greeters",
               "rate_limit": {"token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "1h"}}}))
    res = call(proxy.port, [greet(i) for i in range(3)])
    assert [r["status"] for r in res] == [SUCCESS, SUCCESS, SERVER_THREADPOOL_BUSY]
    assert proxy.stat("bolt.rpc_in.local_reply_rate_limited") == 1
    # a fault filter keyed on an attachment-free call: delayed, then answered
    proxy2 = mosnx(config=bolt_config(
        {"greeters": [a.address]},
        route={"cluster": "greeters", "timeout": "5s",
               "fault": {"delay": {"fixed_delay": "200ms", "percentage": 100}}}))
    assert call(proxy2.port, [greet("d")]) == [{"ok": f"A:{SVC_A}:hello:d", "status": SUCCESS}]


class SpanReceiver:
    """A Zipkin v2 collector on loopback: the spans POSTed to it."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading
        self.spans: list[dict] = []
        recv = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                recv.spans.extend(json.loads(body))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def raw_call(port: int, frame: bytes) -> bytes:
    """One Bolt frame sent as it is; the response frame's bytes."""
    import socket
    from mosnx.proxy.rpc import bolt
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(frame)
        buf = b""
        while (f := bolt.CODEC.decode(buf, 0, 1 << 20)) is None:
            d = s.recv(65536)
            assert d, "the proxy closed the connection"
            buf += d
    return f.raw


def test_trace_context_carried_to_the_provider_and_spans_exported(mosnx, providers, tmp_path):
    from mosnx.proxy.rpc import bolt
    a = providers("A")
    zipkin = SpanReceiver()
    try:
        cfg = bolt_config({"greeters": [a.address]}, route={"cluster": "greeters"})
        cfg["listeners"][0]["tracing"] = {"propagation": ["w3c", "b3"], "random_sampling": "100%"}
        cfg["tracing"] = {"service_name": "rpc-edge", "batch_delay": "50ms", "exporters": [
            {"zipkin": {"endpoint": f"http://127.0.0.1:{zipkin.port}/api/v2/spans"}}]}
        proxy = mosnx(config=cfg)
        # SOFARPC's Node client sends no context: the proxy starts the trace and passes it on
        (res,) = call(proxy.port, [greet("x", method="headers")])
        seen = json.loads(res["ok"])
        version, tid, sid, flags = seen["traceparent"].split("-")
        assert version == "00" and flags == "01" and len(tid) == 32 and len(sid) == 16
        assert seen["b3"].startswith(f"{tid}-{sid}-1-") and seen["service"] == SVC_A
        # a client that carries a context: the provider's request continues the same trace,
        # its parent the proxy's client span (not the caller's span)
        TID, PID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        node = bytes.fromhex(NODE_HELLO)
        content = node[22 + 44 + 32:].replace(b"\x05hello", b"\x07headers")
        frame = bolt.encode_request(41, {"service": SVC_A, "traceparent": f"00-{TID}-{PID}-01"}, content)
        resp = bolt.CODEC.decode(raw_call(proxy.port, frame), 0, 1 << 20)
        assert resp.request_id == 41 and resp.status == SUCCESS
        seen = json.loads(resp.raw[resp.raw.index(b"{"):resp.raw.rindex(b"}") + 1])
        _, tid2, sid2, _ = seen["traceparent"].split("-")
        assert tid2 == TID and sid2 != PID
        # both calls' server and client spans reach the collector, the client span the provider's parent
        wait_until(lambda: len(zipkin.spans) >= 4, what="4 spans exported")
        by_id = {s["id"]: s for s in zipkin.spans}
        client = by_id[sid2]
        assert client["traceId"] == TID and client["kind"] == "CLIENT"
        assert client["tags"]["rpc.system"] == "bolt" and client["tags"]["rpc.method"] == "headers"
        assert client["tags"]["rpc.service"] == "com.example.Greeter"
        server = by_id[client["parentId"]]
        assert server["kind"] == "SERVER" and server["parentId"] == PID and server["name"].startswith("headers")
    finally:
        zipkin.stop()


def test_access_log_and_method_stats(mosnx, providers, tmp_path):
    a = providers("A")
    log = tmp_path / "rpc.log"
    cfg = bolt_config({"greeters": [a.address]}, route={"cluster": "greeters", "timeout": "300ms"},
                      rpc={"method_stats": True})
    cfg["listeners"][0]["access_log"] = {
        "path": str(log),
        "format": "%rpc.protocol% %rpc.service% %rpc.method% %rpc.request_id% %response.code% %rpc.status% "
                  "%cluster.name% %upstream.address% %RESPONSE_FLAGS% %duration_ms%\n"}
    proxy = mosnx(config=cfg)
    res = call(proxy.port, [greet("x"), greet("y", method="bye"), greet("2000", method="sleep"), greet("z")])
    assert [r["status"] for r in res] == [SUCCESS, SUCCESS, TIMEOUT, SUCCESS]
    st = proxy.stats()
    m = "bolt.rpc_in.method.com.example.Greeter."
    assert st[m + "hello.request"] == 2 and st[m + "hello.response_success"] == 2
    assert st[m + "bye.request"] == 1 and st[m + "bye.response_success"] == 1
    assert st[m + "sleep.request"] == 1 and st[m + "sleep.local_reply"] == 1
    assert st[m + "sleep.local_reply_timeout"] == 1 and st[m + "hello.local_reply_timeout"] == 0
    assert st["cluster.greeters.upstream_rq_total"] == 4
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 4, what="4 access-log lines")
    lines = sorted(log.read_text().splitlines(), key=lambda ln: int(ln.split()[3]))
    for line, (rid, method) in zip(lines, [(1, "hello"), (2, "bye"), (3, "sleep"), (4, "hello")]):
        f = line.split()
        assert f[:4] == ["bolt", "com.example.Greeter", method, str(rid)], line
        assert f[6:8] == ["greeters", a.address], line
        if method == "sleep":
            assert f[4:6] == ["504", str(TIMEOUT)] and f[8] == "UT", line
        else:
            assert f[4:6] == ["200", "0"] and f[8] == "-", line
        assert int(f[9]) >= 0


# test_bolt.NODE_REQUEST: a SofaRequest for com.example.A:1.0 hello("x") as sofa-bolt-node writes it
NODE_HELLO = (
    "0101000101000000010100007530002c0020000000c2636f6d2e616c697061792e736f66612e7270632e636f72652e72657175"
    "6573742e536f666152657175657374000000077365727669636500000011636f6d2e6578616d706c652e413a312e304fbc636f"
    "6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f666152657175657374950a6d6574686f644e"
    "616d650d6d6574686f64417267536967731774617267657453657276696365556e697175654e616d650d7461726765744170704e"
    "616d650c7265717565737450726f70736f900568656c6c6f567400115b6a6176612e6c616e672e537472696e676e01106a6176"
    "612e6c616e672e537472696e677a11636f6d2e6578616d706c652e413a312e304e4e0178")
