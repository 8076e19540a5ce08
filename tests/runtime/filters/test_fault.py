"""runtime/filters/fault.py: fault injection (abort, delay, header control), through its
registered factory (as YAML listeners build it) and directly."""
from __future__ import annotations

import pytest

from mosnx.runtime.actions import LocalReply, Pause
from mosnx.runtime.filters.fault import FaultConfig, FaultFilter

from .conftest import build, req, settle


def test_fault_abort_from_envoy_config_counts_stats():
    f, stats = build("fault", {"abort": {"http_status": 503, "percentage": {"numerator": 100, "denominator": "HUNDRED"}}})
    a = f.on_request(req())
    assert a == LocalReply(503, b"fault filter abort", detail="fault_abort")
    assert stats.counters["fault.aborts_injected"].value == 1


def test_fault_delay_is_a_pause_then_continue():
    f, stats = build("fault", {"delay": {"fixed_delay": "1ms", "percentage": 100}})
    a = f.on_request(req())
    assert isinstance(a, Pause) and settle(a) is None
    assert stats.counters["fault.delays_injected"].value == 1


def test_fault_percentages_zero_never_fire():
    f = FaultFilter(FaultConfig(delay=1.0, delay_percent=0.0, abort_status=500, abort_percent=0.0))
    assert all(f.on_request(req()) is None for _ in range(50))


def test_fault_headers_only_when_enabled():
    off = FaultFilter(FaultConfig(abort_status=500, abort_percent=0.0))
    assert off.on_request(req({"x-envoy-fault-abort-request": "429"})) is None
    on, _ = build("fault", {"abort": {"header_abort": {}}, "delay": {"header_delay": {}}})
    assert on.on_request(req()) is None
    assert on.on_request(req({"x-envoy-fault-abort-request": "429"})).status == 429
    a = on.on_request(req({"x-envoy-fault-delay-request": "1", "x-envoy-fault-abort-request": "503"}))
    assert isinstance(a, Pause) and settle(a).status == 503


@pytest.mark.parametrize("cfg", [
    {}, {"abort": {"http_status": 99}}, {"delay": {"fixed_delay": "soon"}},
    {"abort": {"http_status": 500, "percentage": 150}}, {"abrot": {}},
])
def test_fault_bad_config_is_a_value_error(cfg):
    with pytest.raises(ValueError):
        build("fault", cfg)
