"""The researcher's memory: the cognition base plus lessons from earlier experiments.

Lessons live in the SQLite store (table `search_lessons`), so what one run learnt is there for
the next. Retrieval is BM25 over both kinds of entry; the query is built by the loop from the
parents (their names, motivations and transition classes).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from linarch.search.bm25 import BM25, tokenize
from linarch.search.cognition import MemoryEntry


@dataclass(frozen=True)
class Lesson:
    """A claim distilled by the analyzer from one experiment."""

    text: str
    tags: tuple[str, ...]
    candidate_id: str
    score_delta: float | None  # candidate score minus parent score, when both are known


class LessonStore:
    """Lessons in the `search_lessons` table of the experiment store."""

    def __init__(self, conn: sqlite3.Connection, run_id: str):
        self.conn = conn
        self.run_id = run_id

    def add(self, lesson: Lesson) -> None:
        """Store a lesson; the same lesson for the same candidate is kept once (resume-safe)."""
        with self.conn:
            self.conn.execute(
                "INSERT OR IGNORE INTO search_lessons "
                "(run_id, candidate_id, text, tags, score_delta, created) VALUES (?,?,?,?,?,?)",
                (
                    self.run_id,
                    lesson.candidate_id,
                    lesson.text,
                    ",".join(lesson.tags),
                    lesson.score_delta,
                    time.time(),
                ),
            )

    def entries(self) -> list[MemoryEntry]:
        """All lessons of all runs in the store, oldest first."""
        rows = self.conn.execute(
            "SELECT id, run_id, candidate_id, text, tags, score_delta FROM search_lessons "
            "ORDER BY id"
        ).fetchall()
        out = []
        for row_id, run_id, cid, text, tags, delta in rows:
            effect = "" if delta is None else f", score change {delta:+.4f}"
            out.append(
                MemoryEntry(
                    id=f"lesson-{row_id}",
                    kind="lesson",
                    title=f"Lesson from {run_id}/{cid}",
                    text=text,
                    source=f"experiment {run_id}/{cid}{effect}",
                    tags=tuple(t for t in tags.split(",") if t),
                )
            )
        return out


def _top(entries: list[MemoryEntry], terms: list[str], k: int) -> list[MemoryEntry]:
    if k <= 0 or not entries:
        return []
    index = BM25([tokenize(e.search_text()) for e in entries])
    return [entries[i] for i, _ in index.top(terms, k)]


class Memory:
    """BM25 retrieval over the cognition base and the stored lessons."""

    def __init__(self, cognition: Sequence[MemoryEntry], lessons: LessonStore | None = None):
        self.cognition = tuple(cognition)
        self.lessons = lessons

    def entries(self) -> list[MemoryEntry]:
        lessons = self.lessons.entries() if self.lessons is not None else []
        return [*self.cognition, *lessons]

    def retrieve(self, query: str, k: int) -> list[MemoryEntry]:
        """Up to k entries for `query`: lessons first (up to half of k, the most relevant, or
        the most recent when none matches), then the most relevant cognition entries.

        Lessons and papers are ranked separately: a short lesson and a long paper note are
        not comparable by one BM25 score, and the run's own experience must not be crowded
        out by the literature (nor the reverse)."""
        if k <= 0:
            return []
        terms = tokenize(query)
        lessons = self.lessons.entries() if self.lessons is not None else []
        n_lessons = min(len(lessons), max(1, k // 2)) if lessons else 0
        picked = _top(lessons, terms, n_lessons)
        if len(picked) < n_lessons:
            rest = [e for e in reversed(lessons) if e not in picked]
            picked += rest[: n_lessons - len(picked)]
        return picked + _top(list(self.cognition), terms, k - len(picked))

    def remember(self, lesson: Lesson) -> None:
        if self.lessons is None:
            raise RuntimeError("this Memory has no lesson store to write to")
        self.lessons.add(lesson)
