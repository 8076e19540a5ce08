"""Findings: field paths as json_format writes them, warnings, rejections and only()."""
from __future__ import annotations

import pytest

from mosnx.runtime.diagnostics import Span
from mosnx.runtime.envoy.findings import Findings, Rejected, Rejection, Sink
from mosnx.runtime.envoy.protos import LISTENER, HttpConnectionManager


def test_paths_warnings_and_rejections():
    located: list[str] = []

    def locate(path: str) -> Span:
        located.append(path)
        return Span("f.yaml", 3, 5)

    sink = Sink(locate=locate)
    f = Findings(LISTENER, "edge", "", sink).at("filter_chains").at(0).at("filters")
    assert f.path == "filter_chains[0].filters"
    f.warn("ignored", "x")
    [w] = sink.warnings
    assert str(w) == 'f.yaml:3:5: X001 Listener "edge" filter_chains[0].filters.x: ignored'
    assert w.severity == "warning" and located == ["filter_chains[0].filters.x"]
    with pytest.raises(Rejected) as e:
        f.at(1).reject("no", "name")
    assert e.value.rejection == Rejection(LISTENER, "edge", "filter_chains[0].filters[1].name", "no")
    assert str(e.value.rejection) == 'Listener "edge" at filter_chains[0].filters[1].name: no'


def test_only_warns_for_each_field_set_outside_the_list():
    sink = Sink()
    hcm = HttpConnectionManager(stat_prefix="x", codec_type=2)
    hcm.xff_num_trusted_hops = 2
    Findings(LISTENER, "l", "", sink).only(hcm, {"stat_prefix"})
    assert sorted(w.message.split(" ")[2].rstrip(":") for w in sink.warnings) == ["codec_type", "xff_num_trusted_hops"]
