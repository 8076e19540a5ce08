"""runtime/config/scalars.py: each scalar type converts what YAML gives into the model's
value, or reports one finding naming the key, what was expected and what it got."""
from __future__ import annotations

import pytest

from mosnx.runtime.config.scalars import Address, Bool, Duration, Enum, FilePath, Int, Number, Size, Str
from mosnx.runtime.config.schema import INVALID

from .conftest import convert


@pytest.mark.parametrize("type_,text,value", [
    (Str(), "abc", "abc"), (Str(), "5", "5"), (Str(empty=True), "''", ""),
    (Enum("a", "b"), "a", "a"), (Bool(), "true", True), (Bool(), "no", False),
    (Int(1, 10), "5", 5), (Number(0, 100), "5.5", 5.5),
    (Duration(), "250ms", 0.25), (Duration(), "1m", 60.0), (Duration(), "3", 3.0), (Duration(), "0", 0.0),
    (Duration(zero_is_none=True), "0", None),
    (Size(), "64KiB", 64 * 1024), (Size(), "1MiB", 1024 * 1024), (Size(), "1.5KiB", 1536), (Size(), "100", 100),
    (Address(), "127.0.0.1:80", ("127.0.0.1", 80)), (Address(), "'[::1]:8080'", ("::1", 8080)),
])
def test_good_values(type_, text, value):
    assert convert(type_, text) == (value, [])


@pytest.mark.parametrize("type_,text,code,message", [
    (Str(), "''", "C004", "k: must not be empty"),
    (Str(), "[a]", "C003", "k: expected a string, got a list"),
    (Enum("a", "b"), "c", "C004", 'k: unknown value "c"; expected one of a, b'),
    (Bool(), "1", "C003", "k: expected true or false, got 1 (a number)"),
    (Int(1, 10), "0", "C004", "k: 0 is below the minimum 1"),
    (Int(1, 10), "11", "C004", "k: 11 is above the maximum 10"),
    (Int(1, 10), "5.5", "C003", "k: expected a whole number, got 5.5 (a number)"),
    (Int(1, 10), "true", "C003", "k: expected a whole number, got true (a boolean)"),
    (Number(0, 100), "101", "C004", "k: 101 is above the maximum 100"),
    (Duration(), "-1s", "C004", 'k: "-1s" is negative; durations are never negative'),
    (Duration(), "x", "C004", 'k: "x" is not a duration such as 250ms, 2s, 1m or 1h'),
    (Duration(positive=True), "0s", "C004", "k: must be longer than 0"),
    (Size(), "x", "C004", 'k: "x" is not a size such as 512, 64KiB or 1MiB'),
    (Size(), "-1", "C004", "k: -1 is negative"),
    (Address(), "host", "C004", 'k: "host" is not an address host:port, such as 127.0.0.1:8080 or [::1]:8080'),
    (Address(), "h:99999", "C004", 'k: "h:99999": port 99999 is outside 1..65535'),
])
def test_bad_values_are_one_finding(type_, text, code, message):
    assert convert(type_, text) == (INVALID, [(code, 1, 1, message)])


def test_file_paths_are_relative_to_the_config_and_may_have_to_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "there.pem").write_text("x")
    value, found = convert(FilePath(), "certs/a.pem")
    assert value == str(tmp_path / "certs" / "a.pem") and found == []
    assert convert(FilePath(must_exist=True), "there.pem") == (str(tmp_path / "there.pem"), [])
    value, found = convert(FilePath(must_exist=True), "missing.pem")
    assert value is INVALID and len(found) == 1 and "no such file" in found[0][3]
    assert convert(FilePath(keep=("stdout",)), "stdout") == ("stdout", [])
