"""Suite-wide hooks.

Each test item keeps its phase reports (`item.rep_setup`, `item.rep_call`) so that
fixtures can tell at teardown whether the test failed, and print what helps then
(the proxy's log, for instance) without cluttering passing runs.
"""
from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
