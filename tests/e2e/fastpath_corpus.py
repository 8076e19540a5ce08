# A new shortcut (express stream, memo, batched call) lands only with its entry in
# this corpus: traffic that takes the shortcut, and the traffic beside it that must not.
"""The traffic of the fast-path differential test (test_fastpath_differential.py), as data.

The same conversations are played against mosnx with its shortcuts on (the default)
and off (MOSNX_FASTPATH=0, or `fast_path: false`); everything a run puts on a wire,
in /stats or in an access log must be the same. So everything here is fixed: the
bytes each client sends, the listeners and rules they meet, and what the recording
upstreams answer with (raw HTTP/1.1 bytes with a fixed Date, scripted HTTP/2
frames; no clock, no randomness). `summary()` gives the corpus size (the test
module's docstring quotes it).

Invariants:
- each client message is one buffer sent in one write, and each upstream answer one
  write, so what the proxy reads, and therefore what it forwards (chunk boundaries
  included), does not depend on timing;
- an upstream answer is chosen by the path it receives and by how many requests
  that path has had in this run (ANSWERS, H2_ANSWERS: the last entry repeats),
  never by timing;
- request ids clients supply are not UUID-shaped, so only the ids the proxy makes
  are normalised (GENERATED_ID); trace and span ids (TRACE_IDS: the proxy draws its
  own at random) are normalised wherever they stand in a trace header;
- listeners whose access log is compared never see a request malformed before it
  is a stream: such a request is logged with a wall-clock time whatever the format
  says (proxy.access_log.AccessLogWriter.error), so those go to `raw` and `tight`,
  which log nothing;
- a conversation that changes the rules (Reload) comes last.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# ---------------------------------------------------------------- what the upstream says
DATE = b"Date: Sun, 06 Dec 2026 00:00:00 GMT\r\n"


def _resp(status: bytes, headers: bytes = b"", body: bytes = b"", length: bool = True) -> bytes:
    cl = b"Content-Length: %d\r\n" % len(body) if length else b""
    return b"HTTP/1.1 " + status + b"\r\n" + DATE + b"Server: rec\r\n" + headers + cl + b"\r\n" + body


@dataclass(frozen=True)
class Close:
    """Write these bytes, then close the connection."""
    data: bytes


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering (the proxy sees the upstream reset)."""


OK = _resp(b"200 OK", b"Content-Type: text/plain\r\n", b"hello\n")
BIG = _resp(b"200 OK", b"Content-Type: application/octet-stream\r\n",
            bytes(range(256)) * 96)                                    # 24 KiB, fixed length
CHUNKED = (b"HTTP/1.1 200 OK\r\n" + DATE + b"Server: rec\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n")
TRAILERS = (b"HTTP/1.1 200 OK\r\n" + DATE + b"Server: rec\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: x-checksum\r\n\r\n4\r\nbody\r\n0\r\nx-checksum: 1234\r\n\r\n")
HEAD = _resp(b"200 OK", b"Content-Type: text/plain\r\nContent-Length: 6\r\n", length=False)
NO_CONTENT = _resp(b"204 No Content", length=False)
NOT_MODIFIED = _resp(b"304 Not Modified", b'ETag: "v1"\r\nCache-Control: max-age=60\r\n', length=False)
BUSY = _resp(b"503 Service Unavailable", b"Content-Type: text/plain\r\n", b"busy\n")
CREATED = _resp(b"201 Created", b"Location: /post/1\r\n", b"made\n")
HOPS = _resp(b"200 OK", b"Connection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n"
             b"X-Multi: a\r\nX-Multi: b\r\n", b"hops\n")
EARLY = (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
         + _resp(b"200 OK", b"Content-Type: text/plain\r\n", b"after hints\n"))
ODD = (b"HTTP/1.1 299 Custom Reason Here\r\n" + DATE + b"SERVER: rec\r\nx-MiXeD-CaSe: Value With  Spaces\r\n"
       b"Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; HttpOnly\r\nX-Empty:\r\nX-Tab:\tvalue\t\r\n"
       b"Content-Length: 4\r\n\r\nodd\n")
EMPTY_BODY = _resp(b"200 OK", b"Content-Type: text/plain\r\n", b"")
# an upstream that does not keep to HTTP: more than its Content-Length, a body after
# a HEAD answer, both framings at once
EXTRA = _resp(b"200 OK", b"", b"ok") + b"EXTRA"
HEAD_BODY = _resp(b"200 OK", b"Content-Length: 4\r\n", length=False) + b"body"
CL_TE = (b"HTTP/1.1 200 OK\r\n" + DATE + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n")
NO_UPGRADE = _resp(b"426 Upgrade Required", b"Content-Type: text/plain\r\n", b"no\n")

# path the upstream receives -> its answers, in order (the last repeats)
ANSWERS: dict[str, tuple] = {
    "/big": (BIG,),
    "/chunked": (CHUNKED,),
    "/trailers": (TRAILERS,),
    "/head": (HEAD,),
    "/204": (NO_CONTENT,),
    "/304": (NOT_MODIFIED,),
    "/post": (CREATED,),
    "/hops": (HOPS,),
    "/upclose": (Close(_resp(b"200 OK", b"Connection: close\r\n", b"bye\n")),),
    "/eof": (Close(b"HTTP/1.1 200 OK\r\n" + DATE + b"Server: rec\r\nContent-Type: text/plain\r\n\r\n"
                   b"body until close\n"),),
    "/drop": (Drop(),),
    "/early": (EARLY,),
    "/odd": (ODD,),
    "/empty-body": (EMPTY_BODY,),
    "/ws": (NO_UPGRADE,),
    "/extra": (EXTRA,),
    "/head-body": (HEAD_BODY,),
    "/cl-te": (CL_TE,),
    "/garbage": (Close(b"NOT HTTP AT ALL\r\n\r\n"),),
    "/retry/a": (BUSY, OK),            # retried: 503, then 200
    "/retry/b": (BUSY,),               # retried, and 503 again
    "/retry/c": (BUSY, CREATED),       # with a body to replay
    "/retry/s": (BUSY, OK),            # retried by a rule
    "/retry/h2": (BUSY, OK),
}
DEFAULT_ANSWER = OK


# ---------------------------------------------------------------- what the HTTP/2 upstream says
@dataclass(frozen=True)
class H2Answer:
    """HEADERS (then DATA with the body, then trailers), each frame as the upstream's own
    HPACK encoder makes it (deterministic: the same answers in the same order)."""
    status: int
    headers: tuple = ()
    body: bytes = b""
    trailers: tuple = ()


@dataclass(frozen=True)
class H2Reset:
    """RST_STREAM with this error code instead of an answer."""
    code: int = 2


_H2_FIXED = (("date", "Sun, 06 Dec 2026 00:00:00 GMT"), ("server", "rec2"))
H2_OK = H2Answer(200, _H2_FIXED + (("content-type", "text/plain"), ("content-length", "6")), b"hello\n")
H2_ANSWERS: dict[str, tuple] = {
    "/h2up/nolength": (H2Answer(200, _H2_FIXED, b"no length given\n"),),
    "/h2up/trailers": (H2Answer(200, _H2_FIXED + (("content-length", "4"),), b"body", (("x-checksum", "1"),)),),
    "/h2up/204": (H2Answer(204, _H2_FIXED),),
    "/h2up/head": (H2Answer(200, _H2_FIXED + (("content-length", "6"),)),),
    "/h2up/reset": (H2Reset(),),
    "/h2steps/retry": (H2Answer(503, _H2_FIXED + (("content-length", "0"),)), H2_OK),
}
H2_DEFAULT_ANSWER = H2_OK

# ---------------------------------------------------------------- listeners and rules
# Each listener but `raw` logs in ACCESS_FORMAT (nothing timed) to its own file.
ACCESS_FORMAT = ('%listener.name% "%request.method% %request.path% %request.protocol%" %response.code% '
                 '%response.flags% %request.size% %response.size% "%upstream.address%" %request.id% '
                 '"%request.host%" %request.scheme% "%route.name%" "%cluster.name%" %upstream.attempt_count% '
                 '"%request.headers["x-forwarded-for"]%" "%request.headers["x-mark"]%"')

# listener name -> its settings (address and access log are added by the test);
# "rules" entries name a file of RULES
LISTENERS: dict[str, dict] = {
    # the express stream's home: one route, no step
    "plain": {"route": {"cluster": "web", "timeout": "10s"}},
    # vhosts with and without steps (see RULES["routes.mdsl"])
    "rules": {"rules": "routes.mdsl"},
    # listener-wide steps: nothing on it is express, the memos still are
    "global": {"rules": "global.mdsl"},
    "retry": {"route": {"cluster": "web", "timeout": "10s",
                        "retry": {"retry_on": "5xx", "num_retries": 1}}},
    "weighted": {"route": {"weighted_clusters": {"web": 100, "other": 0}, "timeout": "10s"}},
    "empty": {"route": {"cluster": "empty"}},
    # a listener filter (three tokens, never refilled in a run): requests 4 on get 429
    "filtered": {"route": {"cluster": "web", "timeout": "10s"},
                 "filters": [{"rate_limit": {"token_bucket": {"max_tokens": 3, "tokens_per_fill": 3,
                                                              "fill_interval": "1h"}}}]},
    # requests malformed before they are streams (not access-logged, see above)
    "raw": {"route": {"cluster": "web", "timeout": "10s"}, "access_log": None},
    # TLS (the test fills in a certificate): the heads `plain` has seen, now https
    "tls": {"route": {"cluster": "web", "timeout": "10s"}, "tls": "test certificate"},
    # other limits and path settings than `plain`, for heads `plain` has seen before:
    # what a codec remembers must not carry one listener's verdict to another
    "tight": {"route": {"cluster": "web", "timeout": "10s"}, "access_log": None,
              "limits": {"request_headers_count": 5, "request_headers": "1KiB"},
              "path_normalization": {"merge_slashes": False}},
    # Istio's metadata exchange: a peer's header decoded once, then remembered
    "peer": {"route": {"cluster": "web", "timeout": "10s"},
             "filters": [{"peer_metadata": {"node": {"id": "sidecar~10.0.0.2~reviews-v1.default",
                                                     "metadata": {"WORKLOAD_NAME": "reviews-v1"}},
                                            "direction": "INBOUND"}}]},
    # a traced listener (nothing sampled at random, so nothing recorded but what a
    # client's sampled context asks for): express streams write the context last
    "traced": {"route": {"cluster": "web", "timeout": "10s"},
               "tracing": {"propagation": ["w3c", "b3"], "random_sampling": "0%"}},
    # the same to an HTTP/2 upstream, which reads the express stream's context as fields
    "traced_h2": {"route": {"cluster": "h2web", "timeout": "10s"},
                  "tracing": {"propagation": ["w3c", "b3"], "random_sampling": "0%"}},
    # W3C alone, every trace sampled: an express stream keeps its sampled context as
    # it keeps an unsampled one's (a SampledWire), to either upstream
    "traced_sampled": {"route": {"cluster": "web", "timeout": "10s"},
                       "tracing": {"propagation": ["w3c"], "random_sampling": "100%"}},
    "traced_sampled_h2": {"route": {"cluster": "h2web", "timeout": "10s"},
                          "tracing": {"propagation": ["w3c"], "random_sampling": "100%"}},
}

# cluster -> endpoints: "up" is the recording upstream, "dead" a port nothing listens on
CLUSTERS: dict[str, tuple[str, ...]] = {
    "web": ("up",),
    "other": ("up",),
    "empty": (),
    "dead": ("dead",),
    "h2web": ("up2",),
}
# cluster settings beyond its endpoints; "up2" is the recording HTTP/2 upstream
CLUSTER_SETTINGS: dict[str, dict] = {"h2web": {"protocol": "http2"}}

# A reload (Reload below) rewrites rules in place, keeping each file's size (and the
# test its mtime) so that only the explicit reload sees the change, never the watcher
# as well, which would count a second reload in one run and not in the other.
RELOAD_STEP = '  on response { set response.headers["x-reloaded"] = "1" }'
RELOAD_SLOT = "  #" + " " * (len(RELOAD_STEP) - 3)

RULES: dict[str, str] = {
    "routes.mdsl": """\
# no step anywhere in this vhost: its forwarding routes are express-eligible
# (until the reload puts a response step in the slot below)
vhost express domains "express.test" {
""" + RELOAD_SLOT + """
  route empty when request.path prefix "/empty" { to empty }
  route dead when request.path prefix "/dead" { to dead }
  route split when request.path prefix "/split" { split { web: 100, other: 0 } }
  route local when request.path == "/local" { respond 200 "local\\n" header content-type = "text/plain" }
  route h2up when request.path prefix "/h2up" { to h2web }
  route rest when request.path prefix "/" { to web }
}

# steps in every phase, before and after the request id is set
vhost steps domains "steps.test" {
  on request { set request.headers["x-vhost-id"] = request.id }
  route stamp when request.path prefix "/stamp" {
    add request.headers["x-mark"] = "route"
    set response.headers["x-route-id"] = request.id
    to web
  }
  route setid when request.path prefix "/setid" {
    set request.headers["x-request-id"] = "set-by-rule"
    to web
  }
  route dropid when request.path prefix "/dropid" {
    remove request.headers["x-request-id"]
    to web
  }
  route api when request.path segment_prefix "/api" {
    rewrite prefix "/api" => "/v1"
    to web
  }
  route retry when request.path prefix "/retry" {
    retry 1 on 5xx
    to web
  }
  route old when request.path prefix "/old/" { redirect 301 prefix "/new/" }
  route h2steps when request.path prefix "/h2steps" {
    retry 1 on 5xx
    set response.headers["x-route-id"] = request.id
    to h2web
  }
  route fault when request.path prefix "/fault" { fault abort 418  to web }
  route limited when request.path prefix "/limited" { limit rate 2/h burst 2  to web }
  route rest when request.path prefix "/" { to web }
  on response { set response.headers["x-code"] = response.code }
  on log { emit access { id: request.id, code: response.code, route: route.name, flags: response.flags } }
}

# one exact route: other paths find the vhost but no route
vhost only domains "only.test" {
  route exact when request.path == "/exact" { to web }
}
""",
    "global.mdsl": """\
on request { set request.headers["x-global"] = "g" }
on response { set response.headers["x-global-id"] = request.id }
on log { emit access { id: request.id, code: response.code, path: request.path } }
route all { to web }
""",
}

# ---------------------------------------------------------------- what clients send
# Matches the ids the proxy makes (proxy.request_id): UUID-shaped, version 4, variant a.
GENERATED_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}")
# Trace and span ids in the trace headers the proxy writes (W3C traceparent, B3)
TRACE_IDS = re.compile(rb"(?<![0-9a-f])(?:[0-9a-f]{32}|[0-9a-f]{16})(?![0-9a-f])")


def req(method: str, path: str, host: str = "test", headers: tuple = (), body: bytes | None = None,
        chunks: tuple | None = None, trailers: tuple = (), version: str = "HTTP/1.1") -> bytes:
    """One request as bytes. A body gets a Content-Length; `chunks` a chunked body."""
    head = [f"{method} {path} {version}"]
    if host is not None:
        head.append(f"Host: {host}")
    head += [f"{k}: {v}" for k, v in headers]
    out = b""
    if chunks is not None:
        head.append("Transfer-Encoding: chunked")
        out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n"
        out += b"".join(f"{k}: {v}\r\n".encode() for k, v in trailers) + b"\r\n"
    elif body is not None:
        head.append(f"Content-Length: {len(body)}")
        out = body
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + out


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Read:
    """Read one response per method given (the method decides whether a body follows)."""
    methods: tuple[str, ...] = ("GET",)


@dataclass(frozen=True)
class ReadClose:
    """Read these responses, then the proxy must close the connection."""
    methods: tuple[str, ...] = ("GET",)


@dataclass(frozen=True)
class Reload:
    """Rewrite a rules file (each replacement keeps its length) and reload the proxy."""
    file: str
    edits: tuple[tuple[str, str], ...]

    def __post_init__(self):
        assert all(len(a) == len(b) for a, b in self.edits), "a reload edit must keep the file's size"


@dataclass(frozen=True)
class H1:
    name: str
    listener: str
    steps: tuple
    statuses: tuple[int, ...]          # every final response the client reads, in order
    interim: tuple[int, ...] = ()      # 1xx responses read by a Read of their own


@dataclass(frozen=True)
class H2Req:
    path: str
    authority: str = "test"
    method: str = "GET"
    extra: tuple = ()
    body: bytes | None = None


@dataclass(frozen=True)
class H2:
    """Requests on one h2c (prior knowledge) connection, one after another."""
    name: str
    listener: str
    requests: tuple[H2Req, ...]
    statuses: tuple[int, ...]


def _twice(*steps):
    return steps + steps


G = ("GET",)
CID = ("x-request-id", "client-id-1")       # a client's own request id (not UUID-shaped)
# a sidecar peer's metadata exchange headers (base64 of a Struct {WORKLOAD_NAME: productpage-v1})
PEER = (("x-envoy-peer-metadata", "CiEKDVdPUktMT0FEX05BTUUSEBoOcHJvZHVjdHBhZ2UtdjE="),
        ("x-envoy-peer-metadata-id", "sidecar~10.0.0.1~productpage-v1.default"))

CONVERSATIONS: tuple = (
    # --- keep-alive: the same head again and again (codec and head memos hit)
    H1("keepalive-repeat", "plain",
       _twice(Send(req("GET", "/a")), Read()) + (Send(req("GET", "/a")), Read()),
       (200, 200, 200)),
    H1("keepalive-varied", "plain", (
        Send(req("GET", "/a", headers=(("User-Agent", "corpus/1"), ("Accept", "*/*")))), Read(),
        Send(req("HEAD", "/head")), Read(("HEAD",)),
        Send(req("GET", "/204")), Read(),
        Send(req("GET", "/304", headers=(("If-None-Match", '"v1"'),))), Read(),
        Send(req("GET", "/chunked")), Read(),
        Send(req("GET", "/trailers", headers=(("TE", "trailers"),))), Read(),
        Send(req("GET", "/big")), Read(),
        Send(req("GET", "/hops")), Read(),
        Send(req("GET", "/a?q=1&r=two")), Read(),
        Send(req("GET", "/a", headers=(("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-Proto", "https")))), Read(),
        Send(req("GET", "/a", headers=(("Connection", "x-drop"), ("X-Drop", "1"), ("X-Keep", "1")))), Read(),
        Send(req("GET", "/a", headers=(("User-Agent", "corpus/1"), ("Accept", "*/*")))), Read(),
    ), (200, 200, 204, 304, 200, 200, 200, 200, 200, 200, 200, 200)),
    # the same heads again on a new connection: remembered across connections
    H1("keepalive-again", "plain", (
        Send(req("GET", "/a", headers=(("User-Agent", "corpus/1"), ("Accept", "*/*")))), Read(),
        Send(req("HEAD", "/head")), Read(("HEAD",)),
        Send(req("GET", "/chunked")), Read(),
        Send(req("GET", "/big")), Read(),
    ), (200, 200, 200, 200)),
    # --- pipelining: several heads in one read (no memo can take a read of two)
    H1("pipelined", "plain", (
        Send(req("GET", "/a") + req("GET", "/b") + req("HEAD", "/head") + req("GET", "/chunked")
             + req("GET", "/204")),
        Read(("GET", "GET", "HEAD", "GET", "GET")),
    ), (200, 200, 200, 200, 204)),
    H1("pipelined-bodies", "plain", (
        Send(req("POST", "/post", body=b"one=1") + req("GET", "/a")
             + req("POST", "/post", chunks=(b"two", b"=2")) + req("GET", "/a")),
        Read(("POST", "GET", "POST", "GET")),
    ), (201, 200, 201, 200)),
    H1("pipelined-close", "plain", (
        Send(req("GET", "/a") + req("GET", "/b", headers=(("Connection", "close"),)) + req("GET", "/c")),
        ReadClose(("GET", "GET")),
    ), (200, 200)),
    # --- request bodies
    H1("bodies", "plain", (
        Send(req("POST", "/post", body=b"name=value&x=1")), Read(),
        Send(req("POST", "/post", chunks=(b"hello ", b"chunked ", b"world"))), Read(),
        Send(req("POST", "/post", chunks=(b"with trailer",), trailers=(("x-sum", "9"),))), Read(),
        Send(req("PUT", "/post", body=b"")), Read(),
        Send(req("POST", "/post", body=b"x" * 5000)), Read(),
        Send(req("POST", "/post", body=b"name=value&x=1")), Read(),
    ), (201, 201, 201, 201, 201, 201)),
    H1("expect-continue", "plain", (
        Send(req("POST", "/post", headers=(("Expect", "100-continue"), ("Content-Length", "4")))),
        Read(),
        Send(b"body"), Read(("POST",)),
    ), (201,), interim=(100,)),
    # --- Connection: close from either side, and HTTP/1.0
    H1("client-close", "plain", (
        Send(req("GET", "/a", headers=(("Connection", "close"),))), ReadClose(),
    ), (200,)),
    H1("upstream-close", "plain", (
        Send(req("GET", "/upclose")), Read(),
        Send(req("GET", "/a")), Read(),
        Send(req("GET", "/eof")), Read(),
        Send(req("GET", "/a")), Read(),
    ), (200, 200, 200, 200)),
    H1("http10", "plain", (
        Send(req("GET", "/a", host=None, version="HTTP/1.0")), ReadClose(),
    ), (200,)),
    H1("http10-keepalive", "plain", (
        Send(req("GET", "/a", version="HTTP/1.0", headers=(("Connection", "keep-alive"),))), Read(),
        Send(req("GET", "/chunked", version="HTTP/1.0", headers=(("Connection", "keep-alive"),))),
        ReadClose(),
    ), (200, 200)),
    # --- unusual heads either way, each twice (the second time from the memos)
    H1("odd-heads", "plain", _twice(
        Send(req("GET", "/early")), Read(),         # the 103 is not passed on
        Send(req("GET", "/odd")), Read(),
        Send(req("GET", "/empty-body")), Read(),
        Send(req("GET", "/x/../a")), Read(),
        Send(req("GET", "//a///b/./c")), Read(),
        Send(req("GET", "/%61?%62=%63")), Read(),
        Send(req("GET", "http://test/a?abs=1")), Read(),
        Send(req("GET", "/a", headers=tuple((f"X-Many-{i}", str(i)) for i in range(20)))), Read(),
        Send(req("GET", "/a", headers=(("X-Long", "v" * 3000),))), Read(),
        Send(req("GET", "/a", headers=(("x-request-id", ""),))), Read(),
        Send(b"GET /a HTTP/1.1\r\nHOST: test\r\nUser-Agent:  spaced  \r\nAccept:*/*\r\n\r\n"), Read(),
    ) + tuple(  # targets seen before in heads not seen before: the path memo alone
        x for i in range(3) for t in ("//a///b/./c", "/x/../a", "/%61?%62=%63", "http://test/a?abs=1")
        for x in (Send(req("GET", t, headers=(("X-Seq", str(i)),))), Read())),
       (200, 299, 200, 200, 200, 200, 200, 200, 200, 200, 200) * 2 + (200,) * 12),
    H1("misbehaving-upstream", "plain", _twice(
        Send(req("GET", "/extra")), Read(),
        Send(req("GET", "/a")), Read(),
        Send(req("HEAD", "/head-body")), Read(("HEAD",)),
        Send(req("GET", "/a")), Read(),
        Send(req("GET", "/cl-te")), Read(),
        Send(req("GET", "/a")), Read(),
    ), (200, 200, 200, 200, 502, 200) * 2),
    H1("methods-and-hosts", "rules", _twice(
        Send(req("DELETE", "/x", host="express.test")), Read(),
        Send(req("OPTIONS", "/x", host="express.test")), Read(),
        Send(req("PATCH", "/x", host="express.test", body=b"p")), Read(),
        Send(req("GET", "/x", host="express.test:80")), Read(),
        Send(req("GET", "/x", host="EXPRESS.Test")), Read(),
        Send(req("GET", "/x", host="express.test", headers=(("Connection", "keep-alive"),))), Read(),
        Send(req("GET", "/stamp", host="steps.test:8080")), Read(),
    ), (200,) * 14),
    H1("refused-upgrade", "plain", (
        Send(req("GET", "/ws", headers=(("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                        ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")))),
        ReadClose(),
    ), (426,)),
    # heads `odd-heads` sent to `plain`, now to a listener with other settings
    H1("tight-paths", "tight", (
        Send(req("GET", "//a///b/./c")), Read(),
        Send(req("GET", "//a///b/./c")), Read(),
        Send(req("GET", "/x/../a")), Read(),
    ), (200, 200, 200)),
    H1("tight-count", "tight", (
        Send(req("GET", "/a", headers=tuple((f"X-Many-{i}", str(i)) for i in range(20)))), ReadClose(),
    ), (431,)),
    H1("tight-size", "tight", (
        Send(req("GET", "/a", headers=(("X-Long", "v" * 3000),))), ReadClose(),
    ), (431,)),
    H1("tls-heads", "tls", (
        Send(req("GET", "/a")), Read(),
        Send(req("GET", "/a")), Read(),
        Send(req("GET", "/a", headers=(("User-Agent", "corpus/1"), ("Accept", "*/*")))), Read(),
        Send(req("HEAD", "/head")), Read(("HEAD",)),
        Send(req("GET", "/a", headers=(CID,))), Read(),
        Send(req("GET", "/x/../a")), Read(),
        Send(req("POST", "/post", body=b"over tls")), Read(),
    ), (200, 200, 200, 200, 200, 200, 201)),
    # more distinct heads than a memo holds (128), then the first ones again
    H1("memo-churn", "plain",
       tuple(x for i in range(140) for x in (Send(req("GET", f"/n/{i}")), Read()))
       + tuple(x for i in range(4) for x in (Send(req("GET", f"/n/{i}")), Read())),
       (200,) * 144),
    # --- the client's own request id, where it stands in the head
    H1("client-ids", "plain", (
        Send(req("GET", "/a", headers=(CID,))), Read(),
        Send(req("GET", "/a", headers=(CID,))), Read(),
        Send(req("GET", "/a", headers=(("x-request-id", "client-id-2"), ("Accept", "*/*"), ("X-Mark", "m")))), Read(),
        Send(req("GET", "/a", headers=(("Accept", "*/*"), ("x-request-id", "client-id-3"), ("X-Mark", "m")))), Read(),
        Send(req("GET", "/a", headers=(("x-request-id", "dup-1"), ("Accept", "*/*"), ("x-request-id", "dup-2")))),
        Read(),
        Send(req("GET", "/a", headers=(("X-Request-Id", "client-id-4"),))), Read(),
        Send(req("GET", "/a", headers=(("Connection", "x-request-id"), ("x-request-id", "hop-id")))), Read(),
    ), (200,) * 7),
    # --- rules: a vhost without steps (express) and one with steps in every phase
    H1("rules-express", "rules", (
        Send(req("GET", "/x", host="express.test")), Read(),
        Send(req("GET", "/x", host="express.test")), Read(),
        Send(req("HEAD", "/head", host="express.test")), Read(("HEAD",)),
        Send(req("GET", "/split/1", host="express.test")), Read(),
        Send(req("GET", "/split/1", host="express.test")), Read(),
        Send(req("GET", "/local", host="express.test")), Read(),
        Send(req("GET", "/x", host="express.test", headers=(CID,))), Read(),
        Send(req("POST", "/post", host="express.test", body=b"b=1")), Read(),
        Send(req("GET", "/exact", host="only.test")), Read(),
    ), (200, 200, 200, 200, 200, 200, 200, 201, 200)),
    H1("rules-steps", "rules", (
        Send(req("GET", "/stamp", host="steps.test")), Read(),
        Send(req("GET", "/stamp", host="steps.test")), Read(),
        Send(req("GET", "/stamp", host="steps.test", headers=(CID, ("X-Mark", "client")))), Read(),
        Send(req("GET", "/stamp", host="steps.test", headers=(("X-Mark", "client"), CID))), Read(),
        Send(req("GET", "/setid", host="steps.test")), Read(),
        Send(req("GET", "/setid", host="steps.test", headers=(CID,))), Read(),
        Send(req("GET", "/dropid", host="steps.test")), Read(),
        Send(req("GET", "/dropid", host="steps.test")), Read(),
        Send(req("GET", "/api/items?x=1", host="steps.test")), Read(),
        Send(req("GET", "/old/page?q=1", host="steps.test")), Read(),
        Send(req("GET", "/retry/s", host="steps.test")), Read(),
        Send(req("HEAD", "/head", host="steps.test")), Read(("HEAD",)),
        Send(req("GET", "/204", host="steps.test")), Read(),
        Send(req("POST", "/post", host="steps.test", chunks=(b"abc",))), Read(),
        Send(req("GET", "/chunked", host="steps.test")), Read(),
        Send(req("GET", "/fault", host="steps.test")), Read(),
        Send(req("GET", "/limited", host="steps.test")), Read(),
        Send(req("GET", "/limited", host="steps.test")), Read(),
        Send(req("GET", "/limited", host="steps.test")), Read(),
    ), (200, 200, 200, 200, 200, 200, 200, 200, 200, 301, 200, 200, 204, 201, 200, 418, 200, 200, 429)),
    H1("rules-pipelined", "rules", (
        Send(req("GET", "/x", host="express.test") + req("GET", "/stamp", host="steps.test")
             + req("GET", "/x", host="express.test") + req("GET", "/nope", host="only.test")),
        Read(("GET",) * 4),
    ), (200, 200, 200, 404)),
    H1("global-steps", "global", (
        Send(req("GET", "/g")), Read(),
        Send(req("GET", "/g")), Read(),
        Send(req("GET", "/g", headers=(CID,))), Read(),
        Send(req("HEAD", "/head")), Read(("HEAD",)),
        Send(req("POST", "/post", body=b"g=1")), Read(),
    ), (200, 200, 200, 200, 201)),
    # --- an HTTP/2 upstream (the same answer three times: its block is remembered)
    H1("h2-upstream", "rules", (
        Send(req("GET", "/h2up/a", host="express.test")), Read(),
        Send(req("GET", "/h2up/a", host="express.test")), Read(),
        Send(req("GET", "/h2up/a", host="express.test")), Read(),
        Send(req("GET", "/h2up/nolength", host="express.test")), Read(),
        Send(req("GET", "/h2up/trailers", host="express.test", headers=(("TE", "trailers"),))), Read(),
        Send(req("GET", "/h2up/204", host="express.test")), Read(),
        Send(req("HEAD", "/h2up/head", host="express.test")), Read(("HEAD",)),
        Send(req("POST", "/h2up/a", host="express.test", body=b"to h2")), Read(),
        Send(req("POST", "/h2up/a", host="express.test", chunks=(b"to", b" h2"))), Read(),
        Send(req("GET", "/h2up/reset", host="express.test")), Read(),
        Send(req("GET", "/h2up/a", host="express.test", headers=(CID,))), Read(),
        Send(req("GET", "/h2steps/a", host="steps.test")), Read(),
        Send(req("GET", "/h2steps/a", host="steps.test")), Read(),
        Send(req("GET", "/h2steps/retry", host="steps.test")), Read(),
    ), (200, 200, 200, 200, 200, 204, 200, 200, 200, 503, 200, 200, 200, 200)),
    # --- errors the proxy answers itself
    H1("not-found", "rules", (
        Send(req("GET", "/x", host="nowhere.test")), Read(),
        Send(req("GET", "/x", host="nowhere.test")), Read(),
        Send(req("GET", "/nope", host="only.test")), Read(),
        Send(req("GET", "/nope", host="only.test")), Read(),
    ), (404, 404, 404, 404)),
    H1("no-upstream", "rules", (
        Send(req("GET", "/empty", host="express.test")), Read(),
        Send(req("GET", "/empty", host="express.test")), Read(),
        Send(req("GET", "/dead", host="express.test")), Read(),
        Send(req("GET", "/dead", host="express.test")), Read(),
    ), (503, 503, 503, 503)),
    H1("empty-cluster", "empty", (
        Send(req("GET", "/a")), Read(),
        Send(req("POST", "/post", body=b"x")), Read(),
    ), (503, 503)),
    H1("upstream-reset", "plain", (
        Send(req("GET", "/drop")), Read(),           # reset before the response: 503, as Envoy's
        Send(req("GET", "/a")), Read(),
        Send(req("GET", "/garbage")), Read(),        # not HTTP: 502
        Send(req("GET", "/a")), Read(),
    ), (503, 200, 502, 200)),
    # --- retries: 503, then the retry's answer
    H1("retries", "retry", (
        Send(req("GET", "/retry/a")), Read(),
        Send(req("GET", "/retry/b")), Read(),
        Send(req("POST", "/retry/c", body=b"replay me")), Read(),
        Send(req("GET", "/a")), Read(),
        Send(req("GET", "/a")), Read(),
    ), (200, 503, 201, 200, 200)),
    H1("listener-filter", "filtered", (
        Send(req("GET", "/a")), Read(),
        Send(req("GET", "/a")), Read(),
        Send(req("POST", "/post", body=b"f=1")), Read(),
        Send(req("GET", "/a")), Read(),
        Send(req("GET", "/a")), Read(),
    ), (200, 200, 201, 429, 429)),
    # --- a weighted split that always picks the same cluster
    H1("weighted", "weighted", (
        Send(req("GET", "/w")), Read(),
        Send(req("GET", "/w")), Read(),
        Send(req("HEAD", "/head")), Read(("HEAD",)),
    ), (200, 200, 200)),
    # --- malformed: refused before they are streams
    H1("bad-header-line", "raw", (Send(b"GET /a HTTP/1.1\r\nHost test\r\n\r\n"), ReadClose()), (400,)),
    H1("bad-path", "raw", (Send(req("GET", "/x/..;/admin")), ReadClose()), (400,)),
    H1("bad-chunk", "raw", (
        Send(b"POST /post HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), ReadClose(),
    ), (400,)),
    H1("smuggle", "raw", (
        Send(b"POST /post HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"0\r\n\r\n"), ReadClose(),
    ), (400,)),
    H1("good-then-bad", "raw", (
        Send(req("GET", "/a")), Read(),
        Send(req("GET", "/a") + b"BROKEN\r\n\r\n"), ReadClose(("GET", "GET")),
    ), (200, 200, 400)),
    # --- HTTP/2, h2c prior knowledge
    H2("h2-plain", "plain", (
        H2Req("/a"), H2Req("/a"), H2Req("/a"), H2Req("/a"),     # the same block again: decoder memo
        H2Req("/head", method="HEAD"), H2Req("/chunked"),
        H2Req("/post", method="POST", body=b"h2 body"), H2Req("/204"), H2Req("/a", extra=(CID,)),
        H2Req("/a"), H2Req("/trailers", extra=(("te", "trailers"),)), H2Req("/big"), H2Req("/odd"),
        H2Req("/early"), H2Req("/a", extra=(("x-request-id", "dup-1"), ("x-request-id", "dup-2"))),
        H2Req("/x/../a?q=1"),
        H2Req("/x/../a?q=1"),
    ), (200, 200, 200, 200, 200, 200, 201, 204, 200, 200, 200, 200, 299, 200, 200, 200, 200)),
    H2("h2-to-h2-upstream", "rules", (
        H2Req("/h2up/a", authority="express.test"), H2Req("/h2up/a", authority="express.test"),
        H2Req("/h2up/a", authority="express.test"), H2Req("/h2up/trailers", authority="express.test"),
        H2Req("/h2up/a", authority="express.test", method="POST", body=b"h2 to h2"),
        H2Req("/h2steps/a", authority="steps.test"),
    ), (200, 200, 200, 200, 200, 200)),
    H2("h2-global", "global", (
        H2Req("/g"), H2Req("/g"), H2Req("/post", method="POST", body=b"g"),
    ), (200, 200, 201)),
    H2("h2-rules", "rules", (
        H2Req("/x", authority="express.test"), H2Req("/x", authority="express.test"),
        H2Req("/stamp", authority="steps.test"), H2Req("/stamp", authority="steps.test"),
        H2Req("/retry/h2", authority="steps.test"), H2Req("/x", authority="nowhere.test"),
        H2Req("/empty", authority="express.test"), H2Req("/drop", authority="express.test"),
    ), (200, 200, 200, 200, 200, 404, 503, 503)),
    # --- a peer's metadata header, again and again (remembered), then one that is not
    # metadata at all (counted, never remembered), then a plain client
    H1("peer-metadata", "peer", (
        Send(req("GET", "/p/1", headers=PEER)), Read(),
        Send(req("GET", "/p/2", headers=PEER)), Read(),
        Send(req("GET", "/p/3", headers=PEER)), Read(),
        Send(req("GET", "/p/4", headers=(("x-envoy-peer-metadata", "!!not base64!!"),))), Read(),
        Send(req("GET", "/p/5")), Read(),
    ), (200,) * 5),
    # --- a traced listener: requests with no context (a trace of their own, its context
    # written last), one continuing a sampled W3C context (replaced in place), one whose
    # Connection names traceparent (hop-by-hop: it must not go upstream), a client's
    # own request id, and a body (the general path)
    H1("traced", "traced", (
        Send(req("GET", "/t/1")), Read(),
        Send(req("GET", "/t/1")), Read(),
        Send(req("GET", "/t/2", headers=(("traceparent", "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"),
                                          ("tracestate", "k=v")))), Read(),
        Send(req("GET", "/t/2", headers=(("traceparent", "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"),
                                          ("tracestate", "k=v")))), Read(),
        Send(req("GET", "/t/3", headers=(("connection", "traceparent"),))), Read(),
        Send(req("GET", "/t/4", headers=(("x-request-id", "client-traced-1"), ("x-b3-sampled", "0")))), Read(),
        Send(req("POST", "/t/5", body=b"traced body")), Read(),
    ), (200,) * 7),
    H1("traced-h2", "traced_h2", (
        Send(req("GET", "/h2up/a")), Read(),
        Send(req("GET", "/h2up/a")), Read(),
        Send(req("GET", "/h2up/a", headers=(("connection", "traceparent"),))), Read(),
        Send(req("GET", "/h2up/a", headers=(("x-request-id", "client-traced-2"),))), Read(),
    ), (200,) * 4),
    H1("traced-sampled", "traced_sampled", (
        Send(req("GET", "/s/1")), Read(),
        Send(req("GET", "/s/1")), Read(),
        Send(req("GET", "/s/2", headers=(("connection", "traceparent"),))), Read(),
        Send(req("GET", "/s/3", headers=(("x-request-id", "client-sampled-1"),))), Read(),
    ), (200,) * 4),
    H1("traced-sampled-h2", "traced_sampled_h2", (
        Send(req("GET", "/h2up/s")), Read(),
        Send(req("GET", "/h2up/s")), Read(),
    ), (200,) * 2),
    # --- last, since it changes the rules: a reload on a connection kept open across
    # it. The express vhost gets a response step and the split turns around: nothing
    # remembered may answer as before
    H1("reload", "rules", (
        Send(req("GET", "/x", host="express.test")), Read(),
        Send(req("GET", "/x", host="express.test")), Read(),
        Send(req("GET", "/split/1", host="express.test")), Read(),
        Send(req("GET", "/h2up/a", host="express.test")), Read(),
        Reload("routes.mdsl", ((RELOAD_SLOT, RELOAD_STEP), ("web: 100, other: 0", "web: 0, other: 100"))),
        Send(req("GET", "/x", host="express.test")), Read(),
        Send(req("GET", "/x", host="express.test")), Read(),
        Send(req("GET", "/split/1", host="express.test")), Read(),
        Send(req("GET", "/h2up/a", host="express.test")), Read(),
        Send(req("HEAD", "/head", host="express.test")), Read(("HEAD",)),
    ), (200,) * 9),
    H2("h2-after-reload", "rules", (
        H2Req("/x", authority="express.test"), H2Req("/x", authority="express.test"),
        H2Req("/split/1", authority="express.test"),
    ), (200, 200, 200)),
)


def summary() -> str:
    """The corpus's size in one line (the test module's docstring quotes it): its
    conversations, its exchanges (final responses clients read), and the bytes
    HTTP/1.1 clients send (HTTP/2 requests are counted as exchanges only)."""
    h1 = [c for c in CONVERSATIONS if isinstance(c, H1)]
    h2 = [c for c in CONVERSATIONS if isinstance(c, H2)]
    n1 = sum(len(c.statuses) for c in h1)
    n2 = sum(len(c.statuses) for c in h2)
    sent = sum(len(st.data) for c in h1 for st in c.steps if isinstance(st, Send))
    return (f"{len(CONVERSATIONS)} conversations, {n1 + n2} exchanges ({n1} over HTTP/1.1 in "
            f"{sent:,} request bytes, {n2} over HTTP/2), on {len(LISTENERS)} listeners")
