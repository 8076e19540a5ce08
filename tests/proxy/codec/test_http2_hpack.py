"""proxy/codec/http2_hpack.py: RFC 7541's examples, agreement with the `hpack`
package both ways, table sizes, and the memo of repeated blocks."""
from __future__ import annotations

import random

import hpack
import pytest

from mosnx.proxy.codec.http2_hpack import Decoder, Encoder, HeaderListTooLarge, HpackError, TooManyHeaders

# RFC 7541 C.3 (no Huffman) and C.4 (Huffman): three requests on one connection
C3 = ["828684410f7777772e6578616d706c652e636f6d",
      "828684be58086e6f2d6361636865",
      "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"]
C4 = ["828684418cf1e3c2e5f23a6ba0ab90f4ff",
      "828684be5886a8eb10649cbf",
      "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]
C_FIELDS = [
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"www.example.com")],
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"www.example.com"),
     (b"cache-control", b"no-cache")],
    [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
     (b":authority", b"www.example.com"), (b"custom-key", b"custom-value")],
]


@pytest.mark.parametrize("blocks", [C3, C4])
def test_rfc7541_request_examples(blocks):
    d = Decoder()
    for hexblock, fields in zip(blocks, C_FIELDS):
        assert list(d.decode(bytes.fromhex(hexblock))) == fields
    assert d.size == 164


def test_agrees_with_the_hpack_package_both_ways():
    rnd = random.Random(7)
    names = [b":status", b"content-type", b"x-a", b"user-agent", b"date", b"cookie", b"authorization", b":path"]
    ours_enc, ours_dec = Encoder(), Decoder()
    ref_enc, ref_dec = hpack.Encoder(), hpack.Decoder()
    for i in range(1500):
        fields = [(rnd.choice(names), b"v%d" % rnd.randint(0, 40) * rnd.randint(0, 3))
                  for _ in range(rnd.randint(0, 10))]
        if i == 300:
            ours_enc.set_max_table(256)
            ref_dec.header_table_size = 256
        assert ref_dec.decode(ours_enc.encode(fields), raw=True) == fields
        assert list(ours_dec.decode(ref_enc.encode(fields, huffman=bool(i % 2)))) == fields


def test_sensitive_fields_are_never_indexed():
    e = Encoder()
    block = e.encode([(b"authorization", b"secret")])
    assert block[0] & 0xF0 == 0x10
    assert e.encode([(b"authorization", b"secret")]) == block      # nothing entered the table


def test_repeated_block_is_remembered_only_while_the_table_is_unchanged():
    d = Decoder()
    first = bytes.fromhex("400178" + "0161")     # literal with indexing: x = a
    assert list(d.decode(first)) == [(b"x", b"a")]
    again = bytes.fromhex("be")                  # index 62: the newest entry
    assert list(d.decode(again)) == [(b"x", b"a")]
    assert list(d.decode(again)) == [(b"x", b"a")]
    d.decode(bytes.fromhex("400179" + "0162"))   # y = b becomes index 62
    assert list(d.decode(again)) == [(b"y", b"b")]


def test_header_list_limit_still_updates_the_table():
    d = Decoder(limit=100)
    with pytest.raises(HeaderListTooLarge):
        d.decode(hpack.Encoder().encode([(b"x-big", b"v" * 200)], huffman=False))
    assert d.table == [(b"x-big", b"v" * 200)]


@pytest.mark.parametrize("hexblock", [
    "80",                  # index 0
    "ff8001",              # far past the tables
    "41",                  # truncated literal
    "418aff",              # Huffman string cut short
    "3fe21f",              # table size update above the limit
    "82" + "20",           # table size update after a field
])
def test_invalid_blocks(hexblock):
    with pytest.raises(HpackError):
        Decoder().decode(bytes.fromhex(hexblock))


def test_smaller_peer_table_is_announced_and_respected():
    e = Encoder()
    e.encode([(b"x-a", b"1" * 100)])
    e.set_max_table(0)
    block = e.encode([(b"x-a", b"1" * 100)])
    assert block[0] == 0x20                      # size update to 0 first
    assert e.size == 0
    ref = hpack.Decoder()
    ref.decode(Encoder().encode([(b"x-a", b"1" * 100)]))
    assert ref.decode(block, raw=True) == [(b"x-a", b"1" * 100)]


def test_a_repeated_field_list_encodes_against_the_table_as_it_is_now():
    e = Encoder()
    ref = hpack.Decoder()
    head = [(b":status", b"200"), (b"server", b"nginx"), (b"date", b"d1")]
    blocks = []
    # the large field evicts what `head` was indexed as; a smaller table is announced
    for step in ["head", "head", "head", "big", "head", "head", "shrink", "head", "head"]:
        if step == "shrink":
            e.set_max_table(64)
            ref.header_table_size = 64
            continue
        fields = [(b"x-big", b"v" * 4000)] if step == "big" else head
        block = e.encode(fields)
        assert ref.decode(block, raw=True) == fields
        blocks.append(block)
    assert blocks[1] == blocks[2] != blocks[0]         # literals first, then table references
    assert blocks[4] != blocks[2] and blocks[5] == blocks[2]
    assert blocks[6][0] & 0xE0 == 0x20                 # the size update leads the next block
    assert blocks[7][0] & 0xE0 != 0x20


def _big_entry_then_references(refs: int, value: bytes = b"A" * 4000) -> tuple[bytes, bytes]:
    """A literal with indexing (one table entry of about 4 KB), then `refs` one-byte
    references to it: a block of a few KB that decodes to refs * 4 KB."""
    enc = hpack.Encoder()
    first = enc.encode([(b"x-big", value)], huffman=False)
    return first, bytes((0x80 | 62,)) * refs


def test_a_block_referencing_a_big_entry_stops_at_the_limit_and_keeps_the_table():
    d = Decoder(limit=60 * 1024)
    first, refs = _big_entry_then_references(50_000)
    assert list(d.decode(first)) == [(b"x-big", b"A" * 4000)]
    # after the refused part, a literal with indexing: it must still enter the table
    tail = bytes.fromhex("400178" + "0161")
    with pytest.raises(HeaderListTooLarge) as e:
        d.decode(refs + tail)
    assert 60 * 1024 < e.value.size < 70 * 1024       # counted until the limit, not to 200 MB
    assert d.table[0] == (b"x", b"a")
    assert list(d.decode(bytes((0x80 | 62, 0x80 | 63)))) == [(b"x", b"a"), (b"x-big", b"A" * 4000)]


def test_a_refused_block_still_checks_its_indexes():
    d = Decoder(limit=100)
    first, refs = _big_entry_then_references(2)
    with pytest.raises(HpackError):
        d.decode(first + refs + bytes((0x80 | 70,)))


def test_too_many_fields():
    d = Decoder(max_fields=10)
    d.decode(bytes((0x82,)) * 10)
    with pytest.raises(TooManyHeaders) as e:
        d.decode(bytes((0x82,)) * 11)
    assert e.value.count == 11


def test_the_huffman_cache_keeps_only_short_strings_and_a_bounded_number():
    from mosnx.proxy.codec import http2_hpack as mod
    rnd = random.Random(3)
    enc = hpack.Encoder()
    enc.header_table_size = 0
    d = Decoder()
    for i in range(3000):
        long_value = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(200))
        short_value = b"v%d" % i
        block = enc.encode([(b"x-l", long_value), (b"x-s", short_value)], huffman=True)
        assert list(d.decode(block))[-2:] == [(b"x-l", long_value), (b"x-s", short_value)]
    assert len(mod._huffman_cache) <= mod.HUFFMAN.limit
    assert max(len(k) for k in mod._huffman_cache) <= mod._HUFFMAN_CACHE_RAW


def test_only_small_blocks_are_remembered():
    d = Decoder()
    first, refs = _big_entry_then_references(20)
    d.decode(first)
    out = d.decode(refs)
    assert len(out) == 20 and refs not in d.memo        # 80 KB decoded: not kept
    assert d.decode(bytes((0x82, 0x84))) == ((b":method", b"GET"), (b":path", b"/"))


def test_a_table_cleared_by_an_oversized_entry_forgets_remembered_blocks():
    d = Decoder(allowed=4096)
    d.decode(bytes.fromhex("400178" + "0161"))
    assert list(d.decode(bytes((0xBE,)))) == [(b"x", b"a")]
    enc = hpack.Encoder()
    big = enc.encode([(b"y", b"B" * 5000)], huffman=False)       # larger than the table: clears it
    d.decode(big)
    with pytest.raises(HpackError):
        d.decode(bytes((0xBE,)))


def test_bytewise_huffman_agrees_with_the_hpack_package_on_valid_and_invalid_strings():
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
    from hpack.huffman_table import decode_huffman as reference

    from mosnx.proxy.codec.http2_hpack import decode_huffman
    enc = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    rnd = random.Random(11)
    for _ in range(400):
        s = bytes(rnd.randrange(256) for _ in range(rnd.randrange(60, 400)))
        assert decode_huffman(enc.encode(s)) == s
    for _ in range(2000):
        raw = enc.encode(b"x" * 100)[:rnd.randrange(65, 76)] + bytes(rnd.randrange(256) for _ in range(3))
        try:
            want = reference(raw)
        except Exception:  # noqa: BLE001
            want = "error"
        try:
            got = decode_huffman(raw)
        except Exception:  # noqa: BLE001
            got = "error"
        assert got == want, raw.hex()


def test_mutated_blocks_meet_only_hpack_errors():
    """Generated input: real blocks with bytes changed; the decoder answers with its own
    errors and stays within its limits."""
    rnd = random.Random(5)
    enc = hpack.Encoder()
    for _ in range(3000):
        fields = [(b":method", b"GET"), (b"x-%d" % rnd.randrange(5), b"v" * rnd.randrange(0, 300))]
        block = bytearray(enc.encode(fields, huffman=rnd.random() < 0.5))
        for _ in range(rnd.randrange(1, 4)):
            block[rnd.randrange(len(block))] = rnd.randrange(256)
        d = Decoder(limit=2048, max_fields=8)
        try:
            out = d.decode(bytes(block))
        except (HpackError, HeaderListTooLarge):
            continue
        assert len(out) <= 8 and sum(len(k) + len(v) + 32 for k, v in out) <= 2048
