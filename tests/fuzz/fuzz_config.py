"""Fuzz the YAML config loader (runtime/config) as `mosnx run` and `mosnx check` use it.

Input: the bytes of a mosnx.yaml, written to a private folder and loaded with
runtime.config.load_config.

Property: a Config, or ConfigError whose every diagnostic has a code and a
position inside the file (line and column from 1); never another exception.

    python tests/fuzz/fuzz_config.py -max_total_time=60 -dict=tests/fuzz/config.dict tests/fuzz/corpus/config
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzzing import fuzz, instrumented  # noqa: E402

with instrumented(__name__ == "__main__", "mosnx"):
    from mosnx.runtime.config import load_config
    from mosnx.runtime.diagnostics import ConfigError
    from mosnx.runtime.model import Config

_dir = tempfile.mkdtemp(prefix="mosnx-fuzz-config-")
atexit.register(shutil.rmtree, _dir, True)
PATH = os.path.join(_dir, "mosnx.yaml")
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def test_one_input(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        cfg = load_config(PATH)
    except ConfigError as e:
        assert e.diagnostics, "ConfigError without a finding"
        # lines as YAML counts them (CR, LF, CRLF, NEL, U+2028, U+2029)
        n_lines = len(_LINE_BREAK.split(data.decode("utf-8", "replace")))
        for d in e.diagnostics:
            assert d.code and d.message, d
            assert d.span is not None, f"no position: {d}"
            assert 1 <= d.span.line <= n_lines + 1 and d.span.column >= 1, f"position outside the file: {d}"
        str(e)
        return
    assert isinstance(cfg, Config)


if __name__ == "__main__":
    fuzz(test_one_input)
