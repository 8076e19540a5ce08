"""Real-socket fixtures: a mosnx process, upstreams we script, raw HTTP/1.1 clients.

Everything listens on 127.0.0.1. Every wait is bounded; nothing sleeps where an
event can be awaited. The fixtures:

  free_port()                 a port nothing listens on (a refused endpoint, or a listener).
  upstream(on_request=None, handler=None, record=True) -> Upstream
                              an HTTP/1.1 server in threads that records every byte it
                              receives. By default it answers every request with
                              `200 ok` and keeps the connection. `on_request(conn, req)`
                              replaces the answer per request; `handler(conn)` replaces
                              the whole per-connection loop (for misbehaving upstreams;
                              it may hand a connection back with up.serve(conn)).
                              up.on(path, fn) answers one path with its own script, so
                              a module can share one upstream and one proxy.
                              See UpstreamConn for what a script can do.
  mosnx(endpoints, *, route=, listener=, cluster=, clusters=, config=, workers=1) -> Mosnx
                              `python -m mosnx run -c <yaml> --workers N`, started and
                              ready (admin /ready says LIVE, the listener accepts). The
                              default document has one listener "ingress" routing to one
                              cluster "web" made of `endpoints` (Upstreams, "host:port"
                              strings or ports); route/listener/cluster are merged into
                              it, clusters={"name": endpoints} adds more, config= replaces
                              it whole (admin and listener addresses are filled in when
                              absent). Killed on teardown; its log is printed when the
                              test failed.
  module_upstream, module_mosnx
                              the same, shared by the tests of one module.
  client(port) -> Client      a raw blocking socket with a strict HTTP/1.1 response reader
                              (Mosnx.connect() is the same for the proxy's listener).

Messages come back as Message: status/method/target, lower-cased header names,
body, trailers, how the body was framed and whether it ended cleanly.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pytest
import yaml

HOST = "127.0.0.1"
WAIT = 10.0            # default bound for any single wait on a socket or a condition
START_WAIT = 40.0      # a worker spawn imports the whole project; the machine is shared


# ------------------------------------------------------------------ ports
def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on at the time of the call.

    Drawn below the kernel's ephemeral range (32768 and up here), so that the local
    port of some outgoing connection cannot take it before mosnx binds it; and never
    the same port twice in a run, so an endpoint meant to be unreachable cannot turn
    out to be the listener drawn right after it."""
    for _ in range(200):
        port = _ports.randrange(20000, 32000)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            _given.add(port)
            return port
    raise RuntimeError("no free port in 20000-32000")


_ports = random.Random(os.getpid() ^ int(time.time() * 1000))
_given: set[int] = set()      # ports free_port has handed out in this run


def wait_until(pred: Callable[[], object], timeout: float = WAIT, what: str = "condition",
               interval: float = 0.02):
    """Poll `pred` until it returns something truthy; for state only visible by asking
    (another process's stats, /proc). Returns that value, raises TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ reading HTTP/1.1
class Closed(Exception):
    """The peer closed (or reset) the connection before the expected bytes arrived."""

    def __init__(self, what: str, reset: bool = False):
        super().__init__(f"connection {'reset' if reset else 'closed'} while reading {what}")
        self.reset = reset


class Wire:
    """Buffered reads on a blocking socket, each bounded by a timeout. `data` keeps
    every byte received (unless record=False), so tests can assert exactly what arrived."""

    def __init__(self, sock: socket.socket, record: bool = True, on_data: Callable[[], None] | None = None):
        self.sock = sock
        self.on_data = on_data
        self.buf = bytearray()
        self.data = bytearray()
        self.record = record
        self.eof = False
        self.reset = False
        self.total = 0

    def fill(self, timeout: float, what: str) -> None:
        if self.eof:
            raise Closed(what, self.reset)
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError(f"no bytes within {timeout:.1f}s while reading {what}") from None
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = self.reset = True
            raise Closed(what, True) from None
        if not chunk:
            self.eof = True
            raise Closed(what)
        self.total += len(chunk)
        self.buf += chunk
        if self.record:
            self.data += chunk
        if self.on_data is not None:
            self.on_data()

    def read_until(self, delim: bytes, timeout: float = WAIT, what: str = "", limit: int = 1 << 20) -> bytes:
        deadline = time.monotonic() + timeout
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise AssertionError(f"no {delim!r} within {limit} bytes while reading {what}")
            start = max(0, len(self.buf) - len(delim) + 1)
            self.fill(deadline - time.monotonic(), what or repr(delim))

    def read_exact(self, n: int, timeout: float = WAIT, what: str = "body") -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self.fill(deadline - time.monotonic(), what)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_some(self, timeout: float = WAIT, what: str = "data") -> bytes:
        """Whatever is buffered, or the next chunk from the socket."""
        if not self.buf:
            self.fill(timeout, what)
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_to_close(self, timeout: float = WAIT, what: str = "body until close") -> bytes:
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.fill(deadline - time.monotonic(), what)
        except Closed:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


@dataclass
class Message:
    start: str                                   # the request or status line
    headers: list[tuple[str, str]]               # names lower-cased, values as sent
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    framing: str = "none"                        # none | length | chunked | close
    complete: bool = True                        # False: the connection ended inside the body
    head_raw: bytes = b""
    interim: list["Message"] = field(default_factory=list)   # 1xx answers before this one

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1])

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.start.split(" ", 2)[1]

    @property
    def version(self) -> str:
        parts = self.start.split(" ")
        return parts[0] if self.start.startswith("HTTP/") else parts[-1]

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def has(self, name: str) -> bool:
        return self.header(name) is not None

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 80 else self.body[:80] + b"..."
        return (f"Message({self.start!r}, {self.headers!r}, body={body!r} ({len(self.body)} bytes), "
                f"framing={self.framing}, complete={self.complete})")


def _parse_head(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = raw[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        assert sep, f"malformed header line {line!r}"
        headers.append((name.lower(), value.strip(" \t")))
    return lines[0], headers


def _read_chunked(wire: Wire, msg: Message, timeout: float, sink) -> None:
    deadline = time.monotonic() + timeout
    body = bytearray()
    while True:
        line = wire.read_until(b"\r\n", deadline - time.monotonic(), "chunk size")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:
                t = wire.read_until(b"\r\n", deadline - time.monotonic(), "trailers")
                if t == b"\r\n":
                    break
                name, _, value = t[:-2].decode("latin-1").partition(":")
                msg.trailers.append((name.lower(), value.strip()))
            break
        data = wire.read_exact(size, deadline - time.monotonic(), "chunk data")
        if sink is None:
            body += data
        else:
            sink(data)
        crlf = wire.read_exact(2, deadline - time.monotonic(), "chunk end")
        assert crlf == b"\r\n", f"chunk not followed by CRLF: {crlf!r}"
    msg.body = bytes(body)


def read_message(wire: Wire, *, request: bool, method: str = "GET", timeout: float = WAIT,
                 sink: Callable[[bytes], None] | None = None) -> Message | None:
    """One message from `wire`, framed as RFC 9112 says. None when the peer closed
    cleanly before the first byte. An end of connection inside the body gives a
    Message with complete=False. With `sink`, body bytes go there instead of `.body`."""
    try:
        raw = wire.read_until(b"\r\n\r\n", timeout, "message head", limit=1 << 20)
    except Closed:
        if not wire.buf:
            return None
        raise
    start, headers = _parse_head(raw)
    msg = Message(start, headers, head_raw=raw)
    te = [v.strip().lower() for v in msg.all("transfer-encoding")]
    cl = msg.header("content-length")
    if not request and (method == "HEAD" or 100 <= msg.status < 200 or msg.status in (204, 304)):
        return msg
    try:
        if te:
            assert te == ["chunked"], f"unexpected transfer-encoding {te}"
            msg.framing = "chunked"
            _read_chunked(wire, msg, timeout, sink)
        elif cl is not None:
            msg.framing = "length"
            n = int(cl)
            if sink is None:
                msg.body = wire.read_exact(n, timeout)
            else:
                deadline = time.monotonic() + timeout
                left = n
                while left:
                    got = wire.read_some(deadline - time.monotonic())
                    if len(got) > left:
                        wire.buf[:0] = got[left:]
                        got = got[:left]
                    left -= len(got)
                    sink(got)
        elif not request:
            msg.framing = "close"
            msg.body = wire.read_to_close(timeout)
    except Closed:
        msg.complete = False
        msg.body = bytes(wire.buf)
        wire.buf.clear()
    return msg


def encode_request(method: str = "GET", target: str = "/", headers: Iterable[tuple[str, str]] | None = None,
                   body: bytes | None = None, version: str = "HTTP/1.1") -> bytes:
    """A request as bytes. Host defaults to `test`; a body gets a Content-Length unless
    the headers already frame it (then the body is sent as given)."""
    hs = list(headers) if headers is not None else []
    names = {k.lower() for k, _ in hs}
    if "host" not in names and version == "HTTP/1.1":
        hs.insert(0, ("Host", "test"))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def chunked(*chunks: bytes, trailers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A chunked body: the chunks, the last chunk, then trailers."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c)
    return out + b"0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in trailers).encode("latin-1") + b"\r\n"


# ------------------------------------------------------------------ clients
class Client:
    """One raw client connection."""

    def __init__(self, port: int, host: str = HOST, timeout: float = WAIT, record: bool = True):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.wire = Wire(self.sock, record)
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str = "GET", target: str = "/", headers=None, body: bytes | None = None,
                timeout: float | None = None) -> Message:
        self.send(encode_request(method, target, headers, body))
        return self.read_response(method, timeout=timeout)

    def read_response(self, method: str = "GET", timeout: float | None = None, interim: bool = False,
                      sink=None) -> Message:
        """The next final response (1xx ones land in `.interim`); with interim=True,
        the next response of any kind. Raises Closed if the connection ends first."""
        t = self.timeout if timeout is None else timeout
        seen = []
        while True:
            msg = read_message(self.wire, request=False, method=method, timeout=t, sink=sink)
            if msg is None:
                raise Closed("response head")
            if interim or not (100 <= msg.status < 200) or msg.status == 101:
                msg.interim = seen
                return msg
            seen.append(msg)

    def closed(self, timeout: float = WAIT) -> bool:
        """True once the peer has closed or reset the connection (within `timeout`);
        bytes that arrive meanwhile are kept in the buffer."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.wire.fill(deadline - time.monotonic(), "until close")
        except Closed:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------ upstreams
class UpstreamConn:
    """One accepted upstream connection, as a script sees it."""

    def __init__(self, upstream: "Upstream", sock: socket.socket, index: int):
        self.upstream = upstream
        self.sock = sock
        self.index = index
        self.wire = Wire(sock, upstream.record, on_data=upstream._event)
        self.requests: list[Message] = []
        self.done = False             # the handler returned or the socket is gone

    def read_request(self, timeout: float = WAIT, sink=None) -> Message | None:
        """The next request, or None when the proxy closed the connection first."""
        try:
            msg = read_message(self.wire, request=True, timeout=timeout, sink=sink)
        except Closed:
            return None
        if msg is not None:
            self.requests.append(msg)
            self.upstream._event(lambda: self.upstream.requests.append(msg))
        return msg

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def respond(self, status: int = 200, body: bytes = b"ok", headers: Iterable[tuple[str, str]] = (),
                *, chunked_body: bool = False, length: bool = True, reason: str = "X") -> None:
        """A response with `body` framed by Content-Length (default), chunked, or neither
        (length=False: the caller decides, e.g. close-delimited or a 204)."""
        hs = list(headers)
        if chunked_body:
            hs.append(("Transfer-Encoding", "chunked"))
            payload = chunked(body) if body else b"0\r\n\r\n"
        else:
            if length:
                hs.append(("Content-Length", str(len(body))))
            payload = body
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n"
        self.send(head.encode("latin-1") + payload)

    def close(self) -> None:
        """Orderly close (FIN)."""
        self.done = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def reset(self) -> None:
        """Abortive close (RST)."""
        self.done = True
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.sock.close()

    def closed_by_peer(self, timeout: float = WAIT) -> bool:
        try:
            while True:
                self.wire.fill(timeout, "until close")
        except Closed:
            return True
        except TimeoutError:
            return False


def _answer_ok(conn: UpstreamConn, req: Message) -> None:
    conn.respond(200, b"ok")


class Upstream:
    """A threaded HTTP/1.1 upstream on 127.0.0.1 that records what reaches it."""

    def __init__(self, on_request=None, handler=None, record: bool = True, backlog: int = 128):
        self.on_request = on_request or _answer_ok
        self.handler = handler or self.serve
        self.record = record
        self.routes: dict[str, Callable] = {}
        self.conns: list[UpstreamConn] = []
        self.requests: list[Message] = []
        self.errors: list[BaseException] = []
        self.cond = threading.Condition()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(backlog)
        self.port = self.lsock.getsockname()[1]
        self.address = f"{HOST}:{self.port}"
        self.stopping = False
        self.threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, name=f"upstream-{self.port}", daemon=True)
        t.start()
        self.threads.append(t)

    def on(self, path: str, fn: Callable[[UpstreamConn, Message], None]) -> str:
        """Answer requests for exactly `path` with `fn(conn, req)` instead of on_request,
        so one upstream (and one proxy) can serve many tests. Returns `path`."""
        self.routes[path] = fn
        return path

    def requests_for(self, path: str) -> list[Message]:
        return [m for m in self.requests if m.target.split("?", 1)[0] == path]

    # what tests read
    @property
    def accepted(self) -> int:
        return len(self.conns)

    @property
    def received(self) -> bytes:
        return b"".join(bytes(c.wire.data) for c in list(self.conns))

    def wait_for(self, pred: Callable[[], object], timeout: float = WAIT, what: str = "upstream event"):
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        return pred()

    def wait_requests(self, n: int, timeout: float = WAIT) -> list[Message]:
        self.wait_for(lambda: len(self.requests) >= n, timeout, f"{n} upstream requests")
        return self.requests

    def wait_accepted(self, n: int, timeout: float = WAIT) -> list[UpstreamConn]:
        self.wait_for(lambda: len(self.conns) >= n, timeout, f"{n} upstream connections")
        return self.conns

    # machinery
    def _event(self, fn=None) -> None:
        with self.cond:
            if fn is not None:
                fn()
            self.cond.notify_all()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = UpstreamConn(self, sock, len(self.conns))
            self._event(lambda: self.conns.append(conn))
            t = threading.Thread(target=self._run, args=(conn,), daemon=True,
                                 name=f"upstream-{self.port}-{conn.index}")
            self.threads.append(t)
            t.start()

    def _run(self, conn: UpstreamConn) -> None:
        try:
            self.handler(conn)
        except (Closed, OSError, TimeoutError) as e:
            if not self.stopping and not conn.done:
                self.errors.append(e)
        except BaseException as e:   # noqa: BLE001  (a script's bug must surface in the test)
            self.errors.append(e)
        finally:
            if not conn.done:
                conn.close()
            self._event()

    def serve(self, conn: UpstreamConn) -> None:
        """The default per-connection loop; a `handler` may hand a connection back to it."""
        while not self.stopping:
            try:
                req = conn.read_request(timeout=120)
            except TimeoutError:
                return
            if req is None or conn.done:
                return
            self.routes.get(req.target.split("?", 1)[0], self.on_request)(conn, req)
            if conn.done:
                return

    def stop(self) -> None:
        self.stopping = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)     # wakes the thread blocked in accept()
        except OSError:
            pass
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in list(self.conns):
            if not c.done:
                c.done = True
                try:
                    c.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.sock.close()
        # scripts blocked on their own events are daemon threads: do not wait long for them
        deadline = time.monotonic() + 0.5
        for t in self.threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))


# ------------------------------------------------------------------ the proxy process
def _endpoint(e) -> str:
    if isinstance(e, Upstream):
        return e.address
    if isinstance(e, int):
        return f"{HOST}:{e}"
    return str(e)


def _endpoints(eps) -> list[str]:
    if eps is None:
        return []
    if isinstance(eps, (Upstream, int, str)):
        eps = [eps]
    return [_endpoint(e) for e in eps]


def _merge(base: dict, over: dict | None) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def build_config(port: int, admin_port: int, endpoints=None, *, route=None, listener=None,
                 cluster=None, clusters=None) -> dict:
    """The default document: listener "ingress" on `port` routing to cluster "web"."""
    lst = _merge({"name": "ingress", "address": f"{HOST}:{port}",
                  "route": _merge({"cluster": "web", "timeout": "10s"}, route)}, listener)
    cls = [_merge({"name": "web", "endpoints": _endpoints(endpoints), "connect_timeout": "1s"}, cluster)]
    for name, eps in (clusters or {}).items():
        cls.append({"name": name, "endpoints": _endpoints(eps), "connect_timeout": "1s"})
    return {"admin": {"address": f"{HOST}:{admin_port}"}, "listeners": [lst], "clusters": cls}


class Mosnx:
    """A `mosnx run` process. `port` is the first listener's, `admin_port` the admin API's."""

    wait_until = staticmethod(wait_until)

    def __init__(self, directory: Path, config: dict, workers: int = 1, name: str = "mosnx"):
        self.dir = directory
        self.workers = workers
        self.config_path = directory / f"{name}.yaml"
        self.log_path = directory / f"{name}.log"
        self.config = self._fill(config)
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._worker_pids: set[int] = set()
        self.write_config(self.config)

    @staticmethod
    def _fill(config: dict) -> dict:
        config = dict(config)
        if "admin" not in config:
            config["admin"] = {"address": f"{HOST}:{free_port()}"}
        lst = []
        for item in config.get("listeners", []):
            item = dict(item)
            item.setdefault("address", f"{HOST}:{free_port()}")
            lst.append(item)
        config["listeners"] = lst
        return config

    # -- addresses
    @property
    def port(self) -> int:
        return int(self.config["listeners"][0]["address"].rsplit(":", 1)[1])

    @property
    def admin_port(self) -> int:
        return int(self.config["admin"]["address"].rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- config
    def write_config(self, config: dict, unnoticed: bool = False) -> None:
        self.write_text(yaml.safe_dump(config, sort_keys=False), unnoticed)

    def write_text(self, text: str, unnoticed: bool = False) -> None:
        """Replace the config file. unnoticed=True keeps the old size and mtime, so the
        file watcher does not see the change and only an explicit reload picks it up
        (the new text must then be exactly as long as the old)."""
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        if unnoticed:
            st = os.stat(self.config_path)
            assert os.stat(tmp).st_size == st.st_size, "an unnoticed edit must keep the file's size"
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        # written whole, then renamed, so the watcher never sees half a file
        os.replace(tmp, self.config_path)

    def config_with(self, endpoints=None, **kw) -> dict:
        """The default document on this process's ports (for rewriting the file)."""
        return build_config(self.port, self.admin_port, endpoints, **kw)

    # -- process
    def start(self, wait: bool = True, extra_args: Iterable[str] = ()) -> "Mosnx":
        self._log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "mosnx", "run", "-c", str(self.config_path),
               "--workers", str(self.workers), *extra_args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=str(self.dir))
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_WAIT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"mosnx exited with {rc} before it was ready:\n{self.log()}")
            try:
                status, _, body = self.admin("/ready", timeout=2)
                if status == 200 and body.strip() == b"LIVE":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mosnx not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.02)
        for _ in range(100):
            try:
                socket.create_connection((HOST, self.port), timeout=2).close()
                break
            except OSError:
                time.sleep(0.05)
        self._worker_pids.update(self._spawned())

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait: the exit code."""
        if self.proc.poll() is None:
            self._worker_pids.update(self._spawned())
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"mosnx did not exit within {timeout}s of SIGTERM:\n{self.log()}")

    def wait_exit(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._worker_pids.update(self._spawned())
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for pid in self._worker_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def worker_pids(self) -> list[int]:
        """The processes that serve traffic: the supervisor's spawned workers, or the
        supervisor itself when it runs its one worker in-process."""
        out = self._spawned()
        if not out and self.proc is not None and self.proc.poll() is None:
            return [self.proc.pid]
        return out

    def _spawned(self) -> list[int]:
        out = []
        if self.proc is None:
            return out
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
                ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
                if ppid != self.proc.pid:
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"spawn_main" in f.read():
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
        return sorted(out)

    def log(self, tail: int = 8000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    # -- admin API
    def admin(self, path: str, method: str = "GET", body: bytes | None = None,
              timeout: float = WAIT) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(f"http://{HOST}:{self.admin_port}{path}", data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def admin_json(self, path: str, method: str = "GET") -> dict:
        status, _, body = self.admin(path, method, b"" if method == "POST" else None)
        assert status in (200, 400), (status, body)
        return json.loads(body)

    def stats(self) -> dict[str, float]:
        """Counters and gauges, summed across workers."""
        status, _, body = self.admin("/stats?format=json")
        assert status == 200, body
        return {s["name"]: s["value"] for s in json.loads(body)["stats"] if "name" in s}

    def stat(self, name: str) -> float:
        return self.stats().get(name, 0)

    def wait_stat(self, name: str, at_least: float, timeout: float = WAIT) -> float:
        return wait_until(lambda: self.stat(name) >= at_least and self.stat(name), timeout,
                          f"{name} >= {at_least}") or 0

    def reload(self) -> tuple[int, dict]:
        status, _, body = self.admin("/reload", "POST", b"")
        return status, json.loads(body)

    def snapshot_version(self) -> int:
        return self.admin_json("/server_info")["snapshot_version"]

    # -- traffic
    def connect(self, timeout: float = WAIT, record: bool = True) -> Client:
        return Client(self.port, timeout=timeout, record=record)

    def request(self, method: str = "GET", target: str = "/", headers=None, body: bytes | None = None,
                timeout: float = WAIT) -> Message:
        """One request on a fresh connection."""
        with self.connect(timeout) as c:
            return c.request(method, target, headers, body)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(name="free_port")
def free_port_fixture():
    return free_port


def _upstreams():
    made: list[Upstream] = []

    def make(on_request=None, handler=None, record: bool = True) -> Upstream:
        u = Upstream(on_request, handler, record)
        made.append(u)
        return u

    yield make
    for u in made:
        u.stop()


@pytest.fixture
def upstream():
    yield from _upstreams()


@pytest.fixture(scope="module")
def module_upstream():
    """`upstream` shared by a module's tests (for suites of cheap, similar checks)."""
    yield from _upstreams()


@pytest.fixture
def client():
    made: list[Client] = []

    def make(port: int, timeout: float = WAIT) -> Client:
        c = Client(port, timeout=timeout)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


class _MosnxFactory:
    def __init__(self, directory: Path):
        self.dir = directory
        self.made: list[Mosnx] = []

    def __call__(self, endpoints=None, *, route=None, listener=None, cluster=None, clusters=None,
                 config: dict | None = None, workers: int = 1, wait: bool = True) -> Mosnx:
        if config is None:
            config = build_config(free_port(), free_port(), endpoints, route=route, listener=listener,
                                  cluster=cluster, clusters=clusters)
        m = Mosnx(self.dir, config, workers, name=f"mosnx{len(self.made)}")
        self.made.append(m)
        return m.start(wait)

    def teardown(self, failed: bool) -> None:
        for m in self.made:
            m.kill()
            if failed:
                print(f"---- {m.log_path.name} ----\n{m.log()}")


@pytest.fixture
def mosnx(request, tmp_path):
    f = _MosnxFactory(tmp_path)
    yield f
    rep = getattr(request.node, "rep_call", None)
    f.teardown(failed=rep is None or rep.failed)


@pytest.fixture(scope="module")
def module_mosnx(tmp_path_factory):
    """`mosnx` shared by a module's tests; its log is printed at the module's end."""
    f = _MosnxFactory(tmp_path_factory.mktemp("mosnx"))
    yield f
    f.teardown(failed=True)
