"""Freezing the heap after a snapshot is swapped in: what is alive is frozen, a
reload thaws and freezes again, a partial reload freezes only what is new and
schedules a whole collection after WHOLE_EVERY of them; MOSNX_GC_FREEZE=0 is off."""
from __future__ import annotations

import gc

import pytest

from mosnx.proxy import gc_freeze


@pytest.fixture(autouse=True)
def thawed(monkeypatch):
    monkeypatch.delenv("MOSNX_GC_FREEZE", raising=False)
    gc.unfreeze()
    gc_freeze._partial[:] = [0, None]
    yield
    gc.unfreeze()
    gc_freeze._partial[:] = [0, None]


def test_freeze_moves_what_is_alive_out_of_collections():
    kept = [[i] for i in range(1000)]       # container objects: tracked by the collector
    gc_freeze.freeze()
    assert gc.get_freeze_count() >= len(kept)


def test_it_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("MOSNX_GC_FREEZE", "0")
    gc_freeze.freeze()
    assert gc.get_freeze_count() == 0


def test_partial_reloads_add_up_to_a_whole_collection():
    gc_freeze.freeze()
    for _ in range(gc_freeze.WHOLE_EVERY - 1):
        gc_freeze.freeze(again=True, whole=False)
    assert gc_freeze._partial == [gc_freeze.WHOLE_EVERY - 1, None]
    # the WHOLE_EVERY-th: outside a loop, the whole collection runs at once
    gc_freeze.freeze(again=True, whole=False)
    assert gc_freeze._partial == [0, None] and gc.get_freeze_count() > 0


def test_a_whole_reload_thaws_and_freezes_again():
    gc_freeze.freeze()
    gc_freeze.freeze(again=True, whole=False)
    gc_freeze.freeze(again=True)
    assert gc_freeze._partial == [0, None] and gc.get_freeze_count() > 0
