"""The stream's endings: logged exactly once however it ends (answered, reset by the
client before or after its answer), its listener's gauges back to zero, and the
views servers and pools read."""
from __future__ import annotations

from mosnx.proxy.stream.state import ENDED

from .fakes import Rig, cluster_yaml


def test_a_client_gone_before_the_answer_is_logged_once_and_releases_all(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream()
    s.start()
    up = rig.made[-1]
    assert s.alive and rig.lstats.rq_active.value == 1
    s.reset()
    s.reset()
    assert not s.alive and s.resp is ENDED
    assert rig.lstats.rq_active.value == 0 and rig.lstats.rx_reset.value == 1
    assert rig.pool().released == [(up, False)]
    assert s.ctx.error_detail == "downstream_remote_disconnect"
    assert rig.worker.clusters.get("up").hosts[0].rq_active == 0


def test_a_reset_after_the_answer_counts_nothing_more(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream()
    s.start()
    rig.made[-1].answer(200)
    assert rig.lstats.rq_active.value == 0
    s.reset()
    assert rig.lstats.rq_active.value == 0 and rig.lstats.rx_reset.value == 0
    assert rig.counter("http.l.downstream_rq_2xx") == 1


def test_a_stream_not_yet_started_has_nothing_to_release(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream()
    s.reset()
    assert s.alive and rig.lstats.rq_active.value == 0 and down.events == []


def test_the_views_follow_the_states(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream(method="POST", body=2)
    s.start()
    assert not s.request_done and not s.response_started and not s.response_done
    s.on_request_body(b"ab")
    s.on_request_end(None)
    assert s.request_done
    rig.made[-1].answer(200, [], b"ok")
    assert s.response_started and s.response_done and not s.alive
    assert down.finished == 1
