"""Fuzz HPACK (proxy/codec/http2_hpack.py).

Input: byte 0 bit 0 picks the mode; the rest is read by atheris'
FuzzedDataProvider.
- decode: a Decoder (table size and header-list limit from the input) given a
  few blocks of arbitrary bytes. Only HpackError and HeaderListTooLarge may
  leave it, and its table stays within its size, with the size it counts.
- round trip: header lists made from the input (names common and arbitrary,
  values of every length, repeats, table-size changes) through one Encoder and
  one Decoder, as the two ends of a connection: every list decodes to itself.

    python tests/fuzz/fuzz_hpack.py -max_total_time=60 tests/fuzz/corpus/hpack
"""
from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzzing import fuzz, instrumented  # noqa: E402

with instrumented(__name__ == "__main__", "mosnx", "hpack"):
    from mosnx.proxy.codec.http2_hpack import Decoder, Encoder, HeaderListTooLarge, HpackError

NAMES = [b":path", b":method", b":authority", b"content-length", b"user-agent", b"cookie", b"authorization",
         b"x-request-id", b"accept", b"x-custom", b"set-cookie", b":status"]
TABLE_SIZES = [0, 1, 64, 100, 4096, 65536]


def _check_table(dec: Decoder) -> None:
    assert dec.size == sum(len(k) + len(v) + 32 for k, v in dec.table), "table size miscounted"
    assert dec.size <= dec.max_size <= dec.allowed, "table above its size"


def decode_blocks(fdp: atheris.FuzzedDataProvider) -> None:
    dec = Decoder(allowed=fdp.PickValueInList(TABLE_SIZES), limit=fdp.PickValueInList([1 << 30, 64, 4096]))
    for _ in range(fdp.ConsumeIntInRange(1, 6)):
        block = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512))
        try:
            first = dec.decode(block)
        except (HpackError, HeaderListTooLarge):
            _check_table(dec)
            continue
        _check_table(dec)
        assert all(type(k) is bytes and type(v) is bytes for k, v in first)


def _field(fdp: atheris.FuzzedDataProvider, seen: list) -> tuple[bytes, bytes]:
    pick = fdp.ConsumeIntInRange(0, 3)
    if pick == 0 and seen:
        return fdp.PickValueInList(seen)        # a field sent before: indexed now
    name = fdp.PickValueInList(NAMES) if pick < 3 else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
    size = fdp.ConsumeIntInRange(0, 300)
    if size == 300:
        size = fdp.ConsumeIntInRange(300, 5000)     # larger than any table
    return name, fdp.ConsumeBytes(size)


def round_trip(fdp: atheris.FuzzedDataProvider) -> None:
    enc = Encoder()
    dec = Decoder(allowed=fdp.PickValueInList([4096, 65536]))
    seen: list[tuple[bytes, bytes]] = []
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        if fdp.ConsumeIntInRange(0, 7) == 0:
            # the peer's SETTINGS_HEADER_TABLE_SIZE changed
            enc.set_max_table(fdp.PickValueInList(TABLE_SIZES))
        fields = [_field(fdp, seen) for _ in range(fdp.ConsumeIntInRange(0, 12))]
        seen.extend(fields)
        block = enc.encode(fields)
        got = dec.decode(block)
        assert list(got) == fields, f"decode(encode(x)) != x:\n{list(got)}\n!=\n{fields}"
        _check_table(dec)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    fdp = atheris.FuzzedDataProvider(data[1:])
    if data[0] & 1:
        round_trip(fdp)
    else:
        decode_blocks(fdp)


if __name__ == "__main__":
    fuzz(test_one_input)
