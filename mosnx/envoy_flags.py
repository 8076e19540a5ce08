"""Envoy's command line, as Istio's agent (pilot-agent) passes it to `envoy`.

`mosnx -c bootstrap.json --drain-time-s 45 ...` (no subcommand) is `mosnx run`, and
`mosnx run` takes the same flags, so the agent's `binaryPath` can name mosnx (or the
`envoy` shim, docs/istio.md). What each flag becomes:

- `-c/--config-path`: the config (`--config` is mosnx's own name for it);
- `--config-yaml`: merged over the file as Envoy merges it (mappings key by key, lists
  appended, scalars replaced), into a private copy that `run` serves;
- `--service-node`, `--service-cluster`, `--service-zone`: the bootstrap's node id,
  cluster and locality zone when it has none (as Envoy), in that same copy;
- `--concurrency`: workers; `-l/--log-level` (Envoy's names: trace ... off) and
  `--component-log-level name:level,...` (loggers `mosnx.<name>`);
- `--drain-time-s`: how long a drain waits for open connections (a stop, or
  /drain_listeners?graceful);
- `--restart-epoch` above 0: `--takeover` (share the listeners of the mosnx that
  serves them until it stops: mosnx's counterpart of a hot restart);
- accepted and without effect, each for a stated reason (ACCEPTED_ONLY).

An unknown flag is an error that names it. Pure: argv in, settings out; the files it
writes are the merged copies, in a folder only this user can read.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from mosnx.proxy.admin_backend import ENVOY_LEVELS as LOG_LEVELS    # Envoy's level names -> Python's

# flags taken for Envoy's sake that change nothing in mosnx, and why
ACCEPTED_ONLY = {
    "disable_hot_restart": "mosnx has no hot restart (--takeover is its way to replace a running proxy)",
    "parent_shutdown_time_s": "it times a hot restart's parent, which mosnx does not have",
    "local_address_ip_version": "mosnx binds the addresses its listeners name, v4 or v6 alike",
    "log_format": "mosnx writes its own log format",
    "file_flush_interval_msec": "access logs are flushed by mosnx's own writer",
    "allow_unknown_static_fields": "mosnx stays strict: an unknown field is an error at its file:line:col",
    "reject_unknown_dynamic_fields": "unknown fields are always rejected",
    "ignore_unknown_dynamic_fields": "unknown fields are always rejected",
    "skip_deprecated_logs": "mosnx logs no deprecation warnings",
    "enable_core_dump": "core dumps are the system's setting",
    "drain_strategy": "mosnx tells every connection at once when a drain starts (Envoy's immediate)",
    "base_id": "it names hot-restart shared memory, which mosnx does not use",
    "use_dynamic_base_id": "it names hot-restart shared memory, which mosnx does not use",
}


class UsageError(Exception):
    """A flag mosnx does not know, or a value it cannot take: one line for the user."""


@dataclass
class EnvoyFlags:
    config_yaml: str | None = None
    service_node: str | None = None
    service_cluster: str | None = None
    service_zone: str | None = None
    drain_time_s: float | None = None
    component_levels: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)     # accepted flags and why they change nothing


def add_flags(p: argparse.ArgumentParser) -> None:
    """Envoy's flags on the `run` parser (mosnx's own -c/--config, --workers, --log-level
    are already there; their Envoy names are added as aliases by the caller)."""
    g = p.add_argument_group("Envoy's flags (as Istio's agent passes them)")
    g.add_argument("--config-yaml", default=None, help="YAML (or JSON) merged over the config file")
    g.add_argument("--service-node", default=None, help="node id, when the bootstrap has none")
    g.add_argument("--service-cluster", default=None, help="node cluster, when the bootstrap has none")
    g.add_argument("--service-zone", default=None, help="node locality zone, when the bootstrap has none")
    g.add_argument("--concurrency", type=int, default=None, help="worker processes (as --workers)")
    g.add_argument("--drain-time-s", type=float, default=None,
                   help="seconds a drain waits for open connections")
    g.add_argument("--drain-strategy", choices=["immediate", "gradual"], default=None)
    g.add_argument("--parent-shutdown-time-s", type=float, default=None)
    g.add_argument("--disable-hot-restart", action="store_true")
    g.add_argument("--restart-epoch", type=int, default=0, help="above 0: as --takeover")
    g.add_argument("--base-id", type=int, default=None)
    g.add_argument("--use-dynamic-base-id", action="store_true")
    g.add_argument("--local-address-ip-version", choices=["v4", "v6"], default=None)
    g.add_argument("--log-format", default=None)
    g.add_argument("--component-log-level", default=None, help="name:level,... (loggers mosnx.<name>)")
    g.add_argument("--file-flush-interval-msec", type=int, default=None)
    g.add_argument("--allow-unknown-static-fields", action="store_true")
    g.add_argument("--reject-unknown-dynamic-fields", action="store_true")
    g.add_argument("--ignore-unknown-dynamic-fields", action="store_true")
    g.add_argument("--skip-deprecated-logs", action="store_true")
    g.add_argument("--enable-core-dump", action="store_true")


def take(args: argparse.Namespace) -> EnvoyFlags:
    """Check the Envoy flags in `args` and fold those that have a mosnx meaning into it
    (workers, log_level, takeover); UsageError for a bad value."""
    out = EnvoyFlags(config_yaml=args.config_yaml, service_node=args.service_node,
                     service_cluster=args.service_cluster, service_zone=args.service_zone)
    level = LOG_LEVELS.get(args.log_level.lower())
    if level is None:
        raise UsageError(f"--log-level {args.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    args.log_level = level
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise UsageError(f"--concurrency {args.concurrency}: must be 1 or more")
        if args.workers is None:
            args.workers = args.concurrency
    if args.drain_time_s is not None:
        if not 0 <= args.drain_time_s < math.inf:
            raise UsageError(f"--drain-time-s {args.drain_time_s:g}: must be 0 or more seconds")
        out.drain_time_s = args.drain_time_s
    if args.restart_epoch < 0:
        raise UsageError(f"--restart-epoch {args.restart_epoch}: cannot be negative")
    if args.restart_epoch > 0:
        args.takeover = True
    if args.component_log_level:
        out.component_levels = component_levels(args.component_log_level)
    for name, why in ACCEPTED_ONLY.items():
        value = getattr(args, name, None)
        if value not in (None, False):
            out.notes.append(f"--{name.replace('_', '-')}: accepted; {why}")
    return out


def component_levels(text: str) -> dict[str, str]:
    """Envoy's `upstream:debug,http:info` as {logger name: Python level}."""
    out: dict[str, str] = {}
    for item in text.split(","):
        name, sep, level = item.strip().partition(":")
        py = LOG_LEVELS.get(level.strip().lower())
        if not sep or not name.strip() or py is None:
            raise UsageError(f"--component-log-level {item.strip()!r}: write name:level, level one of "
                             f"{', '.join(LOG_LEVELS)}")
        out[name.strip()] = py
    return out


def unknown(extra: list[str]) -> str:
    """The message for arguments argparse did not take."""
    flags = [a for a in extra if a.startswith("-")]
    if flags:
        return f"unknown flag {flags[0].split('=', 1)[0]} (mosnx run --help lists the flags it takes)"
    return f"unexpected argument {extra[0]!r}"


def merge(base: Any, over: Any) -> Any:
    """Envoy's merge of --config-yaml over the file (protobuf MergeFrom on the JSON form):
    mappings key by key, lists appended, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    if isinstance(base, list) and isinstance(over, list):
        return base + over
    return over


def effective_config(path: str | None, flags: EnvoyFlags) -> str:
    """`path`, or the path of a private copy with --config-yaml merged over it (or alone,
    without a file) and the --service-* flags filled in where the bootstrap has no
    value; UsageError when it cannot be read or merged. A copy is not watched for
    edits, and relative paths in it are taken from the working directory."""
    if flags.config_yaml is None and not (flags.service_node or flags.service_cluster or flags.service_zone):
        if path is None:
            raise UsageError("a config is needed: -c FILE (or --config-yaml)")
        return path
    import yaml
    data: Any = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise UsageError(f"{path}: cannot read it to apply --config-yaml or --service-*: "
                             f"{' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a mapping; --config-yaml and --service-* need a bootstrap")
    if flags.config_yaml is not None:
        try:
            over = yaml.safe_load(flags.config_yaml)
        except yaml.YAMLError as e:
            raise UsageError(f"--config-yaml: not YAML: {' '.join(str(e).split())}") from None
        if not isinstance(over, dict):
            raise UsageError("--config-yaml: must be a mapping (a bootstrap's fields)")
        data = merge(data, over)
    node = dict(data.get("node") or {})
    if flags.service_node and not node.get("id"):
        node["id"] = flags.service_node
    if flags.service_cluster and not node.get("cluster"):
        node["cluster"] = flags.service_cluster
    if flags.service_zone and not (node.get("locality") or {}).get("zone"):
        node["locality"] = {**(node.get("locality") or {}), "zone": flags.service_zone}
    if node:
        data["node"] = node
    folder = tempfile.mkdtemp(prefix="mosnx-bootstrap-")         # mode 0700
    out = os.path.join(folder, os.path.basename(path or "") or "bootstrap.json")
    if not out.endswith((".json", ".yaml", ".yml")):
        out += ".json"
    with open(out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    return out
