"""The fuzz targets as regression tests.

- Every file of corpus/<target>/ (seeds, and inputs fuzzing found new, crashes
  since fixed among them) goes through the target's test_one_input in process:
  fast and deterministic.
- Every file of crashes/<target>/ is a failure found and not fixed yet: it is
  replayed too and must still fail (xfail, strict). When the fix lands the test
  says so; the file then moves to corpus/<target>/.
- Each target runs under atheris for a few seconds in a subprocess and must
  finish without a crash.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TARGETS = ("http1", "http2", "hpack", "rpc", "thrift", "mdsl", "config", "wasm_abi")
SMOKE_SECONDS = 3


def _files(kind: str, target: str) -> list[str]:
    d = os.path.join(HERE, kind, target)
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, n) for n in os.listdir(d) if not n.startswith(".") and n != "README.md")


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays_clean(target):
    run = importlib.import_module(f"fuzz_{target}").test_one_input
    files = _files("corpus", target)
    assert files, f"corpus/{target} is empty"
    failed = []
    for path in files:
        try:
            run(_read(path))
        except Exception as e:
            failed.append(f"{os.path.relpath(path, HERE)}: {type(e).__name__}: {str(e)[:300]}")
    assert not failed, "\n".join(failed)


_OPEN = [pytest.param(t, p, id=f"{t}/{os.path.basename(p)}") for t in TARGETS for p in _files("crashes", t)]


@pytest.mark.xfail(strict=True, reason="an open finding (crashes/README.md); fixed: move the file to corpus/")
@pytest.mark.parametrize("target,path", _OPEN)
def test_open_finding_still_fails(target, path):
    importlib.import_module(f"fuzz_{target}").test_one_input(_read(path))


@pytest.mark.parametrize("target", TARGETS)
def test_fuzzes_briefly_without_a_crash(target, tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    cmd = [sys.executable, os.path.join(HERE, f"fuzz_{target}.py"), f"-max_total_time={SMOKE_SECONDS}",
           "-rss_limit_mb=2048", "-timeout=25", f"-artifact_prefix={tmp_path}/", str(new),
           os.path.join(HERE, "corpus", target)]
    d = os.path.join(HERE, f"{target}.dict")
    if os.path.exists(d):
        cmd.insert(2, f"-dict={d}")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    tail = "\n".join(p.stderr.splitlines()[-40:])
    assert p.returncode == 0, f"{target} failed under atheris:\n{tail}"
    assert "DONE" in p.stderr, tail
