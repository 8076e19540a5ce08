"""The multiplexed RPC upstream (proxy/rpc/pool.py) against a scripted Dubbo provider that
misbehaves on purpose: request ids rewritten on the way up and restored on the way back
(two clients using the same id at once), a response with an id never sent dropped and
counted, a provider's heartbeat answered by the proxy, and bytes that are not Dubbo
failing only the calls on that connection."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from mosnx.proxy.rpc import codec as rc, dubbo


class Scripted:
    """A Dubbo endpoint: each request frame is handed to `script(sock, frame)`; the ids seen
    are kept in order."""

    def __init__(self, script):
        self.script = script
        self.ids: list[int] = []
        self.frames: list[rc.Frame] = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.address = f"127.0.0.1:{self.lsock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        buf = b""
        with s:
            while True:
                try:
                    d = s.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                buf += d
                while (f := dubbo.CODEC.decode(buf, 0, 1 << 20)) is not None:
                    buf = buf[len(f.raw):]
                    self.frames.append(f)
                    if f.kind == rc.REQUEST:
                        self.ids.append(f.request_id)
                    self.script(s, f)

    def stop(self) -> None:
        self.lsock.close()


def answer(s: socket.socket, f: rc.Frame, text: str, rid: int | None = None) -> None:
    from mosnx.proxy.rpc.hessian import write_string
    body = b"\x91" + write_string(text)
    s.sendall(dubbo.encode(f.request_id if rid is None else rid, 0x02, dubbo.OK, body))


def request(rid: int, method: str = "get") -> bytes:
    from mosnx.proxy.rpc.hessian import write_string
    return dubbo.encode_request(rid, dubbo.request_body("com.example.S", method, "1.0.0", write_string("a"),
                                                        "Ljava/lang/String;"))


def read_frames(s: socket.socket, n: int, timeout: float = 10.0) -> list[rc.Frame]:
    out: list[rc.Frame] = []
    buf = b""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        d = s.recv(65536)
        if not d:
            break
        buf += d
        while (f := dubbo.CODEC.decode(buf, 0, 1 << 20)) is not None:
            buf = buf[len(f.raw):]
            out.append(f)
    return out


@pytest.fixture
def scripted():
    made: list[Scripted] = []

    def make(script) -> Scripted:
        p = Scripted(script)
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


def config(address: str) -> dict:
    return {"listeners": [{"name": "d", "protocol": "dubbo", "route": {"cluster": "p", "timeout": "5s"}}],
            "clusters": [{"name": "p", "protocol": "dubbo", "endpoints": [address], "connect_timeout": "1s"}]}


def test_same_client_ids_rewritten_up_and_restored_down(mosnx, scripted):
    gate = threading.Barrier(2, timeout=10)

    def script(s, f):
        answer(s, f, f"for upstream id {f.request_id}")
    p = scripted(script)
    proxy = mosnx(config=config(p.address))
    conns = [socket.create_connection(("127.0.0.1", proxy.port), timeout=10) for _ in range(2)]
    results: list = [None, None]

    def client(i: int) -> None:
        gate.wait()
        conns[i].sendall(request(1))
        results[i] = read_frames(conns[i], 1)
    ts = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    for c in conns:
        c.close()
    assert len(p.ids) == 2 and len(set(p.ids)) == 2          # the provider never saw id 1 twice
    for r in results:
        assert r and r[0].request_id == 1 and dubbo.CODEC.is_success(r[0])
    bodies = sorted(r[0].raw[16:] for r in results)
    assert bodies == sorted(b"\x91" + bytes([len(f"for upstream id {i}")]) + f"for upstream id {i}".encode()
                            for i in p.ids)


def test_unknown_id_dropped_and_provider_heartbeat_answered(mosnx, scripted):
    def script(s, f):
        if f.kind == rc.REQUEST:
            s.sendall(dubbo.encode_heartbeat(555))            # the provider checks the proxy is alive
            answer(s, f, "stray", rid=f.request_id + 1000)    # an id the proxy never sent
            answer(s, f, "real")
    p = scripted(script)
    proxy = mosnx(config=config(p.address))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
        c.sendall(request(42))
        (r,) = read_frames(c, 1)
    assert r.request_id == 42 and r.raw.endswith(b"real")
    proxy.wait_stat("cluster.p.dubbo.response_unknown", 1)
    proxy.wait_stat("cluster.p.dubbo.heartbeat", 1)
    # the heartbeat's answer reached the provider
    assert any(f.kind == rc.HEARTBEAT_ACK and f.request_id == 555 for f in p.frames)


def test_garbage_from_provider_fails_only_its_calls(mosnx, scripted):
    def script(s, f):
        if f.kind == rc.REQUEST and f.headers[rc.METHOD] == "poison":
            s.sendall(b"this is not dubbo")
        elif f.kind == rc.REQUEST and f.headers[rc.METHOD] == "get":
            answer(s, f, "fine")
        # "hang": never answered
    p = scripted(script)
    proxy = mosnx(config=config(p.address))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
        c.sendall(request(1, "hang") + request(2, "poison"))
        got = {f.request_id: f for f in read_frames(c, 2)}
        assert got[1].status == dubbo.CHANNEL_INACTIVE and got[2].status == dubbo.CHANNEL_INACTIVE
        # the client's own connection goes on, over a new upstream connection
        c.sendall(request(3))
        (r,) = read_frames(c, 1)
        assert r.request_id == 3 and r.status == dubbo.OK and r.raw.endswith(b"fine")
    st = proxy.stats()
    assert st["cluster.p.upstream_cx_protocol_error"] == 1
    assert st["cluster.p.dubbo.response_decoding_error"] == 1
    assert st["dubbo.d.local_reply_reset"] == 2
    assert st["cluster.p.upstream_cx_total"] == 2
