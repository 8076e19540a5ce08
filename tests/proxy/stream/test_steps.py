"""The one step runner: what a reply, a Pause and an exception mean in each phase
(the table in proxy/stream/steps.py), driven through a real pipeline of Python
filters on a stream with fake peers."""
from __future__ import annotations

import asyncio

import pytest

from mosnx.proxy.stream import steps
from mosnx.proxy.stream.state import COMPLETE, ENDED
from mosnx.runtime import HttpFilter, register_filter
from mosnx.runtime.actions import LocalReply, Pause

from .fakes import Rig, cluster_yaml

TEAPOT = LocalReply(418, b"no\n", (), "test_teapot")


class Scripted(HttpFilter):
    """Does in one phase what the test says: answer, pause (on an already settled
    future, or a pending one), raise, or rewrite the chunk."""
    name = "scripted"
    plan: dict = {}
    calls: list = []

    def _do(self, phase, data=None):
        Scripted.calls.append(phase)
        what = Scripted.plan.get(phase)
        if what == "reply":
            return TEAPOT
        if what == "raise":
            raise RuntimeError("step failed on purpose")
        if what == "pause":
            return Pause(Scripted.pending)
        if what == "upper" and data is not None:
            return data.upper()
        return None

    def on_request(self, ctx):
        return self._do("request")

    def on_request_body(self, ctx, data, end_stream):
        return self._do("request_body", data)

    def on_response(self, ctx):
        return self._do("response")

    def on_response_body(self, ctx, data, end_stream):
        return self._do("response_body", data)

    def on_error(self, ctx):
        return self._do("error")

    def on_log(self, ctx):
        return self._do("log")


register_filter("test_scripted", lambda name, cfg, ctx: Scripted())


@pytest.fixture
def rig(tmp_path):
    Scripted.plan = {}
    Scripted.calls = []
    return Rig(tmp_path, cluster_yaml(filters="{test_scripted: {}}"))


def test_the_policy_table_covers_every_phase_once():
    names = [p.name for p in steps.PHASES]
    assert len(names) == len(set(names)) == 9
    for p in steps.PHASES:
        assert p.reply in (steps.ANSWER, steps.REPLACE, steps.IGNORE, steps.RETURN)
        # a phase that cannot wait for I/O never fails the stream over a step either
        assert p.waits or not p.fatal


def test_a_request_step_reply_answers_and_nothing_goes_upstream(rig):
    Scripted.plan = {"request": "reply"}
    s, down = rig.stream()
    s.start()
    assert down.status() == 418 and down.body() == b"no\n"
    assert rig.pool().conns == [] and s.resp is ENDED
    # the response steps see the local reply, and the log step runs once
    assert Scripted.calls == ["request", "response", "log"]


def test_a_request_step_that_raises_fails_the_stream_with_500(rig):
    Scripted.plan = {"request": "raise"}
    s, down = rig.stream()
    s.start()
    assert down.status() == 500 and down.head()[b"x-mosnx-error"] == b"internal_error"
    assert rig.worker.errors == ["request step failed"]
    # the error phase ran and could have replaced the reply
    assert "error" in Scripted.calls


def test_an_error_step_replaces_the_reply_and_one_that_raises_is_skipped(rig):
    Scripted.plan = {"request": "raise", "error": "reply"}
    s, down = rig.stream()
    s.start()
    assert down.status() == 418
    Scripted.plan = {"request": "raise", "error": "raise"}
    Scripted.calls = []
    s, down = rig.stream()
    s.start()
    assert down.status() == 500      # the failed error step changed nothing
    assert "error step failed" in rig.worker.errors


def test_a_response_step_reply_answers_instead_of_the_upstream(rig):
    Scripted.plan = {"response": "reply"}
    s, down = rig.stream()
    s.start()
    up = rig.pool().conns[-1]
    up.answer(200, [("content-length", "5")], b"hello")
    assert down.status() == 418 and down.body() == b"no\n"
    # the upstream connection is let go, not reused (its body was never read)
    assert rig.pool().released == [(up, False)]


def test_a_response_body_reply_cuts_the_begun_response_short(rig):
    Scripted.plan = {"response_body": "reply"}
    s, down = rig.stream()
    s.start()
    rig.pool().conns[-1].answer(200, [("content-length", "5")], b"hello")
    assert down.status() == 200
    assert ("abort",) in down.events and ("end", None) not in down.events
    assert s.ctx.error_detail == "test_teapot"


def test_a_response_body_step_that_raises_cuts_the_response(rig):
    Scripted.plan = {"response_body": "raise"}
    s, down = rig.stream()
    s.start()
    rig.pool().conns[-1].answer(200, [("content-length", "5")], b"hello")
    assert ("abort",) in down.events and s.ctx.error_detail == "filter_failure"


def test_a_body_step_rewrites_the_chunk(rig):
    Scripted.plan = {"request_body": "upper", "response_body": "upper"}
    s, down = rig.stream(method="POST", body=3)
    s.start()
    s.on_request_body(b"abc")
    s.on_request_end(None)
    up = rig.pool().conns[-1]
    assert up.sent[:3] == [("request", "POST", "/", 3, False, [], False), ("body", b"ABC"), ("end", None)]
    up.answer(200, [("content-length", "2")], b"ok")
    assert down.body() == b"OK"


def test_a_paused_request_step_holds_the_chain_until_its_io_settles(rig):
    async def run():
        Scripted.pending = asyncio.get_running_loop().create_future()
        Scripted.plan = {"request": "pause"}
        s, down = rig.stream()
        s.start()
        assert rig.pool().conns == []           # nothing upstream while the step waits
        Scripted.pending.set_result(None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return s, down
    s, down = asyncio.run(run())
    up = rig.pool().conns[-1]
    assert up.sent[0][:3] == ("request", "GET", "/") and s.req is COMPLETE


def test_a_paused_step_whose_io_fails_answers_500_filter_failure(rig):
    async def run():
        Scripted.pending = asyncio.get_running_loop().create_future()
        Scripted.plan = {"request": "pause"}
        s, down = rig.stream()
        s.start()
        Scripted.pending.set_exception(RuntimeError("I/O failed"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return down
    down = asyncio.run(run())
    assert down.status() == 500 and down.head()[b"x-mosnx-error"] == b"filter_failure"
    assert "paused step failed" in rig.worker.errors


def test_a_log_step_cannot_pause_and_its_io_is_dropped(rig):
    class Awaitable:
        closed = False

        def __await__(self):
            yield

        def close(self):
            Awaitable.closed = True

    Scripted.pending = Awaitable()
    Scripted.plan = {"log": "pause"}
    s, down = rig.stream()
    s.start()
    rig.pool().conns[-1].answer(204)
    assert s.resp is ENDED and Awaitable.closed
