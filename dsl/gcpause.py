"""paused(): the cyclic garbage collector held off while rules are parsed, checked
and compiled.

Those steps allocate hundreds of thousands of objects that stay alive (tokens,
AST nodes, compiled routes), and each allocation burst makes the collector scan
them all again, for nothing: a 20,000-route file spent about a third of its parse
in the collector. The build makes no reference cycles worth collecting early, and
runs synchronously (a worker's event loop waits on it either way), so the
collector runs once afterwards instead. Nested uses are free; the collector is
re-enabled only by the outermost one, and only if it was enabled before.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def paused() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
