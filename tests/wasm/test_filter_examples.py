"""examples/wasm/mosnx.yaml builds: every filter loads, starts and is configured, and
the SDK filters read their config's JSON strings with the escapes unescaped."""
from __future__ import annotations

import os

import yaml

import mosnx.wasm  # noqa: F401  (registers the filter)
from mosnx.runtime import build_snapshot

from .conftest import ROOT, make, run

EXAMPLE = os.path.join(ROOT, "examples", "wasm", "mosnx.yaml")


def test_example_config_builds():
    snap = build_snapshot(EXAMPLE)
    public = snap.listeners["public"].pipeline
    assert len(public.request) == 5 and len(public.log) == 5
    assert len(public.response_body) == 5            # SDK modules export every callback
    assert len(snap.listeners["protected"].pipeline.request) == 2


def _example_filter(name: str) -> dict:
    with open(EXAMPLE) as f:
        cfg = yaml.safe_load(f)
    for lst in cfg["listeners"]:
        for item in lst.get("filters", []):
            if item["wasm"]["name"] == name:
                return dict(item["wasm"])
    raise AssertionError(f"no wasm filter {name} in {EXAMPLE}")


def test_example_append_body_ends_with_a_real_newline():
    opts = _example_filter("append")
    f = make(opts.pop("name"), opts.pop("module").rsplit("/", 1)[1], **opts)
    r = run(f, upstream=(200, (), [b"hello", b""]))
    assert r.body == b"hello\n-- appended by a wasm filter\n"
    assert b"\\n" not in r.body


def test_json_escapes_in_plugin_config_are_unescaped():
    suffix = 'tab\there "quoted" back\\slash /slash \u00e9 \U0001F600\r\n'
    f = make("ap", "append_body.wasm", root_id="append_body", config={"suffix": suffix})
    r = run(f, upstream=(200, (), [b"x", b""]))
    assert r.body == b"x" + suffix.encode("utf-8")


def test_plugin_config_keys_inside_other_values_are_not_taken():
    config = {"note": "\"suffix\": \"no\"", "nested": {"suffix": "no", "list": ["}", "{"]}, "n": 3,
              "suffix": "yes"}
    f = make("ap", "append_body.wasm", root_id="append_body", config=config)
    assert run(f, upstream=(200, (), [b"x", b""])).body == b"xyes"
