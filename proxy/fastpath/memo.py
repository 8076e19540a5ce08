"""The memo registry: every table that remembers a result the proxy would otherwise
compute again (a decoded head, an encoded head, checked fields, a normalised path).

Each kind of memo is registered here once, by name, with its bound. A table is a
plain dict (a lookup stays a dict lookup on the hot path); a hit counts on the
kind, and only a miss goes through remember(). A full table forgets everything and
starts again: cheaper than tracking use, and traffic that repeats fills it again at
once.

Counts (per process, added up across workers in /stats as
`fastpath.memo.<name>.hits|misses|evictions`):
- hits: lookups that found their result;
- misses: lookups that did not, and computed it (inputs too large to remember are
  not looked up at all, so they count as neither);
- evictions: entries forgotten when a full table started again.

Switched off (MOSNX_FASTPATH=0 in the environment, or `fast_path: false` in the
config), the express path is not taken, writes are not batched (proxy.write_batch,
told through on_switch), and every bound is 0: tables shared by the process are emptied and remember()
keeps nothing, so every lookup misses and every result is computed afresh. Tables
that belong to one connection (HPACK's) keep what they hold until that connection
ends.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from mosnx.runtime.stats import Store

V = TypeVar("V")

ENV = "MOSNX_FASTPATH"


class MemoKind:
    """One kind of memo: its name, bound, counts and the process-wide tables of it."""
    __slots__ = ("name", "limit", "bound", "hits", "misses", "evictions", "tables", "doc")

    def __init__(self, name: str, bound: int, doc: str) -> None:
        self.name = name
        self.bound = bound          # the configured bound
        self.limit = bound          # what remember() honours: 0 while switched off
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.tables: list[dict] = []
        self.doc = doc

    def table(self) -> dict:
        """A process-wide table of this kind (emptied when the fast path is switched off)."""
        t: dict = {}
        self.tables.append(t)
        return t


KINDS: dict[str, MemoKind] = {}


def kind(name: str, bound: int, doc: str) -> MemoKind:
    """Register the memo kind `name` (once per process; a second registration under
    the same name is a programming error)."""
    if name in KINDS:
        raise ValueError(f"memo {name!r} is registered twice")
    k = KINDS[name] = MemoKind(name, bound, doc)
    if not _enabled:
        k.limit = 0
    for store in _stores:
        _expose(store, k)
    return k


class Lent:
    """A memo table lent beyond the proxy (runtime.registry.Services.memo): a filter
    keeps what it would otherwise compute again under this registry's counts, bound
    and switch. One per kind and process, shared by the filters that ask for it."""
    __slots__ = ("kind", "data")

    def __init__(self, k: MemoKind) -> None:
        self.kind = k
        self.data = k.table()

    def get(self, key: Any) -> Any:
        got = self.data.get(key)
        if got is not None:
            self.kind.hits += 1
        return got

    def put(self, key: Any, value: V) -> V:
        return remember(self.data, self.kind, key, value)


_lent: dict[str, Lent] = {}


def lend(name: str, bound: int, doc: str) -> Lent:
    """The table of kind `name`, registered on first use (a filter built again on a
    reload gets the same table)."""
    got = _lent.get(name)
    if got is None:
        got = _lent[name] = Lent(kind(name, bound, doc))
    return got


def remember(table: dict, k: MemoKind, key: Any, value: V) -> V:
    """A miss of kind `k`: table[key] = value (emptying the table first when it holds
    k.limit entries; nothing is kept while the fast path is off). Returns `value`."""
    k.misses += 1
    n = len(table)
    if n >= k.limit:
        if not k.limit:
            return value
        k.evictions += n
        table.clear()
    table[key] = value
    return value


def _env_enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "off", "no")


_enabled = _env_enabled()
_config_enabled = True


def enabled() -> bool:
    """Whether the fast path (the express stream and every memo) is on."""
    return _enabled


def configure(config_enabled: bool) -> None:
    """Apply the config's `fast_path` setting; MOSNX_FASTPATH=0 turns it off whatever
    the config says."""
    global _enabled, _config_enabled
    _config_enabled = config_enabled
    on = config_enabled and _env_enabled()
    if on == _enabled:
        return
    _enabled = on
    for k in KINDS.values():
        k.limit = k.bound if on else 0
        if not on:
            for t in k.tables:
                t.clear()
    for fn in _switches:
        fn(on)


def counts() -> dict[str, int]:
    """Every kind's counts under their stat names."""
    out = {}
    for name, k in KINDS.items():
        p = "fastpath.memo." + name
        out[p + ".hits"] = k.hits
        out[p + ".misses"] = k.misses
        out[p + ".evictions"] = k.evictions
    return out


class Count:
    """A process-wide count of the fast path's, shown in /stats."""
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


# requests the express path forwarded
EXPRESS_RQ = Count()
# proxy.write_batch: passes that made queued writes, and the writes that waited
WRITE_FLUSHES = Count()
WRITES_DEFERRED = Count()

# other shortcuts' switches (proxy.write_batch), told when the fast path goes on or off
_switches: list[Callable[[bool], None]] = []


def on_switch(fn: Callable[[bool], None]) -> None:
    """Call fn(enabled) now and whenever the fast path goes on or off."""
    _switches.append(fn)
    fn(_enabled)


_stores: list = []


def register_stats(store: Store) -> None:
    """Expose the counts of every kind, and of kinds registered later, in a worker's
    stats store (read when stats are taken, so the hot path keeps one count, not two)."""
    _stores.append(store)
    store.gauge_reading("fastpath.enabled", lambda: int(_enabled), "per_proxy")
    for k in KINDS.values():
        _expose(store, k)
    store.counter_reading("fastpath.express_rq", lambda: EXPRESS_RQ.value)
    store.counter_reading("fastpath.write_batch.flushes", lambda: WRITE_FLUSHES.value)
    store.counter_reading("fastpath.write_batch.deferred", lambda: WRITES_DEFERRED.value)


def _expose(store: Store, k: MemoKind) -> None:
    p = "fastpath.memo." + k.name
    store.counter_reading(p + ".hits", lambda: k.hits)
    store.counter_reading(p + ".misses", lambda: k.misses)
    store.counter_reading(p + ".evictions", lambda: k.evictions)
