"""The Lark grammar of one logical line of a linarch program, and the parser built from it.

The grammar lives in ``linarch.lark`` beside this file; the parser is built once (LALR, so a line
parses in microseconds) and shared.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from lark import Lark

GRAMMAR_FILE = "linarch.lark"

KEYWORDS = frozenset(
    {"mixer", "params", "state", "return", "loss", "complexity", "as", "in", "true", "false"}
)


def grammar_text() -> str:
    """The grammar's source text."""
    return resources.files(__package__).joinpath(GRAMMAR_FILE).read_text(encoding="utf-8")


@cache
def line_parser() -> Lark:
    """The LALR parser for one logical line, with positions on every tree node."""
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False)
