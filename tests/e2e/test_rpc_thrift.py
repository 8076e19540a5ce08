"""`protocol: thrift` end to end: thriftpy2 clients call through mosnx thriftpy2
providers (processes, so one can be killed) serving greeter.thrift. Covered: routing
by method to two providers in framed and unframed transports, binary (strict and lax)
and compact protocols; one-way calls; a pinned listener refusing another encoding;
timeout and no route as TApplicationExceptions the client raises; a provider killed
under load failing only the calls in flight to it; 200 concurrent calls over two
upstream connections."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("thriftpy2", reason="thriftpy2 is a test dependency (pip install .[test])")
from thriftpy2.thrift import TApplicationException  # noqa: E402
from thriftpy2.transport import TTransportException  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import thrift_peer  # noqa: E402

sys.path.remove(HERE)


class Provider:
    def __init__(self, name: str, transport: str, protocol: str):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "thrift_peer.py"), name, transport,
                                      protocol], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()          # the port, once it listens
        assert line.strip().isdigit(), f"provider {name} did not start: {line!r}"
        self.port = int(line)
        self.address = f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def providers():
    made: list[Provider] = []

    def make(name: str, transport: str = "framed", protocol: str = "binary") -> Provider:
        p = Provider(name, transport, protocol)
        made.append(p)
        return p
    yield make
    for p in made:
        p.kill()


def config(clusters: dict[str, Provider], route: dict | None = None, rpc: dict | None = None,
           thrift: dict | None = None, connections: int = 1) -> dict:
    lst: dict = {"name": "thrift_in", "protocol": "thrift"}
    for k, v in (("route", route), ("rpc", rpc), ("thrift", thrift)):
        if v is not None:
            lst[k] = v
    return {"listeners": [lst], "clusters": [
        {"name": n, "protocol": "thrift", "endpoints": [p.address], "connect_timeout": "1s",
         "rpc": {"connections": connections}} for n, p in clusters.items()]}


ENCODINGS = [("framed", "binary", None), ("framed", "compact", None), ("unframed", "binary", None),
             ("unframed", "compact", {"transport": "unframed", "protocol": "compact"}), ("framed", "binary_lax", None)]


@pytest.mark.parametrize("transport,protocol,pin", ENCODINGS)
def test_calls_routed_by_method_to_two_providers(mosnx, providers, transport, protocol, pin):
    a, b = providers("A", transport, protocol), providers("B", transport, protocol)
    proxy = mosnx(config=config({"a": a, "b": b}, route={"cluster": "b", "timeout": "5s"},
                                rpc={"routes": [{"match": {"method": "hello"}, "route": {"cluster": "a"}}]},
                                thrift=pin))
    c = thrift_peer.client(proxy.port, transport, protocol)
    try:
        assert c.hello("x") == "A:x"
        assert c.sleep(1) == "B:slept 1"
        for i in range(3):
            c.ping(f"n{i}")                     # one-way: forwarded, never answered
        assert c.hello("y") == "A:y"
        deadline = time.monotonic() + 10
        while c.pings() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.pings() == 3
    finally:
        c.close()
    st = proxy.stats()
    assert st["thrift.thrift_in.request_oneway"] == 3
    assert st["thrift.thrift_in.response_success"] >= 4
    assert st.get("thrift.thrift_in.local_reply", 0) == 0


def test_pinned_listener_refuses_another_encoding(mosnx, providers):
    a = providers("A", "framed", "compact")
    proxy = mosnx(config=config({"a": a}, route={"cluster": "a"}, thrift={"transport": "framed",
                                                                          "protocol": "compact"}))
    c = thrift_peer.client(proxy.port, "framed", "binary", timeout_ms=5000)
    try:
        with pytest.raises(TTransportException):
            c.hello("x")
    finally:
        c.close()
    proxy.wait_stat("thrift.thrift_in.request_decoding_error", 1)
    ok = thrift_peer.client(proxy.port, "framed", "compact")
    try:
        assert ok.hello("x") == "A:x"
    finally:
        ok.close()


def test_timeout_and_no_route_are_application_exceptions(mosnx, providers):
    a = providers("A", "unframed", "binary")
    proxy = mosnx(config=config({"a": a}, rpc={"routes": [
        {"match": {"method": "hello"}, "route": {"cluster": "a"}},
        {"match": {"method": "sleep"}, "route": {"cluster": "a", "timeout": "300ms"}}]}))
    c = thrift_peer.client(proxy.port, "unframed", "binary")
    try:
        with pytest.raises(TApplicationException) as e:
            c.sleep(1500)
        assert e.value.type == TApplicationException.INTERNAL_ERROR
        assert e.value.message == "mosnx: cluster a: upstream timeout"
        with pytest.raises(TApplicationException) as e:
            c.pings()
        assert e.value.type == TApplicationException.UNKNOWN_METHOD
        assert e.value.message == "mosnx: no route for the call"
        assert c.hello("after") == "A:after"       # the connection goes on after both
    finally:
        c.close()
    st = proxy.stats()
    assert st["thrift.thrift_in.local_reply_timeout"] == 1 and st["thrift.thrift_in.local_reply_no_route"] == 1
    proxy.wait_stat("cluster.a.thrift.response_late", 1)


def test_provider_killed_under_load_fails_only_calls_in_flight(mosnx, providers):
    a, b = providers("A"), providers("B")
    proxy = mosnx(config=config({"a": a, "b": b}, route={"cluster": "b", "timeout": "10s"},
                                rpc={"routes": [{"match": {"method": "sleep"},
                                                 "route": {"cluster": "a", "timeout": "10s"}}]}))
    results: dict[str, list[object]] = {"a": [], "b": []}
    lock = threading.Lock()
    started = threading.Barrier(9)

    def caller(kind: str, i: int) -> None:
        c = thrift_peer.client(proxy.port)
        started.wait(10)
        try:
            for n in range(12):
                try:
                    out: object = c.sleep(50) if kind == "a" else c.hello(f"{i}.{n}")
                except TApplicationException as e:
                    out = e
                with lock:
                    results[kind].append(out)
                time.sleep(0.02)
        finally:
            c.close()

    threads = [threading.Thread(target=caller, args=(k, i)) for i, k in enumerate("aaaabbbb")]
    for t in threads:
        t.start()
    started.wait(10)
    proxy.wait_stat("cluster.a.upstream_rq_total", 8)
    a.kill()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    # every call to the survivor answered, on client connections that all lived on
    assert len(results["b"]) == 48 and all(isinstance(r, str) and r.startswith("B:") for r in results["b"])
    assert len(results["a"]) == 48
    failed = [r for r in results["a"] if isinstance(r, TApplicationException)]
    assert failed and all(r.type == TApplicationException.INTERNAL_ERROR for r in failed)
    assert all(r == "A:slept 50" for r in results["a"] if not isinstance(r, TApplicationException))
    st = proxy.stats()
    # the reset failed at most the calls then on A's one connection: one per caller
    assert 1 <= st.get("thrift.thrift_in.local_reply_reset", 0) <= 4
    assert st.get("thrift.thrift_in.local_reply_reset", 0) + st.get("thrift.thrift_in.local_reply_unavailable", 0) \
        == len(failed)


def test_200_concurrent_calls_over_two_upstream_connections(mosnx, providers):
    a = providers("A", "framed", "compact")
    proxy = mosnx(config=config({"a": a}, route={"cluster": "a", "timeout": "20s"}, connections=2))
    n = 200
    clients = [thrift_peer.client(proxy.port, "framed", "compact", timeout_ms=30000) for _ in range(n)]
    answers: list[object] = [None] * n
    go = threading.Barrier(n)

    def call(i: int) -> None:
        go.wait(20)
        try:
            answers[i] = clients[i].hello(f"c{i}")
        except Exception as e:          # recorded: the assertion below names it
            answers[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert answers == [f"A:c{i}" for i in range(n)]
        assert clients[0].connections() <= 2        # the provider saw at most rpc.connections
    finally:
        for c in clients:
            c.close()
    assert proxy.stats()["thrift.thrift_in.response_success"] == n + 1


# -- examples/rpc ----------------------------------------------------------------------
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "rpc")


def _start(argv: list[str]) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True, cwd=EXAMPLE)
    assert "provider on" in p.stdout.readline()
    return p


def test_rpc_example_checks_and_its_thrift_and_dubbo_parts_run(mosnx, free_port):
    import yaml
    mosnx_bin = os.path.join(os.path.dirname(sys.executable), "mosnx")
    for name in ("mosnx.yaml", "governance.yaml"):
        chk = subprocess.run([mosnx_bin, "check", os.path.join(EXAMPLE, name)], capture_output=True,
                             text=True, timeout=60)
        assert chk.returncode == 0, name + ": " + chk.stdout + chk.stderr
    with open(os.path.join(EXAMPLE, "mosnx.yaml")) as f:
        cfg = yaml.safe_load(f)
    # the example's fixed ports, moved to free ones
    thrift_up, dubbo_up = free_port(), free_port()
    cfg.pop("admin")
    for lst in cfg["listeners"]:
        lst.pop("address")
    ups = {"thrift_greeters": thrift_up, "dubbo_greeters": dubbo_up}
    for c in cfg["clusters"]:
        if c["name"] in ups:
            c["endpoints"] = [f"127.0.0.1:{ups[c['name']]}"]
    procs = [_start(["thrift_provider.py", str(thrift_up)])]
    try:
        pytest.importorskip("pyhessian")
        procs.append(_start(["dubbo_provider.py", str(dubbo_up)]))
        proxy = mosnx(config=cfg)
        ports = {lst["name"]: int(lst["address"].rsplit(":", 1)[1]) for lst in proxy.config["listeners"]}
        out = subprocess.run([sys.executable, "thrift_consumer.py", str(ports["thrift_in"])], cwd=EXAMPLE,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.splitlines() == [
            "hello, mosnx",
            f"slow: TApplicationException type={TApplicationException.INTERNAL_ERROR} "
            "message='mosnx: cluster thrift_greeters: upstream timeout'"]
        out = subprocess.run([sys.executable, "dubbo_consumer.py", str(ports["dubbo_in"])], cwd=EXAMPLE,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == "hello, mosnx", out.stdout + out.stderr
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
