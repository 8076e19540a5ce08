"""HTTP/2 and TLS test kit for the end-to-end tests: a blocking HTTP/2 client, a
frame-level client that sends whatever frames a test writes (abuse included), a
scripted HTTP/2 upstream, and a throwaway CA that signs certificates at run time.

Everything listens on or connects to 127.0.0.1; every wait is bounded.
"""
from __future__ import annotations

import datetime
import select
import socket
import struct
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack

HOST = "127.0.0.1"
WAIT = 10.0


@dataclass
class H2Response:
    stream_id: int
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None           # RST_STREAM error code, when the stream was reset
    interim: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def trailer(self, name: str) -> str | None:
        for k, v in self.trailers:
            if k == name:
                return v
        return None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class _GracefulMachine(h2.connection.H2ConnectionStateMachine):
    """h2 closes on any GOAWAY; a test must see the streams in flight finish after one."""
    _transitions = dict(h2.connection.H2ConnectionStateMachine._transitions)
    _transitions[(h2.connection.ConnectionState.CLIENT_OPEN, h2.connection.ConnectionInputs.RECV_GOAWAY)] = (
        None, h2.connection.ConnectionState.CLIENT_OPEN)


def _s(b) -> str:
    return b.decode("latin-1") if isinstance(b, bytes) else b


class H2Client:
    """A blocking HTTP/2 client (h2c prior knowledge, or h2 over TLS when `tls` is an
    SSLContext). DATA on a stream in `stalled` is not acknowledged on that stream (the
    connection window is still given back), so the proxy's send window for that one
    stream closes: a slow reader of one stream."""

    def __init__(self, port: int, host: str = HOST, tls: ssl.SSLContext | None = None,
                 server_name: str | None = None, timeout: float = WAIT,
                 settings: dict | None = None):
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls.wrap_socket(raw, server_hostname=server_name or "localhost") if tls else raw
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.state_machine = _GracefulMachine()
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.stalled: set[int] = set()
        self.unacked: dict[int, int] = {}
        self.responses: dict[int, H2Response] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.remote_settings_seen = False
        self._flush()

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def start(self, method: str = "GET", path: str = "/", headers=(), body: bytes | None = None,
              authority: str = "test", end: bool = True, trailers=None) -> int:
        sid = self.conn.get_next_available_stream_id()
        block = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]
        block += [(k.lower(), v) for k, v in headers]
        no_body = body is None and trailers is None and end
        self.conn.send_headers(sid, block, end_stream=no_body)
        self.responses[sid] = H2Response(sid)
        if body:
            self.send_body(sid, body, end=end and trailers is None)
        elif not no_body and end and trailers is None:
            self.conn.end_stream(sid)
        if trailers is not None:
            self.conn.send_headers(sid, list(trailers), end_stream=True)
        self._flush()
        return sid

    def send_body(self, sid: int, data: bytes, end: bool = False, timeout: float = WAIT) -> None:
        """Send `data` on `sid` within the flow-control windows, reading while they are shut."""
        deadline = time.monotonic() + timeout
        off = 0
        while off < len(data):
            w = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if w <= 0:
                self._flush()
                self.read(deadline - time.monotonic(), "a window update")
                continue
            self.conn.send_data(sid, data[off:off + w])
            off += w
        if end:
            self.conn.end_stream(sid)
        self._flush()

    def end(self, sid: int, trailers=None) -> None:
        if trailers:
            self.conn.send_headers(sid, list(trailers), end_stream=True)
        else:
            self.conn.end_stream(sid)
        self._flush()

    def reset(self, sid: int, code: int = 8) -> None:
        self.conn.reset_stream(sid, code)
        self._flush()

    def unstall(self, sid: int) -> None:
        """Read stream `sid` again: give back the window it held."""
        self.stalled.discard(sid)
        n = self.unacked.pop(sid, 0)
        if n:
            self.conn.increment_flow_control_window(n, sid)
        self._flush()

    def read(self, timeout: float = WAIT, what: str = "frames") -> None:
        """One socket read, its events applied to the responses."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError(f"no bytes within {timeout:.1f}s waiting for {what}") from None
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            raise ConnectionError(f"connection closed waiting for {what}")
        for ev in self.conn.receive_data(data):
            self._event(ev)
        self._flush()

    def _event(self, ev) -> None:
        r = self.responses.get(getattr(ev, "stream_id", 0) or 0)
        if isinstance(ev, h2.events.ResponseReceived):
            for k, v in ev.headers:
                k, v = _s(k), _s(v)
                if k == ":status":
                    r.status = int(v)
                else:
                    r.headers.append((k, v))
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            r.interim.append(int(dict(ev.headers)[b":status"]))
        elif isinstance(ev, h2.events.DataReceived):
            r.body += ev.data
            n = ev.flow_controlled_length
            if ev.stream_id in self.stalled:
                self.unacked[ev.stream_id] = self.unacked.get(ev.stream_id, 0) + n
                if n:
                    self.conn.increment_flow_control_window(n)
            else:
                self.conn.acknowledge_received_data(n, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            r.trailers = [(_s(k), _s(v)) for k, v in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded):
            r.ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if r is not None:
                r.reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True

    def wait(self, pred: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            self.read(left, what)

    def response(self, sid: int, timeout: float = WAIT) -> H2Response:
        r = self.responses[sid]
        self.wait(lambda: r.done, timeout, f"stream {sid} to end")
        return r

    def request(self, method: str = "GET", path: str = "/", headers=(), body: bytes | None = None,
                trailers=None, timeout: float = WAIT, authority: str = "test") -> H2Response:
        sid = self.start(method, path, headers, body, authority=authority, trailers=trailers)
        return self.response(sid, timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------ a frame-level client
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
NO_ERROR, PROTOCOL_ERROR, ENHANCE_YOUR_CALM, CANCEL = 0x0, 0x1, 0xB, 0x8


def raw_frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def request_fields(path: str = "/", authority: str = "test", method: str = "GET", extra=()) -> list:
    return [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path), *extra]


@dataclass
class RawFrame:
    type: int
    flags: int
    sid: int
    payload: bytes
    fields: list | None = None        # a HEADERS block, decoded

    @property
    def error_code(self) -> int:
        """RST_STREAM's code, or GOAWAY's."""
        off = 4 if self.type == GOAWAY else 0
        return struct.unpack_from(">I", self.payload, off)[0]


class RawH2:
    """HTTP/2 as raw frames (h2c prior knowledge): `send` writes bytes as given, so a
    test can write any sequence, valid or not; `frames` reads what came back. A test
    that never calls a read method is a client that never reads."""

    def __init__(self, port: int, host: str = HOST, timeout: float = WAIT, settings: bytes = b"",
                 preface: bool = True):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.got: list[RawFrame] = []
        self.closed = False
        if preface:
            self.send(PREFACE + raw_frame(SETTINGS, 0, 0, settings))

    def send(self, data: bytes, timeout: float = WAIT) -> bool:
        """Write all of `data`; False when the peer stopped reading for `timeout` or closed."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        self.sock.setblocking(False)
        try:
            while view:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                _, w, _ = select.select([], [self.sock], [], left)
                if not w:
                    return False
                try:
                    n = self.sock.send(view)
                except BlockingIOError:
                    continue
                except OSError:
                    return False
                view = view[n:]
            return True
        finally:
            self.sock.setblocking(True)

    def block(self, fields) -> bytes:
        return self.enc.encode(list(fields))

    def headers(self, sid: int, fields, end_stream: bool = True) -> bytes:
        """A HEADERS frame (bytes, not sent) for a whole block."""
        return raw_frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, self.block(fields))

    def request(self, sid: int, path: str = "/", authority: str = "test", extra=()) -> None:
        self.send(self.headers(sid, request_fields(path, authority, extra=extra)))

    def _parse(self) -> None:
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 9:
            hi, lo, ftype, flags, sid = struct.unpack_from(">BHBBI", buf, pos)
            n = (hi << 16) | lo
            if len(buf) - pos < 9 + n:
                break
            f = RawFrame(ftype, flags, sid & 0x7FFFFFFF, buf[pos + 9:pos + 9 + n])
            pos += 9 + n
            if ftype == HEADERS:
                f.fields = [(_s(k), _s(v)) for k, v in self.dec.decode(f.payload, raw=True)]
            elif ftype == SETTINGS and not flags & ACK:
                try:
                    self.sock.sendall(raw_frame(SETTINGS, ACK, 0))
                except OSError:
                    pass
            self.got.append(f)
        self.buf = buf[pos:]

    def read(self, timeout: float = WAIT) -> bool:
        """One read; False once the connection is closed (EOF or reset)."""
        if self.closed:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return True
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        self._parse()
        return True

    def wait(self, pred: Callable[[], object], timeout: float = WAIT, what: str = "frames"):
        deadline = time.monotonic() + timeout
        while True:
            got = pred()
            if got:
                return got
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise TimeoutError(f"{what}: not seen within {timeout}s (closed={self.closed}, "
                                   f"frames={[(f.type, f.sid) for f in self.got[-10:]]})")
            self.read(min(left, 0.5))

    def settle(self, timeout: float = WAIT) -> None:
        """Read the server's SETTINGS (and so acknowledge them) before a test sends a
        sequence that nothing, not even that ACK, may interrupt."""
        self.wait(lambda: any(f.type == SETTINGS and not f.flags & ACK for f in self.got), timeout,
                  "the server's SETTINGS")

    def goaway(self) -> RawFrame | None:
        for f in self.got:
            if f.type == GOAWAY:
                return f
        return None

    def wait_goaway(self, timeout: float = WAIT) -> RawFrame:
        return self.wait(self.goaway, timeout, "GOAWAY")

    def wait_closed(self, timeout: float = WAIT) -> bool:
        """Read (and keep) until the peer closes; True if it did within `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.read(min(deadline - time.monotonic(), 0.5))
        return self.closed

    def stream(self, sid: int) -> list[RawFrame]:
        return [f for f in self.got if f.sid == sid]

    def status(self, sid: int) -> int | None:
        for f in self.stream(sid):
            if f.type == HEADERS and f.fields:
                for k, v in f.fields:
                    if k == ":status":
                        return int(v)
        return None

    def rst(self, sid: int) -> int | None:
        for f in self.stream(sid):
            if f.type == RST_STREAM:
                return f.error_code
        return None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------ an HTTP/2 upstream
@dataclass
class H2Request:
    stream_id: int
    method: str
    path: str
    authority: str
    scheme: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class H2Exchange:
    """What a handler script gets for one stream: the request so far and ways to answer."""

    def __init__(self, server_conn: "_H2ServerConn", req: H2Request):
        self.sc = server_conn
        self.req = req

    def respond(self, status: int = 200, headers=(), body: bytes = b"", trailers=None, end: bool = True) -> None:
        self.sc.call(lambda: self.sc.respond(self.req.stream_id, status, headers, body, trailers, end))

    def send(self, data: bytes, end: bool = False, trailers=None) -> None:
        self.sc.call(lambda: self.sc.send(self.req.stream_id, data, end, trailers))

    def reset(self, code: int = 2) -> None:
        self.sc.call(lambda: self.sc.reset(self.req.stream_id, code))

    def wait_end(self, timeout: float = WAIT) -> H2Request:
        self.sc.server.wait_for(lambda: self.req.ended or self.req.reset is not None, timeout, "request end")
        return self.req


def _default_handler(ex: H2Exchange) -> None:
    req = ex.wait_end()
    ex.respond(200, [("content-type", "text/plain")], f"h2 {req.method} {req.path} {len(req.body)}".encode())


class _H2ServerConn:
    def __init__(self, server: "H2Upstream", sock: socket.socket):
        self.server = server
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.lock = threading.Lock()
        self.requests: dict[int, H2Request] = {}
        self.pending: dict[int, list] = {}

    def call(self, fn) -> None:
        with self.lock:
            fn()
            self._flush()

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            try:
                self.sock.sendall(out)
            except OSError:
                pass

    def respond(self, sid, status, headers, body, trailers, end) -> None:
        block = [(":status", str(status))] + [(k, v) for k, v in headers]
        self.conn.send_headers(sid, block, end_stream=end and not body and trailers is None)
        if body or trailers is not None or not end:
            self.send(sid, body, end, trailers)

    def send(self, sid, data, end, trailers) -> None:
        q = self.pending.setdefault(sid, [])
        q.append((data, end, trailers))
        self._pump(sid)

    def _pump(self, sid) -> None:
        q = self.pending.get(sid)
        while q:
            data, end, trailers = q[0]
            while data:
                w = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                if w <= 0:
                    q[0] = (data, end, trailers)
                    return
                self.conn.send_data(sid, data[:w])
                data = data[w:]
            q.pop(0)
            if trailers is not None:
                self.conn.send_headers(sid, list(trailers), end_stream=True)
            elif end:
                self.conn.end_stream(sid)

    def reset(self, sid, code) -> None:
        self.conn.reset_stream(sid, code)

    def run(self) -> None:
        with self.lock:
            # initial values, so the first SETTINGS frame carries the limit
            self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams})
            self.conn.initiate_connection()
            self._flush()
        while not self.server.stopping:
            try:
                data = self.sock.recv(262144)
            except OSError:
                data = b""
            if not data:
                break
            started = []
            with self.lock:
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    self._flush()
                    break
                for ev in events:
                    started += self._event(ev)
                self._flush()
            self.server._event()
            for ex in started:
                t = threading.Thread(target=self.server._handle, args=(ex,), daemon=True)
                self.server.threads.append(t)
                t.start()
        try:
            self.sock.close()
        except OSError:
            pass
        self.server._event()

    def _event(self, ev) -> list:
        out = []
        if isinstance(ev, h2.events.RequestReceived):
            hs = [(_s(k), _s(v)) for k, v in ev.headers]
            pseudo = {k: v for k, v in hs if k.startswith(":")}
            req = H2Request(ev.stream_id, pseudo.get(":method", ""), pseudo.get(":path", ""),
                            pseudo.get(":authority", ""), pseudo.get(":scheme", ""),
                            [(k, v) for k, v in hs if not k.startswith(":")])
            req.ended = bool(ev.stream_ended)
            self.requests[ev.stream_id] = req
            self.server.requests.append(req)
            out.append(H2Exchange(self, req))
        elif isinstance(ev, h2.events.DataReceived):
            r = self.requests.get(ev.stream_id)
            if r is not None:
                r.body += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self.requests[ev.stream_id].trailers = [(_s(k), _s(v)) for k, v in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded):
            self.requests[ev.stream_id].ended = True
        elif isinstance(ev, h2.events.StreamReset):
            r = self.requests.get(ev.stream_id)
            if r is not None:
                r.reset = ev.error_code
        elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            for sid in list(self.pending):
                self._pump(sid)
        return out


class H2Upstream:
    """A threaded HTTP/2 (h2c) server. `handler(exchange)` runs in its own thread per
    stream; the default waits for the request's end and answers 200 with a summary."""

    def __init__(self, handler: Callable[[H2Exchange], None] | None = None, max_streams: int = 100,
                 tls: ssl.SSLContext | None = None):
        self.handler = handler or _default_handler
        self.max_streams = max_streams
        self.tls = tls
        self.requests: list[H2Request] = []
        self.conns: list[_H2ServerConn] = []
        self.errors: list[BaseException] = []
        self.cond = threading.Condition()
        self.stopping = False
        self.threads: list[threading.Thread] = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.address = f"{HOST}:{self.port}"
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _event(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pred, timeout: float = WAIT, what: str = "upstream event"):
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        return pred()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    self.errors.append(e)
                    sock.close()
                    continue
            c = _H2ServerConn(self, sock)
            with self.cond:
                self.conns.append(c)
                self.cond.notify_all()
            t = threading.Thread(target=c.run, daemon=True)
            self.threads.append(t)
            t.start()

    def _handle(self, ex: H2Exchange) -> None:
        try:
            self.handler(ex)
        except BaseException as e:  # noqa: BLE001  (a script's bug must surface in the test)
            if not self.stopping:
                self.errors.append(e)

    def stop(self) -> None:
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=2)


# ------------------------------------------------------------------ certificates
class CA:
    """A throwaway certificate authority; `issue` writes a key and a certificate it signs."""

    def __init__(self, directory: Path, name: str = "mosnx test CA"):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        self.dir = Path(directory)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.path = self.dir / f"{name.replace(' ', '_')}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, dns: tuple[str, ...] = (), client: bool = False,
              org: str | None = None, uris: tuple[str, ...] = ()) -> tuple[str, str]:
        """(cert path, key path) for `name` (CN), valid for `dns` names and 127.0.0.1; a client
        certificate names `uris` (SPIFFE ids) and `dns` as its SANs, or none."""
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
        if org:
            attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(self.name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=7))
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                   else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if not client:
            sans = [x509.DNSName(d) for d in (dns or (name,))] + [x509.IPAddress(ipaddress.ip_address(HOST))]
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        elif uris or dns:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        safe = name.replace("*", "star").replace(" ", "_")
        cp = self.dir / f"{safe}.crt"
        kp = self.dir / f"{safe}.key"
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        return str(cp), str(kp)

    def client_context(self, alpn=("h2", "http/1.1"), cert: tuple[str, str] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.path))
        ctx.set_alpn_protocols(list(alpn))
        if cert is not None:
            ctx.load_cert_chain(*cert)
        return ctx

    def server_context(self, cert: tuple[str, str], alpn=("h2",), client_ca: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        ctx.set_alpn_protocols(list(alpn))
        if client_ca:
            ctx.load_verify_locations(str(self.path))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def peer_cert_subject(sock: ssl.SSLSocket) -> str:
    c = sock.getpeercert()
    return ",".join(f"{k}={v}" for rdn in c.get("subject", ()) for k, v in rdn)


def cert_common_name(sock: ssl.SSLSocket) -> str:
    for rdn in sock.getpeercert().get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return ""


def fixture_upstreams():
    made: list[H2Upstream] = []

    def make(handler=None, max_streams: int = 100, tls=None) -> H2Upstream:
        u = H2Upstream(handler, max_streams, tls)
        made.append(u)
        return u
    return made, make
