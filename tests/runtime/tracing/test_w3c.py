"""W3C Trace Context parsing, data-driven from the cases of the W3C test suite
(w3c/trace-context test/test.py): each header value and whether the trace id must be
kept (accepted) or a new trace started (rejected); tracestate inherited or dropped."""
from __future__ import annotations

import pytest

from mosnx.runtime.tracing import w3c

TID = "12345678901234567890123456789012"
PID = "1234567890123456"

# (case in the suite, traceparent value, accepted)
TRACEPARENT_CASES = [
    ("traceparent_included", f"00-{TID}-{PID}-01", True),
    ("version_0x00 trailing dot", f"00-{TID}-{PID}-01.", False),
    ("version_0x00 trailing data", f"00-{TID}-{PID}-01-what-the-future-will-be-like", False),
    ("version_0xcc", f"cc-{TID}-{PID}-01", True),
    ("version_0xcc trailing data", f"cc-{TID}-{PID}-01-what-the-future-will-be-like", True),
    ("version_0xcc trailing dot", f"cc-{TID}-{PID}-01.what-the-future-will-be-like", False),
    ("version_0xff", f"ff-{TID}-{PID}-01", False),
    ("version illegal .0", f".0-{TID}-{PID}-01", False),
    ("version illegal 0.", f"0.-{TID}-{PID}-01", False),
    ("version too long 000", f"000-{TID}-{PID}-01", False),
    ("version too long 0000", f"0000-{TID}-{PID}-01", False),
    ("version too short", f"0-{TID}-{PID}-01", False),
    ("trace_id all zero", f"00-{'0' * 32}-{PID}-01", False),
    ("trace_id illegal leading", f"00-.{TID[1:]}-{PID}-01", False),
    ("trace_id illegal trailing", f"00-{TID[:-1]}.-{PID}-01", False),
    ("trace_id too long", f"00-{TID}3-{PID}-01", False),
    ("trace_id too short", f"00-{TID[:-1]}-{PID}-01", False),
    ("parent_id all zero", f"00-{TID}-{'0' * 16}-01", False),
    ("parent_id illegal leading", f"00-{TID}-.{PID[1:]}-01", False),
    ("parent_id illegal trailing", f"00-{TID}-{PID[:-1]}.-01", False),
    ("parent_id too long", f"00-{TID}-{PID}7-01", False),
    ("parent_id too short", f"00-{TID}-{PID[:-1]}-01", False),
    ("trace_flags illegal .0", f"00-{TID}-{PID}-.0", False),
    ("trace_flags illegal 0.", f"00-{TID}-{PID}-0.", False),
    ("trace_flags too long", f"00-{TID}-{PID}-001", False),
    ("trace_flags too short", f"00-{TID}-{PID}-1", False),
    ("ows leading space", f" 00-{TID}-{PID}-01", True),
    ("ows leading tab", f"\t00-{TID}-{PID}-01", True),
    ("ows trailing space", f"00-{TID}-{PID}-01 ", True),
    ("ows trailing tab", f"00-{TID}-{PID}-01\t", True),
    ("ows both", f"\t 00-{TID}-{PID}-01 \t", True),
    # the spec's hex is lower case
    ("upper-case hex", f"00-{TID.upper()}-ABCDEF0123456789-01", False),
]


@pytest.mark.parametrize("case, value, accepted", TRACEPARENT_CASES, ids=[c[0] for c in TRACEPARENT_CASES])
def test_traceparent_suite(case: str, value: str, accepted: bool) -> None:
    parsed = w3c.parse_traceparent(value)
    if accepted:
        assert parsed is not None
        assert f"{parsed[0]:032x}" == TID
    else:
        assert parsed is None


def test_traceparent_fields_and_round_trip() -> None:
    t, s, flags = w3c.parse_traceparent(f"00-{TID}-{PID}-01")  # type: ignore[misc]
    assert (f"{t:032x}", f"{s:016x}", flags) == (TID, PID, 1)
    assert w3c.format_traceparent(t, s, True) == f"00-{TID}-{PID}-01"
    assert w3c.format_traceparent(t, s, False) == f"00-{TID}-{PID}-00"


KEY_NO_VENDOR = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
ALL_VALUE = "".join(map(chr, range(0x20, 0x2C))) + "".join(map(chr, range(0x2D, 0x3D))) + "".join(
    map(chr, range(0x3E, 0x7F)))
THIRTY_TWO = [
    ",".join(f"bar{i:02d}={i:02d}" for i in range(1, 11)),
    ",".join(f"bar{i:02d}={i:02d}" for i in range(11, 21)),
    ",".join(f"bar{i:02d}={i:02d}" for i in range(21, 31)),
    "bar31=31,bar32=32",
]

# (case, tracestate header lines, the members kept: None means the header is dropped)
TRACESTATE_CASES = [
    ("included", ["foo=1,bar=2"], {"foo": "1", "bar": "2"}),
    ("empty header", [""], {}),
    ("empty then foo", ["foo=1", ""], {"foo": "1"}),
    ("empty before foo", ["", "foo=1"], {"foo": "1"}),
    ("multiple headers", ["foo=1,bar=2", "rojo=1,congo=2", "baz=3"],
     {"foo": "1", "bar": "2", "rojo": "1", "congo": "2", "baz": "3"}),
    ("duplicated keys in one", ["foo=1,foo=1"], None),
    ("duplicated keys differ", ["foo=1,foo=2"], None),
    ("duplicated across headers", ["foo=1", "foo=1"], None),
    ("duplicated across headers differ", ["foo=1", "foo=2"], None),
    ("all allowed characters", [KEY_NO_VENDOR + "=" + ALL_VALUE], {KEY_NO_VENDOR: ALL_VALUE}),
    ("all allowed with vendor", [KEY_NO_VENDOR + "@a-z0-9_-*/=" + ALL_VALUE],
     {KEY_NO_VENDOR + "@a-z0-9_-*/": ALL_VALUE}),
    ("ows", ["foo=1 \t , \t bar=2, \t baz=3"], {"foo": "1", "bar": "2", "baz": "3"}),
    ("ows tabs", ["foo=1\t \t,\t \tbar=2,\t \tbaz=3"], {"foo": "1", "bar": "2", "baz": "3"}),
    ("ows leading space", [" foo=1"], {"foo": "1"}),
    ("ows leading tab", ["\tfoo=1"], {"foo": "1"}),
    ("ows trailing space", ["foo=1 "], {"foo": "1"}),
    ("ows trailing tab", ["foo=1\t"], {"foo": "1"}),
    ("ows both", ["\t foo=1 \t"], {"foo": "1"}),
    ("key with space", ["foo =1"], None),
    ("key upper case", ["FOO=1"], None),
    ("key with dot", ["foo.bar=1"], None),
    ("vendor empty", ["foo@=1,bar=2"], None),
    ("tenant empty", ["@foo=1,bar=2"], None),
    ("double at", ["foo@@bar=1,bar=2"], None),
    ("two ats", ["foo@bar@baz=1,bar=2"], None),
    ("32 members", THIRTY_TWO, {f"bar{i:02d}": f"{i:02d}" for i in range(1, 33)}),
    ("33 members", THIRTY_TWO[:3] + ["bar31=31,bar32=32,bar33=33"], None),
    ("key of 256", ["foo=1", "z" * 256 + "=1"], {"foo": "1", "z" * 256: "1"}),
    ("key of 257", ["foo=1", "z" * 257 + "=1"], None),
    ("tenant 241 vendor 14", ["foo=1", "t" * 241 + "@" + "v" * 14 + "=1"], {"foo": "1", "t" * 241 + "@" + "v" * 14: "1"}),
    ("tenant 242", ["foo=1", "t" * 242 + "@v=1"], None),
    ("vendor 15", ["foo=1", "t@" + "v" * 15 + "=1"], None),
    ("value with =", ["foo=bar=baz"], None),
    ("empty value", ["foo=,bar=3"], None),
]


@pytest.mark.parametrize("case, lines, kept", TRACESTATE_CASES, ids=[c[0] for c in TRACESTATE_CASES])
def test_tracestate_suite(case: str, lines: list[str], kept: dict[str, str] | None) -> None:
    members = w3c.parse_tracestate(lines)
    if kept is None:
        assert members == ()
    else:
        assert dict(members) == kept
        assert [k for k, _ in members] == list(kept)     # order kept


def test_tracestate_written_within_512_characters() -> None:
    long_one = ("big", "x" * 200)
    members = (("a", "1"),) + (long_one,) + tuple((f"k{i:02d}", "v" * 20) for i in range(30))
    text = w3c.format_tracestate(members)
    assert len(text) <= 512
    assert "big=" not in text                 # the long entry goes first
    assert text.startswith("a=1,k00=")        # then entries from the end
    small = (("foo", "1"), ("bar", "2"))
    assert w3c.format_tracestate(small) == "foo=1,bar=2"
