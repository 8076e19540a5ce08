"""What `mosnx explain` finds, as records (Step, Tried, Explanation), what a walk
reached for coverage (Reached), and the text they print as.

Pure data and formatting: nothing here evaluates a request. `where()` is the one
spelling of a source position (relative to the working folder when below it), so the
text output, the JSON and `mosnx test`'s coverage keys agree.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from mosnx.runtime.diagnostics import Span
from mosnx.runtime.routes import Route, VirtualHost

from .request import Request


# ---- what explain finds ----
@dataclass
class Step:
    phase: str
    where: str                # file:line:col, or "filter NAME"
    what: str                 # the statement as written, or the filter
    effect: list[str] = field(default_factory=list)
    ran: bool = True          # False: described, not run (a filter), or depends on the response
    conditional: bool = False

    def json(self) -> dict:
        return {"phase": self.phase, "where": self.where, "what": self.what, "effect": self.effect,
                "ran": self.ran, "conditional": self.conditional}


@dataclass
class Tried:
    route: str
    where: str
    matched: bool
    why: list[str]

    def json(self) -> dict:
        return {"route": self.route, "where": self.where, "matched": self.matched, "why": self.why}


@dataclass
class Explanation:
    request: Request
    listener: str = ""
    vhost: str | None = None
    vhost_where: str = ""
    route: str | None = None
    route_where: str = ""
    route_index: int = -1
    tried: list[Tried] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    action: str = ""                  # forward | respond | redirect | reject
    status: int | None = None         # a local reply's
    location: str | None = None
    reply_headers: list[tuple[str, str]] = field(default_factory=list)
    cluster: str | None = None        # the pick (a split's, when pinned or by weight)
    split: list[tuple[str, float]] = field(default_factory=list)   # (cluster, probability)
    hash_key: tuple[str, str] | None = None
    timeout: float | None = None
    retry: dict | None = None
    mirrors: list[tuple[str, float]] = field(default_factory=list)
    path: str = ""                    # sent upstream (after rewrite)
    upstream_host: str = ""
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    response_status: int | None = None
    response_headers: list[tuple[str, str]] | None = None
    filters: list[str] = field(default_factory=list)      # WASM filters that would run
    rate_limit_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mismatch: list[str] = field(default_factory=list)    # explainer and core disagree (a bug)

    def json(self) -> dict:
        r = self.request
        return {
            "request": {"method": r.method, "url": r.line(), "headers": dict(r.headers), "source": r.source,
                        "protocol": "HTTP/2" if r.http2 else "HTTP/1.1"},
            "listener": self.listener, "vhost": self.vhost, "vhost_source": self.vhost_where,
            "route": self.route, "route_source": self.route_where,
            "tried": [t.json() for t in self.tried], "steps": [s.json() for s in self.steps],
            "action": self.action, "status": self.status, "location": self.location,
            "cluster": self.cluster, "split": [{"cluster": c, "probability": p} for c, p in self.split],
            "hash_key": ({"attribute": self.hash_key[0], "value": self.hash_key[1]} if self.hash_key else None),
            "timeout": self.timeout, "retry": self.retry,
            "mirrors": [{"cluster": c, "percent": p} for c, p in self.mirrors],
            "upstream_path": self.path, "upstream_host": self.upstream_host,
            "request_headers": [list(kv) for kv in self.request_headers],
            "response_status": self.response_status,
            "response_headers": None if self.response_headers is None else [list(kv) for kv in self.response_headers],
            "wasm_filters": self.filters, "rate_limit_keys": self.rate_limit_keys,
            "notes": self.notes, "mismatch": self.mismatch,
        }


# ---- coverage: what the evaluation reached ----
@dataclass
class Reached:
    routes: set[str] = field(default_factory=set)                   # route keys
    atoms: dict[str, set[bool]] = field(default_factory=dict)       # condition operand -> outcomes
    whens: dict[str, set[bool]] = field(default_factory=dict)       # when statement -> branches
    arms: set[tuple[str, str]] = field(default_factory=set)         # (route key, cluster)

    def merge(self, o: "Reached") -> None:
        self.routes |= o.routes
        self.arms |= o.arms
        for mine, theirs in ((self.atoms, o.atoms), (self.whens, o.whens)):
            for k, v in theirs.items():
                mine.setdefault(k, set()).update(v)


def where(span: Span | None) -> str:
    if span is None:
        return ""
    p = span.path
    try:
        rel = os.path.relpath(p)
        p = rel if not rel.startswith("..") else p
    except ValueError:
        pass
    return f"{p}:{span.line}:{span.column}"


def route_key(listener: str, vh: VirtualHost, r: Route) -> str:
    return where(r.span) if r.span is not None else f"{listener}/{vh.name}/{r.name}"


# ---- text output ----
def render_text(ex: Explanation) -> str:
    r = ex.request
    out = [f"request   {r.line()}  ({'HTTP/2' if r.http2 else 'HTTP/1.1'}, from {r.source})"]
    for k, v in r.headers:
        out.append(f"          {k}: {v}")
    out.append(f"listener  {ex.listener}")
    out.append(f"vhost     {ex.vhost or '(none)'}" + (f"  {ex.vhost_where}" if ex.vhost_where else ""))
    if ex.tried:
        out.append("routes tried, in order")
        for t in ex.tried:
            mark = "match" if t.matched else "no   "
            out.append(f"  {mark} {t.route:<14} {t.where}".rstrip() + ("" if t.matched else "  " + "; ".join(t.why)))
    none = "(none: answered before routing)" if ex.status is not None and ex.action != "reject" else "(none)"
    out.append(f"route     {ex.route or none}" + (f"  {ex.route_where}" if ex.route_where else ""))
    for phase in ("request", "route", "rewrite", "upstream_request", "response", "log"):
        steps = [s for s in ex.steps if s.phase == phase]
        if not steps:
            continue
        title = _TITLES[phase]
        if phase == "response" and ex.response_status is None:
            title += " (no response given: each step depends on it)"
        out.append(title)
        for s in steps:
            tag = "" if s.ran else " [not run]" if not s.conditional else " [conditional]"
            out.append(f"  {s.where + '  ' if s.where else ''}{s.what}{tag}")
            for e in s.effect:
                out.append(f"      -> {e}")
    if ex.action == "forward":
        if ex.split:
            out.append("cluster   split " + ", ".join(f"{c} {p:.0%}" for c, p in ex.split))
        else:
            out.append(f"cluster   {ex.cluster}")
        if ex.hash_key:
            out.append(f"hash key  {ex.hash_key[0]} = {ex.hash_key[1]!r}")
        out.append(f"upstream  {r.method} {ex.path}  host {ex.upstream_host}")
        out.append(f"timeout   {_dur(ex.timeout)}")
        if ex.retry:
            rt = ex.retry
            on = ", ".join(rt["retry_on"]) + (f", status {rt['retriable_status_codes']}" if rt["retriable_status_codes"] else "")
            out.append(f"retry     {rt['num_retries']} on {on}"
                       + (f" per_try {_dur(rt['per_try_timeout'])}" if rt["per_try_timeout"] else ""))
        for c, p in ex.mirrors:
            out.append(f"mirror    {c} {p:g}%")
    elif ex.status is not None:
        out.append(f"reply     {ex.status}" + (f"  location: {ex.location}" if ex.location else ""))
    if ex.filters:
        out.append("wasm      " + ", ".join(dict.fromkeys(ex.filters)))
    if ex.rate_limit_keys:
        out.append("rate key  " + ", ".join(repr(k) for k in ex.rate_limit_keys))
    if ex.response_headers is not None and ex.response_status is not None:
        out.append(f"response  {ex.response_status}")
        for k, v in ex.response_headers:
            out.append(f"          {k}: {v}")
    for n in ex.notes:
        out.append(f"note      {n}")
    for m in ex.mismatch:
        out.append(f"MISMATCH  {m} (a bug of mosnx explain: please report)")
    return "\n".join(out) + "\n"


_TITLES = {"request": "before routing (on request)", "route": "route steps", "rewrite": "rewrite",
           "upstream_request": "upstream request", "response": "on response", "log": "on log"}


def _dur(t: float | None) -> str:
    if not t:
        return "none"
    return f"{t * 1000:g}ms" if t < 1 else f"{t:g}s"

