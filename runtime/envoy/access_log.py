"""An http_connection_manager's `access_log` -> runtime.model.AccessLog.

mosnx writes one access log per listener: the first of Envoy's loggers it can serve
(envoy.access_loggers.file, .stdout, .stderr) becomes it, the others are warnings
(gRPC and OpenTelemetry loggers send records to a collector mosnx does not speak to).
A format is compiled here, as in mosnx YAML (runtime.logformat): a bad one rejects
the listener with the offset of the problem, as Envoy NACKs it. With no format,
Envoy's default format. Envoy's access-log filters become a LogFilter where mosnx
knows the facts they test (status, duration, response flags, sampling); any other
filter is a warning and the log is written for every stream.
"""
from __future__ import annotations

import os
from typing import Any

from google.protobuf.json_format import MessageToDict

from envoy.config.accesslog.v3 import accesslog_pb2  # noqa: F401  (AccessLogFilter for the descriptor pool)
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2

from .. import log_filter
from ..logformat import ENVOY_DEFAULT_FORMAT, JsonFormat, LogFormat, parse_format, parse_json
from ..log_filter import LogFilter
from ..log_operators import LONG_FLAG
from ..model import AccessLog
from .findings import Findings

FILE = "envoy.extensions.access_loggers.file.v3.FileAccessLog"
STDOUT = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
STDERR = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog"
_STREAMS = {"/dev/stdout": "stdout", "/dev/stderr": "stderr"}
_OPS = {0: "EQ", 1: "GE", 2: "LE", 3: "NE"}
_DENOMINATORS = {0: 100.0, 1: 10000.0, 2: 1000000.0}
# formatter extensions whose operators mosnx has built in
_BUILT_IN_FORMATTERS = frozenset({"envoy.formatter.req_without_query"})


class _Unsupported(Exception):
    pass


def access_log(logs: Any, f: Findings) -> AccessLog | None:
    """The listener's access log from an HCM's `access_log` list (f is at that list), or None."""
    chosen: AccessLog | None = None
    for i, al in enumerate(logs):
        fi = f.at(i)
        url = al.typed_config.type_url.rsplit("/", 1)[-1] if al.HasField("typed_config") else ""
        if url not in (FILE, STDOUT, STDERR):
            fi.warn(f"access logger {al.name or url or '(unnamed)'} is not supported "
                    "(file, stdout and stderr loggers are); ignored")
            continue
        if chosen is not None:
            fi.warn("mosnx writes one access log per listener: the first one is kept; ignored")
            continue
        chosen = _one(al, url, fi)
    return chosen


def _one(al: Any, url: str, f: Findings) -> AccessLog:
    ft = f.at("typed_config")
    if url == FILE:
        cfg = file_pb2.FileAccessLog()
        al.typed_config.Unpack(cfg)
        if not cfg.path:
            ft.reject("a file access log needs a path", "path")
        path = _STREAMS.get(cfg.path, cfg.path)
        kind = cfg.WhichOneof("access_log_format")
        if kind == "format":
            fmt: LogFormat | JsonFormat = _text(cfg.format, False, ft.at("format"))
        elif kind in ("json_format", "typed_json_format"):
            fmt = _json(MessageToDict(getattr(cfg, kind)), False, ft.at(kind))
        elif kind == "log_format":
            fmt = _substitution(cfg.log_format, ft.at("log_format"))
        else:
            fmt = _text(ENVOY_DEFAULT_FORMAT, False, ft)
    else:
        sc = stream_pb2.StdoutAccessLog() if url == STDOUT else stream_pb2.StderrAccessLog()
        al.typed_config.Unpack(sc)
        path = "stdout" if url == STDOUT else "stderr"
        fmt = (_substitution(sc.log_format, ft.at("log_format")) if sc.HasField("log_format")
               else _text(ENVOY_DEFAULT_FORMAT, False, ft))
    flt = None
    if al.HasField("filter"):
        try:
            flt = _filter(al.filter, f.at("filter"))
        except _Unsupported as e:
            f.at("filter").warn(f"{e}: every stream is logged")
    return AccessLog(path, fmt, flt)


def _substitution(sf: Any, f: Findings) -> LogFormat | JsonFormat:
    """envoy.config.core.v3.SubstitutionFormatString."""
    f.only(sf, {"text_format", "json_format", "text_format_source", "omit_empty_values", "formatters",
                "json_format_options", "content_type"})
    for i, ext in enumerate(sf.formatters):
        if ext.name not in _BUILT_IN_FORMATTERS:
            f.at("formatters").at(i).warn(f"formatter {ext.name} is not supported; its operators are errors")
    omit = sf.omit_empty_values
    kind = sf.WhichOneof("format")
    if kind == "text_format":
        return _text(sf.text_format, omit, f.at("text_format"))
    if kind == "json_format":
        return _json(MessageToDict(sf.json_format), omit, f.at("json_format"))
    if kind == "text_format_source":
        src = sf.text_format_source
        fs = f.at("text_format_source")
        which = src.WhichOneof("specifier")
        if which == "inline_string":
            return _text(src.inline_string, omit, fs.at("inline_string"))
        if which == "inline_bytes":
            return _text(src.inline_bytes.decode("utf-8", "replace"), omit, fs.at("inline_bytes"))
        if which == "filename":
            try:
                with open(src.filename, encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as e:
                fs.reject(f"cannot read the format file {src.filename}: {e}", "filename")
            return _text(text, omit, fs.at("filename"))
        if which == "environment_variable":
            val = os.environ.get(src.environment_variable)
            if val is None:
                fs.reject(f"environment variable {src.environment_variable} is not set", "environment_variable")
            return _text(val, omit, fs.at("environment_variable"))
        fs.reject("text_format_source needs inline_string, inline_bytes, filename or environment_variable")
    return _text(ENVOY_DEFAULT_FORMAT, omit, f)


def _text(text: str, omit: bool, f: Findings) -> LogFormat:
    parts, errors = parse_format(text, omit)
    if errors:
        e = errors[0]
        f.reject(f"{e.message} (at offset {e.start} of the format)")
    return LogFormat(text, tuple(parts), omit)


def _json(mapping: dict, omit: bool, f: Findings) -> JsonFormat:
    fmt, errors = parse_json(mapping, omit)
    if fmt is None:
        where, e = errors[0]
        f.at(where).reject(e.message) if where else f.reject(e.message)
    return fmt  # type: ignore[return-value]  # reject() raised otherwise


def _filter(flt: Any, f: Findings) -> LogFilter:
    """envoy.config.accesslog.v3.AccessLogFilter -> LogFilter; _Unsupported for what mosnx cannot test."""
    kind = flt.WhichOneof("filter_specifier")
    if kind == "status_code_filter":
        c = flt.status_code_filter.comparison
        return log_filter.status_code(_OPS.get(c.op, "EQ"), c.value.default_value)
    if kind == "duration_filter":
        c = flt.duration_filter.comparison
        return log_filter.duration(_OPS.get(c.op, "EQ"), c.value.default_value)
    if kind == "not_health_check_filter":
        return log_filter.not_health_check()
    if kind == "runtime_filter":
        p = flt.runtime_filter.percent_sampled
        return log_filter.sampled(100.0 * p.numerator / _DENOMINATORS.get(p.denominator, 100.0))
    if kind == "response_flag_filter":
        flags = list(flt.response_flag_filter.flags)
        for i, fl in enumerate(flags):
            if fl not in LONG_FLAG:
                f.at("response_flag_filter").at("flags").at(i).reject(f'"{fl}" is not a response flag')
        return log_filter.response_flags(flags)
    if kind in ("and_filter", "or_filter"):
        subs = [_filter(s, f.at(kind).at("filters").at(i)) for i, s in enumerate(getattr(flt, kind).filters)]
        return log_filter.all_of(subs) if kind == "and_filter" else log_filter.any_of(subs)
    raise _Unsupported(f"access-log filter {kind or '(none)'} is not supported")

