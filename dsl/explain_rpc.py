"""`mosnx explain --rpc`: which of an RPC listener's routes takes one call, without sockets.

The call is the header map a codec gives the RPC server (proxy.rpc.codec: the
pseudo-keys `:service`, `:method`, `:version`, `:group` and the attachments), and
each route's verdict is its compiled guard's (dsl.rpc.RpcRouter), called on that
map in order as the server calls it; the rules are read again only for the source
text of each condition. A listener routed by YAML rpc.routes is explained from
those, matched as proxy.rpc.server matches them.
"""
from __future__ import annotations

from typing import Any

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.config.rpc import RPC_PROTOCOLS
from mosnx.runtime.diagnostics import Span
from mosnx.runtime.model import Listener, Snapshot

from . import ast as A
from .explain_report import where
from .load import load
from .request import RequestError
from .rpc import RPC_REPLY_STATUSES, RpcRouter

PSEUDO = (":service", ":method", ":version", ":group")


def call_headers(call: str, headers: list[str]) -> dict[str, str]:
    """'SERVICE METHOD' and '-H name: value' (':version: 1.0' for a pseudo-key) as a header map."""
    parts = call.split()
    if len(parts) != 2:
        raise RequestError(f"an RPC call is 'SERVICE METHOD', not {call!r}", "request")
    h = {":service": parts[0], ":method": parts[1]}
    for raw in headers:
        i = raw.find(":", 1)
        if i < 0:
            raise RequestError(f"a header is 'name: value', not {raw!r}", "--header")
        name, value = raw[:i].strip(), raw[i + 1:].strip()
        if not name or (name.startswith(":") and name not in PSEUDO):
            raise RequestError(f"unknown pseudo-key {name!r}; known: {', '.join(PSEUDO)}", "--header")
        h[name] = value
    return h


def rpc_listener(snap: Snapshot, name: str | None) -> Listener:
    names = [n for n, lst in snap.listeners.items() if lst.config.protocol in RPC_PROTOCOLS]
    if name is not None:
        if name not in names:
            raise RequestError(f'no RPC listener "{name}"; there are: {", ".join(names) or "none"}', "--listener")
        return snap.listeners[name]
    if len(names) == 1:
        return snap.listeners[names[0]]
    if not names:
        raise RequestError("this config has no RPC listener (protocol: bolt or dubbo) to explain", "--listener")
    raise RequestError(f"several RPC listeners ({', '.join(names)}): name one with --listener", "--listener")


def _conditions(paths: tuple[str, ...]) -> dict[Span, str]:
    """Each rpc route's condition as written, by the route's span."""
    prog = load(paths)
    out: dict[Span, str] = {}
    for f in prog.roots:
        lines = f.text.splitlines()
        for it in f.items:
            if isinstance(it, A.RpcDecl):
                for r in it.routes:
                    c = r.cond
                    if c is None:
                        out[r.span] = "every call"
                    elif c.span.line == c.span.end_line:
                        out[r.span] = lines[c.span.line - 1][c.span.column - 1:c.span.end_column - 1]
                    else:
                        out[r.span] = lines[c.span.line - 1][c.span.column - 1:].strip() + " ..."
    return out


def _decision(d: Any) -> str:
    if isinstance(d, LocalReply):
        return (f"answered with the protocol's error for {d.status} "
                f"({RPC_REPLY_STATUSES.get(d.status, 'unavailable')}): {d.detail}")
    what = f"to cluster {d.cluster}" if d.cluster else \
        "split " + ", ".join(f"{c}: {w}" for c, w in d.weighted_clusters)
    if d.timeout:
        what += f", timeout {d.timeout:g}s"
    if d.retry is not None:
        what += f", retry {d.retry.num_retries} (idempotent methods only)"
    return what


def explain_call(snap: Snapshot, listener: str | None, headers: dict[str, str]) -> dict[str, Any]:
    lst = rpc_listener(snap, listener)
    cfg = lst.config
    out: dict[str, Any] = {"listener": cfg.name, "protocol": cfg.protocol, "call": dict(headers),
                           "tried": [], "route": None, "action": None}
    router: RpcRouter | None = lst.rpc_rules
    if router is not None:
        conds = _conditions(tuple(cfg.rules))
        for name, span, (guard, decision) in zip(router.names, router.spans, router.routes):
            ok = guard is None or bool(guard(headers))
            out["tried"].append({"route": name, "where": where(span), "when": conds.get(span, ""), "holds": ok})
            if ok:
                out["route"], out["action"] = name, _decision(decision)
                return out
    else:
        opts = cfg.options.get("rpc")
        for i, r in enumerate(getattr(opts, "routes", ())):
            ok = all(headers.get(k) == v for k, v in r.match.pairs())
            out["tried"].append({"route": f"rpc.routes[{i}]", "where": "", "when": str(r.match.pairs()),
                                 "holds": ok})
            if ok:
                out["route"], out["action"] = f"rpc.routes[{i}]", _decision(r.route)
                return out
    if cfg.route is not None:
        out["route"], out["action"] = "the default route", _decision(cfg.route)
    else:
        out["action"] = "answered with the protocol's error for 404 (no route)"
    return out


def render_call(e: dict[str, Any]) -> str:
    call = e["call"]
    lines = [f"call      {call.get(':service', '')} {call.get(':method', '')}"
             + "".join(f"  {k}={v}" for k, v in call.items() if k not in (":service", ":method"))]
    lines.append(f"listener  {e['listener']} ({e['protocol']})")
    for t in e["tried"]:
        lines.append(f"  route {t['route']}  {t['where']}  when {t['when']}: "
                     + ("holds" if t["holds"] else "does not hold"))
    lines.append(f"route     {e['route'] or '(none)'}")
    lines.append(f"action    {e['action']}")
    return "\n".join(lines) + "\n"
