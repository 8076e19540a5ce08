"""Stat names as Prometheus series: which parts of a dotted stat name become labels.

A stat such as `cluster.web.upstream_rq_2xx` is one series of a family:
`envoy_cluster_upstream_rq_xx{envoy_cluster_name="web",envoy_response_code_class="2"}`.
Two ways of naming are kept (StatsConfig.prometheus_names):

- "envoy": Envoy's tag extraction. Every extractor is tried on the *whole* name;
  each that matches gives one tag (its name, the value it captured) and marks the
  characters it spans for removal; what is left, sanitised, is the family name after
  `envoy_`. These are Envoy's default tag specifiers (source/common/config/
  well_known_names.cc), so dashboards written for Envoy and Istio find their series.
  An extractor is a regular expression (group 1: the part removed; group 2, or group
  1 when there is no second: the value) or a token pattern (`cluster.$.**`: a `$`
  token is the value, `*` one token, `**` any number).
- "mosnx": mosnx's own, from before: a few rules applied one after the other to what
  the previous left, under `mosnx_` (kept for configs and dashboards written for it).

A bootstrap's `stats_config` (or mosnx.yaml's `stats:`) adds tags of its own: a
regex, or a fixed value every series carries; `use_all_default_tags: false` drops the
defaults. A tag name given twice is an error, as in Envoy.

Series Istio's stats filter keeps (labels in the name, `reporter=.=source;.;...;.;
istio_requests_total`) are rendered as they are in either mode, unprefixed.

Invariants: naming is pure (name in, (family, labels) out) and decided once per stat
name: a StatNaming remembers what it worked out (bounded), so a scrape costs a dict
look-up per stat. Nothing here reads or writes a stat.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Pattern

ENVOY, MOSNX = "envoy", "mosnx"
PROMETHEUS_NAMES = (ENVOY, MOSNX)
PREFIXES = {ENVOY: "envoy_", MOSNX: "mosnx_"}

Labels = tuple[tuple[str, str], ...]

_ISTIO_SEP, _ISTIO_EQ = ";.;", "=.="      # Istio's tag delimiters (runtime.filters.istio_stats)
_INVALID = re.compile(r"[^a-zA-Z0-9_]")
MAX_REMEMBERED = 100_000        # names a StatNaming keeps worked out; then it starts again


def sanitize(name: str) -> str:
    """A Prometheus metric or label name: characters other than [a-zA-Z0-9_] become `_`,
    and a leading digit gets a `_` before it."""
    out = _INVALID.sub("_", name)
    return "_" + out if out[:1].isdigit() else out


# -- extractors ---------------------------------------------------------------------

Match = tuple[str, int, int]        # (value, start, end of the part removed)


# POSIX classes inside brackets, which Envoy's regex engines take and Python's does not
# (Istio's bootstraps write `[_.[:digit:]]*`)
_POSIX = {"[:digit:]": r"\d", "[:alpha:]": "a-zA-Z", "[:alnum:]": "a-zA-Z0-9", "[:upper:]": "A-Z",
          "[:lower:]": "a-z", "[:space:]": r"\s", "[:xdigit:]": "0-9a-fA-F", "[:punct:]": r"!-/:-@\[-`{-~"}
_POSIX_CLASS = re.compile("|".join(re.escape(k) for k in _POSIX))


def compile_tag_regex(pattern: str) -> Pattern[str]:
    """A stats tag's regex as Python compiles it, POSIX bracket classes spelled out."""
    return re.compile(_POSIX_CLASS.sub(lambda m: _POSIX[m.group(0)], pattern))


# a regex that anchors a literal first token: `^cluster\.`
_FIRST = re.compile(r"\^(\w+)\\\.")


class RegexTag:
    """A tag a regular expression finds: group 1 is removed from the name, group 2
    (when it lies within group 1; else group 1 itself) is the value. `unless` is a value that does not count
    as a match (Envoy's negative match: `listener.admin.` is not an address)."""
    __slots__ = ("name", "pattern", "unless", "first")

    def __init__(self, name: str, pattern: str | Pattern[str], unless: str | None = None):
        self.name = name
        self.pattern = compile_tag_regex(pattern) if isinstance(pattern, str) else pattern
        if self.pattern.groups < 1:
            raise ValueError(f"the regex of tag {name!r} has no group: group 1 is what the tag takes "
                             "out of the name")
        self.unless = unless
        # the first token a name must have for this to match (`^cluster\.`), or None
        m = _FIRST.match(self.pattern.pattern)
        self.first: str | None = m.group(1) if m else None

    def find(self, stat: str) -> Match | None:
        m = self.pattern.search(stat)
        if m is None:
            return None
        # in an alternation (Istio's `(response_code=\.=(.+?);\.;)|_rq(_(\d{3}))$`) the
        # first group that took part is the one removed, the next the value
        k = next((i for i in range(1, self.pattern.groups + 1) if m.start(i) >= 0), 0)
        if not k:
            return None
        start, end = m.span(k)
        value = m.group(k)
        if k < self.pattern.groups and m.start(k + 1) >= start and 0 <= m.end(k + 1) <= end:
            value = m.group(k + 1)
        if value == self.unless:
            return None
        return value, start, end


class TokenTag:
    """A tag a dotted token pattern finds: `$` is the value, `*` any one token, `**`
    any number of tokens (none too); other tokens must be equal. The value's token is
    removed with the dot after it (before it, when it is last)."""
    __slots__ = ("name", "tokens", "first")

    def __init__(self, name: str, pattern: str):
        self.name = name
        self.tokens = tuple(pattern.split("."))
        if self.tokens.count("$") != 1:
            raise ValueError(f"token pattern {pattern!r} needs exactly one $")
        self.first: str | None = None if self.tokens[0] in ("$", "*", "**") else self.tokens[0]

    def find(self, stat: str) -> Match | None:
        parts = stat.split(".")
        at = self._match(parts, 0, 0)
        if at is None:
            return None
        start = sum(len(p) + 1 for p in parts[:at])
        end = start + len(parts[at])
        if at < len(parts) - 1:
            end += 1                        # the dot after it
        elif start:
            start -= 1                      # the last token: the dot before it
        return parts[at], start, end

    def _match(self, parts: list[str], i: int, t: int) -> int | None:
        """The index of the part `$` took, matching tokens[t:] against parts[i:]."""
        tokens = self.tokens
        if t == len(tokens):
            return -1 if i == len(parts) else None
        tok = tokens[t]
        if tok == "**":
            for j in range(i, len(parts) + 1):
                got = self._match(parts, j, t + 1)
                if got is not None:
                    return got
            return None
        if i == len(parts) or not parts[i]:
            return None
        if tok != "*" and tok != "$" and tok != parts[i]:
            return None
        got = self._match(parts, i + 1, t + 1)
        if got is None:
            return None
        return i if tok == "$" else got


Extractor = RegexTag | TokenTag

# Pieces of Envoy's default patterns: a name segment (no dot), an address as Envoy
# writes it in a stat name (`127.0.0.1_8080`, `[__1]_8080`), a cipher, a TLS version.
_V = r"[^\.]+"
_ADDRESS = r"(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+)"
_CIPHER = r"[\w-]+"
_L_OR_C = r"(?:listener|cluster)\..*?"

# Envoy's default tag specifiers, in Envoy's order (most specific first). Each tag
# name is Envoy's, so the Prometheus label is `envoy_<name>`.
ENVOY_DEFAULTS: tuple[Extractor, ...] = (
    RegexTag("envoy.response_code", r"_rq(_(\d{3}))$"),
    RegexTag("envoy.response_code_class", r"_rq_((\d))xx$"),
    RegexTag("envoy.dynamo_partition_id",
             rf"^http\.{_V}\.dynamodb\.table\.{_V}\.capacity\.{_V}(\.__partition_id=(\w{{7}}))$"),
    RegexTag("envoy.dynamo_operation",
             rf"^http\.{_V}\.dynamodb.(?:operation|table\.{_V}\.capacity)(\.({_V}))(?:\.|$)"),
    TokenTag("envoy.mongo_callsite", "mongo.*.collection.*.callsite.$.query.**"),
    RegexTag("envoy.dynamo_table", rf"^http\.{_V}\.dynamodb.(?:table|error)\.(({_V})\.)"),
    TokenTag("envoy.mongo_collection", "mongo.*.collection.$.**.query.*"),
    TokenTag("envoy.mongo_cmd", "mongo.*.cmd.$.**"),
    TokenTag("envoy.grpc_bridge_method", "cluster.*.grpc.*.$.**"),
    TokenTag("envoy.http_user_agent", "http.*.user_agent.$.**"),
    TokenTag("envoy.virtual_cluster", "vhost.*.vcluster.$.**"),
    TokenTag("envoy.fault_downstream_cluster", "http.*.fault.$.**"),
    RegexTag("envoy.ssl_cipher", rf"^listener\..*?\.ssl\.ciphers(\.({_CIPHER}))$"),
    RegexTag("envoy.ssl_curve", rf"^{_L_OR_C}\.ssl\.curves(\.({_CIPHER}))$"),
    RegexTag("envoy.ssl_sigalg", rf"^{_L_OR_C}\.ssl\.sigalgs(\.({_CIPHER}))$"),
    RegexTag("envoy.ssl_version", rf"^{_L_OR_C}\.ssl\.versions(\.(TLSv\d\.\d))$"),
    RegexTag("cipher_suite", rf"^cluster\.{_V}\.ssl\.ciphers(\.({_CIPHER}))$"),
    TokenTag("envoy.grpc_bridge_service", "cluster.*.grpc.$.**"),
    TokenTag("envoy.tcp_prefix", "tcp.$.**"),
    TokenTag("envoy.udp_prefix", "udp.$.**"),
    TokenTag("envoy.clientssl_prefix", "auth.clientssl.$.**"),
    TokenTag("envoy.ratelimit_prefix", "ratelimit.$.**"),
    TokenTag("envoy.cluster_name", "cluster.$.**"),
    RegexTag("envoy.http_conn_manager_prefix", rf"^listener\..*?\.http\.(({_V})\.)"),
    TokenTag("envoy.ext_authz_prefix", "cluster.*.ext_authz.$.**"),
    TokenTag("envoy.ext_authz_prefix", "http.*.ext_authz.$.**"),
    TokenTag("envoy.http_conn_manager_prefix", "http.$.**"),
    RegexTag("envoy.worker_id", rf"^(?:listener\.(?:{_ADDRESS}|{_V})|server|listener_manager|"
             rf"thread_local_cluster_manager)\.worker_((\d+)\.)"),
    RegexTag("envoy.listener_address", rf"^listener\.(({_ADDRESS}|{_V})\.)", unless="admin"),
    TokenTag("envoy.virtual_host", "vhost.$.**"),
    TokenTag("envoy.mongo_prefix", "mongo.$.**"),
    RegexTag("envoy.rds_route_config", rf"^http\.{_V}\.rds\.(([\w\-\./]+)\.)\w+?$"),
    RegexTag("envoy.scoped_rds_config", rf"^http\.{_V}\.scoped_rds\.(([\w\-\.]+)\.)\w+?$"),
    TokenTag("envoy.route", "vhost.*.route.$.**"),
    TokenTag("envoy.thrift_prefix", "thrift.$.**"),
    TokenTag("envoy.redis_prefix", "redis.$.**"),
    TokenTag("envoy.local_http_ratelimit_prefix", "$.http_local_rate_limit.**"),
    TokenTag("envoy.local_network_ratelimit_prefix", "local_rate_limit.$.**"),
    TokenTag("envoy.local_listener_ratelimit_prefix", "listener_local_ratelimit.$.**"),
    TokenTag("envoy.dns_filter_prefix", "dns_filter.$.**"),
    TokenTag("envoy.connection_limit_prefix", "connection_limit.$.**"),
    RegexTag("envoy.rbac_policy_name", rf"^http\.{_V}\.rbac\.(?:{_V}\.)?policy\.(({_V})\.)"
             r"(?:allowed|shadow_allowed|denied|shadow_denied)$"),
    TokenTag("envoy.rbac_prefix", "$.rbac.**"),
    RegexTag("envoy.rbac_http_prefix", rf"^http\.{_V}\.rbac\.(({_V})\.).*?", unless="policy"),
    RegexTag("envoy.proxy_protocol_prefix", rf"^proxy_proto\.(({_V})\.).+$", unless="versions"),
    RegexTag("envoy.proxy_protocol_version", rf"^proxy_proto\.((?:{_V}\.)?versions\.v(\d)\.)\w+$"),
    TokenTag("envoy.google_grpc_client_prefix", "grpc.$.**"),
    RegexTag("envoy.tls_certificate", rf"^{_L_OR_C}\.ssl\.certificate\.(({_V})\.).*$"),
    RegexTag("envoy.xds_resource_name", rf"^sds\.(({_V})\.).+"),
)

# mosnx's own series that Envoy has no tag for: the per-endpoint request stats a
# listener's `stats: {per_host: true}` keeps (cluster.<c>.host.<host>_<port>.upstream_rq_*).
UPSTREAM_HOST = "upstream_host"
MOSNX_EXTRA: tuple[Extractor, ...] = (
    RegexTag(UPSTREAM_HOST, r"^cluster\..+?\.host\.((.+?_\d+)\.)upstream_rq_"),
)

# mosnx's earlier naming: each rule, in order, applied to what the ones before it left.
MOSNX_RULES: tuple[RegexTag, ...] = (
    RegexTag("cluster_name", r"^cluster\.(([^.]+)\.)"),
    RegexTag(UPSTREAM_HOST, r"^cluster\.host\.((.+?_\d+)\.)upstream_rq_"),
    RegexTag("listener_name", r"^listener\.(([^.]+)\.)"),
    RegexTag("http_conn_manager_prefix", r"^(?:listener\.)?http\.(([^.]+)\.)"),
    RegexTag("plugin_name", r"^wasm\.(([^.]+)\.)"),
    RegexTag("virtual_host", r"^vhost\.(([^.]+)\.)"),
    RegexTag("route", r"^vhost\.route\.(([^.]+)\.)"),
)

_DEFAULT_NAMES = frozenset(e.name for e in ENVOY_DEFAULTS + MOSNX_EXTRA)
_BY_NAME: dict[str, tuple[Extractor, ...]] = {}
for _e in ENVOY_DEFAULTS + MOSNX_EXTRA:
    _BY_NAME[_e.name] = _BY_NAME.get(_e.name, ()) + (_e,)


# -- configuration ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StatTag:
    """One of stats_config.stats_tags: a tag taken out of names by `regex`, or one
    every series carries with `fixed_value`. With neither, `name` must be a default
    tag's (its default pattern is used: meant for use_all_default_tags: false)."""
    name: str
    regex: str | None = None
    fixed_value: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a stats tag needs a tag_name")
        if self.regex is not None and self.fixed_value is not None:
            raise ValueError(f"stats tag {self.name!r} has both regex and fixed_value; keep only one")
        if self.regex is not None:
            try:
                RegexTag(self.name, self.regex)
            except re.error as e:
                raise ValueError(f"stats tag {self.name!r}: the regex does not compile: {e}") from None
        elif self.fixed_value is None and self.name not in _DEFAULT_NAMES:
            raise ValueError(f"stats tag {self.name!r} has no regex and is not a default tag name "
                             "(give it a regex or a fixed_value)")


@dataclass(frozen=True, slots=True)
class StatsConfig:
    """How /stats/prometheus names series: `prometheus_names` ("envoy" or "mosnx"),
    the tags a config adds, and whether the defaults apply."""
    prometheus_names: str = MOSNX
    tags: tuple[StatTag, ...] = ()
    use_all_default_tags: bool = True
    span: object = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.prometheus_names not in PROMETHEUS_NAMES:
            raise ValueError(f"prometheus_names is {self.prometheus_names!r}: one of envoy, mosnx")
        seen = set(_DEFAULT_NAMES) if self.use_all_default_tags and self.prometheus_names == ENVOY else set()
        for t in self.tags:
            if t.name in seen:
                why = (" (a default tag; with use_all_default_tags it is extracted already)"
                       if t.name in _DEFAULT_NAMES and self.use_all_default_tags else "")
                raise ValueError(f"tag name {t.name!r} is given twice{why}")
            seen.add(t.name)


ENVOY_STATS = StatsConfig(ENVOY)
MOSNX_STATS = StatsConfig(MOSNX)


# -- naming -------------------------------------------------------------------------

class StatNaming:
    """Stat name -> (Prometheus family, labels), by one StatsConfig, remembered."""
    __slots__ = ("config", "prefix", "fixed", "fixed_names", "extractors", "rules", "_known", "_by_first")

    def __init__(self, config: StatsConfig = MOSNX_STATS):
        self.config = config
        self.prefix = PREFIXES[config.prometheus_names]
        self.fixed: Labels = tuple((sanitize(t.name), t.fixed_value) for t in config.tags
                                   if t.fixed_value is not None)
        self.fixed_names = frozenset(t.name for t in config.tags if t.fixed_value is not None)
        custom: list[Extractor] = []
        for t in config.tags:
            if t.regex is not None:
                custom.append(RegexTag(t.name, t.regex))
            elif t.fixed_value is None:
                custom.extend(_BY_NAME[t.name])
        defaults = config.use_all_default_tags
        if config.prometheus_names == ENVOY:
            self.extractors: tuple[Extractor, ...] = (
                (ENVOY_DEFAULTS + MOSNX_EXTRA if defaults else ()) + tuple(custom))
            self.rules: tuple[RegexTag, ...] = ()
        else:
            self.extractors = tuple(custom)
            self.rules = MOSNX_RULES if defaults else ()
        self._known: dict[str, tuple[str, Labels]] = {}
        # the extractors that may match a name, by its first token (as Envoy groups them
        # by prefix): most names meet a handful of patterns, not all of them
        self._by_first: dict[str, tuple[Extractor, ...]] = {}

    def series(self, stat: str) -> tuple[str, Labels]:
        """The family name and labels of `stat`, worked out once."""
        got = self._known.get(stat)
        if got is None:
            if len(self._known) >= MAX_REMEMBERED:
                self._known.clear()
            got = self._known[stat] = self._work_out(stat)
        return got

    def _work_out(self, stat: str) -> tuple[str, Labels]:
        if _ISTIO_SEP in stat and _ISTIO_EQ in stat:
            *pairs, metric = stat.split(_ISTIO_SEP)
            return sanitize(metric), tuple((k, v) for k, _, v in (p.partition(_ISTIO_EQ) for p in pairs))
        labels: list[tuple[str, str]] = list(self.fixed)
        taken = set(self.fixed_names)           # a tag is taken once: the first that finds it
        # mosnx's rules: each on what the rules before it left
        for rule in self.rules:
            found = rule.find(stat)
            if found is not None:
                value, start, end = found
                taken.add(rule.name)
                labels.append((rule.name, value))
                stat = stat[:start] + stat[end:]
        # Envoy's: every extractor on the whole name, the parts they span removed at the end
        removed: list[tuple[int, int]] = []
        first = stat.partition(".")[0]
        candidates = self._by_first.get(first)
        if candidates is None:
            if len(self._by_first) >= MAX_REMEMBERED:
                self._by_first.clear()
            candidates = self._by_first[first] = tuple(
                e for e in self.extractors if e.first is None or e.first == first)
        for ex in candidates:
            if ex.name in taken:
                continue
            found = ex.find(stat)
            if found is None:
                continue
            value, start, end = found
            taken.add(ex.name)
            labels.append((sanitize(ex.name), value))
            removed.append((start, end))
        if removed:
            stat = _without(stat, removed)
        return self.prefix + sanitize(stat), tuple(labels)


def _without(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` less the characters any of `spans` covers (they may overlap)."""
    keep = []
    at = 0
    for start, end in sorted(spans):
        if start > at:
            keep.append(text[at:start])
        at = max(at, end)
    keep.append(text[at:])
    return "".join(keep)


def naming_for(config: StatsConfig | None) -> StatNaming:
    """The naming a config asks for (mosnx's when it says nothing)."""
    return StatNaming(config if config is not None else MOSNX_STATS)
