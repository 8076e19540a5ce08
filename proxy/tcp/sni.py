"""Server name (and ALPN offer) from a TLS ClientHello, without terminating TLS.

Sans-I/O: bytes in, a verdict out. Only the first handshake message is read, across
as many TLS records as it spans (a post-quantum key share can push a ClientHello past
one record); nothing is decrypted, nothing is kept.
"""
from __future__ import annotations

NEED_MORE = object()          # the ClientHello is not complete yet
MAX_HELLO = 64 * 1024         # beyond this it is not a ClientHello worth waiting for


def parse_sni(data: bytes):
    """NEED_MORE, the server name (lower-case str), or None (not TLS, or no SNI)."""
    body = _hello_body(data)
    if body is NEED_MORE or body is None:
        return body
    return _hello_sni(body)


def parse_hello(data: bytes):
    """NEED_MORE, None (not a TLS ClientHello), or (server name or None, the ALPN
    protocols offered, in the client's order): what Envoy's tls_inspector learns."""
    body = _hello_body(data)
    if body is NEED_MORE or body is None:
        return body
    return _hello_sni(body), _hello_alpn(body)


def _hello_body(data: bytes):
    """NEED_MORE, None, or the ClientHello's body (after its 4-byte header)."""
    hs = bytearray()
    off = 0
    n = len(data)
    need = -1
    while True:
        if n - off < 5:
            return NEED_MORE if n < MAX_HELLO else None
        if data[off] != 0x16 or data[off + 1] != 0x03:
            return None
        rlen = (data[off + 3] << 8) | data[off + 4]
        if n - off - 5 < rlen:
            return NEED_MORE if n < MAX_HELLO else None
        hs += data[off + 5:off + 5 + rlen]
        off += 5 + rlen
        if need < 0 and len(hs) >= 4:
            if hs[0] != 0x01:
                return None
            need = 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])
            if need > MAX_HELLO:
                return None
        if need >= 0 and len(hs) >= need:
            return bytes(hs[4:need])


def _extensions(h: bytes):
    """(type, body) of each ClientHello extension; stops at a malformed one."""
    p = 2 + 32                                   # client_version, random
    p += 1 + h[p]                                # session id
    p += 2 + ((h[p] << 8) | h[p + 1])            # cipher suites
    p += 1 + h[p]                                # compression methods
    if p + 2 > len(h):
        return
    end = min(len(h), p + 2 + ((h[p] << 8) | h[p + 1]))
    p += 2
    while p + 4 <= end:
        etype = (h[p] << 8) | h[p + 1]
        elen = (h[p + 2] << 8) | h[p + 3]
        p += 4
        yield etype, h[p:p + elen]
        p += elen


def _hello_alpn(h: bytes) -> tuple[str, ...]:
    try:
        for etype, ext in _extensions(h):
            if etype == 16:                          # application_layer_protocol_negotiation
                out = []
                q = 2
                stop = min(len(ext), 2 + ((ext[0] << 8) | ext[1]))
                while q < stop:
                    n = ext[q]
                    out.append(ext[q + 1:q + 1 + n].decode("ascii"))
                    q += 1 + n
                return tuple(out)
    except (IndexError, UnicodeDecodeError):
        return ()
    return ()


def _hello_sni(h: bytes):
    try:
        p = 2 + 32                                   # client_version, random
        p += 1 + h[p]                                # session id
        p += 2 + ((h[p] << 8) | h[p + 1])            # cipher suites
        p += 1 + h[p]                                # compression methods
        if p + 2 > len(h):
            return None
        end = p + 2 + ((h[p] << 8) | h[p + 1])
        p += 2
        while p + 4 <= end:
            etype = (h[p] << 8) | h[p + 1]
            elen = (h[p + 2] << 8) | h[p + 3]
            p += 4
            if etype == 0:                           # server_name
                q = p + 2
                stop = p + elen
                while q + 3 <= stop:
                    ntype = h[q]
                    nlen = (h[q + 1] << 8) | h[q + 2]
                    q += 3
                    if ntype == 0:
                        return h[q:q + nlen].decode("ascii").lower()
                    q += nlen
                return None
            p += elen
    except (IndexError, UnicodeDecodeError):
        return None
    return None


def match_route(routes, name: str | None):
    """The cluster of the first route whose server_names take `name` (exact before wildcard)."""
    if not name:
        return None
    for r in routes:
        for pattern in r.server_names:
            if pattern.lower() == name:
                return r.cluster
    for r in routes:
        for pattern in r.server_names:
            if pattern.startswith("*.") and name.endswith(pattern[1:].lower()) and "." not in name[:-len(pattern) + 1]:
                return r.cluster
    return None
