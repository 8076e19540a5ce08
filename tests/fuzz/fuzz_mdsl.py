"""Fuzz the .mdsl front end (dsl/) the way `mosnx check` runs it.

Input: the text of a rule file. It is written to a private folder beside the
shop example's `common.mdsl` (so `import "common.mdsl"` resolves) and checked with
dsl.lint.run, which is `mosnx check` without the printing: load (parse,
imports), check, and compile when the check is clean.

Property: the answer is a list of Diagnostics, each with a code, a message and a
position inside the file; never an exception.

    python tests/fuzz/fuzz_mdsl.py -max_total_time=60 -dict=tests/fuzz/mdsl.dict tests/fuzz/corpus/mdsl
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzzing import fuzz, instrumented  # noqa: E402

with instrumented(__name__ == "__main__", "mosnx"):
    from mosnx import plugins
    from mosnx.dsl import lint
    from mosnx.runtime.diagnostics import Diagnostic

    plugins.load()      # as `mosnx check` does: every front end and filter registered

# the shop example's shared declarations, so its rules (and variations) import them
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "shop", "rules",
                       "common.mdsl"), "rb") as _f:
    COMMON = _f.read()
# open findings (crashes/README.md), passed over while fuzzing
KNOWN: tuple = ()
_dir = tempfile.mkdtemp(prefix="mosnx-fuzz-mdsl-")
atexit.register(shutil.rmtree, _dir, True)
with open(os.path.join(_dir, "common.mdsl"), "wb") as _f:
    _f.write(COMMON)
RULES = os.path.join(_dir, "rules.mdsl")


def test_one_input(data: bytes) -> None:
    with open(RULES, "wb") as f:
        f.write(data)
    diags = lint.run([RULES])
    for d in diags:
        assert isinstance(d, Diagnostic) and d.code and d.message, d
        assert d.span is not None and d.span.line >= 1 and d.span.column >= 1, f"no position: {d}"
    # and each renders as the CLI prints it
    lint.render(diags, "text")


if __name__ == "__main__":
    fuzz(test_one_input, KNOWN)
