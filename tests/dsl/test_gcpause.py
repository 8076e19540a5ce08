"""dsl/gcpause.py: the cyclic collector is off while rules are built and back on
after, only if it was on before, and only when the outermost use ends."""
from __future__ import annotations

import gc

import pytest

from mosnx.dsl.gcpause import paused


@pytest.fixture
def gc_state():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_nested_uses_re_enable_once_at_the_outermost(gc_state):
    gc.enable()
    with paused():
        assert not gc.isenabled()
        with paused():
            assert not gc.isenabled()
        assert not gc.isenabled()          # the inner one leaves it to the outer
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off(gc_state):
    gc.disable()
    with paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_an_error_inside_still_re_enables(gc_state):
    gc.enable()
    with pytest.raises(RuntimeError):
        with paused():
            raise RuntimeError("compile failed")
    assert gc.isenabled()
