"""Envoy's own integration-test files (shared/testdata/envoy, beside the repository),
with their {{ placeholders }} replaced, in a temporary folder; skipped when absent."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

_ROOT = Path(__file__).resolve().parents[3]
_REL = Path("shared") / "testdata" / "envoy" / "test" / "config" / "integration"
# the repository's sibling shared/ (a clone beside it, as CI lays it), or one level up (a worktree)
CANDIDATES = [_ROOT.parent / _REL, _ROOT.parent.parent / _REL]
TESTDATA = next((p for p in CANDIDATES if p.is_dir()), None)


@pytest.fixture
def envoy_testdata(tmp_path: Path) -> Callable[..., Path]:
    """make(lds=..., cds=..., upstream=..., listen=...) -> the bootstrap's path."""
    if TESTDATA is None:
        pytest.skip(f"Envoy's test data is absent (looked in {', '.join(map(str, CANDIDATES))})")

    def make(lds: str = "server_xds.lds.yaml", cds: str = "server_xds.cds.yaml", upstream: int = 18090,
             listen: int = 18091) -> Path:
        names = {"lds_json_path": lds, "cds_json_path": cds, "eds_json_path": "server_xds.eds.yaml",
                 "rds_json_path": "server_xds.rds.yaml"}
        values = {"ntop_ip_loopback_address": "127.0.0.1", "upstream_0": str(upstream),
                  "null_device_path": os.devnull, **{k: str(tmp_path / v) for k, v in names.items()}}
        for src in TESTDATA.glob("server_xds.*"):
            text = src.read_text()
            for k, v in values.items():
                text = text.replace("{{ " + k + " }}", v)
            if src.name.startswith("server_xds.lds"):
                text = text.replace("port_value: 0", f"port_value: {listen}")
            (tmp_path / src.name).write_text(text)
        return tmp_path / "server_xds.bootstrap.yml"
    return make
