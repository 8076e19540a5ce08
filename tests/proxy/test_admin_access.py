"""admin_access.Access: the rules each admin request passes, checked on header values
a hostile client might send."""
from __future__ import annotations

import random

import pytest

from mosnx.proxy.admin_access import Access, Refusal

HOSTS = [b"127.0.0.1", b"127.0.0.1:15000", b"localhost", b"LOCALHOST:1", b"a.localhost", b"[::1]:15000",
         b"[::1", b"::1", b"evil.example", b"127.0.0.1.evil.example", b"", b" ", b"\xff\xfe", b"0.0.0.0",
         b"[::ffff:127.0.0.1]:80", b"127.000.000.001", b"2130706433"]
ORIGINS = [b"http://127.0.0.1:15000", b"null", b"http://evil.example", b"HTTP://127.0.0.1:15000", b"", b"\xff"]
SITES = [b"same-origin", b"none", b"cross-site", b"same-site", b"CROSS-SITE", b"", b"\xff"]
AUTHS = [b"Bearer t0ken", b"bearer t0ken", b"Bearer  t0ken ", b"Bearer", b"Bearer t0ken t0ken", b"Basic t0ken",
         b"t0ken", b"", b"Bearer \xff", b"Bearer t0ke"]


def test_loopback_host_names():
    a = Access("127.0.0.1")
    for host in (b"127.0.0.1", b"127.0.0.1:15000", b"localhost", b"LOCALHOST:1", b"a.localhost", b"[::1]:15000",
                 b"localhost.", b"127.9.9.9:80"):
        a.check("/stats", False, {b"host": host})
    for host in (b"evil.example", b"127.0.0.1.evil.example", b"0.0.0.0", b"[::1", b"", b"\xff\xfe",
                 b"2130706433"):
        with pytest.raises(Refusal) as e:
            a.check("/stats", False, {b"host": host})
        assert e.value.status == 403, host


def test_bearer_token_forms():
    a = Access("127.0.0.1", b"t0ken")
    for auth in (b"Bearer t0ken", b"bearer t0ken", b"BEARER  t0ken", b" Bearer t0ken "):
        a.check("/stats", False, {b"authorization": auth})
    for auth in (b"Bearer", b"Bearer t0ke", b"Bearer t0ken t0ken", b"Basic t0ken", b"t0ken", b"", b"Bearer \xff"):
        with pytest.raises(Refusal) as e:
            a.check("/stats", False, {b"authorization": auth})
        assert e.value.status == 401 and dict(e.value.headers)["www-authenticate"].startswith("Bearer")
    a.check("/ready", False, {})


def test_random_header_sets_pass_or_are_refused_with_a_status():
    """Any mix of the headers the checks read: passes, or a Refusal with 401/403; a pass
    on a mutating path never has a foreign Origin or a cross-site mark."""
    rnd = random.Random(5)
    for token in (None, b"t0ken"):
        for bind in ("127.0.0.1", "0.0.0.0"):
            access = Access(bind, token)
            for _ in range(3000):
                headers = {}
                for name, values in ((b"host", HOSTS), (b"origin", ORIGINS), (b"sec-fetch-site", SITES),
                                     (b"authorization", AUTHS)):
                    if rnd.random() < 0.6:
                        headers[name] = rnd.choice(values)
                path = rnd.choice(["/reload", "/stats", "/ready", "/nope"])
                mutating = path == "/reload"
                try:
                    access.check(path, mutating, headers)
                except Refusal as e:
                    assert e.status in (401, 403) and str(e)
                    continue
                if mutating:
                    assert headers.get(b"sec-fetch-site", b"").lower() not in (b"cross-site", b"same-site")
                    if b"origin" in headers:
                        assert headers[b"origin"].lower() == b"http://" + headers[b"host"].lower()
                if token and path != "/ready":
                    assert headers[b"authorization"].split()[-1] == b"t0ken"
