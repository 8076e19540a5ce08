"""The command line as a user runs it: check, run on a bad file, version."""
from __future__ import annotations

import importlib.util
import re
import socket
import subprocess
import sys
import time

import pytest
import yaml

from mosnx import __version__

needs_check = pytest.mark.skipif(importlib.util.find_spec("mosnx.dsl.lint") is None,
                                 reason="`mosnx check` (mosnx.dsl.lint) is not in this build yet")

BAD = """\
listeners:
  - name: ingress
    address: 127.0.0.1:{port}
    route: {{ cluster: webb, timeout: 15s }}
clusters:
  - name: web
    endpoints: ["127.0.0.1:9"]
    conect_timeout: 1s
"""


def mosnx_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosnx", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _good(tmp_path, free_port) -> str:
    cfg = {"admin": {"address": f"127.0.0.1:{free_port()}"},
           "listeners": [{"name": "ingress", "address": f"127.0.0.1:{free_port()}",
                          "route": {"cluster": "web", "timeout": "15s"},
                          "timeouts": {"request_headers": "10s", "idle": "60s", "drain": "5s"},
                          "limits": {"request_headers": "60KiB"}}],
           "clusters": [{"name": "web", "endpoints": ["127.0.0.1:9000", "127.0.0.1:9001"],
                         "connect_timeout": "1s", "lb": "round_robin"}]}
    p = tmp_path / "good.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(p)


def test_version_flag():
    r = mosnx_cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"mosnx {__version__}"


def test_version_command():
    r = mosnx_cli("version")
    assert r.returncode == 0 and r.stdout.strip() == f"mosnx {__version__}"


@needs_check
def test_check_valid_file_exits_0(tmp_path, free_port):
    r = mosnx_cli("check", _good(tmp_path, free_port))
    assert r.returncode == 0, r.stdout + r.stderr


@needs_check
def test_check_quickstart_example_exits_0():
    from pathlib import Path
    example = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "mosnx.yaml"
    r = mosnx_cli("check", str(example))
    assert r.returncode == 0, r.stdout + r.stderr


@needs_check
def test_check_invalid_file_exits_1_with_positions(tmp_path, free_port):
    p = tmp_path / "bad.yaml"
    p.write_text(BAD.format(port=free_port()))
    r = mosnx_cli("check", str(p))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert re.search(r"bad\.yaml:4:\d+: C\d+ .*webb", out), out
    assert re.search(r"bad\.yaml:8:\d+: C\d+ .*conect_timeout", out), out
    assert 'did you mean "connect_timeout"' in out


@needs_check
def test_check_broken_yaml_exits_1_with_position(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("listeners:\n  - name: [unclosed\n")
    r = mosnx_cli("check", str(p))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert re.search(r"broken\.yaml:\d+:\d+: [A-Z]\d+", out), out


@needs_check
def test_check_usage_errors_exit_2(tmp_path):
    assert mosnx_cli("check").returncode == 2
    assert mosnx_cli("check", str(tmp_path / "missing.yaml")).returncode == 2


def test_run_refuses_invalid_file_without_serving(tmp_path, free_port):
    port = free_port()
    p = tmp_path / "bad.yaml"
    p.write_text(BAD.format(port=port))
    t0 = time.monotonic()
    r = mosnx_cli("run", "-c", str(p), "--workers", "1", timeout=30)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 30
    out = r.stdout + r.stderr
    assert re.search(r"bad\.yaml:4:\d+: C\d+", out), out
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_run_missing_file_is_a_usage_error(tmp_path):
    r = mosnx_cli("run", "-c", str(tmp_path / "nope.yaml"), "--workers", "1", timeout=30)
    assert r.returncode == 2
    assert "nope.yaml" in r.stderr


def test_run_on_a_busy_port_exits_non_zero(tmp_path, free_port):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        cfg = {"admin": {"address": f"127.0.0.1:{free_port()}"},
               "listeners": [{"name": "ingress", "address": f"127.0.0.1:{busy.getsockname()[1]}",
                              "route": {"cluster": "web"}}],
               "clusters": [{"name": "web", "endpoints": ["127.0.0.1:9"]}]}
        p = tmp_path / "busy.yaml"
        p.write_text(yaml.safe_dump(cfg))
        r = mosnx_cli("run", "-c", str(p), "--workers", "1", timeout=40)
        assert r.returncode != 0, r.stdout + r.stderr
    finally:
        busy.close()
