"""Decoding: Envoy's Duration-as-mapping form, field paths, and every json_format
error positioned at the key it is about."""
from __future__ import annotations

import pytest

from mosnx.runtime.envoy.decode import normalize, parse, parse_path, read
from mosnx.runtime.envoy.protos import Bootstrap, RESOURCE_TYPES, CLUSTER


def test_parse_path():
    assert parse_path("a.b[0].c[12]") == ("a", "b", 0, "c", 12)
    assert parse_path("") == ()


def test_duration_mapping_is_read_as_envoy_reads_it():
    desc = RESOURCE_TYPES[CLUSTER].DESCRIPTOR
    assert normalize({"connect_timeout": {"seconds": 5}}, desc) == {"connect_timeout": "5s"}
    assert normalize({"connect_timeout": {"seconds": 1, "nanos": 500_000_000}}, desc) == \
        {"connect_timeout": "1.500000000s"}
    assert normalize({"connect_timeout": {"weeks": 1}}, desc) == {"connect_timeout": {"weeks": 1}}


TEXT = """\
static_resources:
  clusters:
  - name: a
    connect_timeout: 1s
  - name: b
    {key}: {value}
"""


@pytest.mark.parametrize("key, value, col, words", [
    ("bogus", "1", 5, 'unknown field "bogus" in envoy.config.cluster.v3.Cluster'),
    ("lb_policy", "ROUND_ROBBIN", 5, "ROUND_ROBBIN"),
    ("connect_timeout", "soon", 5, "connect_timeout"),
    ("per_connection_buffer_limit_bytes", "lots", 5, "per_connection_buffer_limit_bytes"),
])
def test_errors_are_positioned(key, value, col, words):
    data, positions, errors = read(TEXT.format(key=key, value=value), "b.yaml")
    assert not errors
    msg, errors = parse(data, Bootstrap, positions)
    assert msg is None
    [d] = errors
    assert (d.span.path, d.span.line, d.span.column) == ("b.yaml", 6, col) and words in d.message
    assert d.code == "X003"


def test_syntax_error_and_non_mapping():
    data, _, errors = read("a: [", "s.yaml")
    assert data is None and errors[0].code == "C001"
    data, positions, _ = read("- 1\n", "s.yaml")
    msg, errors = parse(data, Bootstrap, positions)
    assert msg is None and "expected a mapping" in errors[0].message
