"""The `try: curl ...` line `mosnx run` prints once it serves: a request that works.

It is derived from the snapshot, never guessed: the first HTTP listener, then its
virtual hosts and their routes in declared order; for each route a Host header and
a path are proposed from what the route declares (an exact path, a path prefix, or
`/`; a domain, with a label put in for a wildcard), and kept only when the real
route table, asked with that GET, picks this very route. A route that answers with
an error of its own (a direct response of 400 or more) is passed over. When no route
can be reached that way (every one needs a header, a query, a method other than
GET...), or the listener asks for a client certificate, there is no hint at all:
silence is better than a command that answers 404.
"""
from __future__ import annotations

import shlex

from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.routes import DirectResponse

_LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def curl_hint(snapshot) -> str | None:
    """`curl -i [-H 'Host: h'] http://addr:port/path` for the first HTTP listener, or None."""
    # not a filter chain's stack: which chain a curl reaches depends on more than a URL
    listener = next((l for l in snapshot.listeners.values()
                     if l.config.protocol == "http" and l.config.chain_of is None), None)
    if listener is None:
        return None
    cfg = listener.config
    tls = cfg.options.get("tls")
    if tls is not None and getattr(tls, "require_client_cert", False):
        return None
    host = _LOOPBACK.get(cfg.host, cfg.host)
    authority = f"[{host}]:{cfg.port}" if ":" in host else f"{host}:{cfg.port}"
    found = reachable(listener, authority)
    if found is None:
        return None
    host_header, path = found
    parts = ["curl", "-i"]
    if tls is not None:
        parts.append("-k")
    if host_header is not None:
        parts += ["-H", f"Host: {host_header}"]
    parts.append(f"{'https' if tls is not None else 'http'}://{authority}{path}")
    return " ".join(shlex.quote(p) for p in parts)


def reachable(listener, authority: str) -> tuple[str | None, str] | None:
    """(Host header or None for curl's own, path) of the first route a plain GET reaches."""
    table = listener.routes
    for vh in table.vhosts:
        for host_header in _hosts(vh.domains):
            if table.vhost_for(host_header or authority) is not vh:
                continue
            for route in vh.routes:
                action = route.action
                if isinstance(action, DirectResponse) and action.status >= 400:
                    continue
                path = _path(route)
                if path is not None and _picks(vh, route, host_header or authority, path, listener.config.name):
                    return host_header, path
            break           # one Host per vhost: the others reach the same routes
    return None


def _hosts(domains) -> list[str | None]:
    """Host headers that select a vhost with these domains: None (curl's own Host) for `*`."""
    out: list[str | None] = []
    for d in domains:
        if d == "*":
            out.append(None)
        elif d.startswith("*"):
            out.append("www" + d[1:] if d[1:].startswith(".") else "www." + d[1:])
        elif d.endswith("*"):
            out.append(d[:-1] + ("example" if d[:-1].endswith(".") else ".example"))
        else:
            out.append(d)
    return out


def _path(route) -> str | None:
    if route.path_exact is not None:
        return route.path_exact
    if route.path_prefix is not None:
        p = route.path_prefix
        return p if p.startswith("/") else None
    return "/"


def _picks(vh, route, host: str, path: str, listener: str) -> bool:
    req = RequestHead("GET", path, Headers([(b"host", host.encode("latin-1")),
                                            (b"user-agent", b"curl"), (b"accept", b"*/*")]))
    ctx = StreamContext(req, listener=listener, source=("127.0.0.1", 50000))
    try:
        return vh.match(ctx) is route
    except Exception:       # a guard that needs what a plain GET lacks: not this route
        return False
