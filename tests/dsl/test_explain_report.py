"""dsl/explain_report.py: the records explain gives, their JSON and text, and what a
walk reached, merged for coverage."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mosnx.dsl.explain_report import Reached, render_text, where
from mosnx.runtime.diagnostics import Span
from mosnx import tooling
from mosnx.dsl.explain import Explainer, parse_request
from mosnx.runtime.snapshot import build_snapshot


def explain(ex: Explainer, line: str, headers=(), source=None, **kw):
    return ex.explain(parse_request(line, headers, source), **kw)

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop" / "mosnx.yaml"
HOST = "http://shop.example.com"


@pytest.fixture(scope="module")
def shop() -> Explainer:
    return Explainer(build_snapshot(str(SHOP)), tooling.core())


def test_render_text_and_json(shop):
    ex = explain(shop, f"GET {HOST}/v1/items/42")
    text = render_text(ex)
    assert "route     items" in text and "cluster   items-svc" in text and "timeout   800ms" in text
    doc = ex.json()
    assert doc["route"] == "items" and doc["cluster"] == "items-svc" and doc["timeout"] == 0.8


def test_where_is_relative_below_the_working_folder_and_absolute_above_it():
    inside = os.path.join(os.getcwd(), "r.mdsl")
    assert where(Span(inside, 3, 5)) == "r.mdsl:3:5"
    assert where(Span("/elsewhere/r.mdsl", 1, 1)).endswith("r.mdsl:1:1") and where(None) == ""


def test_reached_merges_outcomes_without_losing_any():
    a, b = Reached(routes={"r1"}, atoms={"x": {True}}), Reached(routes={"r2"}, atoms={"x": {False}, "y": {True}},
                                                                arms={("r2", "c")})
    a.merge(b)
    assert a.routes == {"r1", "r2"} and a.atoms == {"x": {True, False}, "y": {True}} and a.arms == {("r2", "c")}
