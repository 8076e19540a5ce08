"""Every diagnostic code mosnx reports, with what it means: the one table.

Front ends emit codes as string literals next to their message (the message
carries the particulars); this table says what each code means in general, for
docs/diagnostics.md (rendered by mosnx.reference.diagnostics, with a real example
of each) and for tools that show a code's title. A code emitted anywhere in the
source and missing here fails tests/runtime/test_codes.py, so a
new code is one line here plus its example there.

`reachable` is False for a guard no config `mosnx check` accepts can reach (the
schema refuses the input first); such a code keeps its place in the table but has
no example.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    title: str
    severity: str = "error"          # "error" | "warning"
    reachable: bool = True


FAMILIES = {
    "C0": "config: YAML and schema", "C1": "config: references", "C2": "config: building the snapshot",
    "C3": "config: serving", "C4": "config: exposure", "C6": "rule tests: *_test.yaml files (mosnx test)",
    "E0": "rules: syntax, names and files", "T1": "rules: types and values", "R2": "rules: routing lints",
    "U3": "rules: unknown references", "D4": "rules: duplicates", "P5": "rules: phases and places",
    "X0": "Envoy bootstraps and xDS resources",
}

CODES: tuple[Code, ...] = (
    Code("C001", "YAML that does not parse (bad indentation, an unclosed bracket or quote, a tab), "
                 "or nesting too deep to read"),
    Code("C002", "a key the schema does not declare at that place (with did-you-mean)"),
    Code("C003", "a value of the wrong kind: a scalar where a mapping or list is expected, or the reverse, "
                 "or text where a number is"),
    Code("C004", "a value of the right kind that is not allowed: out of range, an unknown enum value, "
                 "a bad duration, size, address, regex or access-log format, settings that contradict"),
    Code("C005", "a required key that is missing or empty, or none of the keys of which one is needed"),
    Code("C006", "a name or address declared twice (clusters, listeners, filters on a listener)"),
    Code("C007", "a file or folder the config names that does not exist"),
    Code("C101", "a route or rule naming a cluster the config does not declare (with did-you-mean)"),
    Code("C201", "a listener filter of a kind no front end registers (with did-you-mean)"),
    Code("C202", "a filter whose own settings its factory refuses"),
    Code("C203", "`rules:` on a listener when the .mdsl front end is not installed"),
    Code("C204", "a listener with neither `route:` nor `rules:` (the schema reports C005 first)",
         reachable=False),
    Code("C205", "a config that loads but declares no listener and no control plane (xds:): it serves nothing", "warning"),
    Code("C301", "a listener protocol this build cannot serve (the schema reports C004 first)",
         reachable=False),
    Code("C401", "the admin API listening beyond loopback with no token_file", "warning"),
    Code("C601", "a rule test file that cannot be read or is not YAML, or gives a key twice"),
    Code("C602", "a rule test file or case of the wrong shape: an unknown key, no `request:` or `expect:`, "
                 "a bad status, split or header map, two cases of one name"),
    Code("C603", "a rule test's request or header that cannot be parsed (the column points into it)"),
    Code("C604", "the config a rule test file names is missing or does not build, or has no listener "
                 "that takes the request"),
    Code("E001", "a syntax error, with the expected tokens and a hint for common mistakes "
                 "(`=` for `==`, missing braces or `when`, single quotes, `&&`)"),
    Code("E002", "an unknown field, function, retry condition or emit stream (with did-you-mean)"),
    Code("E003", "a rules file or import that cannot be read; an import cycle"),
    Code("E004", "a const that refers to itself"),
    Code("E005", "nesting deeper than 64 levels (each `and`, `or`, `not`, parenthesis, call and `when` "
                 "block is one; a const counts as deep as its value where it is used)"),
    Code("T101", "a type mismatch: operands, sets, conditions that are not true/false"),
    Code("T102", "a regex that does not compile"),
    Code("T103", "a bad CIDR, duration, percentage (over 100%), rate or weight"),
    Code("T104", "a status code out of range for its statement"),
    Code("T105", "a field that cannot be set or removed"),
    Code("R201", "a route after a catch-all route, never reached", "warning"),
    Code("R202", "a route shadowed by an earlier one that matches all its requests", "warning"),
    Code("R203", "a domain already served by another vhost", "warning"),
    Code("R204", "split weights that do not add up to 100", "warning"),
    Code("R205", "a route with no action"),
    Code("R206", "a route with more than one action"),
    Code("R207", "`redirect prefix` in a route whose condition tests no path prefix"),
    Code("U301", "an unknown cluster (under a config, or when the rules declare `clusters`)"),
    Code("U302", "an unknown filter named by `wasm` (under a config)"),
    Code("U303", "a `trace` statement under a listener that does not trace: it does nothing there", "warning"),
    Code("D401", "a duplicate route name in a vhost, or a duplicate vhost name"),
    Code("D402", "a const defined twice"),
    Code("D403", "a route setting given twice (`timeout`, a split cluster, an `emit` field)"),
    Code("P501", "a statement not allowed in this phase or place (`to` in `on response`)"),
    Code("P502", "a field read before the phase that knows it (`response.code` in a route condition)"),
    Code("P503", "a field of the other kind of rule: an HTTP field (`request.path`) in an `rpc` block's route, "
                 "or `rpc.*` in an HTTP rule"),
    Code("P504", "rules of the other kind for the listener: an `rpc` block under an HTTP listener, or "
                 "HTTP routes, vhosts or `on` blocks under a protocol: bolt or dubbo listener"),
    Code("X001", "valid Envoy that mosnx does not serve: the resource loads without that field, "
                 "or an optional HTTP filter is skipped", "warning"),
    Code("X002", "valid Envoy that mosnx cannot serve: the resource would behave differently or not at all; "
                 "a bootstrap is refused, a control plane's resource is NACKed by name"),
    Code("X003", "not valid Envoy: an unknown field, a wrong type, a bad enum value or duration"),
    Code("X004", "a bootstrap resource that serves once the control plane sends what it needs "
                 "(a route configuration or endpoints over ADS)", "warning"),
)

BY_CODE = {c.code: c for c in CODES}


def title(code: str) -> str | None:
    c = BY_CODE.get(code)
    return c.title if c else None
