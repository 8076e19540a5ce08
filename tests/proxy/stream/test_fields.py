"""The one slotted layout: every field is declared with its type, set when a stream
is made, and no mixin adds a field of its own (a stream stays one object)."""
from __future__ import annotations

from mosnx.proxy.stream import HttpStream
from mosnx.proxy.stream.fields import StreamFields

from .fakes import Rig, cluster_yaml


def test_every_field_has_a_type_and_every_typed_name_is_a_field():
    assert set(StreamFields.__slots__) == set(StreamFields.__annotations__)


def test_a_new_stream_sets_every_field(tmp_path):
    s, _ = Rig(tmp_path, cluster_yaml()).stream()
    unset = [name for name in StreamFields.__slots__ if not hasattr(s, name)]
    assert unset == []


def test_only_the_fields_class_has_slots():
    for k in HttpStream.__mro__:
        if k in (StreamFields, object):
            continue
        assert getattr(k, "__slots__", None) == (), k
    assert "__dict__" not in dir(HttpStream)
