"""`mosnx run -c <Envoy bootstrap>` serves its static_resources: real sockets, a real
upstream on 127.0.0.1, routes, rewrites, header edits and a direct response as the
bootstrap declares them; and `mosnx check` lists what it ignores."""
from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import START_WAIT, free_port  # noqa: E402

BOOTSTRAP = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: edge
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          route_config:
            name: local
            response_headers_to_add:
            - header: {{key: x-served-by, value: mosnx}}
            virtual_hosts:
            - name: api
              domains: ["api.test"]
              routes:
              - match: {{prefix: "/v1/"}}
                route: {{cluster: api, prefix_rewrite: "/internal/"}}
                request_headers_to_add:
                - header: {{key: x-route, value: v1}}
            - name: rest
              domains: ["*"]
              routes:
              - match: {{path: "/teapot"}}
                direct_response: {{status: 418, body: {{inline_string: "short and stout"}}}}
              - match: {{prefix: "/"}}
                route: {{cluster: web}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: api
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: api
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {api}}}}}}}
  - name: web
    type: STATIC
    respect_dns_ttl: true
    load_assignment:
      cluster_name: web
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {web}}}}}}}
"""


def _get(port: int, path: str, host: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


@contextlib.contextmanager
def serving(config: Path, admin_port: int, workers: int = 1) -> Iterator[subprocess.Popen]:
    """`mosnx run -c config` until the block ends; ready when its admin API says so."""
    log_path = config.with_suffix(".log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mosnx", "run", "-c", str(config), "--workers", str(workers)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=config.parent)
        try:
            deadline = time.monotonic() + START_WAIT
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if _get(admin_port, "/ready", f"127.0.0.1:{admin_port}", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "mosnx was not ready in time:\n" + log_path.read_text()
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def envoy_mosnx(tmp_path: Path, upstream):
    api, web = upstream(), upstream()
    ports = {"admin": free_port(), "listen": free_port(), "api": api.port, "web": web.port}
    path = tmp_path / "envoy.yaml"
    path.write_text(BOOTSTRAP.format(**ports))
    with serving(path, ports["admin"]):
        yield path, ports, api, web


def test_bootstrap_routes_real_requests(envoy_mosnx):
    path, ports, api, web = envoy_mosnx
    status, headers, body = _get(ports["listen"], "/v1/users?id=7", "api.test")
    assert (status, body, headers.get("x-served-by")) == (200, b"ok", "mosnx")
    [req] = api.requests
    assert req.target == "/internal/users?id=7" and req.header("x-route") == "v1"
    status, headers, body = _get(ports["listen"], "/teapot", "other.test")
    assert (status, body) == (418, b"short and stout")
    status, _, _ = _get(ports["listen"], "/v1/users", "other.test")     # not api.test: the web vhost
    assert status == 200 and web.requests[0].target == "/v1/users" and len(api.requests) == 1


def test_check_lists_what_mosnx_ignores(envoy_mosnx):
    path = envoy_mosnx[0]
    r = subprocess.run([sys.executable, "-m", "mosnx", "check", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(i for i, s in enumerate(path.read_text().splitlines(), 1) if "respect_dns_ttl" in s)
    assert f"{path}:{line}:5: X001" in r.stdout and "respect_dns_ttl" in r.stdout
    assert "1 warning" in r.stdout
