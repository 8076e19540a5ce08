"""Generated input: mutated Envoy bootstraps (a value replaced, a key dropped or
added, anywhere in the document) and arbitrary resources given to apply() never
make the loader or the translators raise anything but their own errors: a
ConfigError of positioned diagnostics, or a Rejection."""
from __future__ import annotations

import copy
import os
import sys
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from mosnx.runtime.config import load_config_text
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.envoy import protos
from mosnx.runtime.envoy.apply import apply
from mosnx.runtime.envoy.decode import parse

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import ASSIGNMENT, CLUSTER, LISTENER, ROUTES, STATIC  # noqa: E402

BASE = yaml.safe_load(STATIC)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["1s", "-1s", "ROUND_ROBIN", "GRPC", "127.0.0.1",
                                                           "type.googleapis.com/envoy.config.listener.v3.Listener",
                                                           "[", "{{ x }}", "0"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, path + (i,))
    return out


PATHS = _paths(BASE)[1:]


def _mutate(doc: Any, path: tuple, how: str, value: Any, key: str) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "drop":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][key] = value
    else:
        parent[last] = value
    return doc


def _only_diagnostics(text: str) -> None:
    try:
        load_config_text(text, "<generated>")
    except ConfigError as e:
        assert e.diagnostics
        for d in e.diagnostics:
            assert d.code and d.message and "Traceback" not in d.message


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(["replace", "drop", "add"]), values,
                          st.text(min_size=1, max_size=8)), min_size=1, max_size=3))
def test_mutated_bootstraps_give_diagnostics(mutations):
    doc = BASE
    for path, how, value, key in mutations:
        try:
            doc = _mutate(doc, path, how, value, key)
        except (KeyError, IndexError, TypeError):
            continue            # an earlier mutation removed the way there
    _only_diagnostics(yaml.safe_dump(doc))


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text_after_a_bootstrap_key(tail):
    _only_diagnostics("static_resources:\n" + tail)


RESOURCES = {protos.LISTENER: LISTENER, protos.ROUTE: ROUTES, protos.CLUSTER: CLUSTER, protos.ENDPOINT: ASSIGNMENT}
RPATHS = [(t, p) for t, d in RESOURCES.items() for p in _paths(d)[1:]]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(RPATHS), st.sampled_from(["replace", "drop", "add"]), values,
                          st.text(min_size=1, max_size=8)), min_size=1, max_size=3))
def test_mutated_resources_are_applied_or_rejected(mutations):
    docs = dict(RESOURCES)
    for (t, path), how, value, key in mutations:
        try:
            docs[t] = _mutate(docs[t], path, how, value, key)
        except (KeyError, IndexError, TypeError):
            continue
    resources: dict[str, dict[str, Any]] = {}
    for t, d in docs.items():
        m, errors = parse(d, protos.RESOURCE_TYPES[t], None)
        if m is None:
            assert errors
            continue
        name = m.cluster_name if t == protos.ENDPOINT else m.name
        resources.setdefault(t, {})[name] = m
    base = load_config_text("clusters: []\n", "<base>")
    config, rejected = apply(base, resources)
    for r in rejected:
        assert r.type_url in protos.RESOURCE_TYPES and r.message
