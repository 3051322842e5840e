"""Pull the one DSL program and its motivation out of a free-form LLM answer.

Models wrap code in fences with or without a language tag, think aloud in <think> blocks,
get cut off mid-block, or answer in Python when asked for DSL. This module turns all of
that into one typed Extraction. A missing block, an empty answer or Python instead of DSL is
a failure the engineer sends back for repair, never something that reaches the compiler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_DSL_TAGS = frozenset({"lin", "linarch", "dsl"})
_PY_TAGS = frozenset({"python", "py", "python3", "pytorch", "torch"})
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_OPEN_THINK = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*$")
_MOTIVATION = re.compile(
    r"^\s*(?:#+\s*)?\**motivation\**\s*:?\**\s*(.*)$", re.IGNORECASE | re.MULTILINE
)
_PYTHON_LINE = re.compile(
    r"^\s*(import\s+\w|from\s+[\w.]+\s+import\s|def\s+\w+\s*\(|class\s+\w+\s*[(:]"
    r"|@torch\.|self\.\w+\s*=)",
    re.MULTILINE,
)
_MAX_MOTIVATION = 2000


class DraftFailure(StrEnum):
    NO_BLOCK = "no_block"  # prose only, or no fenced program
    PYTHON = "python"  # Python (usually PyTorch) instead of DSL
    EMPTY = "empty"  # nothing at all, or an empty block


@dataclass(frozen=True)
class Block:
    tag: str
    body: str
    closed: bool
    start: int  # character offsets in the (think-stripped) answer
    end: int


@dataclass(frozen=True)
class Extraction:
    source: str | None
    motivation: str
    failure: DraftFailure | None
    truncated: bool = False  # the chosen block had no closing fence
    blocks: int = 0  # fenced blocks seen

    @property
    def ok(self) -> bool:
        return self.failure is None


def looks_like_python(text: str) -> bool:
    return len(_PYTHON_LINE.findall(text)) >= 1 or "nn.Module" in text or "torch." in text


def strip_thinking(text: str) -> str:
    text = _THINK.sub("", text)
    match = _OPEN_THINK.search(text)  # an unclosed think block: the answer never came
    return text[: match.start()] if match else text


def fenced_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i].rstrip("\n"))
        if not opening:
            i += 1
            continue
        fence, tag = opening.group(1), opening.group(2).lower()
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j].rstrip("\n"))
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(
                fence
            ) and not closing.group(2):
                break
            j += 1
        closed = j < len(lines)
        body = "".join(lines[i + 1 : j])
        blocks.append(Block(tag, body, closed, offsets[i], offsets[min(j + 1, len(lines))]))
        i = j + 1
    return blocks


def extract_program(answer: str) -> Extraction:
    """The last `lin` block (or, failing that, the last untagged non-Python block)."""
    text = strip_thinking(answer or "")
    if not text.strip():
        return Extraction(None, "", DraftFailure.EMPTY)
    blocks = fenced_blocks(text)
    dsl = [b for b in blocks if b.tag in _DSL_TAGS]
    if not dsl:
        dsl = [b for b in blocks if not b.tag and not looks_like_python(b.body)]
    motivation = _motivation(text, dsl[-1] if dsl else None)
    if dsl:
        chosen = dsl[-1]
        if not chosen.body.strip():
            return Extraction(None, motivation, DraftFailure.EMPTY, blocks=len(blocks))
        return Extraction(
            chosen.body.rstrip() + "\n", motivation, None, not chosen.closed, len(blocks)
        )
    python = any(b.tag in _PY_TAGS or looks_like_python(b.body) for b in blocks)
    if python or looks_like_python(text):
        return Extraction(None, motivation, DraftFailure.PYTHON, blocks=len(blocks))
    return Extraction(None, motivation, DraftFailure.NO_BLOCK, blocks=len(blocks))


def _motivation(text: str, chosen: Block | None) -> str:
    """The text after a `Motivation:` label, else the prose before the program."""
    outside = _without_blocks(text)
    match = _MOTIVATION.search(outside)
    if match:
        rest = (match.group(1) + outside[match.end() :]).strip()
        paragraph = re.split(r"\n\s*\n|\n#+ ", rest, maxsplit=1)[0]
        return _clip(paragraph)
    before = text[: chosen.start] if chosen is not None else outside
    return _clip(before.strip())


def _without_blocks(text: str) -> str:
    parts, pos = [], 0
    for block in fenced_blocks(text):
        parts.append(text[pos : block.start])
        parts.append("\n")
        pos = block.end
    parts.append(text[pos:])
    return "".join(parts)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MOTIVATION else text[: _MAX_MOTIVATION - 3] + "..."
