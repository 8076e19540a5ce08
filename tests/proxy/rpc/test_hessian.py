"""proxy/rpc/hessian.py: the Hessian 2 strings, ints and class definitions the proxy reads
itself agree with python-hessian's encoding, and bad bytes are HessianErrors."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mosnx.proxy.rpc.hessian import HessianError, read_class_def, read_int, read_string, write_string


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
