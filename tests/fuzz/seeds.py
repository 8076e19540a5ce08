"""Write the seed corpora and the libFuzzer dictionaries of the fuzz targets.

    .venv/bin/python tests/fuzz/seeds.py     (from the repository root)

Seeds are named by their SHA-1, as libFuzzer names what it keeps, so running
this again adds nothing already there. The examples' .mdsl and YAML files, the
rules and configs shown in the docs, and messages of every kind each codec
reads are the starting points; `make fuzz-merge` keeps what fuzzing found new.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _save(target: str, data: bytes) -> None:
    """Keep `data` as a seed of `target`, unless it fails there (an open finding:
    crashes/ holds a reproducer of each, and the corpus must replay clean)."""
    import importlib
    sys.path.insert(0, HERE)
    try:
        importlib.import_module(f"fuzz_{target}").test_one_input(data)
    except Exception as e:
        print(f"{target}: not a seed, it fails: {type(e).__name__}: {str(e)[:120]}")
        return
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def _blocks(path: str, langs: tuple[str, ...]) -> list[str]:
    """The fenced code blocks of a Markdown file whose language is one of `langs`."""
    text = open(path, encoding="utf-8").read()
    return [m.group(2) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S) if m.group(1) in langs]


REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"
    b"GET /2 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
]
RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nGrpc-Status: 0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
]


def http1() -> None:
    for i, msg in enumerate(REQUESTS):
        _save("http1", bytes([(i % 4) << 1, 0]) + msg)
        _save("http1", bytes([0, 3, 3, 17, 40]) + msg)
    for msg in RESPONSES:
        _save("http1", bytes([1, 0]) + msg)
        _save("http1", bytes([1, 2, 9, 30]) + msg)
    _save("http1", bytes([9, 0]) + b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")      # answers a HEAD


def http2() -> None:
    sys.path.insert(0, HERE)
    from mosnx.proxy.codec.http2_connection import (
        CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PADDED, PING, PRIORITY, PRIORITY_FLAG,
        RST_STREAM, SETTINGS, WINDOW_UPDATE, H2Connection, frame)

    class Quiet:
        def __getattr__(self, name):
            return lambda *a: None

    req = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]
    post = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/up"), (b":authority", b"a"),
            (b"content-length", b"5"), (b"te", b"trailers")]
    c = H2Connection(Quiet(), True)
    c.initiate()
    head = c.data_to_send()                 # preface and SETTINGS
    c.send_headers(c.next_stream_id(), req, end_stream=True)
    get = c.data_to_send()
    sid = c.next_stream_id()
    c.send_headers(sid, post)
    c.send_data(sid, b"hello")
    c.send_headers(sid, [(b"x-checksum", b"1")], end_stream=True)
    upload = c.data_to_send()
    sid = c.next_stream_id()
    c.send_headers(sid, req + [(b"x-big", b"v" * 20000)], end_stream=True)      # HEADERS + CONTINUATION
    big = c.data_to_send()
    ctl = (frame(PING, 0, 0, b"12345678") + frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x10\x00")
           + frame(SETTINGS, 1, 0) + frame(PRIORITY, 0, 3, b"\x00\x00\x00\x01\x10")
           + frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08") + frame(GOAWAY, 0, 0, b"\x00" * 8) + frame(0xFA, 0, 0, b"?"))
    padded = frame(HEADERS, END_HEADERS | PADDED | PRIORITY_FLAG, 5, b"\x02" + b"\x00\x00\x00\x00\x10" + b"\x82\x86\x84\x41\x01a" + b"\x00\x00") \
        + frame(DATA, END_STREAM | PADDED, 5, b"\x01x\x00")
    split = frame(HEADERS, 0, 7, b"\x82\x86") + frame(CONTINUATION, END_HEADERS | END_STREAM, 7, b"\x84\x41\x01a")
    for payload in (get, upload, big, ctl, get + upload, padded, split):
        _save("http2", bytes([0, 0]) + head + payload)
        _save("http2", bytes([0, 4, 10, 30, 5, 60]) + head + payload)
    for payload in (get, upload, ctl, padded, split):
        _save("http2", bytes([3, 0]) + payload)      # the harness sends the preface and SETTINGS


def hpack() -> None:
    from mosnx.proxy.codec.http2_hpack import Encoder
    e = Encoder()
    b1 = e.encode([(b":method", b"GET"), (b":path", b"/"), (b"user-agent", b"x" * 130), (b"cookie", b"a=b")])
    b2 = e.encode([(b":method", b"GET"), (b"user-agent", b"x" * 130)])
    for data in (b"\x00\x00\x04\x00" + b1 + b2, b"\x00\x00\x04\x00\x3f\xe1\x1f" + b1,
                 b"\x00\x01\x02\x00\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff",
                 b"\x01" + bytes(range(64)), b"\x01" + b"\x05" * 40 + b"a" * 40):
        _save("hpack", data)


def rpc() -> None:
    from mosnx.proxy.rpc import bolt, dubbo
    from mosnx.proxy.rpc.hessian import write_string
    b_req = bolt.encode_request(1, {"service": "com.example.A:1.0", "sofa_head_method_name": "get"}, b"\x05hello")
    sofa = (b"O\x93a.B\x91" + write_string("methodName") + b"o\x90" + write_string("hello"))
    b_node = bolt.encode_request(2, {"service": "com.example.A:1.0"}, b"O\xbc" + bolt.SOFA_REQUEST.encode()
                                 + b"\x91" + write_string("methodName") + b"o\x90" + write_string("hi"))
    for data in (b_req, b_req + bolt.encode_heartbeat(3), bolt.encode_request(4, {}, sofa, oneway=True),
                 bolt.encode_response(1, bolt.SUCCESS, write_string("ok")), b_node):
        _save("rpc", b"\x00\x10" + data)
    d_req = dubbo.encode_request(1, dubbo.request_body("com.example.S", "get", "1.0", write_string("a"),
                                                       "Ljava/lang/String;"))
    for data in (d_req, d_req + dubbo.encode_heartbeat(2), dubbo.encode_request(3, b"N", oneway=True),
                 dubbo.encode(1, 0x02, dubbo.OK, b"\x91" + write_string("ok"))):
        _save("rpc", b"\x01\x08" + data)


def thrift() -> None:
    from mosnx.proxy.rpc import thrift as t, thrift_wire as w
    # hello(1: string name, 2: struct {1: list<i64>, 2: map<string, bool>, 3: set<double>}) as each protocol writes it
    binary = (b"\x0b\x00\x01\x00\x00\x00\x03bob\x0c\x00\x02\x0f\x00\x01\x0a\x00\x00\x00\x01" + b"\x00" * 7
              + b"\x05\x0d\x00\x02\x0b\x02\x00\x00\x00\x01\x00\x00\x00\x01k\x01\x0e\x00\x03\x04\x00\x00\x00\x00"
              + b"\x00\x00")
    compact = (b"\x18\x03bob\x1c\x19\x16\x0a\x1b\x01\x81\x01k\x01\x1a\x07\x00\x11\x00")
    for framed in (True, False):
        for proto, body in ((w.BINARY, binary), (w.BINARY_LAX, binary), (w.COMPACT, compact)):
            call = t.encode_message("Greeter:hello", w.CALL, 1, body, protocol=proto, framed=framed)
            one = t.encode_message("ping", w.ONEWAY, 2, b"\x00", protocol=proto, framed=framed)
            reply = t.encode_message("hello", w.REPLY, 1, b"\x0b\x00\x00\x00\x00\x00\x02ok\x00"
                                     if proto != w.COMPACT else b"\x08\x02ok\x00", protocol=proto, framed=framed)
            _save("thrift", b"\x03\x10" + call + one)
            _save("thrift", b"\x07\x05" + call)
            _save("thrift", b"\x02\x00" + reply)


def mdsl() -> None:
    for p in sorted(glob.glob(os.path.join(ROOT, "examples", "**", "*.mdsl"), recursive=True)):
        _save("mdsl", open(p, "rb").read())
    for block in _blocks(os.path.join(ROOT, "docs", "mdsl.md"), ("", "mdsl")):
        _save("mdsl", block.encode())


def config() -> None:
    for p in sorted(glob.glob(os.path.join(ROOT, "examples", "**", "*.yaml"), recursive=True)):
        _save("config", open(p, "rb").read())
    for doc in ("README.md", "docs/governance.md"):
        for block in _blocks(os.path.join(ROOT, doc), ("yaml",)):
            _save("config", block.encode())


def wasm_abi() -> None:
    for data in (b"\x01" * 8 + b"\x00\x10" * 20, bytes(range(256)), b"\xff" * 64):
        _save("wasm_abi", data)


def dictionaries() -> None:
    def write(name: str, words) -> None:
        with open(os.path.join(HERE, name), "w") as f:
            for w in sorted(set(words)):
                # libFuzzer's dictionary syntax: printable ASCII as is, anything else \xHH
                f.write('"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}"
                                      for b in w.encode()) + '"\n')
    grammar = open(os.path.join(ROOT, "grammar", "mdsl.lark"), encoding="utf-8").read()
    words = set(re.findall(r'"([^"\\]+)"', grammar))
    words |= {"request.path", "request.method", "request.host", "request.headers[\"x\"]", "request.query[\"k\"]",
              "request.cookies[\"c\"]", "source.address", "response.code", "response.headers[\"x\"]",
              "metadata[\"k\"]", "route.name", "cluster.name", "==", "!=", "~", "=>", "{", "}", "\"", "5xx",
              "reset", "500ms", "3s", "10.0.0.0/8", "rpc.service", "rpc.method", "rpc.version", "rpc.group",
              "rpc.headers[\"k\"]", "100%", "0%"}
    write("mdsl.dict", words)
    from mosnx.runtime.config import describe_schema
    keys = set()
    for d in describe_schema():
        keys.update(k for k in re.split(r"[.\[\]*]+", d["key"]) if k)
    write("config.dict", {k + ":" for k in keys} | {"- ", "  ", "{", "}", "[", "]", "&a ", "*a", "<<: ", "!!",
                                                    "127.0.0.1:8080", "1s", "60KiB", "round_robin", "http", "tcp"})
    write("http1.dict", ["HTTP/1.1", "HTTP/1.0", "\r\n", "\r\n\r\n", "Host: ", "Content-Length: ",
                         "Transfer-Encoding: chunked", "Connection: close", "Connection: keep-alive",
                         "Upgrade: websocket", "Expect: 100-continue", "0\r\n\r\n", "GET ", "POST ", "HEAD ",
                         " 200 OK", " 101 ", " 100 ", " 204 ", " 304 "])


if __name__ == "__main__":
    for step in (http1, http2, hpack, rpc, thrift, mdsl, config, wasm_abi, dictionaries):
        step()
