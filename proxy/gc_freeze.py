"""Freezing the heap after a snapshot is swapped in (gc.freeze), for a worker and
for the supervisor alike.

Its own module so that the supervisor, which freezes what it holds the same way,
does not import the worker's data plane (listeners, codecs, pools) to do it.
"""
from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

# after this many reloads that thawed nothing (see freeze()), a whole collection, a
# little later than the last of them
WHOLE_EVERY = 16
WHOLE_AFTER = 2.0       # s
_partial: list[Any] = [0, None]     # reloads since the last whole collection; its timer


def freeze(again: bool = False, whole: bool = True) -> None:
    """Keep the snapshot just swapped in (and all else alive now) out of every later
    full collection, which would otherwise walk it all, as a pause of every request in
    flight. `again` (after a reload) first thaws what the last call froze, so the
    replaced snapshot can be collected. After a reload that built only what changed
    (`whole` False) only what is new is collected and frozen: a thaw and a collection
    of the whole heap would cost more than the update. What it replaced is freed as
    its references go; only a reference cycle in it waits, frozen, for the next whole
    collection, made WHOLE_AFTER s after the WHOLE_EVERY-th such reload since the
    last one (out of the update's way). MOSNX_GC_FREEZE=0 switches it off."""
    if os.environ.get("MOSNX_GC_FREEZE") == "0":
        return
    if again and not whole:
        gc.collect()
        gc.freeze()
        _partial[0] += 1
        if _partial[0] >= WHOLE_EVERY and _partial[1] is None:
            try:
                _partial[1] = asyncio.get_running_loop().call_later(WHOLE_AFTER, _thaw_and_freeze)
            except RuntimeError:
                _thaw_and_freeze()
        return
    if again:
        _thaw_and_freeze()
        return
    gc.collect()
    gc.freeze()


def _thaw_and_freeze() -> None:
    if _partial[1] is not None:
        _partial[1].cancel()
    _partial[0], _partial[1] = 0, None
    gc.unfreeze()
    gc.collect()
    gc.freeze()
