"""Fixtures for the interop suite: a proxy under test against the real go-control-plane.

Not part of `make test`: pyproject's `norecursedirs` leaves this folder out of a plain
`pytest` run; `make interop` (or `pytest tests/interop`, naming it) runs it.

  --proxy envoy|mosnx|both   which proxy the scenarios drive (default both). Envoy is the
                             reference client that proves a scenario right; mosnx runs the
                             same scenario and bootstrap and must pass it (but for the
                             harness's scoped-route listeners: see test_gcp_harness.py).
  procs                      starts programs (logs in tmp_path), kills them all at teardown
                             and prints their logs when the test failed.
  proxy_kind                 "envoy" or "mosnx", parametrised from --proxy.

Each test's wall time (one harness round: control plane, upstreams, proxy, scenario,
teardown) is printed at the end of the run.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

# --import-mode=importlib puts no test folder on sys.path; the scenarios share xdsharness.py
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
from xdsharness import PROXIES, Procs  # noqa: E402

_rounds: list[tuple[str, str, float]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--proxy", default="both", choices=[*PROXIES, "both"],
                     help="proxy the interop scenarios drive (default both)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "proxy_kind" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("--proxy")
    kinds = PROXIES if chosen == "both" else (chosen,)
    params = []
    for kind in kinds:
        params.append(pytest.param(kind, id=kind))
    metafunc.parametrize("proxy_kind", params)


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Procs]:
    started = time.monotonic()
    p = Procs(tmp_path)
    yield p
    p.stop_all()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n===== process logs for {request.node.nodeid}\n{p.logs()}")
    outcome = "passed" if rep is not None and rep.passed else "failed/xfail"
    _rounds.append((request.node.nodeid, outcome, time.monotonic() - started))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _rounds:
        return
    terminalreporter.section("interop harness rounds (wall time per test)")
    for nodeid, outcome, secs in _rounds:
        terminalreporter.write_line(f"{secs:7.1f} s  {outcome:12s} {nodeid}")
