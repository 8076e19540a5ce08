"""The RBAC filter: allow or deny a request by Envoy's role-based access control rules.

The config is Envoy's `extensions.filters.http.rbac.v3.RBAC` as plain data (`rules`,
`shadow_rules`, `rules_stat_prefix`, `shadow_rules_stat_prefix`); each of `rules` and
`shadow_rules` is a `config.rbac.v3.RBAC` ({action, policies}). It compiles once into an
Engine (rbac_match has the matchers); a request costs the predicates it runs.

Invariants, as Envoy's filter:
- A policy matches when any of its permissions and any of its principals match; the
  engine's policies are tried by name, in order, and the first that matches is the
  effective policy. ALLOW allows a request some policy matches; DENY denies it; LOG
  allows every request and tells the access log whether one matched
  (`metadata["envoy.common"]["access_log_hint"]`).
- Absent `rules` enforce nothing; `rules: {}` (ALLOW, no policy) denies everything.
- A denied request ends with 403 `RBAC: access denied` (detail `rbac_access_denied`;
  response.flags carries Envoy's `rbac_access_denied_matched_policy[<policy or none>]`).
- Shadow rules never deny: they count `shadow_allowed` / `shadow_denied` and leave
  `shadow_engine_result` (and `shadow_effective_policy_id`) in
  `metadata["envoy.filters.http.rbac"]`.
- Stats: `http.<listener>.rbac.<rules_stat_prefix>allowed|denied` and
  `http.<listener>.rbac.<shadow_rules_stat_prefix>shadow_allowed|shadow_denied`
  (Envoy's names, the listener's name standing for the stat_prefix).

NetworkRbac is the same engine per connection (Envoy's network RBAC filter): principals
and permissions that need no request; `on_connection(ctx)` says whether the connection
may go on, counting `<stat_prefix>rbac.allowed|denied`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..actions import Action, LocalReply
from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from ..stats import Counter, Store
from .rbac_match import Pred, RbacError, all_of, any_of, at, compile_permission, compile_principal, fields, snake

STATS = ("allowed", "denied", "shadow_allowed", "shadow_denied")

ACTIONS = {"ALLOW": "ALLOW", "DENY": "DENY", "LOG": "LOG", 0: "ALLOW", 1: "DENY", 2: "LOG"}
DENIED_BODY = b"RBAC: access denied"
DETAIL = "rbac_access_denied"
METADATA = "envoy.filters.http.rbac"
_SPACE = re.compile(r"\s")     # Envoy writes a policy name into the response detail with _ for each space


@dataclass(frozen=True, slots=True)
class Engine:
    """One compiled config.rbac.v3.RBAC: its action and its policies, sorted by name."""
    action: str
    policies: tuple[tuple[str, Pred], ...]

    def matched(self, ctx: StreamContext) -> str | None:
        """The name of the first policy (by name) that matches, or None."""
        for name, pred in self.policies:
            if pred(ctx):
                return name
        return None

    def allows(self, ctx: StreamContext) -> bool:
        """The decision alone (for tests and the network filter)."""
        name = self.matched(ctx)
        if self.action == "ALLOW":
            return name is not None
        return self.action == "LOG" or name is None


def compile_rbac(value: Any, path: str = "", network: bool = False) -> Engine:
    """A config.rbac.v3.RBAC message as plain data -> Engine; RbacError names a bad field."""
    if value is None:
        value = {}
    m = fields(value, path, ("action", "policies"))
    action = ACTIONS.get(m.get("action", "ALLOW"))
    if action is None:
        raise RbacError(at(path, "action"), f"expected ALLOW, DENY or LOG, not {m.get('action')!r}")
    raw = m.get("policies") or {}
    if not isinstance(raw, dict):
        raise RbacError(at(path, "policies"), "expected a mapping of policy name to policy")
    policies = []
    for name in sorted(raw):
        p = f'{at(path, "policies")}["{name}"]'
        pm = fields(raw[name], p, ("permissions", "principals", "condition", "checked_condition", "cel_config"))
        for cel in ("condition", "checked_condition", "cel_config"):
            if cel in pm:
                raise RbacError(at(p, cel), "CEL conditions are not supported")
        perms, ids = pm.get("permissions"), pm.get("principals")
        if not isinstance(perms, list) or not perms:
            raise RbacError(at(p, "permissions"), "a policy needs at least one permission")
        if not isinstance(ids, list) or not ids:
            raise RbacError(at(p, "principals"), "a policy needs at least one principal")
        perm = any_of([compile_permission(x, at(at(p, "permissions"), i), network) for i, x in enumerate(perms)])
        who = any_of([compile_principal(x, at(at(p, "principals"), i), network) for i, x in enumerate(ids)])
        policies.append((str(name), all_of([perm, who])))
    return Engine(action, tuple(policies))


@dataclass(frozen=True, slots=True)
class RbacConfig:
    rules: Engine | None = None
    shadow_rules: Engine | None = None
    rules_stat_prefix: str = ""
    shadow_rules_stat_prefix: str = ""

    @classmethod
    def from_dict(cls, cfg: dict, network: bool = False) -> "RbacConfig":
        """Envoy's RBAC filter message: rules, shadow_rules (each {action: ALLOW|DENY|LOG, policies:
        {name: {permissions, principals}}}), rules_stat_prefix, shadow_rules_stat_prefix; proto field
        names or their camelCase JSON names."""
        known = ("rules", "shadow_rules", "rules_stat_prefix", "shadow_rules_stat_prefix")
        allowed = known + (("stat_prefix",) if network else ())
        if isinstance(cfg, dict):
            extra = sorted(str(k) for k in cfg if snake(str(k)) not in allowed)
            if extra:
                # the other filters' wording, which the config reference reads the settings from
                raise ValueError(f"rbac: unknown option(s) {', '.join(extra)}; known: {', '.join(known)}")
        m = fields(cfg, "", allowed)
        kw: dict[str, Any] = {}
        for key in ("rules", "shadow_rules"):
            if key in m and m[key] is not None:
                kw[key] = compile_rbac(m[key], key, network)
        for key in ("rules_stat_prefix", "shadow_rules_stat_prefix"):
            if key in m:
                if not isinstance(m[key], str):
                    raise RbacError(key, "expected a string")
                kw[key] = m[key]
        return cls(**kw)


def stat_join(a: str, b: str) -> str:
    """Envoy's statPrefixJoin: `a` and `b` with one dot between them."""
    if not a:
        return b
    if not b:
        return a
    return a + b if a.endswith(".") else f"{a}.{b}"


def _counters(stats: Store, base: str, rules_prefix: str, shadow_prefix: str) -> tuple[Counter, ...]:
    """The four counters under `<base>rbac.`, as Envoy's generateStats names them."""
    rbac = stat_join(base, "rbac.")
    r = stat_join(rbac, rules_prefix)
    s = stat_join(rbac, shadow_prefix)
    return (stats.counter(r + "allowed"), stats.counter(r + "denied"),
            stats.counter(s + "shadow_allowed"), stats.counter(s + "shadow_denied"))


class RbacFilter(HttpFilter):
    name = "rbac"

    def __init__(self, config: RbacConfig, name: str = "rbac", stats: Store | None = None, listener: str = ""):
        self.config = config
        self.name = name
        self.rules = config.rules
        self.shadow = config.shadow_rules
        (self._allowed, self._denied, self._shadow_allowed,
         self._shadow_denied) = _counters(stats or Store(), f"http.{listener}.", config.rules_stat_prefix,
                                          config.shadow_rules_stat_prefix)
        self._reply = LocalReply(403, DENIED_BODY, detail=DETAIL)
        rules = config.rules
        # the response detail of each policy, made once (Envoy replaces whitespace in the name)
        self._details: dict[str | None, str] = {None: f"{DETAIL}_matched_policy[none]"}
        for pname, _ in rules.policies if rules is not None else ():
            self._details[pname] = f"{DETAIL}_matched_policy[{_SPACE.sub('_', pname)}]"
        self._allow_if_matched = rules is not None and rules.action == "ALLOW"
        self._log = rules is not None and rules.action == "LOG"
        sp = config.shadow_rules_stat_prefix
        self._shadow_keys = (sp + "shadow_effective_policy_id", sp + "shadow_engine_result")

    def on_request(self, ctx: StreamContext) -> Action | None:
        shadow = self.shadow
        if shadow is not None:
            self._run_shadow(shadow, ctx)
        rules = self.rules
        if rules is None:
            return None
        name = rules.matched(ctx)
        if self._allow_if_matched:
            ok = name is not None
        elif self._log:
            ctx.meta()["envoy.common"] = {"access_log_hint": name is not None}
            ok = True
        else:
            ok = name is None
        if ok:
            self._allowed.value += 1
            return None
        self._denied.value += 1
        ctx.error_detail = self._details.get(name) or self._details[None]
        return self._reply

    def _run_shadow(self, shadow: Engine, ctx: StreamContext) -> None:
        name = shadow.matched(ctx)
        if shadow.action == "ALLOW":
            ok = name is not None
        else:
            ok = shadow.action == "LOG" or name is None
        if ok:
            self._shadow_allowed.value += 1
        else:
            self._shadow_denied.value += 1
        pid, result = self._shadow_keys
        md: dict[str, Any] = {result: "allowed" if ok else "denied"}
        if name is not None:
            md[pid] = name
        ctx.meta()[METADATA] = md


class NetworkRbac:
    """Envoy's network RBAC filter on one listener: decided once per connection, with the
    connection's facts only (source and destination, TLS peer, SNI)."""

    def __init__(self, config: RbacConfig, stat_prefix: str = "", stats: Store | None = None):
        self.config = config
        self.rules = config.rules
        self.shadow = config.shadow_rules
        (self._allowed, self._denied, self._shadow_allowed,
         self._shadow_denied) = _counters(stats or Store(), stat_prefix, config.rules_stat_prefix,
                                          config.shadow_rules_stat_prefix)

    def on_connection(self, ctx: StreamContext) -> bool:
        """True when the connection may go on; False: the listener closes it."""
        shadow = self.shadow
        if shadow is not None:
            if shadow.allows(ctx):
                self._shadow_allowed.value += 1
            else:
                self._shadow_denied.value += 1
        rules = self.rules
        if rules is None:
            return True
        if rules.allows(ctx):
            self._allowed.value += 1
            return True
        self._denied.value += 1
        return False


def network_rbac(cfg: dict, stats: Store | None = None) -> NetworkRbac:
    """A NetworkRbac from Envoy's network RBAC message as plain data (stat_prefix included)."""
    config = RbacConfig.from_dict(cfg, network=True)
    prefix = cfg.get("stat_prefix", cfg.get("statPrefix", ""))
    if not isinstance(prefix, str):
        raise RbacError("stat_prefix", "expected a string")
    return NetworkRbac(config, prefix, stats)


def _factory(name: str, cfg: dict, ctx: BuildContext) -> RbacFilter:
    config = RbacConfig.from_dict(cfg or {})
    listener = getattr(ctx.listener, "name", "") or ""
    return RbacFilter(config, name, ctx.services.stats, listener)


register_filter("rbac", _factory)
