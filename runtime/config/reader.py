"""The Reader: one YAML document as position-carrying nodes, and the findings about it.

It owns the node-position map (a key path such as ("listeners", 0, "route",
"cluster") -> Span), the diagnostics collected so far, and the names declared and
referenced while the schema walks the document, so cross-references are checked
once the whole document has been seen. It never raises for a problem in the
document: it records a Diagnostic and lets the walk go on, so every finding is
reported at once.
"""
from __future__ import annotations

import difflib
import os
import re
from typing import Any, Iterable, Iterator, Union

import yaml
from yaml.composer import ComposerError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..diagnostics import Diagnostic, Span, did_you_mean

KeyPath = tuple[Union[str, int], ...]

MERGE_TAG = "tag:yaml.org,2002:merge"
NULL_TAG = "tag:yaml.org,2002:null"

# Codes of configuration findings; cross-reference codes start at C101.
YAML_SYNTAX = "C001"
UNKNOWN_KEY = "C002"
WRONG_TYPE = "C003"
BAD_VALUE = "C004"
MISSING = "C005"
DUPLICATE = "C006"
NO_SUCH_FILE = "C007"
UNKNOWN_REFERENCE = {"cluster": "C101"}

# what PyYAML counts as one line break when it marks a position
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


# deeper than any config, and shallow enough for PyYAML's recursive composer and
# constructor, and the schema walk, to stay well inside Python's recursion limit
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """SafeLoader refusing nesting deeper than MAX_DEPTH with a positioned error,
    where PyYAML would exhaust the stack (RecursionError)."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _contains_itself(root: Node) -> Node | None:
    """A node that an alias makes its own descendant (`&a [*a]`), or None."""
    open_: set[int] = set()      # on the current path
    done: set[int] = set()
    stack = [(root, iter(_children(root)))]
    open_.add(id(root))
    while stack:
        node, rest = stack[-1]
        child = next(rest, None)
        if child is None:
            stack.pop()
            open_.discard(id(node))
            done.add(id(node))
        elif id(child) in open_:
            return child
        elif id(child) not in done:
            open_.add(id(child))
            stack.append((child, iter(_children(child))))
    return None


def kind_of(node: Node) -> str:
    """What a YAML user calls the node: a mapping, a list or a scalar's type."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    return {"str": f'"{node.value}"', "null": "nothing (null)", "bool": f"{node.value} (a boolean)",
            "int": f"{node.value} (a number)", "float": f"{node.value} (a number)"}.get(tag, str(node.value))


def is_null(node: Node | None) -> bool:
    return node is None or (isinstance(node, ScalarNode) and node.tag == NULL_TAG)


def dotted(path: KeyPath) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "the document"


class Reader:
    def __init__(self, text: str, path: str):
        self.text = text
        self.path = path
        self.lines = _LINE_BREAK.split(text)    # YAML's line breaks, as its marks count them
        self.named = not (path.startswith("<") and path.endswith(">"))   # "<string>" is no file
        # relative paths in the config are relative to the config file's folder
        self.base_dir = os.path.dirname(os.path.abspath(path)) if self.named else os.getcwd()
        self.diagnostics: list[Diagnostic] = []
        self.positions: dict[KeyPath, Span] = {}
        self.declared: dict[str, dict[Any, KeyPath]] = {}
        self.references: list[tuple[str, str, Span]] = []
        self._constructor = SafeConstructor()

    # -- positions and findings --
    def span(self, node: Node) -> Span:
        s, e = node.start_mark, node.end_mark
        return Span(self.path, s.line + 1, s.column + 1, e.line + 1, e.column + 1)

    def mark_span(self, mark: yaml.Mark) -> Span:
        return Span(self.path, mark.line + 1, mark.column + 1)

    def index_span(self, index: int) -> Span:
        """The position of text[index], with lines counted as YAML's marks count them."""
        before = self.text[:index]
        breaks = _LINE_BREAK.findall(before)
        last = max(before.rfind(b) for b in ("\n", "\r", "\x85", "\u2028", "\u2029"))
        return Span(self.path, len(breaks) + 1, index - last)

    def at(self, path: KeyPath) -> Span | None:
        """The span recorded for `path`, or for its nearest recorded ancestor."""
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path)

    def error(self, where: Node | Span | None, code: str, message: str, fix: str | None = None) -> None:
        span = self.span(where) if isinstance(where, Node) else where
        line = self.lines[span.line - 1] if span and 0 < span.line <= len(self.lines) else None
        self.diagnostics.append(Diagnostic(span, code, message, source_line=line, fix=fix))

    def syntax_error(self, e: yaml.MarkedYAMLError) -> None:
        mark = e.problem_mark or e.context_mark
        message = e.problem or e.context or "invalid YAML"
        if e.problem and e.context:
            message = (f"{e.context}, {e.problem}" if e.problem.startswith("but ")
                       else f"{e.problem} ({e.context})")
        self.error(self.mark_span(mark) if mark else None, YAML_SYNTAX, f"YAML syntax: {message}")

    def findings(self) -> list[Diagnostic]:
        """Every finding once, in document order."""
        unique = list(dict.fromkeys(self.diagnostics))
        return sorted(unique, key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))

    # -- cross-references --
    def declare(self, kind: str, name: Any, path: KeyPath) -> KeyPath:
        """Record `name` of `kind` at `path`; the path it was first declared at."""
        return self.declared.setdefault(kind, {}).setdefault(name, path)

    def refer(self, kind: str, name: str, node: Node) -> None:
        self.references.append((kind, name, self.span(node)))

    def check_references(self) -> None:
        for kind, name, span in self.references:
            known = self.declared.get(kind, {})
            if name not in known:
                self.error(span, UNKNOWN_REFERENCE[kind],
                           f'unknown {kind} "{name}"' + did_you_mean(name, known),
                           fix=closest(name, known))

    # -- document access --
    def compose(self) -> Node | None:
        """The root node, with duplicate keys reported; None on a YAML syntax error."""
        try:
            root = yaml.compose(self.text, Loader=_Loader)
            if root is not None:
                inside = _contains_itself(root)
                if inside is not None:
                    # the walks below (and Config.raw) would never end
                    self.error(inside, YAML_SYNTAX, "YAML: an alias inside its own anchor makes this node "
                                                    "contain itself")
                    return None
                self._report_duplicate_keys(root)
                # constructing once proves the document is plain data (no python tags,
                # no unhashable keys) and resolves merge keys (<<) in place
                self._constructor.construct_document(root)
        except yaml.MarkedYAMLError as e:
            self.syntax_error(e)
            return None
        except yaml.reader.ReaderError as e:
            # a character YAML refuses anywhere in the text (a control character, a
            # lone surrogate): it carries an index, not a mark
            self.error(self.index_span(e.position), YAML_SYNTAX,
                       f"YAML syntax: unacceptable character #x{e.character:04x}: {e.reason}")
            return None
        return root

    def data(self, node: Node) -> Any:
        """The node as plain Python data, never shared with what an earlier call
        returned (Config.raw and a filter's settings must not alias each other)."""
        if isinstance(node, ScalarNode):
            return self._constructor.construct_object(node)
        return SafeConstructor().construct_object(node, deep=True)

    def entries(self, node: MappingNode) -> Iterator[tuple[str, Node, Node]]:
        """(key, key node, value node) with merge keys resolved: a key written in the
        mapping overrides the same key merged in (<<), so only the last one is seen."""
        last = {k.value: i for i, (k, _) in enumerate(node.value) if isinstance(k, ScalarNode)}
        for i, (k, v) in enumerate(node.value):
            if not isinstance(k, ScalarNode):
                self.error(k, WRONG_TYPE, f"a key must be a plain word, got {kind_of(k)}")
            elif last[k.value] == i:
                yield k.value, k, v

    def _report_duplicate_keys(self, root: Node) -> None:
        seen: set[int] = set()
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, MappingNode):
                keys: set[str] = set()
                for k, v in node.value:
                    if isinstance(k, ScalarNode) and k.tag != MERGE_TAG:
                        if k.value in keys:
                            self.error(k, DUPLICATE, f'duplicate key "{k.value}"')
                        keys.add(k.value)
                    stack.extend((k, v))
            elif isinstance(node, SequenceNode):
                stack.extend(node.value)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate did_you_mean() would name, for Diagnostic.fix."""
    m = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return m[0] if m else None
