"""Chaos: three endpoints under a bounded load, one killed mid-run and restarted later.

With retries (reset, connect-failure, 5xx) and outlier detection, the client sees no
failed request once the dead endpoint is ejected (in practice none at all: retries
cover the requests that were in flight on it), and the endpoint rejoins rotation
after its ejection once it is back."""
from __future__ import annotations

import socket
import threading
import time

WAIT = 15.0
CLIENTS = 2
REQUESTS = 150              # per client


class Endpoint:
    """A keep-alive HTTP/1.1 server on a fixed port, killable and restartable."""

    def __init__(self, name: bytes, port: int = 0):
        self.name = name
        self.served = 0
        self.lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.conns: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        buf = b""
        s.settimeout(30)
        try:
            while not self.stopped:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                _, _, buf = buf.partition(b"\r\n\r\n")      # GETs only: no body
                with self.lock:
                    self.served += 1
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(self.name), self.name))
        except OSError:
            return
        finally:
            s.close()

    def kill(self):
        self.stopped = True
        self.lsock.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def health(proxy, address: str) -> str:
    _, _, body = proxy.admin("/clusters")
    for line in body.decode().splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[1] == address and parts[2] == "health_flags":
            return parts[3]
    return ""


def test_killing_an_endpoint_fails_no_request_and_it_rejoins(mosnx):
    eps = [Endpoint(b"e%d" % i) for i in range(3)]
    victim = eps[1]
    proxy = mosnx([e.address for e in eps],
                  route={"retry": {"retry_on": "5xx,reset,connect-failure", "num_retries": 2}},
                  cluster={"outlier_detection": {"consecutive_5xx": 3, "interval": "200ms",
                                                 "base_ejection_time": "1s", "max_ejection_percent": 50}})
    outcomes: list[tuple[float, int]] = []
    lock = threading.Lock()
    killed_at = []

    def client(k):
        c = proxy.connect(timeout=WAIT)
        try:
            for i in range(REQUESTS):
                try:
                    r = c.request("GET", f"/{k}/{i}")
                    status = r.status
                    if r.header("connection") == "close":
                        c.close()
                        c = proxy.connect(timeout=WAIT)
                except Exception:  # noqa: BLE001  (a broken client connection is a failure)
                    status = 0
                    c.close()
                    c = proxy.connect(timeout=WAIT)
                with lock:
                    outcomes.append((time.monotonic(), status))
                    if len(outcomes) == REQUESTS // 2 and not killed_at:
                        victim.kill()
                        killed_at.append(time.monotonic())
                time.sleep(0.005)
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(outcomes) == CLIENTS * REQUESTS
    ejected_by = killed_at[0] + 0.2 + 0.5           # one ejection interval, and some slack
    failed = [s for _, s in outcomes if s != 200]
    failed_after = [s for t, s in outcomes if t > ejected_by and s != 200]
    ejections = proxy.stat("cluster.web.outlier_detection.ejections_enforced_total")
    retries = proxy.stat("cluster.web.upstream_rq_retry")
    print(f"chaos: {len(outcomes)} requests, {len(failed)} failed ({len(failed_after)} after the "
          f"first ejection interval), {int(retries)} retries, {int(ejections)} ejections")
    assert failed_after == []
    assert failed == [], "retries covered even the requests in flight on the killed endpoint"
    assert ejections >= 1

    # the endpoint comes back on the same port; after its ejection it takes traffic again
    revived = Endpoint(b"e1", victim.port)
    deadline = time.monotonic() + WAIT
    while health(proxy, victim.address) != "healthy":
        assert time.monotonic() < deadline, "the restarted endpoint never left ejection"
        time.sleep(0.1)
    with proxy.connect() as c:
        bodies = {c.request("GET", f"/after/{i}").body for i in range(12)}
    assert b"e1" in bodies and revived.served >= 1
    for e in eps + [revived]:
        e.kill()
