"""The grammar files of mosnx's languages, shipped as package data."""
from pathlib import Path

GRAMMAR_DIR = Path(__file__).parent


def grammar_text(name: str = "mdsl.lark") -> str:
    return (GRAMMAR_DIR / name).read_text(encoding="utf-8")
