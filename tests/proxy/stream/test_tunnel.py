"""Upgrades: a 101 turns the stream into a tunnel of raw bytes both ways; either side
closing ends it, logged once."""
from __future__ import annotations

from mosnx.proxy.stream.state import ENDED, TUNNEL
from mosnx.runtime.headers import Headers

from .fakes import Rig, cluster_yaml

UPGRADE = [("connection", "upgrade"), ("upgrade", "websocket")]


def upgraded(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream(headers=UPGRADE, upgrade=True)
    s.start()
    up = rig.made[-1]
    assert up.sent[0][4] is True          # the upstream is asked to upgrade too
    up.stream.on_upstream_head(101, Headers([(b"upgrade", b"websocket"), (b"connection", b"upgrade"),
                                             (b"keep-alive", b"5")]), True, None)
    return rig, s, down, up


def test_a_101_opens_a_tunnel_with_only_the_upgrade_fields(tmp_path):
    rig, s, down, up = upgraded(tmp_path)
    assert s.resp is TUNNEL and ("tunnel",) in down.events
    head = down.head()
    assert head[b"upgrade"] == b"websocket" and head[b"connection"] == b"upgrade"
    assert b"keep-alive" not in head


def test_bytes_go_both_ways_and_count(tmp_path):
    rig, s, down, up = upgraded(tmp_path)
    s.on_tunnel_downstream_data(b"ping")
    s.on_tunnel_upstream_data(b"pong!")
    assert ("raw", b"ping") in up.sent and ("raw", b"pong!") in down.events
    assert (s.ctx.bytes_received, s.ctx.bytes_sent) == (4, 5)


def test_a_side_closing_ends_the_tunnel_once(tmp_path):
    rig, s, down, up = upgraded(tmp_path)
    s.on_tunnel_closed()
    s.on_tunnel_closed()
    assert up.closed and s.resp is ENDED and down.events.count(("abort",)) == 1
    assert rig.lstats.rq_active.value == 0
    assert rig.worker.clusters.get("up").hosts[0].rq_active == 0
