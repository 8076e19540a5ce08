"""The few Hessian 2 values the proxy reads or writes itself: strings, ints, a class definition.

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
            raw = b"".join(parts)
            try:
                text = raw.decode("utf-8", "surrogatepass")
                if b"\xed" in raw:         # surrogate halves, as Java writes a char above U+FFFF
                    text = text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "surrogatepass")
            except UnicodeDecodeError:
                raise HessianError("bad UTF-8 in a string") from None
            return text, pos


def read_int(buf: bytes | bytearray, pos: int) -> tuple[int, int]:
    """The int at pos (compact or 'I'), and the position after it."""
    try:
        code = buf[pos]
        if 0x80 <= code <= 0xBF:
            return code - 0x90, pos + 1
        if 0xC0 <= code <= 0xCF:
            return ((code - 0xC8) << 8) | buf[pos + 1], pos + 2
        if 0xD0 <= code <= 0xD7:
            return ((code - 0xD4) << 16) | (buf[pos + 1] << 8) | buf[pos + 2], pos + 3
        if code == 0x49:                        # 'I'
            if pos + 5 > len(buf):
                raise IndexError
            return int.from_bytes(buf[pos + 1:pos + 5], "big", signed=True), pos + 5
    except IndexError:
        raise HessianError("body ends inside an int") from None
    raise HessianError(f"expected an int, found byte 0x{code:02x}")


def read_class_def(buf: bytes | bytearray, pos: int) -> tuple[str, list[str], int]:
    """A class definition and the first instance of it: (class name, field names, position
    of the instance's first field). Both Hessian 2.0 ('C' name, then 'O' ref or 0x60+ref)
    and the draft that hessian.js writes ('O' length raw-name, then 'o' ref) are read."""
    if pos >= len(buf):
        raise HessianError("body ends where an object was expected")
    code = buf[pos]
    draft = code == 0x4F
    if code == 0x43:                            # 'C'
        name, pos = read_string(buf, pos + 1)
    elif code == 0x4F:                          # 'O': the draft's definition
        n, pos = read_int(buf, pos + 1)
        if n < 0:
            raise HessianError("a negative class name length")
        end = _utf8_span(buf, pos, n)
        name, pos = bytes(buf[pos:end]).decode("utf-8", "replace"), end
    else:
        raise HessianError(f"expected a class definition, found byte 0x{code:02x}")
    count, pos = read_int(buf, pos)
    if not 0 <= count <= 256:
        raise HessianError(f"a class of {count} fields")
    fields = []
    for _ in range(count):
        f, pos = read_string(buf, pos)
        fields.append(f or "")
    if pos >= len(buf):
        raise HessianError("body ends before the object")
    code = buf[pos]
    if code == (0x6F if draft else 0x4F):       # 'o' ref (draft), 'O' ref (2.0)
        _, pos = read_int(buf, pos + 1)
    elif 0x60 <= code <= 0x6F and not draft:    # 2.0's compact ref
        pos += 1
    else:
        raise HessianError(f"expected an object, found byte 0x{code:02x}")
    return name or "", fields, pos


def _java_utf8(units: bytes) -> bytes:
    """UTF-16 code units as Java's Hessian writes them: each unit (a surrogate half too) as UTF-8."""
    text = units.decode("utf-16-be", "surrogatepass")
    if len(text) * 2 == len(units):             # no pair: plain UTF-8
        return text.encode("utf-8", "surrogatepass")
    return "".join(chr(int.from_bytes(units[i:i + 2], "big")) for i in range(0, len(units), 2)) \
        .encode("utf-8", "surrogatepass")


def write_string(s: str) -> bytes:
    """s as one Hessian 2 string (chunked above 65535 code units); a char above U+FFFF is
    written as its two surrogate halves, as Java does."""
    out = bytearray()
    data = s.encode("utf-16-be", "surrogatepass")
    units = len(data) // 2
    start = 0
    while units - start > 0xFFFF:
        out += b"R\xff\xff" + _java_utf8(data[start * 2:(start + 0xFFFF) * 2])
        start += 0xFFFF
    rest = units - start
    text = _java_utf8(data[start * 2:])
    if rest <= 0x1F:
        out.append(rest)
    elif rest <= 0x3FF:
        out += bytes((0x30 + (rest >> 8), rest & 0xFF))
    else:
        out += b"S" + rest.to_bytes(2, "big")
    out += text
    return bytes(out)
