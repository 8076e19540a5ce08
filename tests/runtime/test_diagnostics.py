"""runtime/diagnostics.py: diagnostics print like a compiler (file:line:col, code,
message, the source line and a caret under the span), and ConfigError carries them all."""
from __future__ import annotations

from mosnx.runtime.diagnostics import ConfigError, Diagnostic, Span, did_you_mean, source_line


def test_a_diagnostic_prints_its_place_code_and_message():
    d = Diagnostic(Span("rules/api.mdsl", 12, 7), "E103", 'unknown cluster "reviewz"')
    assert str(d) == 'rules/api.mdsl:12:7: E103 unknown cluster "reviewz"'
    assert str(Diagnostic(None, "E001", "no listeners")) == "<config>: E001 no listeners"


def test_render_puts_a_caret_under_the_span():
    d = Diagnostic(Span("a.mdsl", 1, 5, 1, 9), "E103", "bad", source_line="use rvw;\n")
    assert d.render().splitlines() == ["a.mdsl:1:5: E103 bad", "  use rvw;", "      ^^^^"]
    one = Diagnostic(Span("a.mdsl", 1, 2), "E1", "x", source_line="abc")
    assert one.render().splitlines()[-1] == "   ^"
    # a span over several lines, or no source line: the header alone or a one-caret mark
    multi = Diagnostic(Span("a.mdsl", 1, 2, 3, 1), "E1", "x", source_line="abc")
    assert multi.render().splitlines()[-1] == "   ^"
    assert Diagnostic(Span("a", 1, 1), "E1", "x").render() == "a:1:1: E1 x"


def test_config_error_carries_every_finding():
    ds = [Diagnostic(Span("m.yaml", 3, 1), "E1", "one"), Diagnostic(Span("m.yaml", 9, 4), "E2", "two")]
    e = ConfigError(ds)
    assert e.diagnostics == ds and str(e) == "m.yaml:3:1: E1 one\nm.yaml:9:4: E2 two"
    assert str(ConfigError([])) == "invalid configuration"


def test_did_you_mean_suggests_only_a_close_name():
    assert did_you_mean("reviewz", ["reviews", "ratings"]) == ' (did you mean "reviews"?)'
    assert did_you_mean("zzz", ["reviews", "ratings"]) == ""
    assert did_you_mean("x", []) == ""


def test_source_line_from_text_or_file(tmp_path):
    assert source_line("<t>", 2, "a\nb\nc") == "b"
    assert source_line("<t>", 0, "a") is None and source_line("<t>", 4, "a\nb") is None
    p = tmp_path / "r.mdsl"
    p.write_text("first\nsecond\n")
    assert source_line(str(p), 2) == "second"
    assert source_line(str(tmp_path / "missing.mdsl"), 1) is None
