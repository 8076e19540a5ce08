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
  client asks again. A listener over scoped_rds subscribes to SRDS (wildcard), and
  the scopes held name RouteConfigurations too (runtime.envoy.scoped_routes). Those
  names are worked out again only when the listeners, the clusters, the scopes or the
  file changed. A listener or cluster whose secret has not come
  warms. Secrets the SDS stream brings (`stream_secrets`, sds_stream) are not asked
  for on ADS; the stream gives them to `apply` all the same. Secrets hold private keys: they stay in memory here, and cross to the
  workers only in the payload (control.spill's private file).
- An update that changes only ClusterLoadAssignments (a state-of-the-world response
  repeats them all: only those whose content changed count) is taken in place when
  it can be: each changed assignment is checked on its own (a bad one is NACKed by
  name and its last good version kept), the clusters that use it get new endpoints
  (runtime.envoy.eds, from the translations already held) and `reassigned(configs)`
  hands just those on, with no translation, build or reload of the rest. Held
  resources and translations are updated as a full update would, so the next full
  one starts from them.
- Every other accepted update reaches the workers as serialized resources; each
  worker translates them itself, so nothing but bytes crosses the pipe. A message's
  bytes are made once. What crosses is what changed: every accepted change (in
  place or not) bumps `generation` and marks its resources, and delta() hands over
  the marked ones (a Delta: from which generation to which, the resources set and
  the names removed). A worker that holds the delta's `base` generation applies it
  to what it holds (Decoded.take); one that does not (it is new, or missed one)
  says so and is sent payload(), every resource held, with its generation.
- `ready` once the first listeners and clusters came (or `initial_fetch_timeout`
  passed): /ready answers 503 until then.
"""
from __future__ import annotations

import asyncio
import logging
import operator
import os
import time
from itertools import compress
from typing import TYPE_CHECKING, Any, Callable, Container, Iterable

from google.protobuf.message import Message

from mosnx.runtime.config import load_config
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.envoy import eds
from mosnx.runtime.envoy.apply import Translations, apply, needed_names
from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, RESOURCE_TYPES, ROUTE, RUNTIME, \
    SCOPED_ROUTE, SECRET, VIRTUAL_HOST
from mosnx.runtime.envoy.scoped_routes import WILDCARD
from mosnx.runtime.model import ClusterConfig, Config, Endpoint

from .resources import Rejection

if TYPE_CHECKING:
    from mosnx.runtime.envoy.findings import Rejection as Rejected

log = logging.getLogger("mosnx.xds")

Resources = dict[str, dict[str, Message]]
Payload = dict[str, dict[str, bytes]]
# what changed from one generation to the next: {"base": int, "gen": int,
# "set": Payload, "removed": {type_url: [name, ...]}} (plain data: it is pickled)
Delta = dict[str, Any]

# a dependency not yet received: the resource waits (is not part of the config) but
# is not refused
_WAITING = ("has not been received", "name unknown cluster")


def waiting(r: Rejected) -> bool:
    return any(w in r.message for w in _WAITING)


def _fresh(held: dict[str, Message], resources: dict[str, Message]) -> dict[str, Message]:
    """The resources that are not the message held under their name nor equal to it.
    Which are the very message held is found in C (a lookup and an identity test
    each, itertools.compress), so thousands resent unchanged cost no Python loop."""
    other = compress(resources.items(), map(operator.is_not, map(held.get, resources), resources.values()))
    return {name: msg for name, msg in other if held.get(name) != msg}


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
    change keeps its message object, so the translation of it is kept too.
    `resources` and `generation`: what it holds now (a whole payload, then deltas);
    `generation` None when it holds nothing a delta could apply to."""

    def __init__(self) -> None:
        self.messages: dict[tuple[str, str], tuple[bytes, Message]] = {}
        self.translations = Translations()
        self.resources: Resources = {}
        self.generation: int | None = None

    def load(self, payload: Payload, generation: int | None) -> Resources:
        """Every resource: what is held is replaced."""
        self.resources = decode(payload, self)
        self.generation = generation
        return self.resources

    def take(self, delta: Delta) -> bool:
        """Apply `delta` to what is held: False (nothing changed) unless it starts from
        the generation held. Only the resources it sets are decoded."""
        if self.generation is None or delta.get("base") != self.generation:
            return False
        held, messages = self.resources, self.messages
        for type_url, named in delta.get("set", {}).items():
            cls = RESOURCE_TYPES[type_url]
            mine = held.setdefault(type_url, {})
            for name, data in named.items():
                hit = messages.get((type_url, name))
                if hit is not None and hit[0] == data:
                    m = hit[1]
                else:
                    m = cls()
                    m.ParseFromString(data)
                    messages[(type_url, name)] = (data, m)
                mine[name] = m
        for type_url, names in delta.get("removed", {}).items():
            mine = held.get(type_url, {})
            for name in names:
                mine.pop(name, None)
                messages.pop((type_url, name), None)
        self.generation = delta["gen"]
        return True


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


def held_config(base: Config, memory: Decoded) -> Config:
    """The file's config with the resources `memory` holds (after load() or take())."""
    if not any(memory.resources.values()):
        return base
    return apply(base, memory.resources, cache=memory.translations)[0]


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
        # the secrets a separate SDS stream asks for (sds_stream.SdsStream.names)
        self.stream_secrets: Callable[[], frozenset[str]] | None = None
        self.started = time.monotonic()
        self.initial_fetch_timeout = 15.0
        self.last_errors: list[str] = []
        self.versions: dict[str, str] = {}
        self.updated: dict[str, float] = {}
        # (type_url, name) -> (the refused message, when, why, its version): the error
        # state /config_dump shows until a version of that resource is accepted
        self.failed: dict[tuple[str, str], tuple[Message, float, str, str]] = {}
        # EDS in place: given the clusters whose endpoints changed (and nothing else did);
        # None: every update goes by changed()
        self.reassigned: Callable[[dict[str, ClusterConfig]], None] | None = None
        # (listeners, clusters, base, (scopes, routes)) -> what they make: kept while those objects stay
        self._needed: tuple[Any, Any, Any, Any, dict[str, frozenset[str]]] | None = None
        self._users: tuple[Any, Any, eds.Users] | None = None
        self._eds_of: dict[str, tuple[Any, str | None]] = {}     # eds.users' memo
        self._wire: dict[tuple[str, str], tuple[Message, bytes]] = {}
        self.generation = 0         # bumped by every accepted change
        self._touched: set[tuple[str, str]] = set()     # (type_url, name) changed since delta()

    def needed(self) -> dict[str, frozenset[str]]:
        """needed_names() of what is held: worked out again only when the listeners, the
        clusters or the file's config changed (every accepted update of those replaces
        their dicts)."""
        lst, cl, base = self.resources[LISTENER], self.resources[CLUSTER], self.base()
        sr = (self.resources[SCOPED_ROUTE], self.resources[ROUTE])     # scopes name routes, routes VHDS
        n = self._needed
        if n is None or n[0] is not lst or n[1] is not cl or n[2] is not base or any(
                a is not b for a, b in zip(n[3], sr)):
            names = {t: frozenset(v) for t, v in needed_names(self.resources, base, self.translations).items()}
            n = self._needed = (lst, cl, base, sr, names)
        return n[4]

    # -- resources.XdsSink --
    def subscriptions(self, type_url: str) -> frozenset[str] | None:
        if type_url in (LISTENER, CLUSTER):
            return None
        names = self.needed().get(type_url, frozenset())
        if WILDCARD in names:
            return None         # SRDS: every scope, once a listener uses scoped_rds
        if type_url == SECRET and self.stream_secrets is not None and names:
            elsewhere = self.stream_secrets()
            if elsewhere:
                names = names - elsewhere
        return names

    def apply(self, type_url: str, version: str, resources: dict[str, Message],
              removed: set[str]) -> list[Rejection]:
        if type_url not in self.resources:
            return [Rejection(name, f"mosnx does not take {type_url} resources") for name in resources]
        held = self.resources[type_url]
        # a state-of-the-world response repeats every resource of its type, each one
        # unchanged the very message held (resources.unpack keeps them by their bytes):
        # which are, is asked in one C loop, and only those that are not are compared
        fresh = _fresh(held, resources)
        if not removed and not fresh:
            # nothing new: taken as it is (no translation, build or push)
            self.received.add(type_url)
            self.versions[type_url] = version
            self._clear_failed(type_url, resources)
            return []
        refused: dict[str, Rejected] = {}
        checked: dict[str, tuple[Endpoint, ...]] = {}
        if type_url == ENDPOINT:
            # each assignment on its own: a bad one is refused by its name, and the
            # clusters using it keep their last good endpoints
            for name, cla in fresh.items():
                got = eds.check(name, cla)
                if isinstance(got, tuple):
                    checked[name] = got
                else:
                    refused[name] = got
            if self.reassigned is not None:
                done = self._in_place(version, resources, fresh, removed, checked, refused)
                if done is not None:
                    return done
        candidate = {t: dict(v) for t, v in self.resources.items()}
        mine = candidate[type_url]
        mine.update(resources)
        for name in removed:
            mine.pop(name, None)
        self._keep_last_good(mine, type_url, refused)
        config, rejected = apply(self.base(), candidate, cache=self.translations)
        found = {r.name: r for r in rejected if r.type_url == type_url and r.name in resources and not waiting(r)}
        if found:
            self._keep_last_good(mine, type_url, found)
            config, rejected = apply(self.base(), candidate, cache=self.translations)
        bad = {**refused, **found}
        now = time.time()
        try:
            self.validate(config)
        except ConfigError as e:
            why = "; ".join(str(d) for d in e.diagnostics)[:1000]
            self.last_errors = [why]
            return [Rejection(name, f"the configuration it makes does not build: {why}") for name in resources]
        for name, r in bad.items():
            self.failed[(type_url, name)] = (resources[name], now, str(r), version)
        before = self.needed()
        self.resources = candidate
        self._touch(type_url, fresh, removed)
        self._clear_failed(type_url, resources, bad)
        self._clear_failed(type_url, removed)
        self.received.add(type_url)
        self.versions[type_url] = version
        self.updated[type_url] = now
        self.last_errors = [str(r) for r in bad.values()]
        for r in rejected:
            if waiting(r):
                log.info("xds: %s", r)
        after = self.needed()
        if self.resubscribe is not None:
            for t in (ROUTE, ENDPOINT, SECRET, SCOPED_ROUTE, VIRTUAL_HOST, RUNTIME):
                if before.get(t) != after.get(t):
                    asyncio.get_running_loop().call_soon(self.resubscribe, t)
        self.changed()
        if type_url == CLUSTER and self.reassigned is not None:
            # indexed now, with the cluster change, rather than by the next EDS update
            self._index(self.base())
        return [Rejection(name, str(r)) for name, r in bad.items()]

    def _keep_last_good(self, mine: dict[str, Message], type_url: str, bad: dict[str, Any]) -> None:
        """The refused resources out of the candidate: their last good versions (if any) keep serving."""
        for name in bad:
            last = self.resources[type_url].get(name)
            if last is not None:
                mine[name] = last
            else:
                mine.pop(name, None)

    def _clear_failed(self, type_url: str, names: Iterable[str], refused: Container[str] = ()) -> None:
        """Accepted now (all of `names` but the `refused`): no error state to show."""
        if self.failed:
            for name in names:
                if name not in refused:
                    self.failed.pop((type_url, name), None)

    def _in_place(self, version: str, resources: dict[str, Message], fresh: dict[str, Message],
                  removed: set[str], checked: dict[str, tuple[Endpoint, ...]],
                  refused: dict[str, Rejected]) -> list[Rejection] | None:
        """An EDS update without a reload: the rejections (as apply() answers), or None
        when it must be applied whole (then nothing was changed here). `checked`: the
        endpoints of each fresh assignment that eds.check() passed; `refused`: the rest."""
        base = self.base()
        u = self._index(base)
        held = self.resources[ENDPOINT]
        changed: dict[str, tuple[Message | None, tuple[Endpoint, ...]]] = {
            name: (fresh[name], eps) for name, eps in checked.items()}
        for name in removed:
            if name in held:
                changed[name] = (None, ())
        configs = eds.reassign(base, self.resources, changed, self.translations, u[2])
        if configs is None:
            return None
        now = time.time()
        for name, r in refused.items():
            self.failed[(ENDPOINT, name)] = (fresh[name], now, str(r), version)
        for name, (cla, _) in changed.items():
            if cla is None:
                held.pop(name, None)
            else:
                held[name] = cla
        self._touch(ENDPOINT, changed, ())
        self._clear_failed(ENDPOINT, resources, refused)
        self._clear_failed(ENDPOINT, removed)
        self.received.add(ENDPOINT)
        self.versions[ENDPOINT] = version
        self.updated[ENDPOINT] = now
        self.last_errors = [str(r) for r in refused.values()]
        if configs:
            self.reassigned(configs)  # type: ignore[misc]  # apply() checked it is set
        return [Rejection(name, str(r)) for name, r in refused.items()]

    def _index(self, base: Config) -> tuple[Any, Any, eds.Users]:
        """Which clusters use which assignment, for the clusters and base held now."""
        u = self._users
        if u is None or u[0] is not self.resources[CLUSTER] or u[1] is not base:
            u = self._users = (self.resources[CLUSTER], base, eds.users(self.resources, base, self._eds_of))
        return u

    def _touch(self, type_url: str, names: Iterable[str], removed: Iterable[str]) -> None:
        self.generation += 1
        self._touched.update((type_url, n) for n in names)
        self._touched.update((type_url, n) for n in removed)

    # -- for the supervisor --
    def payload(self) -> Payload:
        """Every resource held, serialized (a message's bytes are made once)."""
        wire = self._wire
        out: Payload = {}
        kept: dict[tuple[str, str], tuple[Message, bytes]] = {}
        for t, named in self.resources.items():
            if not named:
                continue
            mine = out[t] = {}
            for n, m in named.items():
                hit = wire.get((t, n))
                data = hit[1] if hit is not None and hit[0] is m else m.SerializeToString()
                mine[n] = data
                kept[(t, n)] = (m, data)
        self._wire = kept
        return out

    def delta(self, base: int) -> Delta:
        """What changed since generation `base` (the one the workers were last given,
        all changes since marked): the resources set, serialized, and the names
        removed. The marks are cleared."""
        touched, self._touched = self._touched, set()
        wire = self._wire
        put: Payload = {}
        gone: dict[str, list[str]] = {}
        for t, n in touched:
            m = self.resources.get(t, {}).get(n)
            if m is None:
                gone.setdefault(t, []).append(n)
                wire.pop((t, n), None)
                continue
            hit = wire.get((t, n))
            if hit is not None and hit[0] is m:
                data = hit[1]
            else:
                data = m.SerializeToString()
                wire[(t, n)] = (m, data)
            put.setdefault(t, {})[n] = data
        return {"base": base, "gen": self.generation, "set": put, "removed": gone}

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
