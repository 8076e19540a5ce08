"""Who may take the express path, decided once per listener and per request."""
from __future__ import annotations

from types import SimpleNamespace

from mosnx.proxy.fastpath import memo
from mosnx.proxy.fastpath.eligibility import listener_express, request_express


def listener(request_steps=(), tracer=None):
    return SimpleNamespace(pipeline=SimpleNamespace(request=request_steps), tracer=tracer)


def test_a_listener_with_a_request_step_sends_everything_the_general_way():
    assert listener_express(listener())
    assert not listener_express(listener((lambda ctx: None,)))


def test_a_traced_listener_may_take_the_express_path():
    # the trace begins at admission and its context is written as the attempt starts, on either path
    assert listener_express(listener(tracer=object()))


def test_the_switch_turns_every_listener_away():
    try:
        memo.configure(False)
        assert not listener_express(listener())
    finally:
        memo.configure(True)


def test_only_a_bodiless_plain_request_may_go():
    assert request_express(True, 0, False, False)
    assert not request_express(False, 0, False, False)
    assert not request_express(True, 5, False, False)
    assert not request_express(True, None, False, False)     # chunked
    assert not request_express(True, 0, True, False)         # upgrade
    assert not request_express(True, 0, False, True)         # 100-continue
