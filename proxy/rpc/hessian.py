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


# ---------------------------------------------------------------- skipping whole values
# A Dubbo request's attachments come after its arguments, which may be any Hessian
# value: to reach them the reader steps over values without building them. Only
# their extent is computed; class definitions are remembered by field count, since
# an object's length depends on the definition it refers to.

MAX_DEPTH = 64          # nesting deeper than this is refused, not recursed into

# bytes that follow a one-byte code: the value's fixed extent, by code
_FIXED: dict[int, int] = {0x44: 8, 0x46: 0, 0x49: 4, 0x4A: 8, 0x4B: 4, 0x4C: 8, 0x4E: 0, 0x54: 0,
                          0x59: 4, 0x5B: 0, 0x5C: 0, 0x5D: 1, 0x5E: 2, 0x5F: 4}
for _c in range(0x38, 0x40):    # 3-byte long
    _FIXED[_c] = 2
for _c in range(0x80, 0xC0):    # 1-byte int
    _FIXED[_c] = 0
for _c in range(0xC0, 0xD0):    # 2-byte int
    _FIXED[_c] = 1
for _c in range(0xD0, 0xD8):    # 3-byte int
    _FIXED[_c] = 2
for _c in range(0xD8, 0xF0):    # 1-byte long
    _FIXED[_c] = 0
for _c in range(0xF0, 0x100):   # 2-byte long
    _FIXED[_c] = 1
del _c


class Skipper:
    """Steps over Hessian 2 values in one buffer, keeping the class definitions met
    (their field counts) so that objects after them can be stepped over too."""

    __slots__ = ("buf", "classes")

    def __init__(self, buf: bytes | bytearray):
        self.buf = buf
        self.classes: list[int] = []

    def skip(self, pos: int, depth: int = 0) -> int:
        """The position after the value at pos."""
        buf = self.buf
        n = len(buf)
        if depth > MAX_DEPTH:
            raise HessianError(f"values nested deeper than {MAX_DEPTH}")
        while True:
            if pos >= n:
                raise HessianError("body ends where a value was expected")
            code = buf[pos]
            if code != 0x43:                    # a class definition precedes the value it serves
                break
            name, pos = read_string(buf, pos + 1)
            count, pos = read_int(buf, pos)
            if not 0 <= count <= 4096:
                raise HessianError(f"a class of {count} fields")
            for _ in range(count):
                _, pos = read_string(buf, pos)
            self.classes.append(count)
        fixed = _FIXED.get(code)
        if fixed is not None:
            end = pos + 1 + fixed
        elif code <= 0x1F or 0x30 <= code <= 0x33 or code in (0x52, 0x53):
            return read_string(buf, pos)[1]
        elif code <= 0x2F:                      # compact binary
            end = pos + 1 + (code - 0x20)
        elif code <= 0x37:                      # medium binary
            if pos + 1 >= n:
                raise HessianError("body ends inside a binary length")
            end = pos + 2 + (((code - 0x34) << 8) | buf[pos + 1])
        elif code in (0x41, 0x42):              # binary chunks: 'A' more follow, 'B' the last
            while True:
                if pos + 3 > n:
                    raise HessianError("body ends inside a binary length")
                end = pos + 3 + ((buf[pos + 1] << 8) | buf[pos + 2])
                if buf[pos] == 0x42:
                    break
                pos = end
                if pos >= n or buf[pos] not in (0x41, 0x42):
                    raise HessianError("a binary chunk is not followed by another")
        elif code == 0x48:                      # untyped map until 'Z'
            return self._pairs(pos + 1, depth)
        elif code == 0x4D:                      # typed map: type, then pairs until 'Z'
            return self._pairs(self._type(pos + 1), depth)
        elif code == 0x4F or 0x60 <= code <= 0x6F:   # object: a class ref, then its fields
            if code == 0x4F:
                ref, pos = read_int(buf, pos + 1)
            else:
                ref, pos = code - 0x60, pos + 1
            if not 0 <= ref < len(self.classes):
                raise HessianError(f"an object of undefined class {ref}")
            return self._values(pos, self.classes[ref], depth)
        elif code == 0x51:                      # a reference to an earlier value
            return read_int(buf, pos + 1)[1]
        elif code == 0x55:                      # typed list until 'Z'
            return self._until_end(self._type(pos + 1), depth)
        elif code == 0x56:                      # typed list of a given length
            count, pos = read_int(buf, self._type(pos + 1))
            return self._values(pos, count, depth)
        elif code == 0x57:                      # untyped list until 'Z'
            return self._until_end(pos + 1, depth)
        elif code == 0x58:                      # untyped list of a given length
            count, pos = read_int(buf, pos + 1)
            return self._values(pos, count, depth)
        elif 0x70 <= code <= 0x77:              # compact typed list
            return self._values(self._type(pos + 1), code - 0x70, depth)
        elif 0x78 <= code <= 0x7F:              # compact untyped list
            return self._values(pos + 1, code - 0x78, depth)
        else:
            raise HessianError(f"byte 0x{code:02x} does not start a value")
        if end > n:
            raise HessianError("body ends inside a value")
        return end

    def _type(self, pos: int) -> int:
        """After a list's or map's type: a string, or an int referring to an earlier type."""
        if pos < len(self.buf) and (self.buf[pos] <= 0x1F or 0x30 <= self.buf[pos] <= 0x33
                                    or self.buf[pos] in (0x52, 0x53)):
            return read_string(self.buf, pos)[1]
        return read_int(self.buf, pos)[1]

    def _values(self, pos: int, count: int, depth: int) -> int:
        if count < 0:
            raise HessianError("a negative length")
        for _ in range(count):
            pos = self.skip(pos, depth + 1)
        return pos

    def _until_end(self, pos: int, depth: int) -> int:
        buf = self.buf
        while True:
            if pos >= len(buf):
                raise HessianError("body ends inside a list")
            if buf[pos] == 0x5A:
                return pos + 1
            pos = self.skip(pos, depth + 1)

    def _pairs(self, pos: int, depth: int) -> int:
        buf = self.buf
        while True:
            if pos >= len(buf):
                raise HessianError("body ends inside a map")
            if buf[pos] == 0x5A:
                return pos + 1
            pos = self.skip(self.skip(pos, depth + 1), depth + 1)

    def string_map(self, pos: int) -> tuple[dict[str, str], int, int]:
        """The map at pos (untyped 'H', typed 'M', or null 'N' as empty): its entries whose
        key and value are both strings, the position of its closing 'Z' (of the 'N'
        for null), and the position after it. Entries of other kinds are stepped over."""
        buf = self.buf
        if pos >= len(buf):
            raise HessianError("body ends where a map was expected")
        code = buf[pos]
        if code == 0x4E:
            return {}, pos, pos + 1
        if code == 0x48:
            pos += 1
        elif code == 0x4D:
            pos = self._type(pos + 1)
        else:
            raise HessianError(f"expected a map, found byte 0x{code:02x}")
        out: dict[str, str] = {}
        while True:
            if pos >= len(buf):
                raise HessianError("body ends inside a map")
            if buf[pos] == 0x5A:
                return out, pos, pos + 1
            key: str | None = None
            if _is_string(buf[pos]):
                key, pos = read_string(buf, pos)
            else:
                pos = self.skip(pos, 1)
            if pos < len(buf) and _is_string(buf[pos]) and key is not None:
                value, pos = read_string(buf, pos)
                out[key] = value or ""
            else:
                pos = self.skip(pos, 1)


def _is_string(code: int) -> bool:
    return code <= 0x1F or 0x30 <= code <= 0x33 or code in (0x52, 0x53)


def arg_count(desc: str) -> int:
    """Arguments in a JVM parameter descriptor ("Ljava/lang/String;I[J" is 3)."""
    n, i, size = 0, 0, len(desc)
    while i < size:
        while i < size and desc[i] == "[":
            i += 1
        if i >= size:
            raise HessianError(f"a parameter descriptor ends inside an array type: {desc!r}")
        if desc[i] == "L":
            j = desc.find(";", i)
            if j < 0:
                raise HessianError(f"a parameter descriptor's class name has no ';': {desc!r}")
            i = j + 1
        elif desc[i] in "ZBCSIJFDV":
            i += 1
        else:
            raise HessianError(f"not a parameter descriptor: {desc!r}")
        n += 1
    return n
