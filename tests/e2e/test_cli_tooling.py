"""`mosnx explain` and `mosnx test` from the command line, and explain held to the real proxy.

The shop's rule tests run with full coverage (what `make test` guarantees of the
example); bad input exits 2 with a positioned message and no traceback; and for a
corpus of requests, what `explain` says (status, cluster, path and headers sent
upstream) is what the shop served by a real mosnx does.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mosnx import tooling
from mosnx.dsl.explain import Explainer, parse_request

from .test_shop_e2e import NO_FAULT, FAULT, SHOP, TOKEN, start_shop

ROOT = Path(__file__).resolve().parents[2]
SHOP_DIR = ROOT / "examples" / "shop"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # -P: the repository root as cwd must not shadow the installed package with its mosnx/
    return subprocess.run([sys.executable, "-P", "-m", "mosnx", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_shop_rule_tests_pass_with_full_coverage():
    r = cli("test", "--coverage", "--fail-uncovered", str(SHOP_DIR))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "coverage of" in r.stdout and "6/6 routes" in r.stdout and "2/2 split arms" in r.stdout
    assert "never" not in r.stdout
    assert r.stdout.rstrip().splitlines()[-1].startswith("12 passed, 0 failed in ")
    doc = json.loads(cli("test", "--coverage", "--format", "json", str(SHOP_DIR)).stdout)
    assert doc["failed"] == 0 and all(not c["uncovered"] for c in doc["coverage"].values())


def test_failing_test_exits_1_and_bad_file_exits_2(tmp_path):
    f = tmp_path / "x_test.yaml"
    f.write_text(f"config: {SHOP_DIR / 'mosnx.yaml'}\ntests:\n"
                 "  - request: GET http://shop.example.com/healthz\n    expect: {route: items}\n")
    r = cli("test", str(f))
    assert r.returncode == 1
    assert f"FAILED {f}:4: line 3: route: expected 'items', got 'health'" in r.stdout
    f.write_text("tests:\n  - request: GET http://shop.example.com/healthz\n    expect: {route: [}\n")
    r = cli("test", str(f))
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert f"{f}:3:" in r.stdout and "C601" in r.stdout


def test_explain_text_and_json():
    r = cli("explain", "-c", str(SHOP_DIR / "mosnx.yaml"), "GET https://shop.example.com/api/items?id=3",
            "-H", "x-user: a", "--source", "10.1.2.3")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "route     api" in out and "split shop-v1 90%, shop-v2 10%" in out
    assert "path /api/items?id=3 -> /items?id=3" in out and "mirror    shadow-sink 5%" in out
    assert "retry     3 on" in out and "wasm      authz" in out
    r = cli("explain", "-c", str(SHOP_DIR / "mosnx.yaml"), "GET http://shop.example.com/healthz", "--format", "json")
    doc = json.loads(r.stdout)
    assert (doc["route"], doc["status"], doc["action"]) == ("health", 200, "respond")


@pytest.mark.parametrize("args, words", [
    (["GET http://shop.example.com/x y"], "request:1:"),
    (["GET http://shop.example.com/", "-H", "nocolon"], "-H:1:1"),
    (["GET http://shop.example.com/", "--source", "nope"], "--source:1:1"),
    (["GET http://shop.example.com/", "--listener", "nope"], 'no HTTP listener "nope"'),
    (["GET http://shop.example.com/", "--response", "999"], "--response"),
])
def test_explain_bad_input_exits_2(args, words):
    r = cli("explain", "-c", str(SHOP_DIR / "mosnx.yaml"), *args)
    assert r.returncode == 2, r.stdout
    assert words in r.stderr and "Traceback" not in r.stderr


def test_explain_config_that_does_not_build(tmp_path):
    (tmp_path / "m.yaml").write_text("listeners:\n  - {name: l, address: 127.0.0.1:1, route: {cluster: z}}\n")
    r = cli("explain", "-c", str(tmp_path / "m.yaml"), "GET http://h/")
    assert r.returncode == 2 and "C101" in r.stderr and "Traceback" not in r.stderr


# ---- explain against the real proxy ----
CORPUS = [
    ("GET", "/healthz", []),
    ("GET", "/docs/v1/intro?x=1", []),
    ("GET", "/admin/users", []),
    ("GET", "/v1/items/42", []),
    ("GET", "/v1/items/42?debug=1", []),
    ("GET", "/v1/items/abc", []),
    ("GET", "/api/cart", [("x-canary", "1")]),
    ("GET", "/api/cart", [("cookie", "beta=yes")]),
    ("GET", "/api/cart", [TOKEN, ("x-debug", "1")]),
    ("POST", "/api/cart", [TOKEN]),
    ("DELETE", "/api/cart", []),
    ("GET", "/apix", []),
    ("GET", "/x/../v2/items/7", []),
    ("GET", "/anything?q=1", []),
]


def test_explain_matches_the_proxy(tmp_path, upstream):
    shop = start_shop(tmp_path, upstream, {"shop.mdsl": (FAULT, NO_FAULT)})
    try:
        ex = Explainer(tooling.snapshot(str(shop.m.config_path)), tooling.core())
        for method, target, headers in CORPUS:
            hs = [("x-api-key", "corpus"), *headers]
            got = ex.explain(parse_request(f"{method} http://{SHOP}{target}", [f"{k}: {v}" for k, v in hs]))
            before = {c: len(u.requests) for c, u in shop.ups.items()}
            r = shop.get(target, headers, method=method, key="corpus")
            served = [c for c, u in shop.ups.items() if c != "shadow-sink" and len(u.requests) > before[c]]
            what = f"{method} {target}"
            if got.action == "forward":
                assert served and r.status == 200, what
                (cluster,) = served
                if got.split:
                    assert cluster in dict(got.split), what
                else:
                    assert cluster == got.cluster, what
                sent = shop.ups[cluster].requests[-1]
                assert sent.start.split(" ")[1] == got.path, what
                for k, v in got.request_headers:
                    if k in ("x-env", "host"):
                        assert (k, v) in sent.headers, (what, k)
                if ("x-debug", "1") in headers:
                    assert "x-debug" not in dict(sent.headers), what
            else:
                assert not served, what
                assert r.status == got.status, what
                if got.location is not None:
                    assert r.header("location") == got.location, what
    finally:
        shop.m.kill()


@pytest.mark.parametrize("args", [
    ["explain", "-c", "examples/shop/mosnx.yaml", "GET https://shop.example.com/api/items?id=3", "-H", "x-user: a",
     "--source", "10.1.2.3"],
    ["explain", "-c", "examples/shop/mosnx.yaml", "GET http://shop.example.com/admin/users"],
    ["explain", "-c", "examples/envoy/envoy.yaml", "GET http://api.example.com/api/users", "--response", "200"],
    ["test", "--coverage", "examples/shop"],
])
def test_docs_show_real_output(args):
    """docs/tooling.md's console blocks are what these commands print today."""
    import re
    r = cli(*args, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    doc = re.sub(r" in [0-9.]+s\n", " in Xs\n", (ROOT / "docs" / "tooling.md").read_text())
    assert re.sub(r" in [0-9.]+s\n", " in Xs\n", r.stdout) in doc, "docs/tooling.md is out of date:\n" + r.stdout
