"""Worker processes, startup and shutdown: several workers share one port and their
stats are summed; SIGTERM drains in-flight requests, refuses new connections and exits
0. Startup is all or nothing: an address in use or held by another mosnx ends the
start at once with one line and no process left; signals stop a start, and a second
one stops a drain."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml

from .conftest import HOST, build_config, free_port, wait_until


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_two_workers_serve_one_port_and_stats_are_summed(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up, workers=2)
    assert len(proxy.worker_pids()) == 2
    before = proxy.stat("http.ingress.downstream_rq_total")
    n = 40
    for i in range(n):
        assert proxy.request("GET", f"/w{i}").status == 200
    s = proxy.stats()
    assert s["http.ingress.downstream_rq_total"] - before == n
    assert s["http.ingress.downstream_rq_2xx"] == n
    assert s["cluster.web.upstream_rq_total"] == n
    assert len(up.requests) == n
    assert proxy.admin_json("/server_info")["workers"] == 2
    assert proxy.stop() == 0


def test_both_workers_accept_connections(upstream, mosnx):
    # SO_REUSEPORT spreads connections by hash: with many connections each worker gets some
    up = upstream()
    proxy = mosnx(up, workers=2)
    for i in range(40):
        assert proxy.request("GET", f"/spread{i}").status == 200
    # each worker opens its own pooled upstream connection when it serves anything
    assert up.accepted == 2


def test_sigterm_drains_in_flight_request_refuses_new_and_exits_0(upstream, mosnx):
    release = threading.Event()

    def answer(conn, req):
        release.wait(15)
        conn.respond(200, b"finished")

    up = upstream(on_request=answer)
    proxy = mosnx(up, listener={"timeouts": {"drain": "10s"}})
    c = proxy.connect(timeout=20)
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    up.wait_requests(1)
    proxy.signal(signal.SIGTERM)
    proxy.wait_until(lambda: _refused(proxy.port), 10, "the listener to stop accepting")
    assert proxy.proc.poll() is None, "the process must wait for the in-flight request"
    release.set()
    r = c.read_response(timeout=10)
    assert r.status == 200 and r.body == b"finished"
    assert r.header("connection") == "close"
    assert c.closed(5)
    c.close()
    assert proxy.wait_exit(15) == 0


def test_sigterm_closes_idle_keep_alive_connections(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up)
    with proxy.connect() as c:
        assert c.request().status == 200
        proxy.signal(signal.SIGTERM)
        assert c.closed(10), "an idle connection is closed at once on drain"
    assert proxy.wait_exit(15) == 0


def test_drain_deadline_ends_stuck_requests(upstream, mosnx):
    def answer(conn, req):
        conn.closed_by_peer(30)          # never answers

    up = upstream(on_request=answer)
    proxy = mosnx(up, route={"timeout": "60s"}, listener={"timeouts": {"drain": "1s"}})
    with proxy.connect(timeout=20) as c:
        c.send(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
        up.wait_requests(1)
        t0 = time.monotonic()
        proxy.signal(signal.SIGTERM)
        assert proxy.wait_exit(15) == 0
        assert time.monotonic() - t0 < 8, "timeouts.drain bounds the shutdown"
        assert c.closed(5)


def test_sigterm_when_idle_exits_0_promptly(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up, workers=2)
    pids = proxy.worker_pids()
    t0 = time.monotonic()
    assert proxy.stop() == 0
    assert time.monotonic() - t0 < 8
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), f"worker {pid} outlived the supervisor"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sigint_also_drains(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up)
    assert proxy.request().status == 200
    proxy.signal(signal.SIGINT)
    assert proxy.wait_exit(15) == 0


def test_dead_worker_is_replaced(upstream, mosnx):
    up = upstream()
    proxy = mosnx(up, workers=2)
    old = proxy.worker_pids()[0]
    assert old != proxy.pid
    os.kill(old, signal.SIGKILL)
    new = proxy.wait_until(lambda: len([p for p in proxy.worker_pids() if p != old]) == 2, 20,
                           "a replacement worker")
    assert new
    proxy.wait_until(lambda: not _refused(proxy.port), 20, "the replacement to listen")
    proxy.wait_until(lambda: _ok(proxy), 20, "the replacement to serve")


def _ok(proxy) -> bool:
    try:
        return proxy.request("GET", "/").status == 200
    except OSError:
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_ready_and_server_info_report_live(upstream, mosnx, workers):
    up = upstream()
    proxy = mosnx(up, workers=workers)
    info = proxy.admin_json("/server_info")
    assert info["state"] == "LIVE"
    assert info["workers"] == workers
    assert info["pid"] == proxy.pid


# ---- startup is all or nothing
def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            out.append(int(entry))
    return out


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == pid:
                out.append(int(entry))
    return out


class Run:
    """`mosnx run` in a session of its own, so every process it made is found by its group."""

    def __init__(self, tmp_path, config: dict, workers: int, *extra: str, name: str = "mosnx",
                 prelude: str = ""):
        self.path = tmp_path / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(config, sort_keys=False))
        main = prelude + "\nimport sys\nfrom mosnx.__main__ import main\nsys.exit(main(sys.argv[1:]))\n"
        self.proc = subprocess.Popen([sys.executable, "-c", main, "run", "-c", str(self.path),
                                      "--workers", str(workers), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.out = self.err = ""

    def finish(self, timeout: float = 30) -> int:
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"mosnx run still running after {timeout}s:\n{self.proc.communicate()[1]}")
        return self.proc.returncode

    def left(self) -> list[int]:
        return wait_until(lambda: not _group(self.proc.pid), 5, "the process group to be empty",
                          interval=0.05) and [] or _group(self.proc.pid)

    def kill(self) -> None:
        for pid in _group(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def runs():
    made: list[Run] = []

    def make(*a, **kw) -> Run:
        r = Run(*a, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.kill()


def _busy(reuse_port: bool = False) -> socket.socket:
    s = socket.socket()
    if reuse_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((HOST, 0))
    s.listen(8)
    return s


def _one_line(r: Run) -> str:
    assert "Traceback" not in r.err, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    return lines[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_admin_port_in_use_exits_at_once_with_one_line_and_no_process_left(tmp_path, runs, workers):
    busy = _busy()
    try:
        admin = busy.getsockname()[1]
        r = runs(tmp_path, build_config(free_port(), admin, [f"{HOST}:9"]), workers)
        t0 = time.monotonic()
        assert r.finish() == 1
        assert time.monotonic() - t0 < 20
        assert _one_line(r) == f"mosnx run: cannot listen on {HOST}:{admin} (admin): address already in use"
        assert r.left() == []
    finally:
        busy.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_listener_port_held_by_a_plain_socket_exits_with_one_line(tmp_path, runs, workers):
    busy = _busy()
    try:
        port = busy.getsockname()[1]
        r = runs(tmp_path, build_config(port, free_port(), [f"{HOST}:9"]), workers)
        assert r.finish() == 1
        assert _one_line(r) == f"mosnx run: cannot listen on {HOST}:{port} (listener ingress): address already in use"
        assert r.left() == []
    finally:
        busy.close()


def test_listener_port_shared_by_another_program_with_so_reuseport_is_refused(tmp_path, runs):
    busy = _busy(reuse_port=True)
    try:
        port = busy.getsockname()[1]
        r = runs(tmp_path, build_config(port, free_port(), [f"{HOST}:9"]), 2)
        assert r.finish() == 1
        line = _one_line(r)
        assert line.startswith(f"mosnx run: cannot listen on {HOST}:{port} (listener ingress): address already in use")
        assert "--takeover" in line
        assert r.left() == []
    finally:
        busy.close()


def test_demo_upstream_port_in_use_exits_with_one_line(tmp_path, runs):
    busy = _busy()
    try:
        port = busy.getsockname()[1]
        cfg = build_config(free_port(), free_port(), [f"{HOST}:{port}"])
        cfg["demo_upstream"] = [f"{HOST}:{port}"]
        r = runs(tmp_path, cfg, 2)
        assert r.finish() == 1
        assert _one_line(r) == f"mosnx run: cannot listen on {HOST}:{port} (demo upstream): address already in use"
        assert r.left() == []
    finally:
        busy.close()


def test_second_instance_of_a_config_is_refused_and_the_first_keeps_all_traffic(upstream, mosnx, runs, tmp_path):
    up = upstream()
    first = mosnx(up, workers=2)
    second = runs(tmp_path, first.config, 2, name="second")
    assert second.finish() == 1
    line = _one_line(second)
    assert line.startswith(f"mosnx run: cannot listen on {HOST}:{first.port} (listener ingress): "
                           f"another mosnx process (pid {first.pid}) serves it"), line
    assert "--takeover" in line
    assert second.left() == []
    before = first.stat("http.ingress.downstream_rq_total")
    n = 30
    for i in range(n):
        assert first.request("GET", f"/only-first{i}").status == 200
    assert first.stat("http.ingress.downstream_rq_total") - before == n


def test_second_instance_without_an_admin_is_refused_too(upstream, runs, tmp_path):
    up = upstream()
    cfg = build_config(free_port(), 0, [up.address])
    del cfg["admin"]
    first = runs(tmp_path, cfg, 1, name="first")
    wait_until(lambda: not _refused(int(cfg["listeners"][0]["address"].rsplit(":", 1)[1])), 40,
               "the first instance to listen")
    second = runs(tmp_path, cfg, 1, name="second")
    assert second.finish() == 1
    assert f"another mosnx process (pid {first.proc.pid}) serves it" in _one_line(second)
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == 0


def test_takeover_joins_and_claims_the_admin_once_the_first_stops(upstream, mosnx, runs, tmp_path):
    up = upstream()
    first = mosnx(up, workers=1)
    second = runs(tmp_path, first.config, 1, "--takeover", name="second")
    wait_until(lambda: second.proc.poll() is None and _served_by_both(first), 40,
               "the second instance to share the listener")
    assert first.stop() == 0
    assert first.request().status == 200          # the second now serves alone
    wait_until(lambda: _admin_answers(first), 20, "the second instance to bind the admin")
    second.proc.send_signal(signal.SIGTERM)
    assert second.finish() == 0
    assert "WARNING" in second.err and "--takeover" in second.err


def _served_by_both(first) -> bool:
    """Whether requests on fresh connections reach someone besides `first` (its count stays behind)."""
    before = first.stat("http.ingress.downstream_rq_total")
    ok = sum(first.request("GET", f"/t{i}").status == 200 for i in range(20))
    return ok == 20 and first.stat("http.ingress.downstream_rq_total") - before < 20


def _admin_answers(m) -> bool:
    try:
        return m.admin("/ready", timeout=2)[0] == 200
    except OSError:
        return False


# The supervisor never reads its workers' "ready" here, so the start is still going on
# (workers spawned and alive) whenever the signal comes; "spawned" is printed once
# the supervisor takes SIGINT again after starting a worker.
STARTING_FOREVER = """
import asyncio, contextlib
from mosnx.proxy import supervisor
spawn, ignored = supervisor.WorkerHandle.start, supervisor._sigint_ignored
def start(self, version):
    spawn(self, version)
    asyncio.get_running_loop().remove_reader(self.conn.fileno())
@contextlib.contextmanager
def spawning():
    with ignored():
        yield
    print("spawned", flush=True)
supervisor.WorkerHandle.start = start
supervisor._sigint_ignored = spawning
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_workers_start_stops_at_once_and_leaves_no_process(upstream, runs, tmp_path, sig):
    up = upstream()
    r = runs(tmp_path, build_config(free_port(), free_port(), [up.address]), 2, prelude=STARTING_FOREVER)
    for _ in range(2):
        assert r.proc.stdout.readline().startswith("spawned"), r.proc.stderr.read()
    wait_until(lambda: len(_group(r.proc.pid)) >= 3, 10, "the workers to run")
    r.proc.send_signal(sig)
    assert r.finish() == 128 + sig, r.err
    assert "Traceback" not in r.err, r.err
    assert r.left() == []


def test_a_second_sigint_during_the_drain_stops_at_once(upstream, mosnx):
    release = threading.Event()

    def answer(conn, req):
        release.wait(30)
        conn.respond(200, b"late")

    up = upstream(on_request=answer)
    proxy = mosnx(up, workers=2, route={"timeout": "60s"}, listener={"timeouts": {"drain": "60s"}})
    workers = proxy.worker_pids()
    try:
        with proxy.connect(timeout=30) as c:
            c.send(b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
            up.wait_requests(1)
            proxy.signal(signal.SIGINT)
            proxy.wait_until(lambda: _refused(proxy.port), 10, "the listener to stop accepting")
            assert proxy.proc.poll() is None, "the first SIGINT drains: the held request keeps it"
            t0 = time.monotonic()
            proxy.signal(signal.SIGINT)
            assert proxy.wait_exit(15) == 130
            assert time.monotonic() - t0 < 10
            for pid in workers:
                wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 5, f"worker {pid} to die")
    finally:
        release.set()
    assert "again: stopping without finishing the drain" in proxy.log()


def test_sigterm_then_sigterm_during_the_drain_exits_143(upstream, mosnx):
    release = threading.Event()

    def answer(conn, req):
        release.wait(30)
        conn.respond(200, b"late")

    up = upstream(on_request=answer)
    proxy = mosnx(up, route={"timeout": "60s"}, listener={"timeouts": {"drain": "60s"}})
    try:
        with proxy.connect(timeout=30) as c:
            c.send(b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
            up.wait_requests(1)
            proxy.signal(signal.SIGTERM)
            proxy.wait_until(lambda: _refused(proxy.port), 10, "the listener to stop accepting")
            proxy.signal(signal.SIGTERM)
            assert proxy.wait_exit(15) == 143
    finally:
        release.set()
