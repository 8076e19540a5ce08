"""Zipkin B3: single and multi-header forms, 64- and 128-bit ids, sampling and debug."""
from __future__ import annotations

import pytest

from mosnx.runtime.tracing import b3

T128 = "80f198ee56343ba864fe8b2a57d3eff7"
T64 = "a3ce929d0e0e4736"
S = "e457b5a2e4d86bd1"
P = "05e3ac9a4f6e3b90"


def test_single_full() -> None:
    h = b3.parse_single(f"{T128}-{S}-1-{P}")
    assert (f"{h.trace_id:032x}", f"{h.span_id:016x}", f"{h.parent_id:016x}", h.sampled, h.debug) == (
        T128, S, P, True, False)


def test_single_64_bit_trace_and_debug() -> None:
    h = b3.parse_single(f"{T64}-{S}-d")
    assert h.trace_id == int(T64, 16) and h.sampled is True and h.debug is True


def test_single_without_sampling_defers() -> None:
    h = b3.parse_single(f"{T128}-{S}")
    assert h.sampled is None and h.span_id == int(S, 16)


@pytest.mark.parametrize("value, sampled", [("0", False), ("1", True), ("d", True)])
def test_single_sampling_only(value: str, sampled: bool) -> None:
    h = b3.parse_single(value)
    assert h is not b3.INVALID and h.trace_id == 0 and h.sampled is sampled


@pytest.mark.parametrize("value", [
    "", "x", f"{T128}", f"{T128[:-1]}-{S}-1", f"{T128}-{S[:-1]}-1", f"{T128}-{S}-2",
    f"{T128.upper()}-{S}-1", f"{T128}-{S}-1-{P}-extra", f"{T128}-{S}-1-zz", f"{'0' * 32}-{S}-1",
])
def test_single_malformed(value: str) -> None:
    assert b3.parse_single(value) is b3.INVALID


def test_multi() -> None:
    h = b3.parse_multi(T64, S, P, "1", None)
    assert (h.trace_id, h.span_id, h.parent_id, h.sampled) == (int(T64, 16), int(S, 16), int(P, 16), True)
    assert b3.parse_multi(T128, S, None, "0", None).sampled is False
    assert b3.parse_multi(T128, S, None, None, "1").debug is True
    assert b3.parse_multi(T128, S, None, "true", None).sampled is True
    assert b3.parse_multi(None, None, None, "0", None).sampled is False


@pytest.mark.parametrize("args", [
    (T128, None, None, None, None), (None, S, None, None, None), ("xyz", S, None, None, None),
    (T128, S, "nothex", None, None), (T128, S, None, "maybe", None),
])
def test_multi_malformed(args: tuple) -> None:
    assert b3.parse_multi(*args) is b3.INVALID


def test_format_single() -> None:
    assert b3.format_single(int(T128, 16), int(S, 16), True, int(P, 16)) == f"{T128}-{S}-1-{P}"
    assert b3.format_single(int(T64, 16), int(S, 16), False) == f"{'0' * 16}{T64}-{S}-0"
