"""`mosnx convert` keeps behaviour: the Envoy bootstrap and the mosnx YAML (+ .mdsl)
it converts to answer the same requests the same way, over real sockets with real
upstreams on 127.0.0.1 (examples/envoy/envoy.yaml); and Envoy's integration-test
bootstrap converts to a config whose routes and clusters are the bootstrap's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import free_port  # noqa: E402
from test_envoy_bootstrap import _get, serving  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "envoy" / "envoy.yaml"
REQUESTS = [
    # (method, path, host, extra headers)
    ("GET", "/", "www.example.com", {}),
    ("GET", "/api/users", "api.example.com", {}),
    ("GET", "/api/users?page=2", "api.example.com", {"x-canary": "true"}),
    ("POST", "/api/users", "api.example.com", {}),
    ("GET", "/health", "api.example.com", {}),
    ("GET", "/old/page?q=1", "www.example.com", {}),
    ("GET", "/flaky", "api.example.com", {}),
    ("GET", "/search?debug=1", "www.example.com", {}),
    ("GET", "/search?debug=0", "www.example.com", {}),
    ("GET", "/users/42", "other.test", {}),
    ("GET", "/users/abc", "other.test", {}),
    ("GET", "/a//b/../c", "other.test", {}),
    ("GET", "/", "www.example.com", {"x-envoy-fault-abort-request": "418"}),
    ("GET", "/api/x", "api.example.com", {"x-vhost": "client"}),
]


def _echo(name: str):
    def answer(conn, req) -> None:
        if req.target == "/flaky":
            conn.respond(503, b"flaky")
            return
        seen = {"upstream": name, "target": req.target, "host": req.header("host"),
                "x-vhost": req.all("x-vhost"), "x-route": req.header("x-route")}
        conn.respond(200, json.dumps(seen).encode(), [("x-internal", "1")])
    return answer


def _request(port: int, method: str, path: str, host: str, headers: dict[str, str]) -> tuple:
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=b"" if method == "POST" else None, headers={"Host": host, **headers})
        r = c.getresponse()
        keep = {k.lower(): v for k, v in r.getheaders() if k.lower() in ("location", "x-edge", "x-internal")}
        return r.status, keep, r.read()
    finally:
        c.close()


def _ported(text: str, ports: dict[int, int]) -> str:
    for old, new in ports.items():
        text = text.replace(f"port_value: {old}}}", f"port_value: {new}}}")
    return text


def test_converted_example_answers_as_the_bootstrap(tmp_path: Path, upstream):
    ups = {9000: upstream(_echo("web")), 9001: upstream(_echo("api-v1")), 9002: upstream(_echo("api-v2"))}
    answers = []
    flaky_attempts = []
    for kind in ("envoy", "converted"):
        listen, admin = free_port(), free_port()
        ports = {10000: listen, 9901: admin, **{k: u.port for k, u in ups.items()}}
        src = tmp_path / f"{kind}-envoy.yaml"
        src.write_text(_ported(EXAMPLE.read_text(), ports))
        config = src
        if kind == "converted":
            config = tmp_path / "mosnx.yaml"
            r = subprocess.run([sys.executable, "-m", "mosnx", "convert", str(src), "-o", str(config)],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            assert (tmp_path / "mosnx.edge.mdsl").is_file()
            check = subprocess.run([sys.executable, "-m", "mosnx", "check", str(config)],
                                   capture_output=True, text=True, timeout=60)
            assert check.returncode == 0, check.stdout
        before = len(ups[9001].requests_for("/flaky"))
        with serving(config, admin):
            answers.append([_request(listen, *req) for req in REQUESTS])
        flaky_attempts.append(len(ups[9001].requests_for("/flaky")) - before)
    envoy, converted = answers
    for req, a, b in zip(REQUESTS, envoy, converted):
        assert a == b, f"{req}: {a} != {b}"
    by = dict(zip([" ".join(r[:3]) + " " + json.dumps(r[3]) for r in REQUESTS], envoy))
    # what the bootstrap says, as a request sees it
    assert by['GET /api/users api.example.com {}'][0] == 200
    assert json.loads(by['POST /api/users api.example.com {}'][2])["target"] == "/v1/users"
    seen = json.loads(by['GET /api/users api.example.com {}'][2])
    assert (seen["upstream"], seen["target"], seen["x-vhost"], seen["x-route"]) == ("api-v1", "/v1/users", ["api"], "api")
    assert json.loads(by['GET /api/users?page=2 api.example.com {"x-canary": "true"}'][2])["target"] == "/v2/users?page=2"
    assert by['GET /health api.example.com {}'][:3:2] == (200, b"healthy\n")
    assert by['GET /old/page?q=1 www.example.com {}'][0] == 301
    assert by['GET /old/page?q=1 www.example.com {}'][1]["location"].endswith("/new/page?q=1")
    assert by['GET /flaky api.example.com {}'][0] == 503 and flaky_attempts == [3, 3]
    assert json.loads(by['GET /search?debug=1 www.example.com {}'][2])["host"] == "debug.internal"
    assert json.loads(by['GET /users/42 other.test {}'][2])["target"] == "/profile/42"
    assert by['GET / www.example.com {"x-envoy-fault-abort-request": "418"}'][0] == 418
    assert json.loads(by['GET /api/x api.example.com {"x-vhost": "client"}'][2])["x-vhost"] == ["api"]
    assert "x-internal" not in by['GET / www.example.com {}'][1] and by['GET / www.example.com {}'][1]["x-edge"] == "mosnx"


def test_converted_integration_bootstrap_has_the_same_routes(envoy_testdata_dir, tmp_path: Path):
    from mosnx.runtime.config import load_config
    from mosnx.runtime.snapshot import build_snapshot
    boot = envoy_testdata_dir(tmp_path)
    out = tmp_path / "converted.yaml"
    r = subprocess.run([sys.executable, "-m", "mosnx", "convert", str(boot), "-o", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    from mosnx import plugins
    plugins.load()
    a, b = build_snapshot(load_config(str(boot))), build_snapshot(load_config(str(out)))
    assert a.listeners.keys() == b.listeners.keys() == {"listener_0"}
    ra = [(vh["domains"], [x["action"] for x in vh["routes"]]) for vh in a.listeners["listener_0"].routes.describe()]
    rb = [(vh["domains"], [x["action"] for x in vh["routes"]]) for vh in b.listeners["listener_0"].routes.describe()]
    assert ra == rb == [(["*"], [{"cluster": "cluster_1", "timeout": 15.0}])]
    va, vb = a.listeners["listener_0"].routes.vhosts[0].routes[0], b.listeners["listener_0"].routes.vhosts[0].routes[0]
    assert va.path_prefix == vb.path_prefix == "/test/long/url"
    ca, cb = a.clusters["cluster_1"], b.clusters["cluster_1"]
    assert (ca.endpoints, ca.protocol, ca.connect_timeout, ca.lb) == (cb.endpoints, cb.protocol, cb.connect_timeout, cb.lb)


@pytest.fixture
def envoy_testdata_dir():
    root = Path(__file__).resolve().parents[2]
    rel = Path("shared") / "testdata" / "envoy" / "test" / "config" / "integration"
    found = next((p for p in (root.parent / rel, root.parent.parent / rel) if p.is_dir()), None)
    if found is None:
        pytest.skip("Envoy's test data (shared/testdata/envoy) is absent")

    def make(tmp: Path) -> Path:
        values = {"ntop_ip_loopback_address": "127.0.0.1", "upstream_0": "18090", "null_device_path": os.devnull,
                  "lds_json_path": str(tmp / "server_xds.lds.yaml"), "cds_json_path": str(tmp / "server_xds.cds.yaml"),
                  "eds_json_path": str(tmp / "server_xds.eds.yaml"), "rds_json_path": str(tmp / "server_xds.rds.yaml")}
        for src in found.glob("server_xds.*"):
            text = src.read_text()
            for k, v in values.items():
                text = text.replace("{{ " + k + " }}", v)
            if src.name.startswith("server_xds.lds"):
                text = text.replace("port_value: 0", "port_value: 18091")
            (tmp / src.name).write_text(text)
        return tmp / "server_xds.bootstrap.yml"
    return make
