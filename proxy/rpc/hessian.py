"""The few Hessian 2 values the proxy reads or writes itself: strings, and skipping a null.

Routing needs only the leading strings of a Dubbo body (dubbo version, service path,
service version, method name), and a local reply needs one string (the error
message); everything else in a body passes through undecoded. Hessian counts a
string's length in UTF-16 code units, so a reader walks the UTF-8 bytes char by
char (a 4-byte UTF-8 sequence is two units). Any byte that is not a string (or a
null) where one is expected is a HessianError, never an IndexError.
"""
from __future__ import annotations


class HessianError(ValueError):
    pass


def _utf8_span(buf: bytes | bytearray, pos: int, units: int) -> int:
    """The end of `units` UTF-16 code units of UTF-8 starting at pos."""
    n = len(buf)
    while units > 0:
        if pos >= n:
            raise HessianError("string runs past the end of the body")
        b = buf[pos]
        if b < 0x80:
            pos += 1
            units -= 1
        elif b >= 0xF0:
            pos += 4
            units -= 2
        elif b >= 0xE0:
            pos += 3
            units -= 1
        elif b >= 0xC0:
            pos += 2
            units -= 1
        else:
            raise HessianError("bad UTF-8 in a string")
    if pos > n:
        raise HessianError("string runs past the end of the body")
    return pos


def read_string(buf: bytes | bytearray, pos: int) -> tuple[str | None, int]:
    """The string (or null) at pos, and the position after it."""
    parts: list[bytes] = []
    while True:
        if pos >= len(buf):
            raise HessianError("body ends where a string was expected")
        code = buf[pos]
        if code == 0x4E and not parts:          # 'N'
            return None, pos + 1
        if code <= 0x1F:                        # compact: length in the code
            units, start, final = code, pos + 1, True
        elif 0x30 <= code <= 0x33:              # medium: 10-bit length
            if pos + 1 >= len(buf):
                raise HessianError("body ends inside a string length")
            units, start, final = ((code - 0x30) << 8) | buf[pos + 1], pos + 2, True
        elif code in (0x53, 0x52):              # 'S' final chunk, 'R' one more follows
            if pos + 2 >= len(buf):
                raise HessianError("body ends inside a string length")
            units, start, final = (buf[pos + 1] << 8) | buf[pos + 2], pos + 3, code == 0x53
        else:
            raise HessianError(f"expected a string, found byte 0x{code:02x}")
        end = _utf8_span(buf, start, units)
        parts.append(bytes(buf[start:end]))
        pos = end
        if final:
            try:
                return b"".join(parts).decode("utf-8", "surrogatepass"), pos
            except UnicodeDecodeError:
                raise HessianError("bad UTF-8 in a string") from None


def write_string(s: str) -> bytes:
    """s as one Hessian 2 string (chunked above 65535 code units)."""
    out = bytearray()
    data = s.encode("utf-16-be", "surrogatepass")
    units = len(data) // 2
    start = 0
    while units - start > 0xFFFF:
        chunk = data[start * 2:(start + 0xFFFF) * 2].decode("utf-16-be", "surrogatepass")
        out += b"R\xff\xff" + chunk.encode("utf-8", "surrogatepass")
        start += 0xFFFF
    rest = units - start
    text = data[start * 2:].decode("utf-16-be", "surrogatepass").encode("utf-8", "surrogatepass")
    if rest <= 0x1F:
        out.append(rest)
    elif rest <= 0x3FF:
        out += bytes((0x30 + (rest >> 8), rest & 0xFF))
    else:
        out += b"S" + rest.to_bytes(2, "big")
    out += text
    return bytes(out)
