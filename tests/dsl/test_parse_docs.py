"""Every .mdsl snippet in docs/mdsl.md parses, as a file or inside the block it
belongs in, so the documentation cannot drift from the grammar."""
from __future__ import annotations

import os
from mosnx.dsl import ast as A
from mosnx.dsl.parse import parse

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "mdsl.md")
WRAPPERS = ["{}", "route r {{ to c\n{}\n}}", "on request {{\n{}\n}}", "on response {{\n{}\n}}",
            "on log {{\n{}\n}}", "vhost v {{\n{}\n}}"]


def snippets() -> list[str]:
    """Fenced blocks with no language tag (yaml and others are tagged)."""
    out, current, tag = [], None, None
    for line in open(DOC, encoding="utf-8").read().splitlines():
        if line.startswith("```"):
            if current is None:
                current, tag = [], line[3:].strip()
            else:
                if not tag:
                    out.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return out


def test_every_snippet_parses():
    blocks = snippets()
    assert len(blocks) > 20
    for block in blocks:
        ok = any(isinstance(parse(w.format(block), "doc.mdsl"), A.File) for w in WRAPPERS)
        assert ok, f"this snippet of docs/mdsl.md does not parse:\n{block}"
