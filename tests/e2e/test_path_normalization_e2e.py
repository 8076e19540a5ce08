"""One normalised request path before any rule or route, over real sockets: every
spelling of /private a traversal-resolving upstream would accept meets the rule that
denies /private (or a 400), over HTTP/1.1 and HTTP/2 alike, and the upstream never
sees it; allowed paths reach the upstream in their canonical form; absolute-form
targets arrive in origin form with their authority as Host; a head of 10,000 header
fields is refused without disturbing other clients."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import pytest

from .conftest import Client, encode_request

sys.path.insert(0, os.path.dirname(__file__))
from h2kit import H2Client  # noqa: E402

RULES = """
vhost any domains "*" {
  on request {
    when request.path prefix "/private" { respond 403 "denied\\n" }
    when request.url_path == "/secret" { respond 403 "denied\\n" }
  }
  route blocked when request.path segment_prefix "/admin" { respond 403 "admin\\n" }
  route all { to web }
}
"""

# each of these is /private/x to an upstream that resolves dot segments, decodes
# unreserved escapes and merges slashes (as nginx, Tomcat and most frameworks do)
DENIED = ["/private/x", "//private/x", "/./private/x", "/x/../private/x", "/x/%2e%2e/private/x",
          "/x/%2E%2E/private/x", "/%70rivate/x", "/%2e/private/x", "/x/y/../../private/x", "/../private/x",
          "/x\\..\\private\\x", "/./secret", "/x/../secret?q=1", "/%61dmin/panel", "//admin"]
# and these cannot be made canonical at all
REFUSED = [("/x/..;/private/x", "dot_segment_with_parameters"), ("/x/%2e%2e;/private/x", "dot_segment_with_parameters"),
           ("/x/..%2Fprivate/x", "escaped_slash_dot_segment"), ("/a%zz", "invalid_percent_encoding"),
           ("/a%00/b", "encoded_nul_in_path"), ("/a#frag", "path_with_fragment")]
ALLOWED = [("/a/./b", "/a/b"), ("/a//b/../c?x=/../y", "/a/c?x=/../y"), ("/a/%7e%41", "/a/~A"),
           ("/a/%3a", "/a/%3A"), ("/privat", "/privat"), ("/public;v=1/x", "/public;v=1/x")]


@pytest.fixture
def proxy(tmp_path, upstream, mosnx):
    up = upstream()
    rules = tmp_path / "deny.mdsl"
    rules.write_text(RULES)
    m = mosnx(config={"listeners": [{"name": "ingress", "rules": str(rules)}],
                      "clusters": [{"name": "web", "endpoints": [up.address]}]})
    return m, up


def raw(m, data: bytes) -> Client:
    c = m.connect()
    c.send(data)
    return c


def test_http1_traversals_meet_the_rule_and_never_reach_the_upstream(proxy):
    m, up = proxy
    with m.connect() as c:          # one keep-alive connection: a 403 leaves it open
        for target in DENIED:
            r = c.request("GET", target)
            assert r.status == 403, (target, r)
    for target, detail in REFUSED:
        with m.connect() as c:
            r = c.request("GET", target)
            assert (r.status, r.header("x-mosnx-error")) == (400, detail), target
            assert c.closed()
    assert up.requests == []
    assert m.stat("http.ingress.downstream_rq_failed_path_normalization") == len(REFUSED)
    assert m.stat("http.ingress.downstream_rq_malformed.dot_segment_with_parameters") == 2
    for target, expected in ALLOWED:
        assert m.request("GET", target).status == 200
    assert [r.target for r in up.requests] == [e for _, e in ALLOWED]


def test_absolute_form_reaches_the_upstream_in_origin_form_with_its_host(proxy):
    m, up = proxy
    with m.connect() as c:
        c.send(b"GET http://real.example:8080/a/./b?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
        assert c.read_response().status == 200
        c.send(b"GET http://real.example/x/../private/x HTTP/1.1\r\nHost: other.example\r\n\r\n")
        assert c.read_response().status == 403
    [got] = up.requests
    assert got.target == "/a/b?q=1"
    assert got.all("host") == ["real.example:8080"]
    with m.connect() as c:
        c.send(b"GET http://user@real.example/ HTTP/1.1\r\nHost: real.example\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.header("x-mosnx-error")) == (400, "userinfo_in_authority")
    assert len(up.requests) == 1


def test_http2_traversals_meet_the_rule_and_bad_paths_fail_only_their_stream(proxy):
    m, up = proxy
    with H2Client(m.port) as c:
        for target in DENIED:
            r = c.request("GET", target)
            assert r.status == 403, (target, r)
        for target, detail in REFUSED:
            if "#" in target:
                continue        # (the client library refuses to send a fragment)
            r = c.request("GET", target)
            assert (r.status, r.header("x-mosnx-error")) == (400, detail), target
        assert up.requests == []
        # the connection is still good for the next stream
        for target, expected in ALLOWED:
            assert c.request("GET", target).status == 200
    assert [r.target for r in up.requests] == [e for _, e in ALLOWED]
    assert m.stat("http.ingress.downstream_rq_malformed.escaped_slash_dot_segment") == 1
    assert m.stat("http.ingress.downstream_cx_protocol_error") == 0


def test_escaped_slash_actions_over_both_protocols(tmp_path, upstream, mosnx):
    up = upstream()
    rules = tmp_path / "deny.mdsl"
    rules.write_text(RULES)
    listeners = [{"name": name, "rules": str(rules), "path_normalization": {"escaped_slashes": action}}
                 for name, action in (("fwd", "unescape_and_forward"), ("redirect", "unescape_and_redirect"),
                                      ("reject", "reject"))]
    m = mosnx(config={"listeners": listeners, "clusters": [{"name": "web", "endpoints": [up.address]}]})
    port = {lst["name"]: int(lst["address"].rsplit(":", 1)[1]) for lst in m.config["listeners"]}
    # the same head on three listeners: each its own answer, none from another's memory
    head = encode_request("GET", "/x%2F..%2Fprivate%2Fx")
    ok = encode_request("GET", "/a%2Fb")
    for _ in range(2):
        with Client(port["fwd"]) as c:
            c.send(head)
            assert c.read_response().status == 403
            c.send(ok)
            assert c.read_response().status == 200
        with Client(port["redirect"]) as c:
            c.send(ok)
            r = c.read_response()
            assert (r.status, r.header("location")) == (307, "/a/b")
        with Client(port["reject"]) as c:
            c.send(ok)
            r = c.read_response()
            assert (r.status, r.header("x-mosnx-error")) == (400, "escaped_slash_in_path")
    with H2Client(port["redirect"]) as c:
        r = c.request("GET", "/a%2fb?q")
        assert (r.status, r.header("location")) == (307, "/a/b?q")
        # a gRPC client follows no redirect: its call fails with INTERNAL, as Envoy's does
        r = c.request("POST", "/pkg.Svc%2FCall", headers=[("content-type", "application/grpc"), ("te", "trailers")],
                      body=b"")
        assert (r.status, r.header("grpc-status"), r.header("location")) == (200, "13", None)
    with H2Client(port["reject"]) as c:
        assert c.request("GET", "/a%5Cb").status == 400
        assert c.request("GET", "/a/b").status == 200
    assert [r.target for r in up.requests] == ["/a/b", "/a/b", "/a/b"]
    assert m.stat("http.redirect.downstream_rq_redirected_with_normalized_path") == 4


def test_ten_thousand_headers_get_431_while_another_client_is_served(upstream, mosnx):
    up = upstream()
    m = mosnx(up)
    steady = m.connect()
    assert steady.request("GET", "/before").status == 200
    flood = b"GET /flood HTTP/1.1\r\nHost: test\r\n" + b"a:1\r\n" * 10_000 + b"\r\n"
    result = {}

    def send_flood():
        with m.connect() as c:
            try:
                c.send(flood)
            except OSError:
                pass        # the proxy may answer and close before the client is done
            result["r"] = c.read_response()
    t = threading.Thread(target=send_flood)
    t.start()
    for i in range(5):
        assert steady.request("GET", f"/during/{i}").status == 200
    t.join(30)
    assert not t.is_alive()
    r = result["r"]
    assert (r.status, r.header("x-mosnx-error")) == (431, "too_many_request_headers")
    assert up.requests_for("/flood") == []
    assert steady.request("GET", "/after").status == 200
    steady.close()
    assert m.stat("http.ingress.downstream_rq_malformed.too_many_request_headers") == 1


def test_header_count_limit_is_a_listener_setting(upstream, mosnx):
    up = upstream()
    m = mosnx(up, listener={"limits": {"request_headers_count": 5}})
    five = [("x-%d" % i, "v") for i in range(4)]          # with Host: five fields
    assert m.request("GET", "/ok", headers=five).status == 200
    r = m.request("GET", "/no", headers=five + [("x-more", "v")])
    assert (r.status, r.header("x-mosnx-error")) == (431, "too_many_request_headers")
    assert [q.target for q in up.requests] == ["/ok"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_an_h2c_upgrade_request_is_normalised_too(proxy):
    m, up = proxy
    for target, status in (("/x/../private/x", 403), ("/x/..;/private/x", 400), ("/a/./b", 200)):
        out = subprocess.run(["curl", "-sS", "--http2", "--path-as-is", "-o", "/dev/null", "-w",
                              "%{http_version} %{http_code}", f"{m.url}{target}"],
                             capture_output=True, timeout=30, text=True)
        assert out.stdout == f"2 {status}", (target, out.stdout, out.stderr)
    assert [r.target for r in up.requests] == ["/a/b"]


def test_a_bad_path_behind_a_pipelined_request_is_answered_after_it(proxy):
    m, up = proxy
    with m.connect() as c:
        c.send(encode_request("GET", "/a/./first") + encode_request("GET", "/x/..;/private/x")
               + encode_request("GET", "/never"))
        first = c.read_response()
        second = c.read_response()
        assert first.status == 200
        assert (second.status, second.header("x-mosnx-error")) == (400, "dot_segment_with_parameters")
        assert c.closed()
    assert [r.target for r in up.requests] == ["/a/first"]
