"""Back-off delays: bounded, growing to the cap, never negative; bad settings refused."""
from __future__ import annotations

import random

import pytest

from mosnx.proxy.xds import Backoff


def test_delays_stay_under_a_ceiling_that_doubles_up_to_the_cap() -> None:
    b = Backoff(0.5, 30.0, random.Random(7))
    assert [b.ceiling(a) for a in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert b.ceiling(10_000) == 30.0                    # no overflow for a long outage
    for attempt in range(200):
        d = b.delay(attempt)
        assert 0.0 <= d <= b.ceiling(attempt)
        h = b.held(attempt)
        assert b.ceiling(attempt) / 2 <= h <= b.ceiling(attempt)


def test_full_jitter_spreads_the_draws() -> None:
    b = Backoff(1.0, 1.0, random.Random(1))
    draws = [b.delay(0) for _ in range(200)]
    assert min(draws) < 0.1 and max(draws) > 0.9


@pytest.mark.parametrize("base,cap", [(0, 1), (-1, 1), (2, 1)])
def test_bad_settings_are_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < base <= cap"):
        Backoff(base, cap)
