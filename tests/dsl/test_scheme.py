"""dsl/scheme.py: the language's literal units, function signatures and phase order."""
from __future__ import annotations

import ipaddress

import pytest

from mosnx.dsl import scheme as S


@pytest.mark.parametrize("text,seconds", [("250ms", 0.25), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0)])
def test_durations(text, seconds):
    assert S.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["2", "2d", "s", "-1s", " 2s"])
def test_bad_durations_are_none(text):
    assert S.parse_duration(text) is None


def test_percentages_and_rates():
    assert S.parse_percent("5%") == 5.0 and S.parse_percent("100") == 100.0 and S.parse_percent("0%") == 0.0
    assert S.parse_percent("101%") is None and S.parse_percent("x%") is None and S.parse_percent("-1") is None
    assert S.parse_rate("100/s") == (100, 1.0) and S.parse_rate("5/m") == (5, 60.0) and S.parse_rate("1/h") == (1, 3600.0)
    assert S.parse_rate("0/s") is None and S.parse_rate("5/d") is None and S.parse_rate("5") is None


def test_addresses_and_networks():
    assert S.parse_ip("10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert S.parse_ip("10.0.0.7/8") == ipaddress.ip_network("10.0.0.0/8")       # host bits allowed
    assert S.parse_ip("::1") == ipaddress.ip_address("::1")
    assert S.parse_ip("10.0.0.256") is None and S.parse_ip("10.0.0.0/33") is None


def test_fields_come_from_the_one_attribute_table():
    assert S.attribute("request.path").type == S.STRING
    assert S.attribute("response.code").type == S.INT
    assert S.attribute("request.nope") is None


def test_phases_in_stream_order_and_function_signatures():
    assert sorted(S.PHASE_ORDER, key=S.PHASE_ORDER.get) == ["request", "route", "response", "log"]
    assert S.FUNCTIONS["lower"] == ((S.STRING,), S.STRING) and S.FUNCTIONS["exists"] == (("field",), S.BOOL)
    assert S.SET_OF[S.IP] == S.SET_OF[S.CIDR] == S.SET_CIDR
