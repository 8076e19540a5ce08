"""`mosnx schema`: the JSON Schema generated from DOCUMENT accepts every example
config and rejects the broken configs the loader's own tests are seeded with,
wherever JSON Schema can say what is wrong.

The seeded configs are collected by running the config tests (tests/runtime/
config/) in a child pytest with a plugin that records each document
load_config_text refused and the codes it refused it with. Structural findings
(C002 unknown key, C003 wrong type, C005 missing key) must all be rejected; a
bad value (C004) must be rejected unless its message is one of the kinds the
module docstring of runtime/config/json_schema.py lists as beyond JSON Schema.
"""
from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import textwrap

import jsonschema
import pytest
import yaml

from mosnx.__main__ import main as mosnx
from mosnx.runtime.config import load_config, load_config_text
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.config.json_schema import NotExported, _Export, json_schema
from mosnx.runtime.config.schema import Type

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "..", "examples")
SCHEMA = json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# C004 findings that need code or two values at once (json_schema.py's docstring)
BEYOND_SCHEMA = [
    # text parsed by code: attribute references, access-log formats, regexes,
    # networks, header names, server-name wildcards, a port inside host:port
    r"unknown attribute|attribute reference|command operator|is never closed|bad key syntax",
    r"bad regular expression", r"the regex does not compile", r"does not appear to be an IPv4 or IPv6 network", r"is not a header name",
    r"a wildcard is only allowed", r"port \d+ is outside", r"must start with \"/\"", r"not a prime number",
    # a file's contents
    r"token_file: ",
    # two keys (or two parts of the document) compared
    r"must be below", r"must add up to", r"is given twice", r"needs protocol: http2", r"needs client_ca", r"needs an HTTP (or RPC )?listener",
    r"give format or json_format, not both",
    r"call is not routed by", r"settings need protocol:", r"not per-route policies on an RPC listener",
    r"is not served on a protocol:", r"both route the calls",
    # a percentage written with its sign ("150%"), an exporter endpoint's form: text parsed by code
    r"is outside 0%\.\.100%", r"takes an http:// URL", r"expected host:port or an http",
    # what is installed beside the proxy
    r"needs its protocol classes: pip install",
    # a duration of 0 where the key needs a positive one (0 is a number the schema accepts)
    r"must be longer than 0",
]


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"listeners", "clusters", "admin", "xds"} <= set(SCHEMA["properties"])


def example_configs() -> list[str]:
    out = []
    for f in sorted(glob.glob(os.path.join(EXAMPLES, "*", "*.yaml"))):
        if f.endswith("_test.yaml"):
            continue            # rule tests (mosnx test), not configs
        data = yaml.safe_load(open(f, encoding="utf-8"))
        # Envoy bootstraps and xDS resource files are not mosnx.yaml
        if isinstance(data, dict) and not {"static_resources", "resources", "node"} & set(data):
            out.append(f)
    return out


@pytest.mark.parametrize("path", example_configs(), ids=os.path.basename)
def test_every_example_config_is_valid(path):
    load_config(path)       # the loader accepts it ...
    errors = [f"{list(e.path)}: {e.message}" for e in VALIDATOR.iter_errors(yaml.safe_load(open(path)))]
    assert errors == []     # ... and so does the schema


def test_a_type_without_an_export_is_an_error():
    class Odd(Type):
        pass
    with pytest.raises(NotExported):
        _Export(__import__("mosnx.runtime.config", fromlist=["DOCUMENT"]).DOCUMENT).schema(Odd())


def test_schema_follows_the_declarations():
    listener = SCHEMA["$defs"]["listeners"]
    assert listener["required"] == ["name", "address"] or "name" in listener["required"]
    assert listener["additionalProperties"] is False
    cluster = SCHEMA["$defs"]["clusters"]
    lb = cluster["properties"]["lb"]["anyOf"][0]
    assert "round_robin" in lb["enum"]


def bad(doc: str) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(yaml.safe_load(textwrap.dedent(doc)))]


@pytest.mark.parametrize("doc", [
    "listeners: [{name: a, address: 127.0.0.1:80, route: {cluster: c}, colour: red}]",
    "clusters: [{name: c, endpoints: ['127.0.0.1:1'], lb_policy: fastest}]",
    "workers: 0",
    "listeners: [{name: a, address: 127.0.0.1:80}]",
    "listeners: [{name: a, address: 127.0.0.1:80, route: {cluster: c}, rules: x.mdsl}]",
    "listeners: [{name: a, address: nowhere, route: {cluster: c}}]",
    "clusters: [{name: c, endpoints: ['127.0.0.1:1'], connect_timeout: soon}]",
])
def test_common_mistakes_are_rejected(doc):
    assert bad(doc)


RECORDER = '''
import json, atexit
import mosnx.runtime.config as pkg
from mosnx.runtime.config import loader
from mosnx.runtime.diagnostics import ConfigError
SEEN = []
_real = loader.load_config_text
def load_config_text(text, path="<string>"):
    try:
        return _real(text, path)
    except ConfigError as e:
        SEEN.append({"text": text, "findings": [[d.code, d.message] for d in e.diagnostics]})
        raise
loader.load_config_text = pkg.load_config_text = load_config_text
atexit.register(lambda: json.dump(SEEN, open(__import__("os").environ["SEEDED_OUT"], "w")))
'''


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> list[dict]:
    d = tmp_path_factory.mktemp("seeded")
    (d / "seeded_recorder.py").write_text(RECORDER)
    out = d / "seeded.json"
    env = dict(os.environ, PYTHONPATH=str(d), SEEDED_OUT=str(out))
    tests = os.path.dirname(os.path.dirname(HERE))
    files = [f for f in sorted(glob.glob(os.path.join(HERE, "test_*.py"))) if not f.endswith("test_json_schema.py")]
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "seeded_recorder", "-q",
                    "-x", "--no-header", *files], cwd=tests, env=env, check=True, capture_output=True, timeout=600)
    found = json.loads(out.read_text())
    out = []
    for case in found:
        try:
            data = yaml.safe_load(case["text"])
        except (yaml.YAMLError, RecursionError):
            continue            # C001: not a YAML document the schema could see
        if isinstance(data, dict) and {"static_resources", "dynamic_resources", "node"} & set(data):
            continue            # an Envoy bootstrap: not mosnx.yaml
        out.append({**case, "data": data})
    return out


STRUCTURAL = {"C002", "C003", "C005"}


def test_seeded_structural_errors_are_rejected(seeded):
    structural = [c for c in seeded if STRUCTURAL & {code for code, _ in c["findings"]}]
    assert len(structural) > 20
    missed = [c for c in structural if VALIDATOR.is_valid(c["data"])]
    assert missed == [], "\n".join(f"{c['findings']}\n{c['text']}" for c in missed)


def test_seeded_bad_values_are_rejected_where_the_schema_can_say_so(seeded):
    values = [c for c in seeded if {code for code, _ in c["findings"]} == {"C004"}]
    assert len(values) > 10
    rejected = [c for c in values if not VALIDATOR.is_valid(c["data"])]
    missed = [c for c in values if VALIDATOR.is_valid(c["data"])
              and not all(re.search("|".join(BEYOND_SCHEMA), m) for _, m in c["findings"])]
    assert missed == [], "\n".join(m for c in missed for _, m in c["findings"])
    assert rejected


def test_cross_references_are_beyond_the_schema():
    # an unknown cluster name, a name declared twice: valid as far as JSON Schema
    # can tell; only the loader (mosnx check) finds them
    for doc in ("listeners: [{name: a, address: 127.0.0.1:80, route: {cluster: nowhere}}]",
                "clusters: [{name: c, endpoints: ['127.0.0.1:1']}, {name: c, endpoints: ['127.0.0.1:2']}]"):
        assert VALIDATOR.is_valid(yaml.safe_load(doc))
        with pytest.raises(ConfigError):
            load_config_text(doc)


def test_mosnx_schema_prints_the_schema(capsys, tmp_path):
    assert mosnx(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(SCHEMA))
    out = tmp_path / "s.json"
    assert mosnx(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["title"] == "mosnx.yaml"
    assert mosnx(["schema", "-o", str(tmp_path / "no" / "such" / "dir.json")]) == 2
