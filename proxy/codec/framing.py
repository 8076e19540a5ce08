"""Message framing fields shared by the codecs: the one Content-Length parser.

Invariants: a Content-Length is accepted only as RFC 9110 §8.6 writes it, 1*DIGIT
(ASCII digits, no sign, no white space inside, no `_`, no other number syntax
Python's int() would take), at most 2**63 - 1; a comma-separated list is accepted
only when every member is such a number and all are the same number (§8.6: a
recipient may take "42, 42" as 42, and must refuse members that differ, RFC 9112
§6.3 item 5). Several field lines are one list (RFC 9110 §5.3). Anything else
raises ContentLengthError, which callers turn into their own protocol error.
Pure: no I/O, no state.
"""
from __future__ import annotations

from collections.abc import Iterable

MAX_CONTENT_LENGTH = (1 << 63) - 1
_MAX_DIGITS = len(str(MAX_CONTENT_LENGTH))


class ContentLengthError(ValueError):
    """A Content-Length value that does not frame a message."""


def content_length(value: bytes) -> int:
    """The body length one Content-Length field value announces."""
    # bytes.isdigit() is ASCII digits only and False for b"": the common case, one call
    if value.isdigit() and len(value) <= _MAX_DIGITS:
        n = int(value)
        if n <= MAX_CONTENT_LENGTH:
            return n
        raise ContentLengthError("Content-Length too large")
    return _list_value(value)


def content_length_of(values: Iterable[bytes]) -> int | None:
    """The body length several Content-Length field lines announce (None for none):
    as one list, every member the same number."""
    n = None
    for v in values:
        m = content_length(v)
        if n is not None and m != n:
            raise ContentLengthError("Content-Length values differ")
        n = m
    return n


def _list_value(value: bytes) -> int:
    if b"," not in value:
        raise ContentLengthError("Content-Length is not a number")
    n = -1
    for member in value.split(b","):
        # only the list's own optional white space (OWS: SP / HTAB) around a member
        digits = member.strip(b" \t")
        if not digits.isdigit() or len(digits) > _MAX_DIGITS:
            raise ContentLengthError("Content-Length is not a number")
        m = int(digits)
        if m > MAX_CONTENT_LENGTH:
            raise ContentLengthError("Content-Length too large")
        if n >= 0 and m != n:
            raise ContentLengthError("Content-Length values differ")
        n = m
    return n
