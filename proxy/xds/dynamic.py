"""The control plane's resources as the proxy holds them, and what they become.

DynamicConfig is the ADS client's sink (resources.XdsSink), kept by the supervisor:
- It holds the last good resources of each type (listeners, route configurations,
  clusters, cluster load assignments). An update is merged into a candidate,
  translated with the file's own config (runtime.envoy.apply) and built into a
  snapshot before it is answered: what fails that is NACKed, naming each bad
  resource, and the last good resources keep serving.
- A listener whose route configuration has not arrived, or whose routes name a
  cluster that has not, is warming, not wrong: it is left out until what it needs
  comes (as Envoy's listener warming), and the update is ACKed.
- What the listeners and EDS clusters name decides the RDS and EDS subscriptions,
  and what their TLS names the SDS (Secret) subscription; when that changes, the
  client asks again. A listener or cluster whose secret has not come warms.
  Secrets hold private keys: they stay in memory here, and cross to the workers only
  in the payload (control.spill's private file).
- Every accepted update reaches the workers as serialized resources (payload());
  each worker translates them itself, so nothing but bytes crosses the pipe.
- `ready` once the first listeners and clusters came (or `initial_fetch_timeout`
  passed): /ready answers 503 until then.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Callable

from google.protobuf.message import Message

from mosnx.runtime.config import load_config
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.envoy.apply import Translations, apply, needed_names
from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, RESOURCE_TYPES, ROUTE, SECRET
from mosnx.runtime.model import Config

from .resources import Rejection

if TYPE_CHECKING:
    from mosnx.runtime.envoy.findings import Rejection as Rejected

log = logging.getLogger("mosnx.xds")

Resources = dict[str, dict[str, Message]]
Payload = dict[str, dict[str, bytes]]

# a dependency not yet received: the resource waits (is not part of the config) but
# is not refused
_WAITING = ("has not been received", "name unknown cluster")


def waiting(r: Rejected) -> bool:
    return any(w in r.message for w in _WAITING)


class FileConfig:
    """A config file, read again only when it changed on disk (its mtime or size):
    the base each update is applied to, on both sides of the pipe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[float, Config] | None = None

    def __call__(self) -> Config:
        try:
            st = os.stat(self.path)
            mark = float(st.st_mtime_ns + st.st_size)
        except OSError:
            mark = -1.0
        if self._seen is None or self._seen[0] != mark:
            self._seen = (mark, load_config(self.path))
        return self._seen[1]


class Decoded:
    """A worker's memory of the resources it decoded: a resource whose bytes did not
    change keeps its message object, so the translation of it is kept too."""

    def __init__(self) -> None:
        self.messages: dict[tuple[str, str], tuple[bytes, Message]] = {}
        self.translations = Translations()


def decode(payload: Payload, memory: Decoded | None = None) -> Resources:
    """Serialized resources (payload()) back into their messages."""
    out: Resources = {}
    kept: dict[tuple[str, str], tuple[bytes, Message]] = {}
    for type_url, named in payload.items():
        cls = RESOURCE_TYPES[type_url]
        msgs: dict[str, Message] = {}
        for name, data in named.items():
            hit = memory.messages.get((type_url, name)) if memory is not None else None
            if hit is not None and hit[0] == data:
                m = hit[1]
            else:
                m = cls()
                m.ParseFromString(data)
            msgs[name] = m
            kept[(type_url, name)] = (data, m)
        out[type_url] = msgs
    if memory is not None:
        memory.messages = kept
    return out


def effective(base: Config, payload: Payload | None, memory: Decoded | None = None) -> Config:
    """The file's config with the control plane's resources (what a worker builds)."""
    if not payload:
        return base
    return apply(base, decode(payload, memory), cache=memory.translations if memory is not None else None)[0]


class DynamicConfig:
    def __init__(self, base: Callable[[], Config], validate: Callable[[Config], None],
                 changed: Callable[[], None]) -> None:
        """`base()`: the file's config now; `validate(config)`: raises ConfigError when
        it does not build; `changed()`: the resources changed (push them to workers)."""
        self.base = base
        self.validate = validate
        self.changed = changed
        self.resources: Resources = {t: {} for t in RESOURCE_TYPES}
        self.translations = Translations()      # what apply() made of the resources held
        self.received: set[str] = set()     # types that had a first response
        self.resubscribe: Callable[[str], None] | None = None
        self.started = time.monotonic()
        self.initial_fetch_timeout = 15.0
        self.last_errors: list[str] = []
        self.versions: dict[str, str] = {}
        self.updated: dict[str, float] = {}
        # (type_url, name) -> (the refused message, when, why, its version): the error
        # state /config_dump shows until a version of that resource is accepted
        self.failed: dict[tuple[str, str], tuple[Message, float, str, str]] = {}

    # -- resources.XdsSink --
    def subscriptions(self, type_url: str) -> set[str] | None:
        if type_url in (LISTENER, CLUSTER):
            return None
        return set(needed_names(self.resources, self.base()).get(type_url, set()))

    def apply(self, type_url: str, version: str, resources: dict[str, Message],
              removed: set[str]) -> list[Rejection]:
        if type_url not in self.resources:
            return [Rejection(name, f"mosnx does not take {type_url} resources") for name in resources]
        held = self.resources[type_url]
        if not removed and all((h := held.get(name)) is msg or h == msg for name, msg in resources.items()):
            # a state-of-the-world response repeats every resource of its type: one that
            # brings nothing new is taken as it is (no translation, build or push)
            self.received.add(type_url)
            self.versions[type_url] = version
            return []
        candidate = {t: dict(v) for t, v in self.resources.items()}
        mine = candidate[type_url]
        mine.update(resources)
        for name in removed:
            mine.pop(name, None)
        config, rejected = apply(self.base(), candidate, cache=self.translations)
        bad = {r.name: r for r in rejected if r.type_url == type_url and r.name in resources and not waiting(r)}
        now = time.time()
        for name, r in bad.items():
            self.failed[(type_url, name)] = (resources[name], now, str(r), version)
        for name in bad:
            # the last good version of that resource (if any) keeps serving
            if name in self.resources[type_url]:
                mine[name] = self.resources[type_url][name]
            else:
                del mine[name]
        if bad:
            config, rejected = apply(self.base(), candidate, cache=self.translations)
        try:
            self.validate(config)
        except ConfigError as e:
            why = "; ".join(str(d) for d in e.diagnostics)[:1000]
            self.last_errors = [why]
            return [Rejection(name, f"the configuration it makes does not build: {why}") for name in resources]
        before = needed_names(self.resources, self.base())
        self.resources = candidate
        for name in resources:
            if name not in bad:
                self.failed.pop((type_url, name), None)
        for name in removed:
            self.failed.pop((type_url, name), None)
        self.received.add(type_url)
        self.versions[type_url] = version
        self.updated[type_url] = time.time()
        self.last_errors = [str(r) for r in bad.values()]
        for r in rejected:
            if waiting(r):
                log.info("xds: %s", r)
        after = needed_names(self.resources, self.base())
        if self.resubscribe is not None:
            for t in (ROUTE, ENDPOINT, SECRET):
                if before.get(t) != after.get(t):
                    asyncio.get_running_loop().call_soon(self.resubscribe, t)
        self.changed()
        return [Rejection(name, str(r)) for name, r in bad.items()]

    # -- for the supervisor --
    def payload(self) -> Payload:
        return {t: {n: m.SerializeToString() for n, m in named.items()}
                for t, named in self.resources.items() if named}

    def ready(self) -> bool:
        """The first listeners and clusters came, or waiting for them timed out."""
        if {LISTENER, CLUSTER} <= self.received:
            return True
        t = self.initial_fetch_timeout
        return bool(t) and time.monotonic() - self.started > t

    def dump(self) -> dict[str, Any]:
        """Envoy's typed dump of what the control plane sent ({"configs": [...]})."""
        from .dump import config_dump
        base = self.base()
        static = base.xds.static_resources.get(SECRET, {}) if base.xds is not None else {}
        return config_dump(self.resources, self.versions, self.updated, self.failed, static_secrets=static,
                           warming_secrets=needed_names(self.resources, base).get(SECRET, set()))
