"""Envoy's URI path templates (envoy.extensions.path.match.uri_template.v3): a template
such as `/v1/{shelf}/books/{book=**}` as the regex a path must fully match.

Pure: template in, pattern text out, or ValueError for a template Envoy refuses.
`*` is one path segment, `**` any number of segments (no operator may follow it),
`{name}` one segment, `{name=a/*}` what its own pattern says; literals are RFC 3986
path characters; after the last operator a suffix may follow in the same segment
(`/api/*.json`). Istio writes AuthorizationPolicy paths with `{*}` and `{**}` into
these templates.
"""
from __future__ import annotations

import re

# RFC 3986 pchar less '*' and '=' (the operators): what one path segment may hold
_PCHAR = r"a-zA-Z0-9\-._~%!$&'()+,;:@"
_SEGMENT, _SEGMENTS = f"[{_PCHAR}]+", f"[{_PCHAR}/]*"
_LITERAL = re.compile(f"[{_PCHAR}]+")
_VARIABLE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")


def template_regex(template: str) -> str:
    """The regex of Envoy's path template (`/a/*/b`, `/{**}/x`, `/v1/{name=shelves/*}`): `*` is one
    segment, `**` any number of segments (no operator may follow it), `{name}` one segment,
    `{name=...}` what its own pattern says. Raises ValueError for a template Envoy refuses."""
    if not re.fullmatch(r"/[\x21-\x7e]*", template):
        raise ValueError("a path template starts with / and holds printable characters only")
    rest = template[1:]
    parts: list[str] = []
    text_glob = False
    names: set[str] = set()

    def glob(op: str) -> str:
        nonlocal text_glob
        if text_glob:
            raise ValueError("no operator may follow **")
        text_glob = op == "**"
        return _SEGMENTS if op == "**" else _SEGMENT

    def literal(s: str) -> str:
        if not _LITERAL.fullmatch(s):
            raise ValueError(f"{s!r} is not a valid path literal")
        return re.escape(s)

    suffix = ""
    while rest:
        if rest.startswith("**"):
            parts.append(glob("**"))
            rest = rest[2:]
        elif rest.startswith("*"):
            parts.append(glob("*"))
            rest = rest[1:]
        elif rest.startswith("{"):
            end = rest.find("}")
            if end < 0:
                raise ValueError("unmatched { in the path template")
            name, eq, inner = rest[1:end].partition("=")
            if not _VARIABLE.fullmatch(name) or len(name) > 16:
                raise ValueError(f"bad variable name {name!r}")
            if name in names:
                raise ValueError(f"variable {name!r} repeated")
            names.add(name)
            if eq and not inner:
                raise ValueError(f"variable {name!r} has an empty pattern")
            sub = [glob(s) if s in ("*", "**") else literal(s) for s in inner.split("/")] if eq else [glob("*")]
            parts.append("(?:" + "/".join(sub) + ")")
            rest = rest[end + 1:]
        else:
            seg, _, _ = rest.partition("/")
            parts.append(literal(seg))
            rest = rest[len(seg):]
        if not rest:
            break
        if rest == "/":
            parts.append("")
            break
        if rest[0] == "/":
            rest = rest[1:]
            continue
        seg = rest
        if "/" in seg:
            raise ValueError("a suffix after an operator cannot hold /")
        suffix = literal(seg)
        break
    if len(names) > 5:
        raise ValueError("at most 5 variables in a path template")
    return "/" + "/".join(parts) + suffix
