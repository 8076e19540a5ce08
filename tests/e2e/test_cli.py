"""The command line as a user runs it: check, run on a bad file, version."""
from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

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


# ---- no input a user writes produces a traceback ----
SHOP_RULES = Path(__file__).resolve().parents[2] / "examples" / "shop" / "rules"
NOT_BAD_CIDR = """\
clusters web
const internal = {10.0.0.0/33, 192.168.0.0/16}
const admin_area = request.path segment_prefix "/admin"
route r when admin_area and not source.address in internal { to web }
"""
POSITIONED = re.compile(r"^\S+:\d+:\d+: [A-Z]\d{3} ", re.M)


def _no_traceback(r: subprocess.CompletedProcess) -> str:
    out = r.stdout + r.stderr
    assert "Traceback" not in out and "internal error" not in out and ": bug:" not in out, out
    return out


def _cli_mutants() -> list[tuple[str, str]]:
    """A handful of shop.mdsl mutants, one of each kind, the same every run."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dsl"))
    try:
        from mutants import mutants
    finally:
        sys.path.pop(0)
    src = (SHOP_RULES / "shop.mdsl").read_text()
    picked: dict[str, tuple[str, str]] = {}
    for name, text in mutants(src, 7):
        picked.setdefault(name.split()[0], (name, text))
    return list(picked.values())


@needs_check
def test_check_cli_on_mutants_answers_with_diagnostics(tmp_path):
    shutil.copytree(SHOP_RULES, tmp_path / "rules")
    target = tmp_path / "rules" / "shop.mdsl"
    cases = _cli_mutants() + [("the docs' `and not` with a bad CIDR", NOT_BAD_CIDR)]
    assert len(cases) >= 8
    for name, text in cases:
        target.write_text(text)
        r = mosnx_cli("check", str(tmp_path / "rules"))
        out = _no_traceback(r)
        assert r.returncode in (0, 1), (name, out)
        if r.returncode == 1:
            assert POSITIONED.search(r.stdout), (name, out)
    r = mosnx_cli("check", str(target))
    assert r.returncode == 1 and 'shop.mdsl:2:19: T103 bad IP address or CIDR "10.0.0.0/33"' in r.stdout, r.stdout


def _rules_config(tmp_path, port: int, rules: str) -> Path:
    (tmp_path / "r.mdsl").write_text(rules)
    p = tmp_path / "mosnx.yaml"
    p.write_text(yaml.safe_dump({
        "listeners": [{"name": "ingress", "address": f"127.0.0.1:{port}", "rules": "r.mdsl"}],
        "clusters": [{"name": "web", "endpoints": ["127.0.0.1:9"]}]}))
    return p


def test_run_on_broken_rules_exits_1_with_a_positioned_error_and_no_traceback(tmp_path, free_port):
    port = free_port()
    from mosnx.__main__ import check_paths
    broken = []
    for name, text in _cli_mutants():       # those with an error: a clean one would serve
        (tmp_path / "probe.mdsl").write_text("clusters web\n" + text)
        if any(d.severity == "error" for d in check_paths([str(tmp_path / "probe.mdsl")])):
            broken.append((name, text))
    assert len(broken) >= 4
    for name, text in [("and not", NOT_BAD_CIDR)] + broken[:4]:
        cfg = _rules_config(tmp_path, port, text)
        r = mosnx_cli("run", "-c", str(cfg), "--workers", "1", timeout=30)
        out = _no_traceback(r)
        assert r.returncode == 1, (name, out)
        assert re.search(r"r\.mdsl:\d+:\d+: [A-Z]\d{3} ", out), (name, out)
    r = mosnx_cli("run", "-c", str(_rules_config(tmp_path, port, NOT_BAD_CIDR)), "--workers", "1", timeout=30)
    assert 'r.mdsl:2:19: T103 bad IP address or CIDR "10.0.0.0/33"' in r.stderr, r.stderr


@needs_check
@pytest.mark.parametrize("name", ["mosnx.json", "mosnx", "mosnx.conf"])
def test_check_recognises_a_config_by_its_content(tmp_path, free_port, name):
    good = Path(_good(tmp_path, free_port))
    p = tmp_path / name
    p.write_text(json.dumps(yaml.safe_load(good.read_text())) if name.endswith(".json") else good.read_text())
    r = mosnx_cli("check", str(p))
    assert r.returncode == 0, r.stdout + r.stderr
    p.write_text(BAD.format(port=free_port()))
    r = mosnx_cli("check", str(p))
    out = _no_traceback(r)
    assert r.returncode == 1 and re.search(re.escape(name) + r":8:\d+: C\d+ .*conect_timeout", out), out


@needs_check
def test_check_recognises_rules_by_their_content(tmp_path):
    p = tmp_path / "rules.txt"
    p.write_text('# rules\nclusters web\nroute r when request.pth == "/" { to web }\n')
    r = mosnx_cli("check", str(p))
    assert r.returncode == 1 and 'rules.txt:3:14: E002 unknown field "request.pth"' in r.stdout, r.stdout


@needs_check
@pytest.mark.parametrize("text", ["", "# nothing yet\n", "{}\n", "admin: {address: 127.0.0.1:1}\n"])
def test_check_warns_on_a_config_that_serves_nothing(tmp_path, text):
    p = tmp_path / "empty.yaml"
    p.write_text(text)
    r = mosnx_cli("check", str(p))
    assert r.returncode == 1, r.stdout + r.stderr      # a warning is a finding
    assert "empty.yaml:1:1: C205 this config declares no listeners: it serves nothing" in r.stdout
    assert "1 warning" in r.stdout


def test_run_warns_on_a_config_that_serves_nothing(tmp_path, free_port):
    admin = free_port()
    p = tmp_path / "empty.yaml"
    p.write_text(f"# only an admin API, no listener\nadmin: {{address: 127.0.0.1:{admin}}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "mosnx", "run", "-c", str(p), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        line = proc.stderr.readline()          # the first line it says
        assert "WARNING" in line and "empty.yaml:1:1: C205" in line and "serves nothing" in line, line
        # it still runs (admin API up, then /ready once its workers started), so SIGTERM drains it;
        # a signal while starting would stop the start instead
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    assert proc.returncode == 0 and "Traceback" not in rest, rest


# A bug (an exception no input should cause) is simulated by replacing one function
# in a real `mosnx` process; what the user sees is the process's real output.
BUGGY = """\
import sys
import {module} as m
def boom(*a, **k):
    raise RuntimeError("boom")
m.{name} = boom
from mosnx.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _buggy(module: str, name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BUGGY.format(module=module, name=name), *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@needs_check
def test_a_bug_in_check_is_one_line_naming_the_file_exit_3(tmp_path, free_port):
    rules = tmp_path / "a.mdsl"
    rules.write_text("route r { to web }\n")
    r = _buggy("mosnx.dsl.rules", "analyze", "check", str(rules))
    assert r.returncode == 3, r.stderr
    assert r.stderr == f"mosnx check: bug: {rules}: RuntimeError: boom \u2014 please report\n"
    cfg = _good(tmp_path, free_port)
    r = _buggy("mosnx.dsl.lint", "check_config", "check", cfg)
    assert r.returncode == 3 and r.stderr == f"mosnx check: bug: {cfg}: RuntimeError: boom \u2014 please report\n"
    r = _buggy("mosnx.dsl.rules", "analyze", "check", "--debug", str(rules))
    assert r.returncode == 3 and "Traceback" in r.stderr and r.stderr.endswith("please report\n")


def test_a_bug_at_run_startup_is_one_line_naming_the_config_exit_3(tmp_path, free_port):
    cfg = _good(tmp_path, free_port)
    r = _buggy("mosnx.proxy.supervisor", "build_snapshot", "run", "-c", cfg, "--workers", "1")
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"mosnx run: bug: {cfg}: RuntimeError: boom \u2014 please report"
    r = _buggy("mosnx.proxy.supervisor", "build_snapshot", "run", "-c", cfg, "--workers", "1", "--debug")
    assert r.returncode == 3 and "Traceback" in r.stderr


@needs_check
@pytest.mark.parametrize("name, text, where", [
    ("deep.mdsl", "route r when " + "not " * 3000 + 'request.path == "/" { to web }\n', r"deep\.mdsl:1:\d+: E005 "),
    ("chain.mdsl", "".join(f"const c{i} = c{i + 1}\n" for i in range(3000)) + "const c3000 = true\n",
     r"chain\.mdsl:\d+:1: E005 "),
    ("deep.yaml", "listeners: " + "[" * 3000 + "]" * 3000 + "\n", r"deep\.yaml:1:\d+: C001 .*nested"),
])
def test_check_on_input_nested_past_any_stack_is_a_positioned_error(tmp_path, name, text, where):
    p = tmp_path / name
    p.write_text(text)
    r = mosnx_cli("check", str(p))
    out = _no_traceback(r)
    assert r.returncode == 1 and re.search(where, out), out


# ---- the startup hint: a curl that works for the config being served
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _served_example(tmp_path, name: str):
    """examples/<name> copied to tmp_path (with the wasm filters beside it, as in the
    repository) on free ports; (folder, config, cleanup)."""
    from .conftest import free_port
    shutil.copytree(EXAMPLES / name, tmp_path / name, ignore=shutil.ignore_patterns("*.log", "node_modules"))
    if name != "wasm":
        shutil.copytree(EXAMPLES / "wasm" / "filters", tmp_path / "wasm" / "filters")
    folder = tmp_path / name
    cfg = yaml.safe_load((folder / "mosnx.yaml").read_text())
    cleanup = lambda: None      # noqa: E731
    moved: dict[str, str] = {}
    for addr in cfg.get("demo_upstream", []):
        moved[addr] = f"127.0.0.1:{free_port()}"
    cfg["demo_upstream"] = [moved[a] for a in cfg.get("demo_upstream", [])]
    if name == "bookinfo":
        import importlib.util
        spec = importlib.util.spec_from_file_location("bookinfo_services", folder / "services.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        ports = {n: free_port() for n in mod.SERVICES}
        services = mod.start(ports)
        cleanup = lambda: mod.stop(services)        # noqa: E731
        for c in cfg["clusters"]:
            c["endpoints"] = [f"127.0.0.1:{ports[c['name']]}"]
    for c in cfg["clusters"]:
        c["endpoints"] = [moved.get(e, e) for e in c["endpoints"]]
    cfg["admin"]["address"] = f"127.0.0.1:{free_port()}"
    for lst in cfg["listeners"]:
        lst["address"] = f"127.0.0.1:{free_port()}"
    return folder, cfg, cleanup


def _hint(m) -> list[str]:
    lines = [l for l in m.log().splitlines() if " try: " in l]
    assert len(lines) == 1, m.log()
    return shlex.split(lines[0].split(" try: ", 1)[1])


def _send(argv: list[str]) -> int:
    """The status the hinted command gets: run by curl itself when there is one."""
    assert argv[:2] == ["curl", "-i"], argv
    if shutil.which("curl"):
        r = subprocess.run([*argv, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"],
                           capture_output=True, text=True, timeout=30)
        return int(r.stdout)
    headers = dict(h.split(": ", 1) for flag, h in zip(argv, argv[1:]) if flag == "-H")
    req = urllib.request.Request(argv[-1], headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.parametrize("name, host, path", [
    ("quickstart", None, "/"),
    ("shop", "shop.example.com", "/healthz"),
    ("bookinfo", "reviews", "/"),
    ("wasm", None, "/"),
])
def test_the_startup_hint_is_a_curl_that_does_not_404(tmp_path, name, host, path):
    from .conftest import Mosnx
    folder, cfg, cleanup = _served_example(tmp_path, name)
    m = Mosnx(folder, cfg, workers=1, name="hinted")
    try:
        m.start()
        argv = _hint(m)
        assert argv[-1] == f"http://127.0.0.1:{m.port}{path}", argv
        assert (["-H", f"Host: {host}"] if host else []) == argv[2:-1], argv
        status = _send(argv)
        assert status == 200, (argv, status, m.log())
    finally:
        m.kill()
        cleanup()


def test_no_hint_when_no_route_takes_a_plain_get(tmp_path, free_port):
    from .conftest import Mosnx
    rules = tmp_path / "r.mdsl"
    rules.write_text('vhost api domains "api.example.com" {\n'
                     '  route r when request.headers["x-key"] == "k" { to web }\n'
                     '}\n')
    cfg = {"listeners": [{"name": "ingress", "rules": str(rules)}],
           "clusters": [{"name": "web", "endpoints": ["127.0.0.1:9"]}]}
    m = Mosnx(tmp_path, cfg, workers=1, name="nohint")
    try:
        m.start()
        assert " try: " not in m.log(), m.log()
        assert m.request("GET", "/", headers=[("Host", "api.example.com")]).status == 404
    finally:
        m.kill()


def test_a_bug_in_a_starting_worker_is_one_line_exit_3(tmp_path, free_port):
    cfg = _good(tmp_path, free_port)
    r = _buggy("mosnx.proxy.worker", "build_snapshot", "run", "-c", cfg, "--workers", "1")
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (f"mosnx run: bug: {cfg}: worker 0: RuntimeError: boom "
                                                 "\u2014 please report")
