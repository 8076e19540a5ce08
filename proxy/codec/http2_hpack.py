"""HPACK (RFC 7541): header blocks to field lists and back.

Sans-I/O, one Encoder and one Decoder per connection direction; each owns its
dynamic table and nothing else. Names and values are bytes and never re-cased
here: validation is the caller's (proxy/codec/http2.py). Only the static table
and the Huffman state machine come from the `hpack` package; both are data.

Invariants:
- A Decoder decodes every block it is given in full, even one it then refuses
  (HeaderListTooLarge), so its dynamic table stays in step with the peer's; the
  work and memory a block costs are bounded by its encoded length and the limits,
  never by what it would decode to (see Decoder).
- What outlives a connection is bounded whatever the peer sends: the process-wide
  Huffman cache keeps short strings only, and a bounded number of them.
- The Encoder never emits Huffman strings (legal, and cheaper in CPU than the
  bytes it would save on a proxy's loopback-heavy paths); it indexes a field
  unless it is per-request noise or sensitive (see _NO_INDEX, _NEVER_INDEX).
- A remembered block (either direction) is used only against the table version it
  was made with; anything that changes a table bumps its version.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import HUFFMAN_COMPLETE, HUFFMAN_EMIT_SYMBOL, HUFFMAN_FAIL, HUFFMAN_TABLE
from hpack.huffman_table import decode_huffman as _decode_huffman_nibbles
from hpack.table import HeaderTable

from ..fastpath import memo
from ..fastpath.memo import remember


STATIC = HeaderTable.STATIC_TABLE            # index 1 is STATIC[0]
_STATIC_FULL: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAME: dict[bytes, int] = {}
for _i, _kv in enumerate(STATIC, 1):
    _STATIC_FULL.setdefault(_kv, _i)
    _STATIC_NAME.setdefault(_kv[0], _i)
_STATIC_LEN = len(STATIC)
DEFAULT_TABLE_SIZE = 4096

# fields whose values differ per request: indexing them only churns the table
_NO_INDEX = frozenset({b":path", b"content-length", b"etag", b"if-modified-since", b"if-none-match",
                       b"location", b"age", b"last-modified", b"x-request-id", b"grpc-message",
                       b"grpc-timeout", b"set-cookie", b"content-range", b"range"})
# secrets an intermediary must not let a compressor index (RFC 7541 §7.1.3)
_NEVER_INDEX = frozenset({b"authorization", b"proxy-authorization", b"cookie"})


class HpackError(Exception):
    """A block that cannot be decoded: a COMPRESSION_ERROR for the connection."""


class HeaderListTooLarge(Exception):
    """The decoded list exceeds the limit; the table was still updated. `size` is
    what was counted when decoding stopped keeping fields (at least the limit)."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


class TooManyHeaders(HeaderListTooLarge):
    """The block holds more fields than allowed; the table was still updated."""

    def __init__(self, size: int, count: int):
        super().__init__(size)
        self.count = count


def _int(data: bytes, pos: int, prefix_mask: int) -> tuple[int, int]:
    """An HPACK integer whose prefix is data[pos] & prefix_mask; (value, next pos)."""
    v = data[pos] & prefix_mask
    pos += 1
    if v < prefix_mask:
        return v, pos
    shift = 0
    n = len(data)
    while True:
        if pos >= n:
            raise HpackError("truncated integer")
        b = data[pos]
        pos += 1
        v += (b & 0x7F) << shift
        if not b & 0x80:
            return v, pos
        shift += 7
        if shift > 28:
            raise HpackError("integer too large")


# Huffman decoding a byte at a time: the `hpack` package's state machine (nghttp2's)
# steps per 4-bit nibble; two steps folded into one table entry per (state, byte)
# make a long string three times cheaper to decode, which bounds what the largest
# header block a client may send costs the worker. The tables (about 2 MB) are built
# at import (some 50 ms, once per process: built on first use, they would stall the
# first request that needs them); short strings, which the cache below mostly
# answers, keep the nibble machine.
_H_NEXT: list[int] = []          # state * 256 + byte -> next state * 256, or -1: invalid
_H_OUT: list[bytes] = []         # ... -> the 0, 1 or 2 bytes that byte completes
_H_DONE: list[bool] = []         # ... -> the string may end here (RFC 7541 §5.2 padding)
_HUFFMAN_SHORT = 64


def _build_huffman_tables() -> None:
    one = [bytes((i,)) for i in range(256)]
    base = [st * 256 for st in range(256)]       # shared ints, not 65,536 of them
    interned: dict[bytes, bytes] = {}
    nxt, out, done = [], [], []
    for state in range(256):
        for byte in range(256):
            st, emitted, ok = state, b"", True
            flags = 0
            for nib in (byte >> 4, byte & 0x0F):
                st, flags, sym = HUFFMAN_TABLE[st * 16 + nib]
                if flags & HUFFMAN_FAIL:
                    ok = False
                    break
                if flags & HUFFMAN_EMIT_SYMBOL:
                    emitted += one[sym]
            nxt.append(base[st] if ok else -1)
            out.append(interned.setdefault(emitted, emitted))
            done.append(ok and bool(flags & HUFFMAN_COMPLETE))
    _H_OUT.extend(out)
    _H_DONE.extend(done)
    _H_NEXT.extend(nxt)


_build_huffman_tables()


def decode_huffman(raw: bytes) -> bytes:
    if len(raw) <= _HUFFMAN_SHORT:
        return _decode_huffman_nibbles(raw)
    nxt = _H_NEXT
    out = _H_OUT
    parts: list[bytes] = []
    append = parts.append
    st = 0
    for b in raw:
        i = st + b
        st = nxt[i]
        if st < 0:
            raise HPACKDecodingError("invalid Huffman string")
        append(out[i])
    if not _H_DONE[i]:
        raise HPACKDecodingError("incomplete Huffman string")
    return b"".join(parts)


# Huffman literals repeat across connections (user agents, hosts, paths): each short one
# is decoded once per process. Bounded in entry size and in entries, so what a peer can
# leave here is a fixed few hundred KiB however many distinct strings it sends; longer
# strings (rare, and what a peer would use to fill memory) are decoded every time.
HUFFMAN = memo.kind("hpack.huffman", 1024, "Huffman-coded HPACK strings, decoded")
_huffman_cache: dict[bytes, bytes] = HUFFMAN.table()
_HUFFMAN_CACHE_RAW = _HUFFMAN_SHORT   # encoded bytes: at most 102 decoded


def _huffman(raw: bytes) -> bytes:
    v = _huffman_cache.get(raw)
    if v is not None:
        HUFFMAN.hits += 1
    else:
        try:
            v = decode_huffman(raw)
        except HPACKDecodingError:
            raise HpackError("invalid Huffman string") from None
        if len(raw) <= _HUFFMAN_CACHE_RAW:
            remember(_huffman_cache, HUFFMAN, raw, v)
    return v


# A decoded block is remembered (per Decoder) only when small in fields and bytes: the
# memo, and the callers' memos keyed by its result, then stay small too.
DECODED = memo.kind("hpack.decoded_block", 128, "HPACK header blocks, decoded (a table per connection, valid while its dynamic table is unchanged)")
ENCODED = memo.kind("hpack.encoded_block", 64, "HPACK header blocks, encoded (a table per connection, valid while its dynamic table is unchanged)")
_MEMO_BLOCK = 512
_MEMO_FIELDS = 32
_MEMO_TOTAL = 4096


class Decoder:
    """Blocks that only reference table entries (what a client repeating its headers
    sends) are remembered with the table state they were decoded against, so the
    next identical block is a dict lookup; the result is then shared, so callers
    must treat it as read-only.

    Work and memory per block are bounded by the block's own length, whatever it
    decodes to: once the list passes `limit` bytes (RFC 7541 §4.1 sizes) or
    `max_fields` fields, no more fields are kept and no string is built that the
    table does not need; the rest of the block is still read, to keep the table in
    step, and the call raises HeaderListTooLarge / TooManyHeaders. A reference to a
    table entry counts its size before it is appended, so a small block referencing
    a large entry thousands of times costs a comparison per reference."""

    __slots__ = ("table", "size", "max_size", "allowed", "limit", "max_fields", "version", "memo")

    def __init__(self, allowed: int = DEFAULT_TABLE_SIZE, limit: int = 1 << 30, max_fields: int = 1 << 30):
        self.table: list[tuple[bytes, bytes]] = []   # newest first: index 62 is table[0]
        self.size = 0
        self.max_size = allowed      # the size the peer's encoder last chose
        self.allowed = allowed       # our SETTINGS_HEADER_TABLE_SIZE
        self.limit = limit           # SETTINGS_MAX_HEADER_LIST_SIZE we advertised
        self.max_fields = max_fields
        self.version = 0             # bumped on every table change: memo entries carry it
        self.memo: dict[bytes, tuple] = {}

    def _string(self, data: bytes, pos: int) -> tuple[bytes, int]:
        huff = data[pos] & 0x80
        n, pos = _int(data, pos, 0x7F)
        end = pos + n
        if end > len(data):
            raise HpackError("truncated string")
        s = data[pos:end]
        return (_huffman(s) if huff else s), end

    def _skip_string(self, data: bytes, pos: int) -> int:
        n, pos = _int(data, pos, 0x7F)
        end = pos + n
        if end > len(data):
            raise HpackError("truncated string")
        return end

    def _add(self, kv: tuple[bytes, bytes]) -> None:
        sz = len(kv[0]) + len(kv[1]) + 32
        table = self.table
        self.version += 1
        if sz > self.max_size:
            table.clear()
            self.size = 0
            return
        size = self.size + sz
        while size > self.max_size:
            k, v = table.pop()
            size -= len(k) + len(v) + 32
        table.insert(0, kv)
        self.size = size

    def _resize(self, n: int) -> None:
        if n > self.allowed:
            raise HpackError("table size update above the limit")
        table = self.table
        size = self.size
        while size > n:
            k, v = table.pop()
            size -= len(k) + len(v) + 32
        self.size = size
        self.max_size = n
        self.version += 1

    def decode(self, data: bytes) -> Sequence[tuple[bytes, bytes]]:
        hit = self.memo.get(data)
        if hit is not None and hit[0] == self.version:
            DECODED.hits += 1
            return hit[1]
        version = self.version
        out: list[tuple[bytes, bytes]] = []
        append = out.append
        table = self.table
        pos = 0
        n = len(data)
        total = 0
        limit = self.limit
        fields_seen = False
        try:
            while pos < n:
                b = data[pos]
                if b & 0x80:                                 # indexed field
                    if b != 0xFF:
                        idx = b & 0x7F
                        pos += 1
                    else:
                        idx, pos = _int(data, pos, 0x7F)
                    if idx <= _STATIC_LEN:
                        if idx == 0:
                            raise HpackError("index 0")
                        kv = STATIC[idx - 1]
                    else:
                        kv = table[idx - 62]
                elif b & 0x60 == 0x20:                       # dynamic table size update
                    if fields_seen:
                        raise HpackError("table size update after a field")
                    size, pos = _int(data, pos, 0x1F)
                    self._resize(size)
                    continue
                else:       # a literal: with incremental indexing (01), without / never (000)
                    indexing = b & 0x40
                    idx, pos = _int(data, pos, 0x3F if indexing else 0x0F)
                    if idx:
                        name = STATIC[idx - 1][0] if idx <= _STATIC_LEN else table[idx - 62][0]
                    else:
                        name, pos = self._string(data, pos)
                    value, pos = self._string(data, pos)
                    kv = (name, value)
                    if indexing:
                        self._add(kv)
                fields_seen = True
                total += len(kv[0]) + len(kv[1]) + 32
                if total > limit:
                    self._drain(data, pos)
                    raise HeaderListTooLarge(total)
                append(kv)
        except IndexError:
            raise HpackError("index out of range or truncated block") from None
        if len(out) > self.max_fields:
            raise TooManyHeaders(total, len(out))
        if (version == self.version and n <= _MEMO_BLOCK and total <= _MEMO_TOTAL
                and len(out) <= _MEMO_FIELDS):
            shared = tuple(out)       # shared from now on: read-only
            remember(self.memo, DECODED, data, (version, shared))
            return shared
        return out

    def _drain(self, data: bytes, pos: int) -> None:
        """The rest of a block already refused: only what changes the table is built."""
        table = self.table
        n = len(data)
        top = _STATIC_LEN + len(table)        # the highest valid index (changes only on _add)
        try:
            while pos < n:
                b = data[pos]
                if b & 0x80:
                    if b != 0xFF:                     # the usual one-byte index: a bomb's fuel
                        pos += 1
                        if b == 0x80 or b & 0x7F > top:
                            raise HpackError("index out of range")
                        continue
                    idx, pos = _int(data, pos, 0x7F)
                    if idx > top:
                        raise HpackError("index out of range")
                elif b & 0x60 == 0x20:
                    raise HpackError("table size update after a field")
                else:
                    indexing = b & 0x40
                    idx, pos = _int(data, pos, 0x3F if indexing else 0x0F)
                    if not indexing:
                        if not idx:
                            pos = self._skip_string(data, pos)
                        elif idx > _STATIC_LEN and idx - 62 >= len(table):
                            raise HpackError("index out of range")
                        pos = self._skip_string(data, pos)
                        continue
                    if idx:
                        name = STATIC[idx - 1][0] if idx <= _STATIC_LEN else table[idx - 62][0]
                    else:
                        name, pos = self._string(data, pos)
                    value, pos = self._string(data, pos)
                    self._add((name, value))
                    top = _STATIC_LEN + len(table)
        except IndexError:
            raise HpackError("index out of range or truncated block") from None


def _enc_int(v: int, prefix_bits: int, first: int) -> bytes:
    mask = (1 << prefix_bits) - 1
    if v < mask:
        return bytes((first | v,))
    out = bytearray((first | mask,))
    v -= mask
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


_INDEXED = [bytes((0x80 | i,)) for i in range(127)]
_LEN7 = [bytes((i,)) for i in range(127)]                      # a raw string's length byte
_HEAD_PLAIN = [_enc_int(i, 4, 0x00) for i in range(_STATIC_LEN + 1)]
_HEAD_NEVER = [_enc_int(i, 4, 0x10) for i in range(_STATIC_LEN + 1)]
_HEAD_INDEX = [_enc_int(i, 6, 0x40) for i in range(_STATIC_LEN + 1)]


class Encoder:
    """A field list that changed nothing in the table when it was encoded (every field
    static, already indexed, or never indexed) encodes the same way until the table
    changes: its block is remembered against the table's version."""

    __slots__ = ("index", "entries", "seq", "size", "max_size", "pending_resize", "version", "memo")

    def __init__(self):
        self.index: dict[tuple[bytes, bytes], int] = {}   # field -> insertion number
        self.entries: list = []                            # oldest first: (field, number, size)
        self.seq = 0
        self.size = 0
        self.max_size = DEFAULT_TABLE_SIZE
        self.pending_resize: int | None = None
        self.version = 0             # bumped on every table change: memo entries carry it
        self.memo: dict[tuple, tuple[int, bytes]] = {}

    def set_max_table(self, n: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE: a smaller table is announced in the next block."""
        n = min(n, DEFAULT_TABLE_SIZE)      # a larger table is allowed, never required
        if n == self.max_size:
            return
        self.max_size = n
        self.pending_resize = n if self.pending_resize is None else min(self.pending_resize, n)
        self.version += 1
        self._evict()

    def _evict(self) -> None:
        entries = self.entries
        while self.size > self.max_size and entries:
            kv, seq, sz = entries.pop(0)
            self.size -= sz
            if self.index.get(kv) == seq:
                del self.index[kv]

    def encode(self, fields: Iterable[tuple[bytes, bytes]]) -> bytes:
        key = tuple(fields)
        hit = self.memo.get(key)
        version = self.version
        if hit is not None and hit[0] == version:
            ENCODED.hits += 1
            return hit[1]
        resize = self.pending_resize       # (set_max_table bumped the version)
        block = self._encode(key)
        if version == self.version and resize is None and len(block) <= 1024 and len(key) <= 16:
            remember(self.memo, ENCODED, key, (version, block))
        return block

    def _encode(self, fields: Iterable[tuple[bytes, bytes]]) -> bytes:
        out: list[bytes] = []
        append = out.append
        if self.pending_resize is not None:
            append(_enc_int(self.pending_resize, 5, 0x20))
            if self.pending_resize != self.max_size:
                append(_enc_int(self.max_size, 5, 0x20))
            self.pending_resize = None
        static_full = _STATIC_FULL
        index = self.index
        for kv in fields:
            i = static_full.get(kv)
            if i is not None:
                append(_INDEXED[i])
                continue
            seq = index.get(kv)
            if seq is not None:
                i = 61 + self.seq - seq       # the newest entry (seq - 1) is 62
                append(_INDEXED[i] if i < 127 else _enc_int(i, 7, 0x80))
                continue
            name, value = kv
            ni = _STATIC_NAME.get(name, 0)
            if name in _NO_INDEX:
                head = _HEAD_PLAIN[ni]
            elif name in _NEVER_INDEX:
                head = _HEAD_NEVER[ni]
            else:
                sz = len(name) + len(value) + 32
                head = _HEAD_INDEX[ni]
                self.version += 1
                if sz <= self.max_size:
                    self.entries.append((kv, self.seq, sz))
                    index[kv] = self.seq
                    self.seq += 1
                    self.size += sz
                    if self.size > self.max_size:
                        self._evict()
                else:
                    # too large for any table: still a legal literal with indexing (RFC 7541 §4.4)
                    self._clear()
            append(head)
            if not ni:
                n = len(name)
                append(_LEN7[n] if n < 127 else _enc_int(n, 7, 0))
                append(name)
            n = len(value)
            append(_LEN7[n] if n < 127 else _enc_int(n, 7, 0))
            append(value)
        return b"".join(out)

    def _clear(self) -> None:
        self.entries.clear()
        self.index.clear()
        self.size = 0
