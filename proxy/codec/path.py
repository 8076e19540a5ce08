"""Request-target normalisation: one canonical path before any routing or rule.

Sans-I/O and pure: a target string in, the target every later stage sees out (rules,
route tables, WASM properties, the access log, and the upstream), or a PathError.
What it does, in order, mirrors Envoy's `normalize_path`, `merge_slashes` and
`path_with_escaped_slashes_action` (and Istio's `pathNormalization`):

1. the form of the target: origin-form (`/p?q`); absolute-form (`http://host/p?q`)
   becomes origin-form and hands its authority back (the caller replaces Host, RFC
   9112 §3.2.2); `*` only for OPTIONS; authority-form only for CONNECT; else 400.
2. a control character, a space, a non-ASCII character or a `#` anywhere: 400.
3. percent-escapes (with `normalize`): an invalid one or `%00` is a 400; an
   unreserved character (RFC 3986 §2.3) is decoded (`%70` -> `p`, `%2e` -> `.`, so
   `%2e%2e` is a dot segment below); `%2F`/`%5C` follow `escaped_slashes`; every other
   escape is kept, with upper-case hex.
4. a raw backslash is a separator, as in Envoy (chromium's URL canonicaliser): `/`.
5. repeated slashes merge into one (with `merge_slashes`).
6. dot segments go (RFC 3986 §5.2.4; `..` at the root stays at the root, as RFC and
   Envoy both clamp); a `.` or `..` segment carrying `;` parameters (`/..;/`, Tomcat's
   traversal) is a 400, never a segment to pass on.

Invariants: the query (from the first `?`) is never changed; normalising an output
gives it back unchanged; anything else raises PathError, never another exception. A
target with none of `%`, `/.`, `//`, `\\`, `#`, space or control characters is
already canonical and is recognised by a few C-level string scans, unchanged.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mosnx.runtime.model import ESCAPED_SLASH_ACTIONS as ESCAPED_SLASHES

from ..fastpath import memo
from ..fastpath.memo import remember

if TYPE_CHECKING:
    from mosnx.runtime.model import PathNormalization

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?]*)(.*)", re.S)
_AUTHORITY_BAD = re.compile(r"[\s\\/@]")
_CONNECT_AUTHORITY = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}")
_SLASHES = re.compile(r"/{2,}")
# an escaped slash in keep mode that hides a dot segment from us but not from an
# upstream that decodes it: `..%2F`, `%2F..`, `.%5C`
_HIDDEN_DOT = re.compile(r"(?:%2F|%5C)\.\.?(?:/|%2F|%5C|$)|(?:^|/)\.\.?(?:%2F|%5C)", re.I)

TARGETS = memo.kind("path.target", 256, "request targets that are not already canonical, normalised (a table per path setting)")
_MEMO_TARGET = 2048


class PathError(Exception):
    """A target that must not be routed; `status` (400, or 307 for a redirect to
    `location`) and `detail` are what the client gets and the stats count."""

    def __init__(self, status: int, detail: str, location: str | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.location = location


class PathRedirect(PathError):
    """unescape_and_redirect: the client is sent to the unescaped path (307)."""

    def __init__(self, location: str):
        super().__init__(307, "path_redirect", location)


class PathNormalizer:
    """One configuration's normaliser. Shared by every listener with those settings
    (see `of`), so a memo keyed by it is shared only between equal settings."""

    __slots__ = ("normalize", "merge_slashes", "escaped_slashes", "_memo")

    def __init__(self, normalize: bool = True, merge_slashes: bool = True, escaped_slashes: str = "keep"):
        if escaped_slashes not in ESCAPED_SLASHES:
            raise ValueError(f"escaped_slashes: unknown action {escaped_slashes!r}")
        self.normalize = normalize
        self.merge_slashes = merge_slashes
        self.escaped_slashes = escaped_slashes
        self._memo: dict[str, tuple[str, str | None]] = TARGETS.table()    # canonical results of targets seen

    @staticmethod
    def of(settings: PathNormalization | None) -> "PathNormalizer":
        """The shared normaliser for settings with `normalize`, `merge_slashes` and
        `escaped_slashes` (the listener's path_normalization); None: the defaults.
        Taken once per connection (and again when its listener's config changes)."""
        value = (True, True, "keep") if settings is None else \
            (settings.normalize, settings.merge_slashes, settings.escaped_slashes)
        n = _SHARED.get(value)
        if n is None:
            n = _SHARED[value] = PathNormalizer(*value)
        return n

    def target(self, method: str, target: str) -> tuple[str, str | None]:
        """(the origin-form target, the authority of an absolute-form one or None)."""
        if target[:1] == "/" and target.isascii() and target.isprintable() and "%" not in target \
                and "/." not in target and "//" not in target and "\\" not in target \
                and "#" not in target and " " not in target:
            return target, None
        hit = self._memo.get(target)
        if hit is not None:
            TARGETS.hits += 1
            return hit
        out = self._slow(method, target)
        # what `*` and authority-form give depends on the method: not remembered
        if (target[:1] == "/" or out[1] is not None) and len(target) <= _MEMO_TARGET:
            remember(self._memo, TARGETS, target, out)
        return out

    def path(self, method: str, target: str) -> str:
        """A target that may only be origin-form or `*` (HTTP/2's :path)."""
        # (target's own test, repeated: one call less for every canonical :path)
        if target[:1] == "/" and target.isascii() and target.isprintable() and "%" not in target \
                and "/." not in target and "//" not in target and "\\" not in target \
                and "#" not in target and " " not in target:
            return target
        out, authority = self.target(method, target)
        if authority is not None:
            raise PathError(400, "invalid_request_target")
        return out

    # -- the slow path: anything that may need a change or a refusal --
    def _slow(self, method: str, target: str) -> tuple[str, str | None]:
        if not target.isascii() or not target.isprintable() or " " in target:
            raise PathError(400, "invalid_path_character")
        if "#" in target:
            raise PathError(400, "path_with_fragment")
        authority = None
        if target[:1] != "/":
            if target == "*":
                if method != "OPTIONS":
                    raise PathError(400, "invalid_request_target")
                return target, None
            if method == "CONNECT" and "://" not in target:
                if _CONNECT_AUTHORITY.fullmatch(target) is None:
                    raise PathError(400, "invalid_request_target")
                return target, None
            m = _ABSOLUTE.fullmatch(target)
            if m is None or m.group(1).lower() not in ("http", "https"):
                raise PathError(400, "invalid_request_target")
            authority, target = m.group(2), m.group(3)
            if "@" in authority:
                raise PathError(400, "userinfo_in_authority")
            if not authority or _AUTHORITY_BAD.search(authority) is not None:
                raise PathError(400, "invalid_request_target")
            if target[:1] != "/":
                target = "/" + target
        i = target.find("?")
        path, query = (target, "") if i < 0 else (target[:i], target[i:])
        new = self._path(path)
        if new is None:
            return target, authority
        if isinstance(new, tuple):
            raise PathRedirect(new[0] + query)
        return new + query, authority

    def _path(self, path: str) -> str | tuple[str] | None:
        """The canonical path; None when `path` is already canonical; (path,) when
        the client is to be redirected there."""
        original = path
        escaped = False
        action = self.escaped_slashes
        if "%" in path and (self.normalize or action != "keep"):
            path, escaped = self._unescape(path)
        if "\\" in path:
            if action == "reject":
                raise PathError(400, "backslash_in_path")
            if self.normalize:
                path = path.replace("\\", "/")
        if self.merge_slashes and "//" in path:
            path = _SLASHES.sub("/", path)
        if self.normalize and "/." in path:
            path = _remove_dot_segments(path)
        if action == "keep" and escaped and _HIDDEN_DOT.search(path) is not None:
            raise PathError(400, "escaped_slash_dot_segment")
        if escaped and action == "unescape_and_redirect":
            return (path,)
        return None if path == original else path

    def _unescape(self, path: str) -> tuple[str, bool]:
        """`path` with its escapes decoded or upper-cased as the settings say, and
        whether it held an escaped slash or backslash."""
        parts = path.split("%")
        out = [parts[0]]
        escaped = False
        action = self.escaped_slashes
        decode = self.normalize
        for p in parts[1:]:
            h = p[:2]
            if len(h) < 2 or h[0] not in _HEX or h[1] not in _HEX:
                raise PathError(400, "invalid_percent_encoding")
            c = chr(int(h, 16))
            if c == "/" or c == "\\":
                escaped = True
                if action == "reject":
                    raise PathError(400, "escaped_slash_in_path")
                if action != "keep":
                    out.append(c)
                    out.append(p[2:])
                    continue
            elif c == "\0":
                raise PathError(400, "encoded_nul_in_path")
            elif decode and c in _UNRESERVED:
                out.append(c)
                out.append(p[2:])
                continue
            out.append("%" + h.upper() if decode else "%" + h)
            out.append(p[2:])
        return "".join(out), escaped


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path; `..` at the root stays there. A `.` or
    `..` segment with `;` parameters is refused: Tomcat and others strip the
    parameters and then treat it as a dot segment."""
    segs = path.split("/")
    out: list[str] = []
    last = len(segs) - 1
    for i in range(1, last + 1):
        s = segs[i]
        if s == ".":
            if i == last:
                out.append("")
        elif s == "..":
            if out:
                out.pop()
            if i == last:
                out.append("")
        else:
            if ";" in s and s.partition(";")[0] in (".", ".."):
                raise PathError(400, "dot_segment_with_parameters")
            out.append(s)
    return "/" + "/".join(out)


# settings values -> the one normaliser for them (as many as distinct settings ever
# configured); id(settings object) -> (that object, its normaliser), bounded
_SHARED: dict[tuple, PathNormalizer] = {}
