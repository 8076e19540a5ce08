"""runtime/config/compound.py: lists, free-key mappings, alternatives and converted
values; a finding inside one names the item's own key path and position."""
from __future__ import annotations

from mosnx.runtime.config.compound import Data, Either, ListOf, MapOf, Mapped
from mosnx.runtime.config.scalars import Address, Int, Str
from mosnx.runtime.config.schema import INVALID

from .conftest import convert


def test_lists():
    assert convert(ListOf(Int(0)), "[1, 2]") == ((1, 2), [])
    assert convert(ListOf(Int(0)), "[1, x]") == (INVALID, [("C003", 1, 5, 'k[1]: expected a whole number, got "x"')])
    assert convert(ListOf(Int(0)), "1") == (INVALID, [("C003", 1, 1, "k: expected a list of whole number, got 1 (a number)")])
    assert convert(ListOf(Int(0), single=True), "1") == ((1,), [])          # one item may stand alone
    assert convert(ListOf(Str(), split=","), "'a,b'") == (("a", "b"), [])
    assert convert(ListOf(Int(0), min_items=1), "[]") == (INVALID, [("C004", 1, 1, "k: needs at least 1 item")])


def test_free_key_mappings():
    assert convert(MapOf(Int(0)), "{a: 1, b: 2}") == ({"a": 1, "b": 2}, [])
    assert convert(MapOf(Int(0)), "{a: x}") == (INVALID, [("C003", 1, 5, 'k.a: expected a whole number, got "x"')])
    assert convert(MapOf(Int(0)), "[1]") == (
        INVALID, [("C003", 1, 1, "k: expected a mapping of string to whole number, got a list")])


def test_alternatives_are_told_apart_by_the_node_kind():
    either = Either(Address(), MapOf(Int(0)))
    assert convert(either, "127.0.0.1:80") == (("127.0.0.1", 80), [])
    assert convert(either, "{w: 2}") == ({"w": 2}, [])
    value, found = convert(either, "[1]")
    assert value is INVALID and found[0][3].startswith("k: expected an address")
    assert found[0][3].endswith("got a list")


def test_data_is_kept_as_plain_data_and_mapped_values_are_converted():
    assert convert(Data(), "{a: [1, {b: 2}]}") == ({"a": [1, {"b": 2}]}, [])
    assert convert(Mapped(Int(0), lambda v: v * 2), "21") == (42, [])
    assert convert(Mapped(Int(0), lambda v: v * 2), "x")[0] is INVALID
