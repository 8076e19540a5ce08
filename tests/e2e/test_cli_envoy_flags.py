"""Envoy's command line (mosnx/envoy_flags.py): the flags Istio's agent passes, parsed
as `mosnx run` parses them, what each becomes, and the errors for what mosnx does not
take; then the real command line on a bad flag and with no subcommand."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosnx import envoy_flags
from mosnx.__main__ import _parse_run

# pkg/envoy/proxy.go's args, with the options the agent adds when configured
AGENT = ["-c", "/etc/istio/proxy/envoy-rev.json", "--drain-time-s", "45", "--drain-strategy", "immediate",
         "--local-address-ip-version", "v4", "--file-flush-interval-msec", "1000", "--disable-hot-restart",
         "--allow-unknown-static-fields", "-l", "warning", "--component-log-level", "misc:error,upstream:trace",
         "--skip-deprecated-logs", "--concurrency", "2"]


def parse(argv: list[str]):
    args = _parse_run(argv)
    assert not isinstance(args, int), f"usage error for {argv}"
    return args, envoy_flags.take(args)


def test_the_agents_flags_are_taken():
    args, flags = parse(AGENT)
    assert args.config == "/etc/istio/proxy/envoy-rev.json"
    assert (args.workers, args.log_level, args.takeover) == (2, "warning", False)
    assert flags.drain_time_s == 45.0
    assert flags.component_levels == {"misc": "error", "upstream": "debug"}
    noted = " ".join(flags.notes)
    for flag in ("--disable-hot-restart", "--allow-unknown-static-fields", "--file-flush-interval-msec",
                 "--local-address-ip-version", "--drain-strategy", "--skip-deprecated-logs"):
        assert flag in noted


def test_envoys_spellings():
    args, _ = parse(["--config-path", "b.yaml", "--log-level", "trace", "--restart-epoch", "1"])
    assert (args.config, args.log_level, args.takeover) == ("b.yaml", "debug", True)
    args, _ = parse(["-c", "b.yaml", "--workers", "3", "--concurrency", "5"])
    assert args.workers == 3            # mosnx's own --workers wins


@pytest.mark.parametrize("argv, says", [
    (["-c", "b.yaml", "--hot-restart-version"], "unknown flag --hot-restart-version"),
    (["-c", "b.yaml", "--mode=validate"], "unknown flag --mode"),
    ([], "a config is needed"),
])
def test_unknown_flags_are_named(capsys, argv, says):
    assert _parse_run(argv) == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["-c", "b.yaml", "-l", "loud"], "--log-level 'loud'"),
    (["-c", "b.yaml", "--component-log-level", "misc"], "write name:level"),
    (["-c", "b.yaml", "--concurrency", "0"], "--concurrency 0"),
    (["-c", "b.yaml", "--drain-time-s", "-1"], "must be 0 or more seconds"),
    (["-c", "b.yaml", "--drain-time-s", "nan"], "must be 0 or more seconds"),
])
def test_bad_values_are_usage_errors(argv, says):
    args = _parse_run(argv)
    with pytest.raises(envoy_flags.UsageError, match=re.escape(says)):
        envoy_flags.take(args)


def test_config_yaml_merges_over_the_file_and_service_flags_fill_the_node(tmp_path):
    boot = tmp_path / "b.json"
    boot.write_text(json.dumps({"node": {"cluster": "c0"}, "static_resources": {"clusters": [{"name": "a"}]}}))
    args, flags = parse(["-c", str(boot), "--config-yaml", "static_resources: {clusters: [{name: b}]}",
                         "--service-node", "n1", "--service-cluster", "c1", "--service-zone", "z1"])
    out = envoy_flags.effective_config(args.config, flags)
    assert out != str(boot)
    merged = json.loads(open(out).read())
    assert [c["name"] for c in merged["static_resources"]["clusters"]] == ["a", "b"]     # lists appended
    assert merged["node"] == {"cluster": "c0", "id": "n1", "locality": {"zone": "z1"}}   # only what was missing
    args, flags = parse(["-c", str(boot)])
    assert envoy_flags.effective_config(args.config, flags) == str(boot)                 # nothing to merge
    args, flags = parse(["-c", str(boot), "--config-yaml", "[1, 2]"])
    with pytest.raises(envoy_flags.UsageError, match="must be a mapping"):
        envoy_flags.effective_config(args.config, flags)


def test_the_command_line_without_a_subcommand_is_run():
    r = subprocess.run([sys.executable, "-m", "mosnx", "-c", "/nonexistent/envoy.json", "--disable-hot-restart"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "/nonexistent/envoy.json: no such file" in r.stderr
    r = subprocess.run([sys.executable, "-m", "mosnx", "-c", "x.json", "--bogus-flag", "1"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "unknown flag --bogus-flag" in r.stderr and "Traceback" not in r.stderr


FLAG_WORDS = ["-c", "--config-path", "--config-yaml", "--concurrency", "--drain-time-s", "--restart-epoch",
              "-l", "--component-log-level", "--drain-strategy", "--local-address-ip-version",
              "--service-node", "--disable-hot-restart", "--bogus", "x", "0", "-1", "a:b", "misc:warn,", ":",
              "{", "[1]", "trace", "v7", "1e9", "nan"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(FLAG_WORDS), st.text(max_size=8)), max_size=8))
def test_any_command_line_is_taken_or_a_usage_error(capsys, argv):
    args = _parse_run(argv)
    capsys.readouterr()
    if isinstance(args, int):
        assert args in (0, 2)
        return
    try:
        flags = envoy_flags.take(args)
    except envoy_flags.UsageError:
        return
    assert args.log_level in ("debug", "info", "warning", "error", "critical")
    assert flags.drain_time_s is None or 0 <= flags.drain_time_s < float("inf")
