"""Who may use the admin API: the checks every admin request passes before its handler.

The rules, in the order they are applied:
  1. Bound to loopback, the admin answers only requests whose Host names a loopback
     address (localhost, 127.0.0.0/8, ::1) or that have no Host: a web page whose
     name an attacker re-points at 127.0.0.1 (DNS rebinding) gets 403, not the config.
  2. With a token (admin.token_file), every endpoint but /ready needs
     `Authorization: Bearer <token>` (401 otherwise). /ready stays open for probes.
     The compare takes the same time whatever the guess.
  3. An endpoint that changes state (any method but GET/HEAD) refuses requests a
     browser marks as coming from another site: `Sec-Fetch-Site: cross-site` or
     `same-site`, or an Origin that is not the admin's own (`http://` + the Host it
     was reached by). Scripts send no Origin and pass.
Method checks (405 with Allow) are the router's, in admin.py.

Pure: headers in, a refusal or None out. The token is swapped in place on reload.
"""
from __future__ import annotations

import hmac
import ipaddress

from mosnx.runtime.config.admin import is_loopback
from mosnx.runtime.model import AdminConfig

OPEN_PATHS = frozenset({"/ready"})
CROSS_SITE = frozenset({"cross-site", "same-site"})
REALM = 'Bearer realm="mosnx admin"'

# Request headers the checks read; the admin keeps no others.
HEADERS = frozenset({b"host", b"origin", b"sec-fetch-site", b"authorization"})


class Refusal(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.headers = headers


class Access:
    """The admin's access policy for one bind address; `update` takes a reloaded config."""

    def __init__(self, host: str = "127.0.0.1", token: bytes | None = None):
        self.loopback_only = is_loopback(host)
        self.token = token

    @classmethod
    def of(cls, admin: AdminConfig) -> "Access":
        return cls(admin.host, admin.token.value if admin.token else None)

    def update(self, admin: AdminConfig) -> None:
        """A reload re-reads the token file; the address stays the one bound at start."""
        self.token = admin.token.value if admin.token else None

    def check(self, path: str, mutating: bool, headers: dict[bytes, bytes]) -> None:
        """Raise Refusal unless the request may go on to its handler."""
        host = headers.get(b"host")
        if self.loopback_only and host is not None and not _loopback_host(host):
            raise Refusal(403, "this admin answers only on a loopback address (Host: 127.0.0.1 or localhost)")
        if self.token is not None and path not in OPEN_PATHS and not self._authorized(headers):
            raise Refusal(401, "this admin needs Authorization: Bearer <token>", (("www-authenticate", REALM),))
        if mutating:
            site = headers.get(b"sec-fetch-site")
            if site is not None and site.strip().lower().decode("latin-1") in CROSS_SITE:
                raise Refusal(403, "cross-site request refused")
            origin = headers.get(b"origin")
            if origin is not None and (host is None or origin.strip().lower() != b"http://" + host.strip().lower()):
                raise Refusal(403, "cross-origin request refused: Origin is not this admin")

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, given = headers.get(b"authorization", b"").strip().partition(b" ")
        # compare_digest takes the same time for any guess of the token's length or bytes
        return (scheme.lower() == b"bearer" and self.token is not None
                and hmac.compare_digest(given.strip(), self.token))


def _loopback_host(host: bytes) -> bool:
    """A Host value (name or address, with an optional port) naming this machine's loopback."""
    text = host.strip().decode("latin-1").lower()
    if text.startswith("["):
        name = text[1:text.find("]")] if "]" in text else ""
    else:
        name = text.rpartition(":")[0] if ":" in text else text
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
