"""runtime/filters/_config.py: the built-in filters' readers of Envoy-style values
(durations, percentages, statuses, option names), each a ValueError naming its key."""
from __future__ import annotations

import pytest

from mosnx.runtime.filters._config import duration, known_keys, percent, status


@pytest.mark.parametrize("value,seconds", [(2, 2.0), (0.5, 0.5), ("2s", 2.0), ("500ms", 0.5),
                                           (" 1.5m ", 90.0), ("1h", 3600.0), ("0s", 0.0)])
def test_durations(value, seconds):
    assert duration(value, "delay") == pytest.approx(seconds)


@pytest.mark.parametrize("value", [True, "2", "2 s", "fast", "-1s", -1, None])
def test_bad_durations_name_the_key(value):
    with pytest.raises(ValueError, match="^fixed_delay: "):
        duration(value, "fixed_delay")


@pytest.mark.parametrize("value,pct", [(5, 5.0), ("5%", 5.0), ("100", 100.0), (0, 0.0),
                                       ({"numerator": 5}, 5.0),
                                       ({"numerator": 5, "denominator": "TEN_THOUSAND"}, 0.05),
                                       ({"numerator": 1, "denominator": "MILLION"}, 0.0001)])
def test_percentages(value, pct):
    assert percent(value, "abort.percentage") == pytest.approx(pct)


@pytest.mark.parametrize("value", [101, -1, "lots", True, {"numerator": 5, "denominator": "THOUSAND"},
                                   {"numerator": "5"}, {"numerator": 200}])
def test_bad_percentages_name_the_key(value):
    with pytest.raises(ValueError, match="^abort.percentage: "):
        percent(value, "abort.percentage")


def test_statuses():
    assert status(429, "status") == 429 and status({"code": 503}, "status") == 503
    assert status(99, "s", lo=0) == 99
    for bad in (199, 600, "429", True, {"code": None}, None):
        with pytest.raises(ValueError, match="^status: expected an HTTP status in 200..599"):
            status(bad, "status")


def test_unknown_options_are_listed_with_the_known_ones():
    known_keys({"abort": 1}, {"abort", "delay"}, "fault")
    with pytest.raises(ValueError) as e:
        known_keys({"abort": 1, "dealy": 2, "zz": 3}, {"abort", "delay"}, "fault")
    assert str(e.value) == "fault: unknown option(s) dealy, zz; known: abort, delay"
