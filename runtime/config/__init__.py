"""mosnx.runtime.config: the YAML configuration loader.

load_config(path) reads mosnx.yaml into a validated runtime.model.Config, or
raises runtime.diagnostics.ConfigError carrying every finding, each positioned at
the offending node. Codes: C001 YAML syntax, C002 unknown key, C003 wrong type,
C004 bad value, C005 missing, C006 duplicate, C007 no such file, C101 unknown
cluster.
"""
from typing import Any

from .admin import exposure as admin_exposure
from .document import DOCUMENT
from .loader import load_config, load_config_text
from .schema import describe
from .units import parse_address, parse_duration, parse_size


def describe_schema() -> list[dict[str, Any]]:
    """Every key of mosnx.yaml: {"key", "type", "required", "default", "doc"}, for the docs."""
    return describe(DOCUMENT)


__all__ = ["load_config", "load_config_text", "parse_duration", "parse_size", "parse_address",
           "describe_schema", "admin_exposure"]
