"""load_config(): mosnx.yaml in, a validated Config out, or ConfigError with every finding.

Reads one file, checks that the files it names exist and reads the admin token file;
otherwise no I/O. An Envoy v3 bootstrap (recognised by its top-level keys) is handed
to runtime.envoy.bootstrap, which also reads the xDS resource files it names.
"""
from __future__ import annotations

import os

from ..diagnostics import ConfigError, Diagnostic, Span
from ..model import Config
from .document import DOCUMENT
from .reader import NO_SUCH_FILE, YAML_SYNTAX, Reader
from .schema import INVALID


def load_config(path: str) -> Config:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError([Diagnostic(None, NO_SUCH_FILE, f'cannot read "{path}": {e.strerror}')]) from None
    try:
        # newlines as text mode reads them, so positions are the same either way
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as e:
        # the first byte that is not UTF-8, positioned as a character would be
        # (lines by newline, columns by byte: the line is not text to count in)
        line_start = raw.rfind(b"\n", 0, e.start) + 1
        span = Span(path, raw.count(b"\n", 0, e.start) + 1, e.start - line_start + 1)
        raise ConfigError([Diagnostic(span, YAML_SYNTAX, f'"{path}" is not UTF-8 text: {e.reason} '
                                      f"(byte 0x{raw[e.start]:02x})")]) from None
    return load_config_text(text, path)


def load_config_text(text: str, path: str = "<string>") -> Config:
    """`path` names the text in diagnostics; relative paths resolve against its folder
    (the current folder for a <name> in angle brackets)."""
    r = Reader(text, path)
    root = r.compose()
    if root is None and r.diagnostics:
        raise ConfigError(r.findings())
    values: dict = {}
    raw: dict = {}
    if root is not None:
        r.positions[()] = r.span(root)
        raw = r.data(root)
        if _is_envoy(raw) and not r.diagnostics:
            return _envoy(r, root, raw, path)
        values = DOCUMENT.convert(root, r, ())
        r.check_references()
    if any(d.severity == "error" for d in r.diagnostics) or values is INVALID:
        raise ConfigError(r.findings())
    return Config(path=os.path.abspath(path) if r.named else path, admin=values.get("admin"),
                  listeners=values.get("listeners", ()), clusters=values.get("clusters", ()),
                  workers=values.get("workers"), raw=raw if isinstance(raw, dict) else {},
                  demo_upstream=values.get("demo_upstream", ()), fast_path=values.get("fast_path", True),
                  xds=values.get("xds"), tracing=values.get("tracing"), stats=values.get("stats"))


def _is_envoy(data: object) -> bool:
    """An Envoy bootstrap, by its top-level keys (runtime.envoy.bootstrap decides)."""
    if not isinstance(data, dict) or not {"static_resources", "dynamic_resources", "node"} & set(data):
        return False        # cheap test first: protobuf is imported only for a bootstrap
    from ..envoy.bootstrap import is_bootstrap
    return is_bootstrap(data)


def _envoy(r: Reader, root: object, raw: dict, path: str) -> Config:
    from ..envoy.bootstrap import load_bootstrap_data
    from ..envoy.decode import Positions
    config, _warnings = load_bootstrap_data(raw, Positions(r, root), path)  # type: ignore[arg-type]
    return config
