"""docs/config.md is the schema's own rendering: committed text, generator and loader agree."""
import pathlib
import subprocess
import sys

import pytest

from mosnx import plugins
from mosnx.runtime.config import describe_schema, load_config_text
from mosnx.runtime.config.reference import REGENERATE, render, sections, type_words
from mosnx.runtime.config.compound import ListOf
from mosnx.runtime.config.scalars import Duration, Enum, Int, Size
from mosnx.runtime.diagnostics import ConfigError

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "config.md"


@pytest.fixture(scope="module")
def rendered():
    plugins.load()
    return render()


def test_the_committed_reference_is_what_the_schema_renders(rendered):
    assert DOC.read_text() == rendered, f"docs/config.md is out of date: run `{REGENERATE}` to regenerate"


def test_mosnx_docs_config_prints_the_reference(rendered):
    out = subprocess.run([sys.executable, "-m", "mosnx", "docs", "config"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == rendered


def test_every_key_the_loader_accepts_is_in_its_section(rendered):
    by_section = {}
    for s in sections():
        by_section[s.path] = s
    for row in describe_schema():
        parent, _, key = row["key"].rpartition(".")
        assert parent in by_section, f"{row['key']}: no section for {parent!r}"
        assert key in by_section[parent].obj.fields
        assert f"`{key}`" in rendered


def test_every_key_has_a_description_worth_reading():
    thin = [r["key"] for r in describe_schema() if len(r["doc"].split()) < 3]
    assert not thin, f"descriptions under three words: {thin}"


def test_types_read_as_words():
    link = lambda o: "mapping"      # noqa: E731
    assert type_words(Duration(positive=True), link) == "duration > 0"
    assert type_words(Duration(zero_is_none=True), link) == "duration (0: none)"
    assert type_words(Size(), link) == "size"
    assert type_words(Int(0, 100), link) == "int 0..100"
    assert type_words(Int(1), link) == "int ≥ 1"
    assert type_words(Enum("a", "b"), link) == "one of `a`, `b`"
    assert type_words(ListOf(Int(1), min_items=1, single=True), link) == \
        "list of int ≥ 1 (at least 1); one item may be written alone"


def test_documented_rows_match_what_the_loader_does(rendered):
    # the defaults shown are the ones a config without the key gets
    assert "| `connect_timeout` | duration > 0 | `1s` |" in rendered
    assert "| `request_headers` | size > 0 | `60KiB` |" in rendered
    c = load_config_text("clusters: [{name: web, endpoints: []}]\n")
    assert c.clusters[0].connect_timeout == 1.0
    # an enum's values listed are exactly the ones accepted
    assert "`round_robin`, `weighted_round_robin`, `random`, `least_request`, `ring_hash`, `maglev`, " \
           "`peak_ewma`" in rendered
    with pytest.raises(ConfigError, match="unknown value"):
        load_config_text("clusters: [{name: web, endpoints: [], lb: fastest}]\n")


def test_the_filter_kinds_mosnx_ships_are_listed_and_no_others(rendered):
    from mosnx.runtime import registry
    registry.register_filter("test_reference_only", lambda name, cfg, ctx: None)
    try:
        assert render() == rendered
    finally:
        registry._filters.pop("test_reference_only")
    for kind in ("fault", "rate_limit", "wasm", "adaptive_concurrency", "success_rate_breaker", "system_guard"):
        assert f"### `{kind}`" in rendered


README = DOC.parents[1] / "README.md"


def _configuration_section() -> str:
    text = README.read_text()
    start = text.index("## Configuration")
    return text[start:text.index("\n## ", start + 1)]


def test_the_readme_links_the_references():
    text = README.read_text()
    for doc in ("docs/config.md", "docs/diagnostics.md", "docs/metrics.md"):
        assert f"]({doc})" in text


def test_the_readme_example_config_loads():
    section = _configuration_section()
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = load_config_text(block)
    assert cfg.listeners and cfg.clusters


def _obj_at(key: str):
    """The object a key such as `retry` or `circuit_breakers` holds, wherever it sits."""
    found = [s.obj for s in sections() if s.path == key or s.path.endswith("." + key)
             or s.path.endswith("." + key + "[]")]
    return found[0] if found else None


def test_keys_the_readme_names_in_mappings_are_schema_keys():
    import re
    import yaml
    checked = 0
    for span in re.findall(r"`([a-z_]+: \{[^`]*\})`", _configuration_section()):
        data = yaml.safe_load("{" + " ".join(span.split()) + "}")
        for key, inner in data.items():
            obj = _obj_at(key)
            assert obj is not None, f"README names `{key}:`, which is no mapping of the schema"
            for k in inner:
                assert k in obj.fields, f"README names `{key}.{k}`, which the schema does not declare"
                checked += 1
    assert checked >= 10


def test_balancers_the_readme_names_exist():
    import re
    from mosnx.runtime.config.document import LB_POLICIES
    section = _configuration_section()
    named = re.findall(r"`(\w+)`", section.split("`lb`", 1)[1].split(")", 1)[0])
    assert named and set(named) <= set(LB_POLICIES)


def test_each_shipped_filter_names_the_settings_it_accepts(rendered):
    from mosnx.runtime.config.reference import filter_settings, shipped_filter_kinds
    for kind in shipped_filter_kinds():
        settings = filter_settings(kind)
        assert settings, f"{kind}: its factory does not name the settings it knows"
        assert "Settings: " + ", ".join(f"`{k}`" for k in settings) + "." in rendered
    assert "`fixed_delay`" not in filter_settings("fault") and "delay" in filter_settings("fault")


@pytest.mark.parametrize("name", ["config.md", "diagnostics.md"])
def test_every_link_inside_a_reference_has_its_target(name):
    import re
    text = (DOC.parent / name).read_text()
    targets = set(re.findall(r'<a id="([^"]+)"></a>', text))
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= targets, sorted(links - targets)
