"""Scalar types: strings, numbers, booleans, and mosnx.yaml's durations, sizes,
addresses and file paths.

A scalar is parsed from the node, then passed through its validators; a
ValueError from either is reported at the node as a bad value. Relative file
paths are resolved against the config file's folder here, once, so the model
only ever holds absolute paths.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable

from yaml.nodes import Node, ScalarNode

from .. import attributes
from ..diagnostics import did_you_mean
from .reader import BAD_VALUE, NO_SUCH_FILE, KeyPath, Reader, dotted
from .schema import INVALID, Type
from .units import ADDRESS_HINT, DURATION_HINT, SIZE_HINT, parse_address, parse_duration, parse_size

Validator = Callable[[Any], None]          # raises ValueError with a message for the user


class Scalar(Type):
    """A scalar of one of `tags` (YAML core schema names), parsed then validated."""
    tags: frozenset[str] = frozenset({"str", "int", "float", "bool"})

    def __init__(self, *validators: Validator, label: str | None = None):
        self.validators = validators
        if label:
            self.label = label

    def parse(self, node: ScalarNode, r: Reader) -> Any:
        return node.value

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        if not isinstance(node, ScalarNode) or node.tag.rsplit(":", 1)[-1] not in self.tags:
            return self.wrong_type(node, r, path)
        try:
            value = self.parse(node, r)
            for v in self.validators:
                v(value)
        except ValueError as e:
            r.error(node, BAD_VALUE, f"{dotted(path)}: {e}")
            return INVALID
        return value


class Str(Scalar):
    """Any scalar, taken as written: `name: 8080` is the string "8080"."""
    label = "a string"
    name = "string"

    def __init__(self, *validators: Validator, empty: bool = False, label: str | None = None):
        super().__init__(*validators, label=label)
        self.empty = empty

    def parse(self, node: ScalarNode, r: Reader) -> Any:
        if node.value == "" and not self.empty:
            raise ValueError("must not be empty")
        return node.value


class Enum(Str):
    def __init__(self, *choices: str):
        super().__init__()
        self.choices = choices
        self.label = "one of " + ", ".join(choices)
        self.name = " | ".join(choices)

    def parse(self, node: ScalarNode, r: Reader) -> Any:
        if node.value not in self.choices:
            raise ValueError(f'unknown value "{node.value}"' + did_you_mean(node.value, self.choices)
                             + f"; expected {self.label}")
        return node.value


class Bool(Scalar):
    tags = frozenset({"bool"})
    label = "true or false"
    name = "bool"

    def parse(self, node: ScalarNode, r: Reader) -> Any:
        return r.data(node)


class Int(Scalar):
    tags = frozenset({"int"})
    label = "a whole number"
    name = "int"

    def __init__(self, low: int | None = None, high: int | None = None, *validators: Validator):
        super().__init__(*validators)
        self.low, self.high = low, high

    def parse(self, node: ScalarNode, r: Reader) -> Any:
        return _in_range(r.data(node), self.low, self.high)


class Number(Int):
    tags = frozenset({"int", "float"})
    label = "a number"
    name = "number"

    def parse(self, node: ScalarNode, r: Reader) -> Any:
        v = r.data(node)
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"{node.value} is not a finite number")
        return float(_in_range(v, self.low, self.high))


def _in_range(v: Any, lo: Any, hi: Any) -> Any:
    if lo is not None and v < lo:
        raise ValueError(f"{v} is below the minimum {lo}")
    if hi is not None and v > hi:
        raise ValueError(f"{v} is above the maximum {hi}")
    return v


class Duration(Scalar):
    """Seconds as a float. `zero_is_none`: 0 means "no limit" and is kept as None."""
    tags = frozenset({"str", "int", "float"})
    label = DURATION_HINT
    name = "duration"

    def __init__(self, positive: bool = False, zero_is_none: bool = False):
        super().__init__()
        self.positive = positive
        self.zero_is_none = zero_is_none

    def parse(self, node: ScalarNode, r: Reader) -> Any:
        v = parse_duration(node.value if node.tag.endswith(":str") else r.data(node))
        if v == 0 and self.positive:
            raise ValueError("must be longer than 0")
        return None if v == 0 and self.zero_is_none else v


class Size(Scalar):
    """Bytes as an int."""
    tags = frozenset({"str", "int", "float"})
    label = SIZE_HINT
    name = "size"

    def __init__(self, positive: bool = False):
        super().__init__()
        self.positive = positive

    def parse(self, node: ScalarNode, r: Reader) -> Any:
        v = parse_size(node.value if node.tag.endswith(":str") else r.data(node))
        if v == 0 and self.positive:
            raise ValueError("must be more than 0 bytes")
        return v


class Address(Scalar):
    """(host, port)."""
    tags = frozenset({"str"})
    label = ADDRESS_HINT
    name = "host:port"

    def parse(self, node: ScalarNode, r: Reader) -> Any:
        return parse_address(node.value)


class FilePath(Str):
    """An absolute path, resolved against the config's folder. `keep` names pass as they
    are (stdout, stderr); `must_exist` reports a missing file or folder at its value."""
    label = "a file path"
    name = "path"

    def __init__(self, must_exist: bool = False, keep: tuple[str, ...] = ()):
        super().__init__()
        self.must_exist = must_exist
        self.keep = keep

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        v = super().convert(node, r, path)
        if v is INVALID or v in self.keep:
            return v
        full = os.path.normpath(os.path.join(r.base_dir, os.path.expanduser(v)))
        if self.must_exist and not os.path.exists(full):
            r.error(node, NO_SUCH_FILE, f'{dotted(path)}: no such file or folder "{v}" (looked for {full})')
            return INVALID
        return full


def attribute_reference(ref: str) -> None:
    """A reference such as request.headers["x-user"], checked against the attribute table."""
    name, key = attributes.parse_reference(ref)
    attr = attributes.ATTRIBUTES.get(name)
    if attr is None:
        raise ValueError(f'unknown attribute "{name}"' + did_you_mean(name, attributes.ATTRIBUTES))
    if attr.keyed is not None and not key:
        raise ValueError(f'{name} needs a key, as {name}["..."]')
    if attr.keyed is None and key is not None:
        raise ValueError(f"{name} takes no key")


def regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"bad regular expression: {e}") from None
