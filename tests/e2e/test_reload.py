"""Snapshots and reload through the real process: POST /reload, SIGHUP and a file
edit each swap the config; a broken edit keeps the old snapshot serving; open
connections and in-flight requests survive a swap.

Two upstreams answer with their own name, so a response shows which cluster the
live snapshot routes to. The clusters are named "aaa" and "bbb" so that switching
between them keeps the file's size: a trigger other than the file watcher is then
tested with an edit the watcher cannot see (Mosnx.write_config(unnoticed=True)).
"""
from __future__ import annotations

import json
import re
import signal
import socket
import threading

import pytest

from_a = b"A"
from_b = b"B"


@pytest.fixture
def pair(upstream):
    a = upstream(on_request=lambda conn, req: conn.respond(200, from_a))
    b = upstream(on_request=lambda conn, req: conn.respond(200, from_b))
    return a, b


def _start(mosnx, a, b, **kw):
    return mosnx(a, route={"cluster": "aaa"}, clusters={"aaa": [a], "bbb": [b]}, **kw)


def _to_b(proxy, a, b, **kw) -> dict:
    return proxy.config_with(a, route={"cluster": "bbb"}, clusters={"aaa": [a], "bbb": [b]}, **kw)


def _serving(proxy, body: bytes, timeout: float = 10) -> None:
    proxy.wait_until(lambda: proxy.request("GET", "/which").body == body, timeout, f"the proxy to serve {body!r}")


def _wait_version(proxy, version: int, timeout: float = 10) -> None:
    proxy.wait_until(lambda: proxy.snapshot_version() >= version, timeout, f"snapshot version {version}")


def test_post_reload_swaps_config(mosnx, pair):
    a, b = pair
    proxy = _start(mosnx, a, b)
    assert proxy.request().body == from_a
    proxy.write_config(_to_b(proxy, a, b), unnoticed=True)
    assert proxy.request().body == from_a, "an unnoticed edit must not be live before the reload"
    status, reply = proxy.reload()
    assert status == 200 and reply["ok"] is True and reply["version"] == 2, reply
    assert proxy.request().body == from_b
    dump = proxy.admin_json("/config_dump")
    assert dump["version"] == 2 and dump["worker_versions"] == [2]
    assert dump["last_reload_error"] == []
    s = proxy.stats()
    assert s["server.supervisor_reload_success"] == 1
    assert s["server.reload_success"] == 1


def test_sighup_swaps_config(mosnx, pair):
    a, b = pair
    proxy = _start(mosnx, a, b)
    assert proxy.request().body == from_a
    proxy.write_config(_to_b(proxy, a, b), unnoticed=True)
    proxy.signal(signal.SIGHUP)
    _wait_version(proxy, 2)
    assert proxy.request().body == from_b


def test_file_edit_swaps_config(mosnx, pair):
    a, b = pair
    proxy = _start(mosnx, a, b)
    assert proxy.request().body == from_a
    proxy.write_config(_to_b(proxy, a, b))
    _wait_version(proxy, 2)
    assert proxy.request().body == from_b


def test_broken_yaml_edit_keeps_old_config_serving(mosnx, pair):
    a, b = pair
    proxy = _start(mosnx, a, b)
    good = proxy.config_path.read_text()
    broken = good.replace("listeners:", "listeners: [\n  unclosed: {", 1)
    proxy.write_text(broken)
    dump = proxy.wait_until(lambda: (d := proxy.admin_json("/config_dump"))["last_reload_error"] and d,
                      10, "the watcher to report the broken file")
    assert dump["version"] == 1
    assert dump["worker_versions"] == [1]
    err = " ".join(dump["last_reload_error"])
    assert re.search(re.escape(proxy.config_path.name) + r":\d+:\d+", err), err
    assert proxy.request().body == from_a
    assert proxy.snapshot_version() == 1
    status, reply = proxy.reload()
    assert status == 400 and reply["ok"] is False and reply["errors"], reply
    assert proxy.stat("server.supervisor_reload_failure") >= 2
    # fixing the file is picked up again
    proxy.write_config(_to_b(proxy, a, b))
    _wait_version(proxy, 2)
    assert proxy.request().body == from_b
    assert proxy.admin_json("/config_dump")["last_reload_error"] == []


def test_invalid_config_edit_reports_position_and_code(mosnx, pair):
    a, b = pair
    proxy = _start(mosnx, a, b)
    cfg = _to_b(proxy, a, b)
    cfg["clusters"][1]["conect_timeout"] = "1s"        # a typo of connect_timeout
    proxy.write_config(cfg)
    dump = proxy.wait_until(lambda: (d := proxy.admin_json("/config_dump"))["last_reload_error"] and d,
                      10, "the watcher to report the invalid file")
    err = " ".join(dump["last_reload_error"])
    assert re.search(r":\d+:\d+: [A-Z]\d+", err), err
    assert "conect_timeout" in err and "connect_timeout" in err, "the message should suggest the key"
    assert proxy.request().body == from_a


def test_keep_alive_connection_stays_open_across_reload(mosnx, pair):
    a, b = pair
    proxy = _start(mosnx, a, b)
    with proxy.connect() as c:
        assert c.request().body == from_a
        proxy.write_config(_to_b(proxy, a, b), unnoticed=True)
        assert proxy.reload()[0] == 200
        r = c.request()
        assert r.status == 200 and r.body == from_b, "the next request on an open connection uses the new snapshot"
        assert r.header("connection") != "close"
        assert c.request().body == from_b


def _held(upstream, name: bytes, release: threading.Event):
    def answer(conn, req):
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + name * 5)
        release.wait(10)
        conn.send(name * 5)
    return upstream(on_request=answer)


def test_in_flight_request_completes_across_reload(upstream, mosnx):
    release = threading.Event()
    a = _held(upstream, b"a", release)
    b = upstream(on_request=lambda conn, req: conn.respond(200, from_b))
    proxy = _start(mosnx, a, b)
    with proxy.connect() as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        a.wait_requests(1)
        proxy.write_config(_to_b(proxy, a, b), unnoticed=True)
        assert proxy.reload()[0] == 200
        assert proxy.request().body == from_b
        release.set()
        r = c.read_response()
        assert r.status == 200 and r.complete and r.body == b"a" * 10


def test_in_flight_request_completes_when_its_cluster_is_removed(upstream, mosnx):
    release = threading.Event()
    a = _held(upstream, b"a", release)
    b = upstream(on_request=lambda conn, req: conn.respond(200, from_b))
    proxy = _start(mosnx, a, b)
    with proxy.connect() as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        a.wait_requests(1)
        proxy.write_config(proxy.config_with(b), unnoticed=False)
        status, reply = proxy.reload()
        assert status == 200, reply
        _serving(proxy, from_b)
        release.set()
        r = c.read_response()
        assert r.status == 200 and r.complete and r.body == b"a" * 10


def test_unchanged_cluster_keeps_its_pooled_connections(mosnx, pair):
    a, b = pair
    proxy = _start(mosnx, a, b)
    assert proxy.request().body == from_a
    assert proxy.reload()[0] == 200
    assert proxy.request().body == from_a
    assert a.accepted == 1, "a reload that leaves a cluster unchanged must keep its pool"


def test_reload_that_moves_the_listener_port(mosnx, pair, free_port):
    a, b = pair
    proxy = _start(mosnx, a, b)
    old_port = proxy.port
    new_port = free_port()
    cfg = _to_b(proxy, a, b, listener={"address": f"127.0.0.1:{new_port}"})
    proxy.write_config(cfg, unnoticed=False)
    proxy.config = cfg
    _wait_version(proxy, 2)
    assert proxy.port == new_port
    assert proxy.request().body == from_b
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", old_port), timeout=2).close()


def test_watched_reload_broken_in_several_ways_then_fixed(mosnx, pair):
    """Each broken edit is reported in /config_dump while the old snapshot serves; the
    watcher survives all of them, including one the YAML reader raises on, and applies
    the fix."""
    a, b = pair
    proxy = _start(mosnx, a, b)
    good = proxy.config_path.read_text()
    broken = [
        good.replace("listeners:", "listeners: [\n  unclosed: {", 1),            # YAML syntax
        good.replace("connect_timeout", "conect_timeout", 1),                   # unknown key
        good.replace("cluster: aaa", "cluster: ccc", 1),                        # unknown cluster
        good + "workers: " + "9" * 5000 + "\n",                                 # a number int() refuses
    ]
    for n, text in enumerate(broken, 1):
        proxy.write_text(text)
        proxy.wait_until(lambda: proxy.stat("server.supervisor_reload_failure") >= n, 10,
                         f"broken edit {n} to be reported")
        dump = proxy.admin_json("/config_dump")
        assert dump["version"] == 1 and dump["last_reload_error"], dump
        assert all(e.startswith(str(proxy.config_path)) for e in dump["last_reload_error"]), dump
        assert proxy.request().body == from_a
    proxy.write_config(_to_b(proxy, a, b))
    _wait_version(proxy, 2)
    assert proxy.request().body == from_b
    assert proxy.admin_json("/config_dump")["last_reload_error"] == []
    assert "Traceback" not in proxy.log(), "a failed reload is reported, not dumped"


def test_post_reload_of_a_bad_config_answers_400_json_with_positions(mosnx, pair):
    a, b = pair
    proxy = _start(mosnx, a, b)
    cfg = _to_b(proxy, a, b)
    cfg["clusters"][1]["lb"] = "round_robbin"
    cfg["listeners"][0]["route"]["cluster"] = "zzz"
    proxy.write_config(cfg)
    status, headers, body = proxy.admin("/reload", "POST", b"")
    assert status == 400 and headers["content-type"] == "application/json"
    reply = json.loads(body)
    assert reply["ok"] is False and reply["version"] == 1
    name = re.escape(str(proxy.config_path))
    assert len(reply["errors"]) == 2, reply
    assert any(re.match(name + r":\d+:\d+: C004 .*round_robbin", e) for e in reply["errors"]), reply
    assert any(re.match(name + r":\d+:\d+: C101 .*zzz", e) for e in reply["errors"]), reply
    assert proxy.request().body == from_a
    proxy.write_config(_to_b(proxy, a, b))
    status, reply = proxy.reload()
    assert status == 200 and reply == {"ok": True, "version": 2}
