import pytest

from mosnx.runtime.config import parse_address, parse_duration, parse_size


@pytest.mark.parametrize("text, seconds", [
    ("250ms", 0.25), ("2s", 2.0), ("1.5s", 1.5), ("1m", 60.0), ("1h", 3600.0),
    ("100us", 0.0001), ("100µs", 0.0001), ("500ns", 5e-7), ("1m30s", 90.0), ("1h0m5s", 3605.0),
    ("0", 0.0), ("0s", 0.0), ("3", 3.0), ("2.5", 2.5), (".5s", 0.5), (" 2s ", 2.0),
    (3, 3.0), (0.25, 0.25), (0, 0.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "2 s", "2S", "1d", "1.2.3s", "ms5", "2sec", "1e3s"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), True])
def test_bad_duration_numbers(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_duration_error_says_what_is_expected():
    with pytest.raises(ValueError, match="250ms"):
        parse_duration("soon")
    with pytest.raises(ValueError, match="negative"):
        parse_duration("-5s")


@pytest.mark.parametrize("text, size", [
    ("512", 512), (512, 512), ("0", 0), ("512B", 512), ("60KiB", 60 * 1024), ("1MiB", 1 << 20),
    ("1GiB", 1 << 30), ("1TiB", 1 << 40), ("64KB", 64000), ("64K", 64000), ("64k", 64000),
    ("1M", 10**6), ("1MB", 10**6), ("2G", 2 * 10**9), ("1Mi", 1 << 20), ("64Ki", 65536),
    ("64kib", 65536), ("1.5KiB", 1536), ("1.1KB", 1100), ("0.1KiB", 102), (" 4 KiB ", 4096),
    (1.9, 1),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("value", ["", "KiB", "-1", "-1KiB", "1PiB", "1 KiBs", "1..5K", -3, True])
def test_bad_sizes(value):
    with pytest.raises(ValueError):
        parse_size(value)


def test_unknown_size_unit_is_named():
    with pytest.raises(ValueError, match='unit "XB"'):
        parse_size("3XB")


@pytest.mark.parametrize("text, address", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("localhost:1", ("localhost", 1)),
    ("[::1]:8080", ("::1", 8080)),
    ("127.0.0.1:65535", ("127.0.0.1", 65535)),
])
def test_addresses(text, address):
    assert parse_address(text) == address


@pytest.mark.parametrize("text, why", [
    ("127.0.0.1", "host:port"),
    (":8080", "host:port"),
    ("127.0.0.1:0", "outside 1..65535"),
    ("127.0.0.1:65536", "outside 1..65535"),
    ("127.0.0.1:http", "not a number"),
    ("::1:8080", "brackets"),
    ("[::1]8080", "host:port"),
    ("[nothost]:80", "not an IPv6 address"),
    ("my host:80", "space"),
])
def test_bad_addresses(text, why):
    with pytest.raises(ValueError, match=why):
        parse_address(text)
