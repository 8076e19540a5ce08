"""The descriptor pool learns a type the first time a document names it."""
from __future__ import annotations

from mosnx.runtime.envoy.protos import RESOURCE_TYPES, ensure_type


def test_ensure_type_imports_the_named_package():
    assert ensure_type("type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer")
    assert ensure_type("type.googleapis.com/envoy.config.listener.v3.Listener")
    assert not ensure_type("type.googleapis.com/envoy.no.such.v3.Thing")
    assert not ensure_type("type.googleapis.com/os.path.Thing")        # only the API's own packages
    assert not ensure_type("type.googleapis.com/not a name")
    assert len(RESOURCE_TYPES) == 8
