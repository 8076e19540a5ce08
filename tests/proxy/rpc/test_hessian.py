"""proxy/rpc/hessian.py: the Hessian 2 strings, ints and class definitions the proxy reads
itself agree with python-hessian's encoding, and bad bytes are HessianErrors."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, strategies as st

from mosnx.proxy.rpc.hessian import (HessianError, Skipper, arg_count, read_class_def, read_int, read_string,
                                     write_string)


@pytest.mark.parametrize("s", ["", "a", "x" * 31, "x" * 32, "é" * 1023, "y" * 1024, "z" * 70000,
                               "emoji \U0001F600 and 中文"])
def test_strings_round_trip(s):
    data = write_string(s) + b"tail"
    assert read_string(data, 0) == (s, len(data) - 4)


def test_strings_as_python_hessian_writes_them():
    enc = pytest.importorskip("pyhessian.encoder").Encoder()
    for s in ("", "hello", "é" * 40, "\U0001F600" * 3):
        data = enc.encode(s)
        assert read_string(data, 0) == (s, len(data))


def test_null_and_errors():
    assert read_string(b"N", 0) == (None, 1)
    for bad in (b"", b"\x05ab", b"\x91", b"S\x00", b"\x02\xff\xfe"):
        with pytest.raises(HessianError):
            read_string(bad, 0)


def test_ints():
    assert read_int(b"\x90", 0) == (0, 1)
    assert read_int(b"\xbf", 0) == (47, 1)
    assert read_int(b"\x80", 0) == (-16, 1)
    assert read_int(b"\xc9\x00", 0) == (256, 2)
    assert read_int(b"\xd5\x00\x00", 0) == (65536, 3)
    assert read_int(b"I\xff\xff\xff\xfe", 0) == (-2, 5)
    with pytest.raises(HessianError):
        read_int(b"I\x00", 0)
    with pytest.raises(HessianError):
        read_int(b"S", 0)


def test_class_definitions_both_dialects():
    fields = ["methodName", "targetAppName"]
    final = (b"C" + write_string("a.B") + b"\x92" + b"".join(write_string(f) for f in fields)
             + b"\x60" + write_string("hello"))
    name, got, pos = read_class_def(final, 0)
    assert (name, got) == ("a.B", fields) and read_string(final, pos)[0] == "hello"
    # hessian.js's draft: 'O' length raw-name count names, then 'o' ref
    draft = b"O\x93a.B\x92" + b"".join(write_string(f) for f in fields) + b"o\x90" + write_string("hi")
    name, got, pos = read_class_def(draft, 0)
    assert (name, got) == ("a.B", fields) and read_string(draft, pos)[0] == "hi"


@given(st.binary(max_size=64), st.integers(0, 8))
def test_any_bytes_read_or_refused(data, pos):
    for fn in (read_string, read_int, read_class_def):
        try:
            fn(data, pos)
        except HessianError:
            pass


ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# shared/ lies beside the repository (or beside the folder of work trees holding it)
FIXTURES = [os.path.join(ROOT, *up, "shared", "testdata", "hessian.js", "test", "fixtures", "v2")
            for up in (("..",), ("..", ".."))]


def _fixture_dir(kind: str) -> str:
    for base in FIXTURES:
        d = os.path.normpath(os.path.join(base, kind))
        if os.path.isdir(d):
            return d
    pytest.skip(f"hessian.js's Hessian 2 fixtures are not beside the repository ({FIXTURES[0]})")


def test_hessian_js_string_fixtures():
    d = _fixture_dir("string")
    expected = {"empty": "", "foo": "foo", "chinese": "中文 Chinese"}
    seen = 0
    for name in sorted(os.listdir(d)):
        data = open(os.path.join(d, name), "rb").read()
        if data[:1] == b"s":
            continue        # hessian.js's 1.0-style 's' chunk, not Hessian 2.0 (which chunks with 'R')
        text, end = read_string(data, 0)
        assert end == len(data), name
        stem = name[:-4]
        if stem in expected:
            assert text == expected[stem]
        elif stem.startswith("large_string_") and stem[13:].isdigit():
            assert text == "A" * int(stem[13:])
        elif stem.startswith("utf8_"):
            assert text == "锋" * int(stem[5:])
        elif stem.isdigit():
            assert text == stem
        seen += 1
    assert seen >= 15


def test_hessian_js_int_fixtures():
    d = _fixture_dir("number")
    for name in os.listdir(d):
        data = open(os.path.join(d, name), "rb").read()
        assert read_int(data, 0) == (int(name[:-4]), len(data)), name


# ---------------------------------------------------------------- stepping over values

def _dubbo_ssl_values(values: list) -> bytes:
    """The values as dubbo-ssl-python's own Hessian 2 encoder writes a call's arguments."""
    enc = pytest.importorskip("dubbo_ssl.codec.encoder")
    req = enc.Request({})
    return bytes(b & 0xFF for v in values for b in req._encode_single_value(v))


def test_skipper_steps_over_what_a_real_encoder_writes():
    enc = pytest.importorskip("dubbo_ssl.codec.encoder")
    user = enc.Object("com.example.User", {"name": "u1", "age": 30, "tags": ["a", "b"]})
    other = enc.Object("com.example.User", {"name": "u2", "age": -5, "tags": ["c"] * 9})
    values = [True, False, None, 0, -16, 47, 2000, -70000, 1 << 40, 1.5, 0.0, 1.0, "x" * 40, "é" * 1100,
              [1, 2, 3], ["s"] * 8, [1.25] * 3, user, other, [user, other]]
    data = _dubbo_ssl_values(values) + b"\x05after"
    sk = Skipper(data)
    pos = 0
    for _ in values:
        pos = sk.skip(pos)
    assert read_string(data, pos) == ("after", len(data))
    assert sk.classes == [3]                # one definition, used by both objects


@pytest.mark.parametrize("data", [
    b"H\x01a\x01bZ", b"M\x04type\x01a\x91Z", b"W\x91\x92Z", b"X\x92\x91\x92", b"\x7a\x91\x92", b"Q\x90",
    b"D" + bytes(8), b"L" + bytes(8), b"J" + bytes(8), b"K" + bytes(4), b"Y" + bytes(4), b"\x5d\x01", b"\x5e\x00\x01",
    b"\x5f" + bytes(4), b"\x23abc", b"\x34\x02" + bytes(2), b"A\x00\x01xB\x00\x02yz", b"\x3a\x00\x01",
    b"U\x04type\x91Z", b"V\x90\x92\x91\x92", b"\x71\x90\x91",
    b"C\x01P\x92\x01a\x01b\x60\x91\x92",
])
def test_skipper_each_form(data):
    assert Skipper(data + b"!").skip(0) == len(data)


@pytest.mark.parametrize("data", [b"", b"H\x01a", b"\x60", b"O\x91", b"\x40", b"Z", b"D\x00", b"A\x00\x01x",
                                  b"W" * 200, b"\x79", b"X\x80"])
def test_skipper_refuses_what_is_not_a_value(data):
    with pytest.raises(HessianError):
        Skipper(data).skip(0)


@given(st.binary(max_size=64))
def test_skipper_never_raises_another_error(data):
    try:
        Skipper(data).skip(0)
    except HessianError:
        pass


def test_string_map_keeps_string_entries():
    data = b"H\x01a\x01b\x91\x01c\x01d\x91Z"
    out, close, end = Skipper(data).string_map(0)
    assert out == {"a": "b"} and close == len(data) - 1 and end == len(data)
    assert Skipper(b"N").string_map(0) == ({}, 0, 1)
    with pytest.raises(HessianError):
        Skipper(b"\x91").string_map(0)


def test_arg_count():
    assert arg_count("") == 0
    assert arg_count("Ljava/lang/String;I[J[[Lcom/x/Y;Z") == 5
    for bad in ("Ljava/lang/String", "[", "Q"):
        with pytest.raises(HessianError):
            arg_count(bad)
