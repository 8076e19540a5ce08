"""runtime/filters/_config.py: a filter's nested option mapping is read one way, and
a value that is not a mapping is a config error naming it, never a traceback."""
from __future__ import annotations

import pytest

from mosnx.runtime.filters import _config as C
from mosnx.runtime.filters.adaptive import AdaptiveConfig
from mosnx.runtime.filters.fault import FaultConfig


def test_section_absent_is_none():
    assert C.section({}, "delay", {"x"}, "fault.delay") is None
    assert C.section({"delay": None}, "delay", {"x"}, "fault.delay") is None


def test_section_returns_the_mapping():
    assert C.section({"delay": {"x": 1}}, "delay", {"x"}, "fault.delay") == {"x": 1}


@pytest.mark.parametrize("value", [5, [1], "s", True])
def test_section_that_is_not_a_mapping_is_refused(value):
    with pytest.raises(ValueError, match=r"^fault\.delay: expected a mapping$"):
        C.section({"delay": value}, "delay", {"x"}, "fault.delay")


def test_section_with_an_unknown_key_is_refused():
    with pytest.raises(ValueError, match=r"fault\.delay: unknown option\(s\) y; known: x"):
        C.section({"delay": {"y": 1}}, "delay", {"x"}, "fault.delay")


@pytest.mark.parametrize("cfg", [
    {"gradient_controller_config": {"concurrency_limit_params": 5}},
    {"gradient_controller_config": {"min_rtt_calc_params": [1]}},
    {"gradient_controller_config": "fast"},
])
def test_adaptive_nested_options_that_are_not_mappings_are_config_errors(cfg):
    with pytest.raises(ValueError, match="expected a mapping"):
        AdaptiveConfig.from_dict(cfg)


@pytest.mark.parametrize("cfg", [{"delay": 2}, {"abort": [503]}])
def test_fault_sections_that_are_not_mappings_are_config_errors(cfg):
    with pytest.raises(ValueError, match="expected a mapping"):
        FaultConfig.from_dict(cfg)
