"""Supervisor.reload and its file watcher under every kind of build failure: the failure
is reported, the old snapshot stays, the watcher keeps watching and applies the fix.

The supervisor runs here with no workers, so a reload is exactly the supervisor's own
part: build, validate, report, swap."""
from __future__ import annotations

import asyncio
import logging
import os

import pytest

from mosnx.proxy.supervisor import Supervisor

GOOD = """\
listeners:
  - name: ingress
    address: 127.0.0.1:18080
    route: {cluster: web}
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000"]
"""
# Each breaks the file a different way; the last makes the YAML reader itself raise
# (an integer too long for int()), which the reader does not turn into a finding.
BROKEN = {
    "yaml syntax": GOOD.replace("clusters:", "clusters: [\n  {oops"),
    "unknown key": GOOD.replace("route: {cluster: web}", "route: {clustr: web}"),
    "unknown cluster": GOOD.replace("route: {cluster: web}", "route: {cluster: webb}"),
    "huge number": GOOD + "workers: " + "9" * 5000 + "\n",
}


class Crashing(Supervisor):
    """A supervisor whose build raises what the test sets, as a buggy front end would."""
    crash: BaseException | None = None

    def build(self, version: int):
        if self.crash is not None:
            raise self.crash
        return super().build(version)


def started(path, cls=Supervisor) -> Supervisor:
    sup = cls(str(path), 1, entry=None)
    sup.snapshot = sup.build(1)
    sup._remember_mtimes()
    return sup


def write(path, text: str) -> None:
    """Replace the file so the watcher sees a change, even within one clock tick."""
    before = os.stat(path).st_mtime_ns if os.path.exists(path) else 0
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "mosnx.yaml"
    write(path, GOOD)
    return path


def test_a_build_that_crashes_is_reported_as_a_bug_and_the_old_snapshot_stays(config, caplog):
    sup = started(config, Crashing)
    sup.crash = RuntimeError("boom")
    with caplog.at_level(logging.DEBUG, logger="mosnx"):
        ok, reply = asyncio.run(sup.reload("test"))
    assert not ok and reply["version"] == 1
    [error] = reply["errors"]
    assert error.startswith(f"{config}: mosnx failed to build this configuration (RuntimeError: boom)")
    assert "bug" in error
    assert sup.last_error == [error] and sup.version == 1 and sup.snapshot.version == 1
    assert sup.reloads_bad.value == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "still serving version 1" in errors[0].getMessage()
    assert errors[0].exc_info is None, "the error line is one line; the traceback is for debug"
    [trace] = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert trace.exc_info[1] is sup.crash


def test_a_crash_that_names_its_file_is_reported_there(config):
    sup = started(config, Crashing)
    sup.crash = IsADirectoryError(21, "Is a directory", str(config.parent / "rules"))
    ok, reply = asyncio.run(sup.reload("test"))
    assert not ok and reply["errors"][0].startswith(f"{config.parent / 'rules'}: mosnx failed to build")
    sup.crash = SyntaxError("bad", (str(config), 3, 7, "x"))
    ok, reply = asyncio.run(sup.reload("test"))
    assert reply["errors"][0].startswith(f"{config}:3:7: ")


@pytest.mark.parametrize("how", BROKEN)
def test_a_broken_file_is_rejected_with_where_it_is(config, how):
    sup = started(config)
    write(config, BROKEN[how])
    ok, reply = asyncio.run(sup.reload("test"))
    assert not ok and reply["version"] == 1 and sup.snapshot.version == 1
    assert all(e.startswith(str(config)) for e in reply["errors"]), reply
    write(config, GOOD)
    assert asyncio.run(sup.reload("test")) == (True, {"version": 2})
    assert sup.last_error == []


def test_the_watcher_outlives_every_failure_and_applies_the_fix(config):
    sup = started(config, Crashing)

    async def until(pred, what: str):
        for _ in range(200):
            if pred():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; last error {sup.last_error}")

    async def main():
        watcher = asyncio.get_running_loop().create_task(sup._watch())
        failures = 0
        for how, text in BROKEN.items():
            write(config, text)
            failures += 1
            await until(lambda: sup.reloads_bad.value == failures, how)
            assert sup.last_error and sup.version == 1
        sup.crash = ValueError("a front end tripped")
        write(config, GOOD.replace("18080", "18081"))
        await until(lambda: sup.reloads_bad.value == failures + 1, "the crash")
        assert "ValueError: a front end tripped" in sup.last_error[0]
        sup.crash = None
        write(config, GOOD.replace("18080", "18082"))
        await until(lambda: sup.version == 2, "the fix")
        assert not watcher.done(), "the watcher must keep running"
        watcher.cancel()

    asyncio.run(main())
    assert sup.last_error == []
    assert sup.snapshot.config.listeners[0].port == 18082
