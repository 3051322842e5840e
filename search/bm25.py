"""Okapi BM25 over a few hundred short documents: retrieval for the cognition base and lessons.

Small, exact and dependency-free: the corpus is tens to hundreds of entries, so an index is a
list of term counts and a query is a pass over it. Terms are lower-cased alphanumeric words
minus a short stop list, with a light plural strip so "gates" finds "gate".
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in",
    "into", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were",
    "with", "which", "when", "while", "we", "our", "can", "not", "no", "than", "then", "there",
    "these", "those",
})


def tokenize(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


class BM25:
    """Scores documents (token lists) against a query; IDF is the non-negative Lucene form."""

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.counts = [Counter(doc) for doc in documents]
        self.lengths = [len(doc) for doc in documents]
        self.avg_length = sum(self.lengths) / len(self.lengths) if self.lengths else 0.0
        df: Counter[str] = Counter()
        for counts in self.counts:
            df.update(counts.keys())
        n = len(self.counts)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def __len__(self) -> int:
        return len(self.counts)

    def score(self, query: Sequence[str], index: int) -> float:
        counts, length = self.counts[index], self.lengths[index]
        norm = self.k1 * (1 - self.b + self.b * length / self.avg_length) if self.avg_length else 0
        total = 0.0
        for term in query:
            tf = counts.get(term, 0)
            if tf:
                total += self.idf[term] * tf * (self.k1 + 1) / (tf + norm)
        return total

    def top(self, query: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The k best (index, score) pairs with a positive score, best first, ties by index."""
        scored = [(i, self.score(query, i)) for i in range(len(self))]
        scored = [(i, s) for i, s in scored if s > 0]
        scored.sort(key=lambda p: (-p[1], p[0]))
        return scored[:k]
