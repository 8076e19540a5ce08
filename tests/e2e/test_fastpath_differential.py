# A new shortcut (express stream, memo, batched call) lands only with its entry in
# the corpus this test plays (tests/e2e/fastpath_corpus.py).
"""The fast path against the general path: the same traffic, byte for byte.

mosnx answers plain requests through a short path (proxy.fastpath.express) and
remembers heads in memo tables (the kinds registered in proxy.fastpath.memo); the
general path (HttpStream, every memo missing) is the specification. DESIGN.md: a
shortcut can be switched off with MOSNX_FASTPATH=0 and must then change nothing a
user can see. So this module starts the real proxy (`mosnx run --workers 1`) one
run after the other on the same ports, with the shortcuts on (MOSNX_FASTPATH unset)
and off (MOSNX_FASTPATH=0), each in front of fresh recording upstreams (raw asyncio
servers that record everything they receive per connection and answer with
scripted bytes), plays the same corpus against both over raw client sockets, and
requires the same:

- bytes on both wires: what every client received (HTTP/2: every frame, header
  blocks compared decoded, since HPACK may Huffman-code an id) and what the
  upstreams received on each of their connections (an HTTP/1.1 one, bytes; an
  HTTP/2 one, frames);
- /stats: every counter and gauge, and every histogram's sample count (not its
  timings), leaving out the fast path's own `fastpath.` counters; and /clusters,
  with each endpoint's own counters;
- access-log lines (a format with no time in it), `emit` records of `on log`
  rules included, and rule effects (response headers rules set);
- and that the switch took effect: with the shortcuts on, the express stream
  forwarded and every memo the proxy registers was hit; off, none of them. A third
  run turns the shortcuts off with the config's `fast_path: false` instead, and
  must match the first in all of the above too.

The corpus reaches the hit of every memo (HTTP/1.1 request and response heads,
paths, upstream request heads, downstream response heads and kept fields, HTTP/2
request parts, response fields and response blocks, the HPACK encoder's and
decoder's blocks) and each way out of the express stream: a hit that answered
differently from a miss fails the test, naming the conversation and showing the
diff. What only timing shows (the express stream arming its route timeout) is
beyond a test without timing.

The only normalisation: request ids the proxy generates (UUID-shaped) become
`<rid-N>`, and trace and span ids `<tid-N>`, numbered by first appearance over
everything a run produced, in one fixed order, so an id that should travel from one
place to another still must.

Corpus (fastpath_corpus.summary(), checked below): 50 conversations, 422 exchanges
(385 over HTTP/1.1 in 31,532 request bytes, 37 over HTTP/2), on 15 listeners. The
three runs take about 4 s together.
"""
from __future__ import annotations

import asyncio
import difflib
import json
import os
import re
import socket
import ssl
import sys
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import hpack
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fastpath_corpus as corpus  # noqa: E402
from conftest import HOST, WAIT, Closed, Mosnx, Wire, free_port, read_message, wait_until  # noqa: E402
from h2kit import (ACK, CA, DATA, END_HEADERS, END_STREAM, HEADERS, PING, PREFACE, RST_STREAM, SETTINGS,  # noqa: E402
                   RawH2, raw_frame, request_fields)

SWITCH = "MOSNX_FASTPATH"
TLS_NAME = "tls.test"
FASTPATH_STAT = "fastpath."
FASTPATH_PROM = "mosnx_fastpath"


# ---------------------------------------------------------------- the recording upstream
class _UpConn(asyncio.Protocol):
    """One upstream connection: records what arrives, answers each whole request."""

    def __init__(self, up: "RecordingUpstream"):
        self.up = up
        self.buf = bytearray()
        self.record = bytearray()
        self.transport = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.up.conns.append(self)

    def data_received(self, data: bytes) -> None:
        self.record += data
        if self.closed:
            return
        self.buf += data
        while not self.closed:
            got = _take_request(self.buf)
            if got is None:
                return
            self._answer(got)

    def _answer(self, path: str) -> None:
        n = self.up.counts.get(path, 0)
        self.up.counts[path] = n + 1
        answers = corpus.ANSWERS.get(path, (corpus.DEFAULT_ANSWER,))
        a = answers[min(n, len(answers) - 1)]
        if isinstance(a, corpus.Drop):
            self._close()
        elif isinstance(a, corpus.Close):
            self.transport.write(a.data)
            self._close()
        else:
            self.transport.write(a)

    def _close(self) -> None:
        self.closed = True
        self.transport.close()

    def connection_lost(self, exc) -> None:
        self.closed = True


def _take_request(buf: bytearray) -> str | None:
    """Remove one whole request from `buf` and return its path, or None while it is
    incomplete. The proxy sends well-formed requests; this reads no more of them
    than framing needs (Content-Length, or chunks and trailers)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    target = lines[0].split(b" ")[1].decode("latin-1")
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        fields[k.strip().lower()] = v.strip().lower()
    pos = end + 4
    if fields.get(b"transfer-encoding") == b"chunked":
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                while True:              # trailers, up to the empty line
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        return None
                    blank = eol == pos
                    pos = eol + 2
                    if blank:
                        break
                break
            if len(buf) < pos + size + 2:
                return None
            pos += size + 2
    else:
        n = int(fields.get(b"content-length", b"0"))
        if len(buf) < pos + n:
            return None
        pos += n
    del buf[:pos]
    return target.split("?", 1)[0]


class RecordingUpstream:
    """A raw asyncio server on 127.0.0.1:`port`, in a thread of its own, answering
    with corpus.ANSWERS. `conns` lists connections in the order they were accepted."""

    def __init__(self, port: int, protocol=None):
        self.port = port
        protocol = protocol or _UpConn
        self.conns: list = []
        self.counts: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()
        self.server = None
        started = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.server = self.loop.run_until_complete(
                    self.loop.create_server(lambda: protocol(self), HOST, port, reuse_address=True))
            except BaseException as e:      # noqa: BLE001  (reported by the constructor)
                self.error = e
                started.set()
                return
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True, name=f"recording-upstream-{port}")
        self.thread.start()
        if not started.wait(WAIT) or self.error is not None:
            raise RuntimeError(f"recording upstream did not start on {port}: {self.error}")

    def stop(self) -> list:
        """Stop, and return what each connection received (bytes, or HTTP/2 frames)."""
        def halt() -> None:
            if self.server is not None:
                self.server.close()
            for c in self.conns:
                if c.transport is not None:
                    c.transport.abort()
            self.loop.call_soon(self.loop.stop)
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(halt)
            self.thread.join(WAIT)
        if not self.thread.is_alive():
            self.loop.close()
        return [bytes(c.record) if isinstance(c.record, bytearray) else list(c.record) for c in self.conns]


class _H2UpConn(asyncio.Protocol):
    """One HTTP/2 upstream connection: records every frame the proxy sends (a header
    block decoded, as for clients) and answers each request once it has ended."""

    def __init__(self, up: "RecordingUpstream"):
        self.up = up
        self.buf = bytearray()
        self.record: list = []
        self.transport = None
        self.preface = False
        self.dec = hpack.Decoder()
        self.enc = hpack.Encoder()
        self.paths: dict[int, str] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.up.conns.append(self)
        transport.write(raw_frame(SETTINGS, 0, 0))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.preface:
            if len(self.buf) < len(PREFACE):
                return
            if self.buf[:len(PREFACE)] != PREFACE:
                self.record.append(("not a preface", bytes(self.buf)))
                self.transport.close()
                return
            del self.buf[:len(PREFACE)]
            self.preface = True
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                return
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buf[9:9 + n])
            del self.buf[:9 + n]
            self._frame(ftype, flags, sid, payload)

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if ftype == HEADERS:
            fields = [(k.decode("latin-1"), v.decode("latin-1"))
                      for k, v in self.dec.decode(_unpad(flags, payload, headers=True), raw=True)]
            self.record.append((ftype, flags, sid, fields))
            if sid not in self.paths:
                self.paths[sid] = dict(fields).get(":path", "").split("?", 1)[0]
        else:
            self.record.append((ftype, flags, sid, payload))
        if ftype == SETTINGS and not flags & ACK:
            self.transport.write(raw_frame(SETTINGS, ACK, 0))
        elif ftype == PING and not flags & ACK:
            self.transport.write(raw_frame(PING, ACK, 0, payload))
        if ftype in (HEADERS, DATA) and flags & END_STREAM and sid in self.paths:
            self._answer(sid, self.paths[sid])

    def _answer(self, sid: int, path: str) -> None:
        n = self.up.counts.get(path, 0)
        self.up.counts[path] = n + 1
        answers = corpus.H2_ANSWERS.get(path, (corpus.H2_DEFAULT_ANSWER,))
        a = answers[min(n, len(answers) - 1)]
        if isinstance(a, corpus.H2Reset):
            self.transport.write(raw_frame(RST_STREAM, 0, sid, a.code.to_bytes(4, "big")))
            return
        head = [(":status", str(a.status)), *a.headers]
        last = not a.body and not a.trailers
        out = raw_frame(HEADERS, END_HEADERS | (END_STREAM if last else 0), sid, self.enc.encode(head))
        if a.body:
            out += raw_frame(DATA, 0 if a.trailers else END_STREAM, sid, a.body)
        if a.trailers:
            out += raw_frame(HEADERS, END_HEADERS | END_STREAM, sid, self.enc.encode(list(a.trailers)))
        self.transport.write(out)

    def connection_lost(self, exc) -> None:
        pass


def _unpad(flags: int, payload: bytes, headers: bool = False) -> bytes:
    """A frame's payload without its padding (and a HEADERS frame's priority fields)."""
    if flags & 0x8:
        pad = payload[0]
        payload = payload[1:len(payload) - pad]
    if headers and flags & 0x20:
        payload = payload[5:]
    return payload


# ---------------------------------------------------------------- clients
@dataclass
class Played:
    """What one conversation left: the bytes (HTTP/1.1) or frames (HTTP/2) received,
    the final statuses read, and how reading ended when it ended early."""
    name: str
    received: object
    statuses: list[int] = field(default_factory=list)
    interim: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def play_h1(port: int, conv: corpus.H1, tls: ssl.SSLContext | None = None, reload=None) -> Played:
    out = Played(conv.name, b"")
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=TLS_NAME)
    wire = Wire(sock)
    try:
        for step in conv.steps:
            if isinstance(step, corpus.Send):
                sock.sendall(step.data)
                continue
            if isinstance(step, corpus.Reload):
                reload(step)
                continue
            for m in step.methods:
                msg = read_message(wire, request=False, method=m, timeout=WAIT)
                if msg is None:
                    out.notes.append("closed before a response")
                    raise Closed("response")
                (out.interim if msg.status < 200 else out.statuses).append(msg.status)
                if not msg.complete:
                    out.notes.append("body cut short")
            if isinstance(step, corpus.ReadClose):
                try:
                    # the proxy must end the connection now: nothing more may arrive
                    wire.fill(WAIT, "the proxy's close")
                    out.notes.append("data after the expected close")
                except Closed:
                    out.notes.append("closed")
    except (Closed, TimeoutError, OSError) as e:
        out.notes.append(f"{type(e).__name__}: {e}")
    finally:
        sock.close()
    out.received = bytes(wire.data)
    return out


def play_h2(port: int, conv: corpus.H2) -> Played:
    out = Played(conv.name, [])
    h2 = RawH2(port)
    try:
        for i, r in enumerate(conv.requests):
            sid = 1 + 2 * i
            fields = request_fields(r.path, r.authority, r.method, extra=r.extra)
            if r.body is None:
                h2.send(h2.headers(sid, fields))
            else:
                h2.send(h2.headers(sid, fields, end_stream=False) + raw_frame(DATA, END_STREAM, sid, r.body))

            def ended(sid=sid):
                return any(f.sid == sid and (f.type == RST_STREAM or f.type in (HEADERS, DATA)
                                             and f.flags & END_STREAM) for f in h2.got)
            h2.wait(ended, WAIT, f"the end of stream {sid}")
            status = h2.status(sid)
            # a stream reset instead of answered: minus its error code
            out.statuses.append(status if status is not None else -(h2.rst(sid) or 0))
    except (TimeoutError, OSError) as e:
        out.notes.append(f"{type(e).__name__}: {e}")
    finally:
        h2.close()
    # every frame as received; a header block as its fields (see the module docstring)
    out.received = [(f.type, f.flags, f.sid, f.fields if f.type == HEADERS else f.payload) for f in h2.got]
    assert all(f[0] != HEADERS or f[1] & END_HEADERS for f in out.received), "CONTINUATION is not expected here"
    return out


# ---------------------------------------------------------------- one run
@dataclass
class Ports:
    admin: int
    upstream: int
    upstream2: int        # the HTTP/2 one
    dead: int
    listeners: dict[str, int]


@dataclass
class Certs:
    """One certificate for every run (made once: the runs must not differ in it)."""
    cert: str
    key: str
    client: ssl.SSLContext


@dataclass
class Run:
    played: list[Played]
    upstream: dict[str, list]         # "h1"/"h2" upstream -> what each connection received
    stats: dict[str, float]           # counters and gauges, `fastpath.` ones left out
    histograms: dict[str, float]      # sample counts, by Prometheus series
    fastpath: dict[str, float]        # the `fastpath.` counters
    logs: dict[str, list[str]]
    clusters: dict                    # /clusters: each endpoint's own counters


def config(directory: Path, ports: Ports, certs: Certs) -> dict:
    def endpoint(e: str) -> str:
        return f"{HOST}:{ {'up': ports.upstream, 'up2': ports.upstream2, 'dead': ports.dead}[e]}"
    listeners = []
    for name, settings in corpus.LISTENERS.items():
        lst = {"name": name, "address": f"{HOST}:{ports.listeners[name]}", **settings}
        if "rules" in lst:
            lst["rules"] = str(directory / lst["rules"])
        if "tls" in lst:
            lst["tls"] = {"cert": certs.cert, "key": certs.key, "alpn": ["http/1.1"]}
        if "access_log" in lst:
            del lst["access_log"]           # not logged (see fastpath_corpus)
        else:
            lst["access_log"] = {"path": str(directory / f"{name}.access.log"), "format": corpus.ACCESS_FORMAT}
        listeners.append(lst)
    clusters = [{"name": name, "endpoints": [endpoint(e) for e in eps], "connect_timeout": "1s",
                 **corpus.CLUSTER_SETTINGS.get(name, {})} for name, eps in corpus.CLUSTERS.items()]
    return {"admin": {"address": f"{HOST}:{ports.admin}"}, "listeners": listeners, "clusters": clusters}


def _admin(m: Mosnx, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{HOST}:{m.admin_port}{path}", timeout=WAIT) as r:
        return r.read()


_COUNT = re.compile(r"^(mosnx_\S+_count(?:\{[^}]*\})?) (\S+)$", re.M)


def _counts(m: Mosnx) -> dict[str, float]:
    """Each histogram's number of samples (its _count series); what they measured is time."""
    text = _admin(m, "/stats?format=prometheus").decode()
    return {k: float(v) for k, v in _COUNT.findall(text)}


def _settled(m: Mosnx) -> tuple[dict, dict, dict]:
    """Stats once every stream and connection the clients opened is over and two
    readings in a row agree (the log phase and connection ends run after the last
    byte a client reads)."""
    last = None

    def steady():
        nonlocal last
        now = (m.stats(), _counts(m), json.loads(_admin(m, "/clusters?format=json")))
        busy = any(v for k, v in now[0].items() if k.endswith(("downstream_cx_active", "downstream_rq_active",
                                                                "upstream_rq_active")))
        same = now == last
        last = now
        return not busy and same and now
    return wait_until(steady, WAIT, "stats to settle", interval=0.1)


def reload_rules(m: Mosnx, directory: Path, step: corpus.Reload) -> None:
    """Rewrite a rules file keeping its size and mtime (so the watcher, which looks at
    those, does not reload as well), then reload through the admin API."""
    path = directory / step.file
    st = os.stat(path)
    text = path.read_text()
    for old, new in step.edits:
        assert text.count(old) == 1, f"{step.file}: {old!r} must occur once"
        text = text.replace(old, new)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)
    status, body = m.reload()
    assert status == 200 and body.get("ok"), f"reload failed: {body}"


def play(directory: Path, ports: Ports, certs: Certs, fastpath: bool, config_switch: bool = False) -> Run:
    """One run of the corpus: shortcuts on, or off by the environment (fastpath=False)
    or by the config (config_switch=True)."""
    directory.mkdir()
    for name, text in corpus.RULES.items():
        (directory / name).write_text(text)
    up = RecordingUpstream(ports.upstream)
    up2 = RecordingUpstream(ports.upstream2, _H2UpConn)
    doc = config(directory, ports, certs)
    if config_switch:
        doc = {"fast_path": False, **doc}
    m = Mosnx(directory, doc, workers=1, name="mosnx")
    saved = os.environ.get(SWITCH)
    try:
        if fastpath:
            os.environ.pop(SWITCH, None)
        else:
            os.environ[SWITCH] = "0"
        try:
            m.start()
        finally:
            if saved is None:
                os.environ.pop(SWITCH, None)
            else:
                os.environ[SWITCH] = saved
        played = []
        for conv in corpus.CONVERSATIONS:
            port = ports.listeners[conv.listener]
            if isinstance(conv, corpus.H2):
                played.append(play_h2(port, conv))
            else:
                tls = certs.client if "tls" in corpus.LISTENERS[conv.listener] else None
                played.append(play_h1(port, conv, tls, lambda step: reload_rules(m, directory, step)))
        stats, hist, clusters = _settled(m)
        rc = m.stop()
        assert rc == 0, f"mosnx exited with {rc}:\n{m.log()}"
    except BaseException:
        print(f"---- mosnx ({OFF_BY_CONFIG if config_switch else ON if fastpath else OFF}) ----\n{m.log()}")
        raise
    finally:
        m.kill()
        received = {"h1": up.stop(), "h2": up2.stop()}
    logs = {}
    for name in corpus.LISTENERS:
        p = directory / f"{name}.access.log"
        if p.exists():
            logs[name] = p.read_text().splitlines()
    return Run(played, received,
               {k: v for k, v in stats.items() if not k.startswith(FASTPATH_STAT)},
               {k: v for k, v in hist.items() if not k.startswith(FASTPATH_PROM)},
               {k: v for k, v in stats.items() if k.startswith(FASTPATH_STAT)},
               logs, clusters)


# ---------------------------------------------------------------- normalising request ids
class Ids:
    """Generated request ids -> `<rid-N>`, trace and span ids -> `<tid-N>`, N by first
    appearance."""

    def __init__(self):
        self.seen: dict[bytes, bytes] = {}
        self.traces: dict[bytes, bytes] = {}

    def _sub(self, m: re.Match) -> bytes:
        return self.seen.setdefault(m.group(0), b"<rid-%d>" % (len(self.seen) + 1))

    def _trace(self, m: re.Match) -> bytes:
        return self.traces.setdefault(m.group(0), b"<tid-%d>" % (len(self.traces) + 1))

    def b(self, data: bytes) -> bytes:
        return corpus.TRACE_IDS.sub(self._trace, corpus.GENERATED_ID.sub(self._sub, data))

    def s(self, text: str) -> str:
        return self.b(text.encode("latin-1")).decode("latin-1")

    def frames(self, frames: list) -> list:
        return [(t, fl, sid, [(k, self.s(v)) for k, v in p] if t == HEADERS else self.b(p))
                for t, fl, sid, p in frames]


@dataclass
class Normal:
    downstream: dict[str, object]
    upstream: dict[str, list]
    logs: dict[str, list[str]]


def normalise(run: Run) -> Normal:
    """Everything a run produced with generated ids replaced, in one fixed order:
    downstream in corpus order, then upstream connections, then access logs."""
    ids = Ids()
    down = {}
    for p in run.played:
        down[p.name] = ids.frames(p.received) if isinstance(p.received, list) else ids.b(p.received)
    upstream = {k: [ids.frames(c) if isinstance(c, list) else ids.b(c) for c in conns]
                for k, conns in run.upstream.items()}
    logs = {k: [ids.s(line) for line in v] for k, v in run.logs.items()}
    return Normal(down, upstream, logs)


# ---------------------------------------------------------------- the runs
ON = "fast path on"
OFF = f"{SWITCH}=0"
OFF_BY_CONFIG = "fast_path: false"


@pytest.fixture(scope="module")
def ports():
    return Ports(free_port(), free_port(), free_port(), free_port(), {name: free_port() for name in corpus.LISTENERS})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("fastpath")


@pytest.fixture(scope="module")
def certs(base):
    pytest.importorskip("cryptography")
    ca = CA(base)
    cert, key = ca.issue(TLS_NAME, dns=(TLS_NAME,))
    return Certs(cert, key, ca.client_context(alpn=("http/1.1",)))


@pytest.fixture(scope="module")
def runs(base, ports, certs):
    on = play(base / "on", ports, certs, fastpath=True)
    off = play(base / "off", ports, certs, fastpath=False)
    return on, off


@pytest.fixture(scope="module")
def by_config(base, ports, certs):
    """A third run, with the shortcuts off by the config's `fast_path: false`."""
    return play(base / "by-config", ports, certs, fastpath=True, config_switch=True)


def _render(x) -> list[str]:
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("latin-1").splitlines(keepends=True)
    if isinstance(x, list):
        return [repr(i) + "\n" for i in x]
    return [repr(x) + "\n"]


def _diff(what: str, a, b, label: str) -> str:
    lines = difflib.unified_diff(_render(a), _render(b), ON, label, n=2)
    return f"{what} differs:\n" + "".join(list(lines)[:120])


def _sent(name: str) -> bytes:
    conv = next(c for c in corpus.CONVERSATIONS if c.name == name)
    if isinstance(conv, corpus.H1):
        return b"".join(s.data for s in conv.steps if isinstance(s, corpus.Send))
    return repr(conv.requests).encode()


def check_statuses(run: Run, label: str) -> None:
    for conv, p in zip(corpus.CONVERSATIONS, run.played):
        got = (tuple(p.statuses), tuple(p.interim))
        assert got == (conv.statuses, getattr(conv, "interim", ())), \
            f"{label}: {conv.name}: statuses {got}, notes {p.notes}"
        assert not [n for n in p.notes if n != "closed"], f"{label}: {conv.name}: {p.notes}"


def check_downstream(a: Normal, b: Normal, label: str) -> None:
    for name in a.downstream:
        assert a.downstream[name] == b.downstream[name], (
            _diff(f"what the client of {name!r} received", a.downstream[name], b.downstream[name], label)
            + f"\nthe client sent: {_sent(name)!r}")


def check_upstream(a: Normal, b: Normal, label: str) -> None:
    for kind in a.upstream:
        x, y = a.upstream[kind], b.upstream[kind]
        assert x, f"the {kind} upstream received nothing"
        assert len(x) == len(y), (
            f"{kind} upstream connections: {len(x)} ({ON}), {len(y)} ({label})\n"
            + _diff(f"the {kind} upstream connections", x, y, label))
        for i, (c, d) in enumerate(zip(x, y)):
            assert c == d, _diff(f"{kind} upstream connection {i}", c, d, label)


def check_stats(a: Run, b: Run, label: str) -> None:
    assert a.stats, "no stats read"
    for what, x, y in (("stats", a.stats, b.stats), ("histogram sample counts", a.histograms, b.histograms)):
        diff = {k: (x.get(k), y.get(k)) for k in x.keys() | y.keys() if x.get(k) != y.get(k)}
        assert not diff, f"{what} differ ({ON}, {label}): {dict(sorted(diff.items()))}"
    assert a.clusters == b.clusters, _diff("/clusters", json.dumps(a.clusters, indent=1).encode(),
                                           json.dumps(b.clusters, indent=1).encode(), label)


def check_logs(a: Normal, b: Normal, label: str) -> None:
    logged = {k for k, v in corpus.LISTENERS.items() if "access_log" not in v}
    assert set(a.logs) == logged, sorted(a.logs)
    for name in a.logs:
        assert a.logs[name] == b.logs.get(name), _diff(f"the access log of {name!r}", a.logs[name],
                                                       b.logs.get(name), label)


def check_switched_off(a: Run, b: Run, label: str) -> None:
    """With the shortcuts on, the express stream forwarded and every memo the proxy
    registers was hit (the corpus reaches each one: a new memo without its corpus
    entry fails here); switched off, none was taken and nothing was remembered."""
    on, off = a.fastpath, b.fastpath
    assert on.get("fastpath.enabled") == 1 and on.get("fastpath.express_rq"), on
    unreached = sorted(k[:-len(".hits")] for k, v in on.items() if k.endswith(".hits") and not v)
    assert not unreached, f"memos the corpus never hits (add their traffic to fastpath_corpus): {unreached}"
    assert off.get("fastpath.enabled", 0) == 0, f"{label}: fastpath.enabled is {off.get('fastpath.enabled')}"
    taken = {k: v for k, v in off.items()
             if v and (k == "fastpath.express_rq" or k.endswith((".hits", ".evictions")))}
    assert not taken, f"with {label} a shortcut was still taken: {taken}"


def test_the_docstring_gives_the_corpus_size():
    assert corpus.summary() in " ".join(__doc__.split()), \
        f"the module docstring should quote the corpus size: {corpus.summary()}"


def test_corpus_does_what_it_says(runs):
    """Each conversation got the answers its entry expects, in both runs, so the
    corpus still exercises what it claims to (a broken fixture would also agree)."""
    for label, run in zip((ON, OFF), runs):
        check_statuses(run, label)


def test_clients_receive_the_same_bytes(runs):
    check_downstream(*(normalise(r) for r in runs), OFF)


def test_upstream_receives_the_same_bytes(runs):
    check_upstream(*(normalise(r) for r in runs), OFF)


def test_stats_are_the_same(runs):
    check_stats(*runs, OFF)


def test_access_logs_and_rule_records_are_the_same(runs):
    on, off = (normalise(r) for r in runs)
    check_logs(on, off, OFF)
    # the rules' own records are there to compare: `emit` lines, and headers rules set
    assert any(line.startswith("{") for line in on.logs["rules"])
    assert any(line.startswith("{") for line in on.logs["global"])
    rules_down = b"".join(v for k, v in on.downstream.items() if k.startswith("rules-") and isinstance(v, bytes))
    assert b"x-route-id: " in rules_down and b"x-code: 200" in rules_down


def test_the_switch_turns_the_fast_path_off(runs):
    check_switched_off(*runs, OFF)


def test_the_config_key_turns_the_fast_path_off_too(runs, by_config):
    """`fast_path: false` in the config does what MOSNX_FASTPATH=0 does."""
    on = runs[0]
    check_statuses(by_config, OFF_BY_CONFIG)
    a, b = normalise(on), normalise(by_config)
    check_downstream(a, b, OFF_BY_CONFIG)
    check_upstream(a, b, OFF_BY_CONFIG)
    check_stats(on, by_config, OFF_BY_CONFIG)
    check_logs(a, b, OFF_BY_CONFIG)
    check_switched_off(on, by_config, OFF_BY_CONFIG)
