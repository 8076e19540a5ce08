"""The admin API's access settings: the bearer token file, and whether the address
exposes the admin beyond this host.

The token is read here, when the config is loaded, so a missing, unreadable or
empty file is a config finding at the `token_file` value, like any other, and the
running proxy only ever holds a token that passed. The value is kept as bytes in
an AdminToken, whose repr hides it.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from yaml.nodes import Node

from ..diagnostics import Diagnostic
from ..model import AdminConfig, AdminToken
from .reader import BAD_VALUE, KeyPath, Reader, dotted
from .scalars import FilePath
from .schema import INVALID

EXPOSED = "C401"          # warning: the admin listens beyond loopback with no token

# RFC 6750's b64token: what can follow "Bearer " in an Authorization header.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MAX_TOKEN = 4096


class TokenFile(FilePath):
    """A file holding one bearer token; surrounding whitespace (a final newline) is dropped."""
    label = "a file path"
    name = "path"

    def __init__(self) -> None:
        super().__init__(must_exist=True)

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        full = super().convert(node, r, path)
        if full is INVALID:
            return full
        try:
            with open(full, "rb") as f:
                raw = f.read(MAX_TOKEN + 1)
        except OSError as e:
            r.error(node, BAD_VALUE, f'{dotted(path)}: cannot read "{full}": {e.strerror or e}')
            return INVALID
        token = raw.strip()
        problem = _problem(token)
        if problem:
            r.error(node, BAD_VALUE, f'{dotted(path)}: "{full}" {problem}')
            return INVALID
        return AdminToken(full, token)


def _problem(token: bytes) -> str | None:
    if not token:
        return "is empty: write the token in it (for example: openssl rand -hex 32 > FILE)"
    if len(token) > MAX_TOKEN:
        return f"holds more than {MAX_TOKEN} bytes: it should hold one token"
    try:
        text = token.decode("ascii")
    except UnicodeDecodeError:
        return "holds bytes that cannot be sent in an Authorization header (use letters, digits, -._~+/)"
    if not _B64TOKEN.fullmatch(text):
        return "holds characters that cannot follow \"Bearer \" (use one line of letters, digits, -._~+/)"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False       # a host name, or a wildcard such as 0.0.0.0


def exposure(admin: AdminConfig | None) -> Diagnostic | None:
    """A warning when the admin listens beyond loopback and asks for no token."""
    if admin is None or admin.token is not None or is_loopback(admin.host):
        return None
    where = f"[{admin.host}]:{admin.port}" if ":" in admin.host else f"{admin.host}:{admin.port}"
    return Diagnostic(admin.span, EXPOSED,
                      f"the admin API listens on {where}, beyond this host, with no token: anyone "
                      "who can reach it can read the configuration and stats and reload the proxy; "
                      "set admin.token_file, or listen on 127.0.0.1", severity="warning")
