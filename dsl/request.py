"""Requests as `mosnx explain` and `mosnx test` take them: curl-style, parsed strictly.

`'GET https://host/path?q'` (or a bare URL, a GET; or `'GET /path'` with a Host
header), headers as `name: value`, a source address with an optional port. Bad
input is a RequestError naming where it is (the argument or the test file), its
line and its 1-based column; nothing else escapes, whatever the text.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import urlsplit


class RequestError(Exception):
    """A request that cannot be parsed; `where` names the argument, `column` is 1-based."""

    def __init__(self, message: str, where: str = "request", column: int = 1, line: int = 1):
        super().__init__(message)
        self.message, self.where, self.column, self.line = message, where, column, line

    def __str__(self) -> str:
        return f"{self.where}:{self.line}:{self.column}: {self.message}"


METHOD = re.compile(r"[A-Z][A-Z0-9_-]*\Z")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


@dataclass
class Request:
    method: str = "GET"
    scheme: str = "http"
    host: str = ""
    target: str = "/"                      # path and query, as sent
    headers: list[tuple[str, str]] = field(default_factory=list)
    source: str = "127.0.0.1"
    source_port: int = 40000
    http2: bool = False

    def line(self) -> str:
        return f"{self.method} {self.scheme}://{self.host}{self.target}"


def parse_header(h: str, where: str = "-H", line: int = 1) -> tuple[str, str]:
    name, sep, value = h.partition(":")
    if not sep:
        raise RequestError(f'a header is "name: value", not {h!r}', where, 1, line)
    if not HEADER_NAME.match(name):
        raise RequestError(f"bad header name {name!r}", where, 1, line)
    value = value.strip()
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value) or not value.isascii() and \
            any(ord(c) > 255 for c in value):
        raise RequestError(f"bad character in the value of header {name!r}", where, len(name) + 2, line)
    return name.lower(), value


def parse_request(line: str, headers: Iterable[str] = (), source: str | None = None, http2: bool = False,
                  where: str = "request", at_line: int = 1) -> Request:
    """`GET https://host/path?q`, `https://host/path` (GET), or `GET /path` with a Host
    header; -H headers as `name: value`; --source an IP address, with an optional port."""
    if not isinstance(line, str) or not line.strip():
        raise RequestError("empty request: give METHOD URL, e.g. 'GET http://example.com/'", where, 1, at_line)
    stripped = line.strip()
    col0 = line.index(stripped[0]) + 1
    parts = stripped.split()
    if len(parts) > 2:
        raise RequestError("a request is METHOD URL (quote it as one argument)", where,
                           col0 + stripped.index(parts[2]), at_line)
    method, url = ("GET", parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    ucol = col0 + (stripped.index(url) if len(parts) == 2 else 0)
    if not METHOD.match(method):
        raise RequestError(f"bad method {method!r} (upper-case letters, e.g. GET)", where, col0, at_line)
    req = Request(method=method, http2=http2)
    for h in headers:
        req.headers.append(parse_header(h, "-H" if where == "request" else where, at_line))
    if url.startswith("/"):
        target = url
    else:
        if "://" not in url:
            raise RequestError(f"a URL is scheme://host/path or /path, not {url!r}", where, ucol, at_line)
        try:
            u = urlsplit(url)
            u.port      # raises on a bad port
        except ValueError as e:
            raise RequestError(f"bad URL {url!r}: {e}", where, ucol, at_line) from None
        if u.scheme not in ("http", "https"):
            raise RequestError(f"scheme must be http or https, not {u.scheme!r}", where, ucol, at_line)
        if not u.netloc or "@" in u.netloc:
            raise RequestError(f"URL {url!r} needs a host (and no user)", where, ucol, at_line)
        req.scheme, req.host = u.scheme, u.netloc
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        if u.fragment:
            raise RequestError("a URL sent to a proxy has no #fragment", where, ucol + url.index("#"), at_line)
    if any(ord(c) <= 32 or ord(c) >= 127 for c in target):
        raise RequestError("the path holds a space, control or non-ASCII character", where, ucol, at_line)
    req.target = target
    host_hdr = next((v for k, v in req.headers if k == "host"), None)
    if host_hdr is not None:
        req.host = host_hdr
        req.headers = [(k, v) for k, v in req.headers if k != "host"]
    if not req.host:
        raise RequestError("no host: give a full URL or -H 'host: NAME'", where, ucol, at_line)
    if source is not None:
        addr, port = source, req.source_port
        m = re.fullmatch(r"\[?([0-9a-fA-F:.]+?)\]?(?::(\d{1,5}))?", source)
        try:
            if m is None:
                raise ValueError
            addr = str(ipaddress.ip_address(m.group(1)))
            if m.group(2) and ":" not in m.group(1) or (m.group(2) and source.startswith("[")):
                port = int(m.group(2))
                if not 0 < port < 65536:
                    raise ValueError
        except ValueError:
            try:
                addr = str(ipaddress.ip_address(source))
            except ValueError:
                raise RequestError(f"--source must be an IP address, not {source!r}",
                                   "--source" if where == "request" else where, 1, at_line) from None
        req.source, req.source_port = addr, port
    return req


@dataclass
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
