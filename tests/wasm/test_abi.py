"""The pairs serialization of header maps (ABI reference §4)."""
from __future__ import annotations

import pytest

from mosnx.wasm import abi


def test_encode_matches_the_worked_example():
    data = abi.encode_pairs([(b"a", b"1"), (b"b", b"22")])
    assert data == bytes.fromhex("02000000 01000000 01000000 01000000 02000000 6100 3100 6200 323200")
    assert len(data) == 4 + (8 + 2 + 2) + (8 + 2 + 3)     # 29; the reference text says 27 by mistake


def test_round_trip_keeps_order_and_duplicates():
    pairs = [(b":path", b"/x"), (b"x-a", b"1"), (b"x-a", b"2"), (b"empty", b"")]
    assert abi.decode_pairs(abi.encode_pairs(pairs)) == pairs


@pytest.mark.parametrize("data", [b"", b"\0", b"\0\0\0\0"])
def test_empty_map_forms(data):
    assert abi.decode_pairs(data) == []


def test_empty_map_encodes_to_nothing():
    assert abi.encode_pairs([]) == b""


@pytest.mark.parametrize("data", [b"\x05\0\0\0", b"\x01\0\0\0\x05\0\0\0\x01\0\0\0ab\0"])
def test_truncated_input_is_an_error(data):
    with pytest.raises(abi.PairsError):
        abi.decode_pairs(data)
