"""proxy/upstream/mirror.py: the shadow Host, and which bodies are copied: a body that
outgrows the listener's retry buffer skips the copy (counted) instead of being held."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mosnx.proxy.upstream import mirror
from mosnx.runtime.stats import Store


@pytest.mark.parametrize("host,shadow", [
    ("api.example.com", "api.example.com-shadow"),
    ("api.example.com:8080", "api.example.com-shadow:8080"),
    ("[::1]", "[::1]-shadow"),
    ("10.0.0.1:80", "10.0.0.1-shadow:80"),
])
def test_the_copy_goes_to_the_shadow_host_as_envoys(host, shadow):
    assert mirror.shadow_host(host) == shadow


def worker():
    return SimpleNamespace(stats=Store())


def test_a_body_within_the_limit_is_kept_in_order():
    w = worker()
    body = mirror.MirrorBody(w, None, ["shadow"], [b"ab"], limit=5)
    body.add(b"cd")
    assert body.chunks == [b"ab", b"cd"] and body.size == 4


def test_a_body_past_the_limit_is_dropped_and_counted_once():
    w = worker()
    body = mirror.MirrorBody(w, None, ["shadow"], [b"abc"], limit=5)
    body.add(b"def")
    assert body.chunks is None
    body.add(b"more")                    # nothing is gathered once it is too big
    assert body.chunks is None
    assert w.stats.counter("server.mirror_skipped_body").value == 1


def stream(request_done: bool, body_buf=None, request_body=None, limit=4):
    listener = SimpleNamespace(config=SimpleNamespace(limits=SimpleNamespace(retry_buffer=limit)))
    return SimpleNamespace(request_done=request_done, body_buf=body_buf, request_body=request_body,
                           listener=listener, mirror_body=None)


def test_start_gathers_the_body_still_to_come_or_skips_a_declared_large_one():
    m = [SimpleNamespace(cluster="shadow", percent=100)]
    w, s = worker(), stream(False, body_buf=[b"ab"])
    mirror.start(w, s, m)
    assert s.mirror_body.clusters == ["shadow"] and s.mirror_body.chunks == [b"ab"]
    w, s = worker(), stream(False, request_body=10)         # content-length beyond the buffer
    mirror.start(w, s, m)
    assert s.mirror_body is None and w.stats.counter("server.mirror_skipped_body").value == 1
    w, s = worker(), stream(True, body_buf=[b"abcdef"])      # read whole, too big: no copy
    mirror.start(w, s, m)
    assert w.stats.counter("server.mirror_skipped_body").value == 1


def test_a_zero_percent_mirror_copies_nothing():
    w, s = worker(), stream(False, body_buf=[b"ab"])
    mirror.start(w, s, [SimpleNamespace(cluster="shadow", percent=0)])
    assert s.mirror_body is None and w.stats.counter("server.mirror_skipped_body").value == 0
