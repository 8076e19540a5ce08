"""Access logs from an Envoy bootstrap, end to end: one listener logs in Istio's
default format to a file, another as JSON lines; a proxied request, a 404 with no
route (NR), an upstream that refuses connections (UF) and a local rate limit (RL)
each give the line Envoy would write. SIGUSR1 reopens the files in every worker,
as logrotate's postrotate expects: the next line goes to a new file at the old path."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

sys.path.insert(0, os.path.dirname(__file__))
from conftest import START_WAIT, WAIT, free_port, wait_until  # noqa: E402

from mosnx.runtime.logformat import ISTIO_FORMAT  # noqa: E402

T = "type.googleapis.com/"
HF = T + "envoy.extensions.filters.http."
FILE_LOG = T + "envoy.extensions.access_loggers.file.v3.FileAccessLog"
JSON_FIELDS = {"start_time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
               "protocol": "%PROTOCOL%", "response_code": "%RESPONSE_CODE%", "response_flags": "%RESPONSE_FLAGS%",
               "response_code_details": "%RESPONSE_CODE_DETAILS%", "bytes_received": "%BYTES_RECEIVED%",
               "bytes_sent": "%BYTES_SENT%", "duration": "%DURATION%", "upstream_host": "%UPSTREAM_HOST%",
               "upstream_cluster": "%UPSTREAM_CLUSTER%", "route_name": "%ROUTE_NAME%",
               "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%", "user_agent": "%REQ(USER-AGENT)%"}


def _endpoint(cluster: str, port: int) -> dict[str, Any]:
    return {"name": cluster, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
        "cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def _listener(name: str, port: int, access_log: dict[str, Any]) -> dict[str, Any]:
    routes = [
        {"name": "ok", "match": {"prefix": "/ok"}, "route": {"cluster": "a"}},
        {"name": "down", "match": {"prefix": "/down"}, "route": {"cluster": "dead"}},
        {"name": "limited", "match": {"prefix": "/limited"}, "route": {"cluster": "a"}, "typed_per_filter_config": {
            "envoy.filters.http.local_ratelimit": {
                "@type": HF + "local_ratelimit.v3.LocalRateLimit", "stat_prefix": "rl",
                "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "1000s"},
                "filter_enabled": {"default_value": {"numerator": 100}},
                "filter_enforced": {"default_value": {"numerator": 100}}}}},
    ]
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name, "access_log": [access_log],
                "http_filters": [
                    {"name": "envoy.filters.http.local_ratelimit",
                     "typed_config": {"@type": HF + "local_ratelimit.v3.LocalRateLimit", "stat_prefix": "rl"}},
                    {"name": "envoy.filters.http.router", "typed_config": {"@type": HF + "router.v3.Router"}}],
                "route_config": {"name": name + "-routes", "virtual_hosts": [
                    {"name": "all", "domains": ["*"], "routes": routes}]}}}]}]}


def _get(port: int, path: str, timeout: float = WAIT) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": "shop.test", "User-Agent": "e2e/1", "X-Request-Id": "rid-" + path[1:]})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _holds(pid: int, path: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


@contextlib.contextmanager
def serving(tmp: Path, a_port: int, workers: int) -> Iterator[tuple[subprocess.Popen, dict[str, int]]]:
    """`mosnx run` on the bootstrap; "dead" is a port nothing listens on."""
    ports = {"admin": free_port(), "text": free_port(), "json": free_port(), "dead": free_port(), "a": a_port}
    boot = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ports["admin"]}}},
        "static_resources": {
            "listeners": [
                _listener("text", ports["text"], {"name": "envoy.access_loggers.file", "typed_config": {
                    "@type": FILE_LOG, "path": str(tmp / "text.log"),
                    "log_format": {"text_format_source": {"inline_string": ISTIO_FORMAT}}}}),
                _listener("json", ports["json"], {"name": "envoy.access_loggers.file", "typed_config": {
                    "@type": FILE_LOG, "path": str(tmp / "json.log"), "log_format": {"json_format": JSON_FIELDS}}}),
            ],
            "clusters": [_endpoint("a", ports["a"]), _endpoint("dead", ports["dead"])]}}
    config = tmp / "envoy.yaml"
    config.write_text(yaml.safe_dump(boot, sort_keys=False))
    log_path = tmp / "mosnx.out"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mosnx", "run", "-c", str(config), "--workers", str(workers)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp)
        try:
            deadline = time.monotonic() + START_WAIT
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    c = http.client.HTTPConnection("127.0.0.1", ports["admin"], timeout=2)
                    c.request("GET", "/ready")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "mosnx was not ready in time:\n" + log_path.read_text()
                time.sleep(0.1)
            yield proc, ports
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _lines(path: Path, n: int) -> list[str]:
    """The first n lines of a log, once it has them (lines are flushed every 100 ms)."""
    def ready() -> list[str] | None:
        got = path.read_text().splitlines() if path.exists() else []
        return got if len(got) >= n else None
    return wait_until(ready, what=f"{n} lines in {path.name}")[:n]


@pytest.fixture(params=[2])
def proxy(request, tmp_path: Path, upstream):
    a = upstream()
    with serving(tmp_path, a.port, workers=request.param) as (proc, ports):
        yield proc, ports, tmp_path, a


TIME = r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\]"
PEER = r"127\.0\.0\.1:\d+"


def test_istio_format_and_json_lines_for_ok_nr_uf_and_rl(proxy):
    proc, ports, tmp, a = proxy
    for listener in ("text", "json"):
        p = ports[listener]
        assert [_get(p, path) for path in ("/ok", "/nothing", "/down", "/limited", "/limited")] == \
            [200, 404, 503, 200, 429]
    text = _lines(tmp / "text.log", 5)
    up = f"127.0.0.1:{a.port}"
    here = f"127.0.0.1:{ports['text']}"
    want = [
        f'{TIME} "GET /ok HTTP/1.1" 200 - via_upstream - "-" 0 2 \\d+ - "-" "e2e/1" "rid-ok" "shop.test" '
        f'"{up}" a - {here} {PEER} - ok',
        f'{TIME} "GET /nothing HTTP/1.1" 404 NR route_not_found - "-" 0 \\d+ \\d+ - "-" "e2e/1" "rid-nothing" '
        f'"shop.test" "-" - - {here} {PEER} - -',
        f'{TIME} "GET /down HTTP/1.1" 503 UF upstream_reset_before_response_started{{connection_failure}} - "-" '
        f'0 \\d+ \\d+ - "-" "e2e/1" "rid-down" "shop.test" "127.0.0.1:{ports["dead"]}" dead - {here} {PEER} - down',
        f'{TIME} "GET /limited HTTP/1.1" 200 - via_upstream - "-" 0 2 \\d+ - "-" "e2e/1" "rid-limited" '
        f'"shop.test" "{up}" a - {here} {PEER} - limited',
        f'{TIME} "GET /limited HTTP/1.1" 429 RL local_rate_limited - "-" 0 \\d+ \\d+ - "-" "e2e/1" "rid-limited" '
        f'"shop.test" "-" a - {here} {PEER} - limited',
    ]
    # two workers buffer their own lines: the file holds them in no set order
    left = list(text)
    for pattern in want:
        rx = re.compile(pattern.replace("|", "\\|").replace("{connection", "\\{connection")
                        .replace("failure}", "failure\\}"))
        hit = [line for line in left if rx.fullmatch(line)]
        assert len(hit) == 1, (pattern, text)
        left.remove(hit[0])
    js = sorted((json.loads(x) for x in _lines(tmp / "json.log", 5)), key=lambda j: (j["path"], j["response_code"]))
    assert [(j["path"], j["response_code"], j["response_flags"]) for j in js] == [
        ("/down", 503, "UF"), ("/limited", 200, None), ("/limited", 429, "RL"), ("/nothing", 404, "NR"),
        ("/ok", 200, None)]
    assert js[3]["upstream_host"] is None and js[3]["route_name"] is None
    ok = js[4]
    assert isinstance(ok["duration"], int) and ok["bytes_sent"] == 2 and ok["bytes_received"] == 0
    assert (ok["upstream_host"], ok["upstream_cluster"], ok["route_name"], ok["user_agent"], ok["protocol"]) == \
        (up, "a", "ok", "e2e/1", "HTTP/1.1")
    assert re.fullmatch(TIME[2:-2], ok["start_time"]) and re.fullmatch(PEER, ok["downstream_remote_address"])


@pytest.mark.parametrize("proxy", [1, 2], indirect=True, ids=["one-process", "two-workers"])
def test_sigusr1_reopens_the_file_in_every_worker(proxy, request):
    proc, ports, tmp, a = proxy
    n = request.node.callspec.params["proxy"]
    log = tmp / "text.log"
    assert _get(ports["text"], "/ok") == 200
    _lines(log, 1)
    rotated = tmp / "text.log.1"
    os.rename(log, rotated)
    # one worker runs in the supervisor's own process
    workers = [proc.pid] if n == 1 else wait_until(
        lambda: _children(proc.pid) if len(_children(proc.pid)) >= 2 else None, what="workers")
    proc.send_signal(signal.SIGUSR1)
    # every worker has let go of the renamed file once it reopened the path
    wait_until(lambda: log.exists() and not any(_holds(w, rotated) for w in workers), what="logs reopened")
    for _ in range(4):          # whichever worker takes them
        assert _get(ports["text"], "/ok") == 200
    assert len(_lines(log, 4)) == 4
    assert len(rotated.read_text().splitlines()) == 1
    assert proc.poll() is None
