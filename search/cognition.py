"""The cognition base: short notes on known mechanisms, one Markdown file each, with a source.

ASI-Arch seeded its researcher with 230 entries distilled from papers; here each entry is a
file in `search/cognition/` that a person can read, correct and cite:

    ---
    id: delta-rule
    title: The delta rule: erase before write
    source: Schlag, Irie, Schmidhuber (2021), Linear Transformers Are Secretly ..., arXiv:2102.11174
    tags: delta, associative memory, fast weights
    ---
    Body text in plain words ...
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

COGNITION_DIR = Path(__file__).parent / "cognition"
_REQUIRED = ("id", "title", "source", "tags")


class CognitionError(ValueError):
    """An entry file lacks its header or a required field."""


@dataclass(frozen=True)
class MemoryEntry:
    """One retrievable piece of knowledge: a cognition entry or a lesson from an experiment."""

    id: str
    kind: str  # "cognition" | "lesson"
    title: str
    text: str
    source: str
    tags: tuple[str, ...]

    def search_text(self) -> str:
        return f"{self.title} {' '.join(self.tags)} {self.text}"

    def brief(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "text": self.text, "source": self.source}


def parse_entry(text: str, where: str = "<entry>") -> MemoryEntry:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise CognitionError(f"{where}: must start with a '---' header")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise CognitionError(f"{where}: header is not closed by '---'") from None
    fields: dict[str, str] = {}
    for line in lines[1:end]:
        key, sep, value = line.partition(":")
        if not sep:
            raise CognitionError(f"{where}: header line without ':': {line!r}")
        fields[key.strip()] = value.strip()
    missing = [k for k in _REQUIRED if not fields.get(k)]
    if missing:
        raise CognitionError(f"{where}: missing header field(s) {missing}")
    body = " ".join("\n".join(lines[end + 1 :]).split())
    if not body:
        raise CognitionError(f"{where}: empty body")
    tags = tuple(t.strip() for t in fields["tags"].split(",") if t.strip())
    return MemoryEntry(fields["id"], "cognition", fields["title"], body, fields["source"], tags)


def load_cognition(directory: Path | None = None) -> tuple[MemoryEntry, ...]:
    return _load(str(directory or COGNITION_DIR))


@lru_cache(maxsize=4)
def _load(directory: str) -> tuple[MemoryEntry, ...]:
    entries = tuple(
        parse_entry(p.read_text(encoding="utf-8"), str(p))
        for p in sorted(Path(directory).glob("*.md"))
    )
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CognitionError(f"{directory}: duplicate entry id(s) {duplicates}")
    return entries
