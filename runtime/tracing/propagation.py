"""Reading a trace context from request headers and writing one on the upstream
request, in the formats a listener names (w3c, b3, sw8).

Reading takes the formats in the configured order and keeps the first one present
and well formed; a present but malformed one is reported (so it is counted) and the
next is tried; with none, the stream starts a trace of its own. Writing replaces
every header of the configured formats, so the upstream sees the proxy's client
span as the parent in each; `baggage` and `sw8-correlation` are not touched and go
through as they came.
"""
from __future__ import annotations

import binascii
import hashlib
import os
import ssl
import struct
import weakref
from typing import Any

from ..headers import Headers
from . import b3, sw8, w3c

FORMATS = ("w3c", "b3", "sw8")

_NAMES = {
    b"traceparent": "w3c", b"tracestate": "w3c",
    b"b3": "b3", b"x-b3-traceid": "b3", b"x-b3-spanid": "b3", b"x-b3-parentspanid": "b3",
    b"x-b3-sampled": "b3", b"x-b3-flags": "b3",
    b"sw8": "sw8",
}
# every header name read() or the sampling decision looks at
READ_NAMES = frozenset((*_NAMES, b"x-client-trace-id"))
# the headers each format writes (and so removes before writing)
WRITTEN = {
    "w3c": (b"traceparent", b"tracestate"),
    "b3": (b"b3", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid", b"x-b3-sampled", b"x-b3-flags"),
    "sw8": (b"sw8",),
}


class Parent:
    """The trace a request arrived in: its ids, sampling decision (None: deferred to
    the proxy), the W3C tracestate to forward and, from sw8, SkyWalking's own ids."""
    __slots__ = ("fmt", "trace_id", "span_id", "sampled", "tracestate", "sw")

    def __init__(self, fmt: str, trace_id: int, span_id: int, sampled: bool | None,
                 tracestate: tuple[tuple[str, str], ...] = (), sw: sw8.Sw8 | None = None):
        self.fmt = fmt
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.tracestate = tracestate
        self.sw = sw


def sw_trace_id(trace: str) -> int:
    """A SkyWalking trace id as a 128-bit one: itself when it is 32 hex digits (as
    the proxy writes them), else a digest of it, so every hop maps it the same."""
    t = trace.replace("-", "").lower()
    if len(t) == 32:
        try:
            v = int(t, 16)
            if v:
                return v
        except ValueError:
            pass
    return int.from_bytes(hashlib.blake2b(trace.encode("utf-8"), digest_size=16).digest(), "big") or 1


def sw_span_id(segment: str, span: int) -> int:
    """A SkyWalking (segment, span) pair as a 64-bit span id."""
    d = hashlib.blake2b(f"{segment}.{span}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(d, "big") or 1


# what read() gives as the malformed formats when no header of any format was there
# (compared by identity: the writer then has nothing to remove)
NONE_PRESENT: list[str] = []


def read(headers: Headers, formats: tuple[str, ...]) -> tuple[Parent | None, list[str]]:
    """The parent context (None: start a trace), and the formats found malformed
    (NONE_PRESENT itself when the request had no trace header at all)."""
    found: dict[bytes, list[str]] | None = None
    for k, v in headers.items:
        if k in _NAMES:
            if found is None:
                found = {}
            found.setdefault(k, []).append(v.decode("latin-1"))
    if found is None:
        return None, NONE_PRESENT
    bad: list[str] = []
    for fmt in formats:
        p = _read_one(fmt, found)
        if p is None:
            continue
        if p is _BAD:
            bad.append(fmt)
            continue
        return p, bad
    return None, bad


_BAD = Parent("", 0, 0, None)


def _read_one(fmt: str, found: dict[bytes, list[str]]) -> Parent | None:
    if fmt == "w3c":
        tp = found.get(b"traceparent")
        if tp is None:
            return None
        parsed = w3c.parse_traceparent(tp[0]) if len(tp) == 1 else None
        if parsed is None:
            return _BAD
        trace_id, span_id, flags = parsed
        return Parent("w3c", trace_id, span_id, bool(flags & 1),
                      w3c.parse_tracestate(found.get(b"tracestate", [])))
    if fmt == "b3":
        single = found.get(b"b3")
        if single is not None:
            h = b3.parse_single(single[0])
        else:
            def one(n: bytes) -> str | None:
                v = found.get(n)
                return v[0] if v else None
            if not any(n in found for n in WRITTEN["b3"][1:]):
                return None
            h = b3.parse_multi(one(b"x-b3-traceid"), one(b"x-b3-spanid"), one(b"x-b3-parentspanid"),
                               one(b"x-b3-sampled"), one(b"x-b3-flags"))
        if h is b3.INVALID:
            return _BAD
        return Parent("b3", h.trace_id, h.span_id, h.sampled)
    if fmt == "sw8":
        v = found.get(b"sw8")
        if v is None:
            return None
        s = sw8.parse_sw8(v[0])
        if s is None:
            return _BAD
        return Parent("sw8", sw_trace_id(s.trace_id), sw_span_id(s.segment_id, s.span_id), s.sampled, sw=s)
    return None


_DROP: dict[tuple[str, ...], frozenset[bytes]] = {}


def write(headers: Headers, formats: tuple[str, ...], trace_id: int, span_id: int, parent_id: int,
          sampled: bool, tracestate: tuple[tuple[str, str], ...], sw: sw8.Sw8 | str | None,
          fresh: bool = False) -> bool:
    """Put the context (`span_id` the proxy's client span, `parent_id` its server
    span) last on the upstream request, in every format of `formats`; `sw` is the
    sw8 to write (or its value, formatted already). `fresh`: the headers hold none of
    these formats (nothing to remove). True when a header of those formats was there
    before (and is replaced)."""
    old = headers.items
    if fresh:
        items = old
        replaced = False
    else:
        drop = _DROP.get(formats)
        if drop is None:
            drop = _DROP[formats] = frozenset(n for f in formats for n in WRITTEN[f])
        items = [kv for kv in old if kv[0] not in drop]
        replaced = len(items) != len(old)
    tid = f"{trace_id:032x}".encode()
    sid = f"{span_id:016x}".encode()
    for fmt in formats:
        if fmt == "w3c":
            items.append((b"traceparent", b"00-" + tid + b"-" + sid + (b"-01" if sampled else b"-00")))
            if tracestate:
                items.append((b"tracestate", w3c.format_tracestate(tracestate).encode("latin-1")))
        elif fmt == "b3":
            # the single header, and the multi-header form older Zipkin libraries read
            pid = f"{parent_id:016x}".encode() if parent_id else b""
            flag = b"1" if sampled else b"0"
            items.append((b"b3", tid + b"-" + sid + b"-" + flag + (b"-" + pid if pid else b"")))
            items.append((b"x-b3-traceid", tid))
            items.append((b"x-b3-spanid", sid))
            if pid:
                items.append((b"x-b3-parentspanid", pid))
            items.append((b"x-b3-sampled", flag))
        elif fmt == "sw8" and sw is not None:
            items.append((b"sw8", (sw if isinstance(sw, str) else sw8.format_sw8(sw)).encode()))
    headers.items = items
    return replaced


class Fresh:
    """What an unsampled stream that started its own trace writes on its first
    attempt, as one bytes format over its ids written "<trace id>-<span id>" in hex
    (`ids`, 49 bytes): `fmt % ids` when `one` names the only field (W3C alone),
    else `fmt % tuple(ids[s] for s in args)`, is the encoded fields ("name:
    value\r\n" each, in write()'s order and bytes); `names` and `slices` say where
    each value is in it (`at` the first's). Ids are fixed width, so the places are
    too. An sw8 value also names the request's path and peer: when sw8 is written
    last, its value stands from `sw8_at` to the last CRLF and four more arguments
    (base64 of the trace id, the segment id, the path, the peer) follow the ids';
    written elsewhere, of() gives None.

    Without sw8 the fields depend on the ids alone, so they are drawn ahead: `pool`
    holds encoded fields for fresh random ids, made POOL at a time by refill(), and
    a request takes one with a list pop. Where the trace and span ids stand in them
    is `trace_at` and `span_at`. A forked child starts with every pool empty, so no
    two processes share ids."""
    __slots__ = ("fmt", "args", "names", "slices", "one", "at", "sw8_at", "pool", "trace_at", "span_at",
                 "batch", "__weakref__")

    def __init__(self, parts: list[tuple[bytes, bytes, tuple[slice, ...]]], sw_who: bytes | None = None) -> None:
        fmt = b""
        at = 0                  # where the formatted bytes are
        args: list[slice] = []
        slices = []
        for name, value, used in parts:
            fmt += name + b": " + value + b"\r\n"
            at += len(name) + 2
            width = len(value) - 2 * len(used) + sum(len(_IDS[s]) for s in used)
            slices.append(slice(at, at + width))
            at += width + 2
            args += used
        self.sw8_at = 0
        if sw_who is not None:
            # sample-trace-segment-span(the exit span: attempt 1)-service-instance-endpoint-peer
            self.sw8_at = at + 5
            fmt += b"sw8: 0-%s-%s-1-" + sw_who + b"%s-%s\r\n"
        self.fmt = fmt
        self.args = tuple(args)
        self.names = tuple(name for name, _, _ in parts)
        self.slices = tuple(slices)
        self.one = self.names[0] if len(parts) == 1 and len(args) == 1 and sw_who is None else None
        self.at = self.slices[0] if slices else slice(0)
        self.pool: list[bytes] | None = None
        self.trace_at = self.span_at = 0
        self.batch: Any = None          # what draw() needs, worked out on its first call
        if sw_who is None and args:
            self.pool = []
            probe = self.format(_IDS)
            self.trace_at, self.span_at = probe.index(_IDS[_TRACE]), probe.index(_IDS[_SPAN])
            _POOLED.add(self)

    def put(self, items: list[tuple[bytes, bytes]], wire: bytes) -> None:
        """Append the fields `wire` (one of the pool's) encodes to a request's `items`."""
        if self.one is not None:
            items.append((self.one, wire[self.at]))
        else:
            items += zip(self.names, map(wire.__getitem__, self.slices))

    def format(self, ids: bytes) -> bytes:
        """The encoded fields for `ids` ("<trace id>-<span id>" in hex; no sw8)."""
        return self.fmt % (ids if self.one is not None else tuple(ids[s] for s in self.args))

    def refill(self) -> bytes:
        """Fill the pool with POOL fresh contexts (draw()) and take one."""
        pool = self.pool
        assert pool is not None
        pool += self.draw()
        return pool.pop()

    def take(self) -> bytes:
        """One fresh context, from the pool (refilled when empty)."""
        pool = self.pool
        assert pool is not None
        return pool.pop() if pool else self.refill()

    def draw(self) -> tuple[bytes, ...]:
        """POOL fresh contexts, the pool untouched. The batch is made by C calls, not
        a Python step per context: random bytes in hex (OpenSSL's generator: a kernel
        call costs several times more), as many digits as the contexts' fields have
        bytes, laid out a context after the other; then each place that is not an id's
        digit is set, for all contexts at once (a slice with a step), and each digit
        the fields repeat (b3 writes the ids twice) copied from its first place the
        same way; one struct unpack cuts the contexts apart. An id of all zeros, which
        the formats forbid, is as likely as guessing an id, and is not checked for."""
        if self.one is not None:
            return self._draw_one()
        size, fixed, copies, cut = self.batch or self._set_batch()
        buf = bytearray(_hexlify(_random_bytes(size * POOL // 2)))
        for at, value in fixed:
            buf[at::size] = value
        for at, first in copies:
            buf[at::size] = buf[first::size]
        return cut(buf)

    def _draw_one(self) -> tuple[bytes, ...]:
        """draw() for one field over both ids (W3C alone: "...00-<trace id>-<span
        id>-00\r\n"), with two places set rather than every fixed byte. 25 random
        bytes a context give 50 digits, "<trace id>x<span id>y", and hexlify puts a
        newline after each context's; replacing those newlines with the text between
        two contexts' digits (the field's end after the y, and the next one's start)
        lays the whole batch out, and x and y, the digits in the places of the two
        dashes, are then set for all contexts at once."""
        lead, joint, size, dash_at, cut = self.batch or self._set_one()
        buf = bytearray(lead)
        buf += _hexlify(_random_bytes(25 * POOL), b"\n", 25).replace(b"\n", joint)
        buf += joint[:len(joint) - len(lead)]
        for at in dash_at:
            buf[at::size] = _DASHES
        return cut(buf)

    def _set_one(self) -> tuple[bytes, bytes, int, tuple[int, int], Any]:
        """What _draw_one() needs: the field's text before the ids, the text between
        one context's digits and the next one's (from the dash after the span id),
        the size of a context's field and where its two dashes are."""
        lead, _, end = self.fmt.partition(b"%s")
        assert end[:1] == b"-"
        size = len(lead) + 49 + len(end)
        self.batch = (lead, end[1:] + lead, size, (len(lead) + 32, len(lead) + 49),
                      struct.Struct(f"{size}s" * POOL).unpack)
        return self.batch

    def _set_batch(self) -> tuple[int, list[tuple[int, bytes]], list[tuple[int, int]], Any]:
        """What draw() needs, worked out once: the size of one context's fields, the
        places set to a fixed byte and the bytes for all contexts, the places that
        repeat a digit and where it is first, and what cuts a batch into contexts."""
        # the fields over ids whose every digit is a byte no field's text holds
        probe = self.format(bytes(range(128, 160)) + b"-" + bytes(range(160, 176)))
        size = len(probe)
        fixed: list[tuple[int, bytes]] = []
        copies: list[tuple[int, int]] = []
        first: dict[int, int] = {}
        for at, b in enumerate(probe):
            if b < 128:
                fixed.append((at, bytes((b,)) * POOL))
            elif b in first:
                copies.append((at, first[b]))
            else:
                first[b] = at
        self.batch = (size, fixed, copies, struct.Struct(f"{size}s" * POOL).unpack)
        return self.batch

    @classmethod
    def of(cls, formats: tuple[str, ...], sw_who: str = "", sampled: bool = False) -> "Fresh | None":
        """`sw_who`: the fixed part of an sw8 value, "<service>-<instance>-" in base64.
        `sampled`: the fields of a sampled fresh trace, W3C's alone (None for any other
        formats: B3 also names the parent of the span it carries, the server span, and
        sw8 the path and peer), with the flag on; their span id is then the first
        attempt's, the parent the upstream sees."""
        sw8 = "sw8" in formats
        if sampled and formats != ("w3c",):
            return None
        if sw8 and (formats[-1] != "sw8" or formats.count("sw8") > 1 or "%" in sw_who):
            return None
        parts: list[tuple[bytes, bytes, tuple[slice, ...]]] = []
        for fmt in formats:
            if fmt == "w3c":
                parts.append((b"traceparent", b"00-%s-01" if sampled else b"00-%s-00", (_BOTH,)))
            elif fmt == "b3":
                parts += [(b"b3", b"%s-0", (_BOTH,)), (b"x-b3-traceid", b"%s", (_TRACE,)),
                          (b"x-b3-spanid", b"%s", (_SPAN,)), (b"x-b3-sampled", b"0", ())]
        return cls(parts, sw_who.encode("ascii") if sw8 else None)


def fields_of(wire: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields a drawn context encodes ("name: value\r\n" each)."""
    return [(k, v) for k, _, v in (f.partition(b": ") for f in wire[:-2].split(b"\r\n"))]


# the parts of "<trace id>-<span id>" in hex
_BOTH, _TRACE, _SPAN = slice(None), slice(0, 32), slice(33, None)
_IDS = b"t" * 32 + b"-" + b"s" * 16

# contexts drawn per refill (even: the batch's hex digits are whole random bytes).
# A refill runs cold, between requests; in a serving proxy (bench/tracing.py) 512
# a batch cost about 130 ns a context, 128 a batch 220 ns, 1,024 170 ns.
POOL = 512
_DASHES = b"-" * POOL
_hexlify = binascii.hexlify
_random_bytes = ssl.RAND_bytes
_POOLED: "weakref.WeakSet[Fresh]" = weakref.WeakSet()


def _forget_pools() -> None:
    for f in _POOLED:
        if f.pool is not None:
            f.pool.clear()


os.register_at_fork(after_in_child=_forget_pools)
