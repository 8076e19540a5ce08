"""Diagnostics: positioned errors and warnings shared by every front end.

A Diagnostic names a file, a 1-based line and column, a code and a message, and
prints like a compiler would. Front ends collect them; nothing here raises on its
own except ConfigError, which carries a list of them.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True, slots=True)
class Span:
    path: str
    line: int          # 1-based
    column: int        # 1-based
    end_line: int = 0
    end_column: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    span: Span | None
    code: str
    message: str
    severity: str = "error"          # "error" | "warning"
    source_line: str | None = None   # the offending line, for the caret display
    fix: str | None = None           # a suggested replacement, when one is known

    def __str__(self) -> str:
        where = str(self.span) if self.span else "<config>"
        return f"{where}: {self.code} {self.message}"

    def render(self) -> str:
        """The compiler-style display: header, source line, caret."""
        out = [str(self)]
        if self.span and self.source_line is not None:
            line = self.source_line.rstrip("\n")
            out.append(f"  {line}")
            width = 1
            if self.span.end_line == self.span.line and self.span.end_column > self.span.column:
                width = self.span.end_column - self.span.column
            out.append("  " + " " * (self.span.column - 1) + "^" * width)
        return "\n".join(out)


class ConfigError(Exception):
    """Raised when a configuration or rule set cannot be built; carries every finding."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics) or "invalid configuration")


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean "x"?)' suffix for the closest candidate, or ''."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f' (did you mean "{match[0]}"?)' if match else ""


def source_line(path: str, line: int, text: str | None = None) -> str | None:
    """Line `line` (1-based) of `text`, or of the file at `path` when text is None."""
    try:
        if text is None:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        lines = text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else None
    except OSError:
        return None
