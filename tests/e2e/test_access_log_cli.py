"""A bad access-log format is caught by `mosnx check` and stops `mosnx run` with one
positioned line, with one worker or two; a good one logs what it says."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

BAD = """\
listeners:
  - name: ingress
    address: 127.0.0.1:{port}
    route: {{ cluster: web }}
    access_log: {{ path: {log}, format: "%request.path% %response.flagz%" }}
clusters:
  - {{ name: web, endpoints: ["127.0.0.1:9"] }}
"""
WANT = re.compile(r'bad\.yaml:5:\d+: C004 listeners\[0\]\.access_log\.format: unknown attribute "response\.flagz" '
                  r'\(did you mean "response\.flags"\?\)')


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosnx", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def bad_config(tmp_path, port: int) -> str:
    p = tmp_path / "bad.yaml"
    p.write_text(BAD.format(port=port, log=tmp_path / "access.log"))
    return str(p)


def test_check_reports_the_format_error(tmp_path, free_port):
    r = cli("check", bad_config(tmp_path, free_port()))
    assert r.returncode == 1, r.stdout + r.stderr
    assert WANT.search(r.stdout), r.stdout
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_run_refuses_to_start_with_that_one_line(tmp_path, free_port, workers):
    r = cli("run", "-c", bad_config(tmp_path, free_port()), "--workers", workers, timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    errors = [line for line in out.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and WANT.search(errors[0]), out
    assert "Traceback" not in out


def test_a_good_format_logs_each_request(mosnx, upstream, client, tmp_path):
    log = tmp_path / "access.log"
    up = upstream()
    fmt = '%request.method% %request.path% %response.code% [%request.headers["x-id"]%] 100%%'
    proxy = mosnx(up, listener={"access_log": {"path": str(log), "format": fmt}})
    c = client(proxy.port)
    assert c.request("GET", "/hello?x=1", headers=[("x-id", "abc")]).status == 200
    proxy.wait_until(lambda: log.exists() and log.read_text(), what="the access log line")
    assert log.read_text() == "GET /hello?x=1 200 [abc] 100%\n"
