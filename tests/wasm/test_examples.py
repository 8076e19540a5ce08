"""examples/wasm/mosnx.yaml builds: every filter loads, starts and is configured."""
from __future__ import annotations

import os

import mosnx.wasm  # noqa: F401  (registers the filter)
from mosnx.runtime import build_snapshot

from .conftest import ROOT


def test_example_config_builds():
    snap = build_snapshot(os.path.join(ROOT, "examples", "wasm", "mosnx.yaml"))
    public = snap.listeners["public"].pipeline
    assert len(public.request) == 5 and len(public.log) == 5
    assert len(public.response_body) == 5            # SDK modules export every callback
    assert len(snap.listeners["protected"].pipeline.request) == 2
