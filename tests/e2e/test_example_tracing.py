"""examples/tracing runs as its README says: chain.py's client, mosnx and service make
one trace of four spans, each the parent of the next (chain.py checks that and exits 0)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tracing"


def test_chain_makes_one_trace(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    mosnx = tmp_path / "mosnx"
    mosnx.write_text(f"#!/bin/sh\nexec {sys.executable} -m mosnx \"$@\"\n")
    mosnx.chmod(0o755)
    r = subprocess.run([sys.executable, str(EXAMPLE / "chain.py"), "--free-ports", "--mosnx", str(mosnx)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    tree = r.stdout.split("the trace:", 1)[1]
    assert [line.split()[:2] for line in tree.splitlines() if line.startswith("  ")] == [
        ["client", "client"], ["edge", "server"], ["edge", "client"], ["reviews", "server"]]
    assert "one trace, each span the parent of the next" in r.stdout


def test_example_config_checks() -> None:
    r = subprocess.run([sys.executable, "-m", "mosnx", "check", str(EXAMPLE / "mosnx.yaml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
