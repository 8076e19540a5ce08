"""What the proxy adds and removes on the way through: hop-by-hop headers,
X-Forwarded-For/-Proto and x-request-id. The tests share one proxy and upstream."""
from __future__ import annotations

import itertools
import re

import pytest

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_paths = itertools.count()


@pytest.fixture(scope="module")
def shared(module_upstream, module_mosnx):
    up = module_upstream()
    return module_mosnx(up), up


def _through(shared, headers, target: str | None = None):
    """The request as the upstream saw it."""
    proxy, up = shared
    path = target or f"/h{next(_paths)}"
    r = proxy.request("GET", path, headers=headers)
    assert r.status == 200, r
    [got] = up.requests_for(path.split("?")[0])
    return got


def test_hop_by_hop_request_headers_not_forwarded(shared):
    got = _through(shared, [
        ("Host", "t"),
        ("Connection", "keep-alive, X-Private, X-Also-Private"),
        ("X-Private", "secret"),
        ("X-Also-Private", "secret2"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("X-End-To-End", "kept"),
    ])
    for name in ("x-private", "x-also-private", "keep-alive", "proxy-connection", "te", "upgrade"):
        assert not got.has(name), f"{name} is hop-by-hop and must not reach the upstream"
    assert got.all("connection") in ([], ["keep-alive"]), got.all("connection")
    assert got.header("x-end-to-end") == "kept"
    assert got.header("host") == "t"


def test_hop_by_hop_response_headers_not_forwarded(shared):
    proxy, up = shared

    def answer(conn, req):
        conn.respond(200, b"body", headers=[
            ("Connection", "X-Upstream-Private"),
            ("X-Upstream-Private", "secret"),
            ("Keep-Alive", "timeout=30"),
            ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "h2c"),
            ("X-Kept", "yes"),
        ])

    up.on("/hop-response", answer)
    with proxy.connect() as c:
        r = c.request("GET", "/hop-response")
        assert r.status == 200 and r.body == b"body"
        assert r.header("x-kept") == "yes"
        for name in ("x-upstream-private", "keep-alive", "proxy-connection", "upgrade"):
            assert not r.has(name), f"{name} is hop-by-hop and must not reach the client"
        assert c.request("GET", "/").status == 200


def test_x_forwarded_for_added(shared):
    assert _through(shared, None).all("x-forwarded-for") == ["127.0.0.1"]


def test_x_forwarded_for_appended_to_existing(shared):
    got = _through(shared, [("Host", "t"), ("X-Forwarded-For", "203.0.113.7")])
    assert got.all("x-forwarded-for") == ["203.0.113.7, 127.0.0.1"]


def test_x_forwarded_for_keeps_every_earlier_hop(shared):
    # two X-Forwarded-For lines are one list (RFC 9110 §5.3): no hop may be lost
    got = _through(shared, [("Host", "t"), ("X-Forwarded-For", "198.51.100.1"),
                            ("X-Forwarded-For", "203.0.113.7")])
    xff = ", ".join(got.all("x-forwarded-for"))
    assert [h.strip() for h in xff.split(",")] == ["198.51.100.1", "203.0.113.7", "127.0.0.1"]


def test_x_forwarded_proto_set_and_not_spoofable(shared):
    assert _through(shared, None).all("x-forwarded-proto") == ["http"]
    spoofed = _through(shared, [("Host", "t"), ("X-Forwarded-Proto", "https")])
    assert spoofed.all("x-forwarded-proto") == ["http"], \
        "a plain-HTTP listener must not pass on a client's claim of https"


def test_x_request_id_generated_when_absent(shared):
    seen = [_through(shared, None) for _ in range(3)]
    ids = [m.header("x-request-id") for m in seen]
    assert all(i is not None and UUID4.match(i) for i in ids), ids
    assert len(set(ids)) == 3
    assert all(len(m.all("x-request-id")) == 1 for m in seen)


def test_x_request_id_kept_when_present(shared):
    got = _through(shared, [("Host", "t"), ("X-Request-Id", "client-chosen-42")])
    assert got.all("x-request-id") == ["client-chosen-42"]


def test_local_reply_carries_request_id(free_port, mosnx):
    proxy = mosnx(free_port())
    r = proxy.request("GET", "/", headers=[("Host", "t"), ("X-Request-Id", "trace-me")])
    assert r.status == 503
    assert r.header("x-request-id") == "trace-me"


def test_end_to_end_request_headers_and_target_preserved(shared):
    got = _through(shared, [("Host", "example.test:8080"), ("Accept", "*/*"), ("X-Dup", "1"), ("X-Dup", "2"),
                            ("Cookie", "a=1"), ("Cookie", "b=2")], target="/a/b%20c?x=1&y=%2F")
    assert got.target == "/a/b%20c?x=1&y=%2F"
    assert got.header("host") == "example.test:8080"
    assert got.all("x-dup") == ["1", "2"]
    assert got.all("cookie") == ["a=1", "b=2"]
