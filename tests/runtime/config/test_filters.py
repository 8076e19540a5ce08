"""runtime/config/filters.py: a listener's `filters:` items, `- kind` or
`- kind: {name, disabled, ...settings}`; the settings reach the filter as plain data."""
from __future__ import annotations

from .conftest import findings, listener, load


def test_both_item_forms_and_their_defaults():
    doc = listener("    route: {cluster: api}\n    filters:\n      - cors\n"
                   "      - fault: {name: f1, disabled: true, abort: {http_status: 503}}\n"
                   "      - rate_limit:\n")
    specs = load(doc).listeners[0].filters
    assert [(f.kind, f.name, f.disabled, f.config) for f in specs] == [
        ("cors", "cors", False, {}),
        ("fault", "f1", True, {"abort": {"http_status": 503}}),
        ("rate_limit", "rate_limit", False, {}),
    ]
    assert [f.span.line for f in specs] == [6, 7, 8]


def test_an_item_with_several_keys_is_named_with_its_keys():
    doc = listener("    route: {cluster: api}\n    filters:\n      - cors\n      - {a: 1, b: 2}\n")
    assert findings(doc) == [("C004", 7, 9, "listeners[0].filters[1]: a filter is a one-key mapping such as "
                                            "`- wasm: {name: authz, module: authz.wasm}`; got keys a, b")]


def test_a_bad_item_or_a_bad_disabled_is_a_positioned_finding():
    doc = listener("    route: {cluster: api}\n    filters:\n      - 5\n      - fault: {disabled: maybe}\n")
    assert findings(doc) == [
        ("C003", 6, 9, "listeners[0].filters[0]: expected a filter: a one-key mapping such as "
                       "`- wasm: {name: authz, module: authz.wasm}`, got 5 (a number)"),
        ("C003", 7, 27, 'listeners[0].filters[1].fault.disabled: expected true or false, got "maybe"'),
    ]
