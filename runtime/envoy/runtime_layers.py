"""Envoy's layered runtime: static layers from the bootstrap and RTDS layers (Runtime
resources over ADS), merged into the values that runtime keys read.

`layered_runtime.layers` is an ordered list; a later layer's key overrides an
earlier one's, as in Envoy. A static_layer is a Struct given in the bootstrap; an
rtds_layer names a Runtime resource (`type.googleapis.com/envoy.service.runtime.v3.Runtime`)
fetched over the ADS stream, whose `layer` Struct is that layer's values until it
comes (before that the layer is empty). Nested keys are flattened with dots
(`{"a": {"b": 1}}` is key `a.b`), as Envoy's snapshot does. disk_layer and
admin_layer are not served (a warning).

Translation reads the merged values where a resource names a runtime key
(runtime_fraction.runtime_key, a filter's filter_enabled.runtime_key):
fraction() answers the share of requests a key enables, from the value set for it
or the resource's default, as Envoy's featureEnabled does. A change of the values
translates the routes again (runtime.envoy.apply). Pure: messages are only read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from google.protobuf import json_format

from .findings import Findings
from .protos import PREFIX

# the bootstrap's layered_runtime, kept beside its waiting resources (XdsConfig.static_resources)
LAYERED_RUNTIME = PREFIX + "envoy.config.bootstrap.v3.LayeredRuntime"
DENOMINATOR = {0: 100, 1: 10_000, 2: 1_000_000}    # envoy.type.v3.FractionalPercent
Values = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    static: tuple[tuple[str, Any], ...] = ()    # a static_layer's flattened values
    rtds: str | None = None                     # an rtds_layer's Runtime resource name


def _flatten(prefix: str, v: Any, out: dict[str, Any]) -> None:
    if isinstance(v, dict) and not ({"numerator", "denominator"} >= set(v) and "numerator" in v):
        for k, sub in v.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), sub, out)
    else:
        out[prefix] = v


def struct_values(s: Any) -> dict[str, Any]:
    """A Struct (a static_layer, a Runtime's layer) as flattened key -> value (a
    FractionalPercent-shaped dict stays whole: it is one value)."""
    out: dict[str, Any] = {}
    _flatten("", json_format.MessageToDict(s), out)
    return out


def layers_of(lr: Any, f: Findings | None = None) -> tuple[Layer, ...]:
    """A bootstrap's LayeredRuntime -> its layers, in order."""
    out: list[Layer] = []
    for i, layer in enumerate(lr.layers):
        fl = f.at("layers").at(i) if f is not None else None
        kind = layer.WhichOneof("layer_specifier")
        if kind == "static_layer":
            out.append(Layer(layer.name, static=tuple(struct_values(layer.static_layer).items())))
        elif kind == "rtds_layer":
            rl = layer.rtds_layer
            if fl is not None and rl.rtds_config.WhichOneof("config_source_specifier") not in ("ads", None):
                fl.at("rtds_layer").warn("only rtds_config {ads: {}} is served: the layer comes over the "
                                         "ADS stream", "rtds_config")
            if rl.name:
                out.append(Layer(layer.name, rtds=rl.name))
            elif fl is not None:
                fl.at("rtds_layer").warn("an rtds_layer without a name is empty", "name")
        elif fl is not None and kind is not None:
            fl.warn(f"{kind} is not served (static_layer and rtds_layer are); the layer is empty", kind)
    return tuple(out)


def rtds_names(layers: tuple[Layer, ...]) -> set[str]:
    """The Runtime resources the layers ask RTDS for."""
    return {lay.rtds for lay in layers if lay.rtds is not None}


def merged(layers: tuple[Layer, ...], runtimes: Mapping[str, Any]) -> dict[str, Any]:
    """Every layer's values, later layers overriding earlier ones; `runtimes`: the
    Runtime resources held, by name."""
    out: dict[str, Any] = {}
    for lay in layers:
        if lay.rtds is None:
            out.update(lay.static)
        else:
            rt = runtimes.get(lay.rtds)
            if rt is not None:
                out.update(struct_values(rt.layer))
    return out


def fraction(values: Values, key: str, default: Any) -> float:
    """The share of requests runtime `key` enables, in [0, 1]: its value (a number is a
    numerator over the default's denominator; a {numerator, denominator} dict is taken
    whole), else the default FractionalPercent's, as Envoy's featureEnabled."""
    denom = DENOMINATOR.get(default.denominator, 100)
    share = default.numerator / denom
    v = values.get(key) if key else None
    if isinstance(v, bool):
        pass                        # not a percentage: the default stands, as in Envoy
    elif isinstance(v, (int, float)) and v >= 0:
        share = int(v) / denom
    elif isinstance(v, str) and v.isdigit():
        share = int(v) / denom
    elif isinstance(v, dict):
        try:
            d = DENOMINATOR.get({"HUNDRED": 0, "TEN_THOUSAND": 1, "MILLION": 2}.get(v.get("denominator", "HUNDRED"), 0),
                                100)
            share = int(v.get("numerator", 0)) / d
        except (TypeError, ValueError):
            pass
    return min(1.0, max(0.0, share))
