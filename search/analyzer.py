"""The analyzer role: read a result against its parent and the baseline, distil lessons.

One LLM call per evaluated candidate, failed ones included (it is told how and where the
evaluation failed), writes a short analysis (kept with the candidate and shown to the
researcher when the candidate becomes a parent) and up to three lessons; the caller files
them in the store's `search_lessons` table (the loop does it in its own thread, since the
analyzer may run in another), where they are retrieved like cognition entries.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from linarch.search.llm import LLMClient
from linarch.search.memory import Lesson
from linarch.search.records import Candidate
from linarch.search.templates import load_template

_SECTION = re.compile(r"^\s*\**(ANALYSIS|LESSONS)\**\s*:?\**\s*(.*)$", re.IGNORECASE)
_LESSON = re.compile(r"^\s*[-*\d.)]+\s*(?:\[([^\]]*)\])?\s*(.+?)\s*$")
_MAX_LESSONS = 3


@dataclass(frozen=True)
class AnalystReport:
    candidate_id: str
    text: str
    lessons: tuple[Lesson, ...]
    cost_usd: float
    call_id: str


def parse_analysis(answer: str) -> tuple[str, list[tuple[tuple[str, ...], str]]]:
    """(analysis text, [(tags, lesson)]) from an answer with ANALYSIS: and LESSONS: sections.

    Without the section labels the whole answer is the analysis and there are no lessons.
    """
    analysis: list[str] = []
    lessons: list[tuple[tuple[str, ...], str]] = []
    section = None
    for line in answer.splitlines():
        match = _SECTION.match(line)
        if match:
            section = match.group(1).upper()
            line = match.group(2)
        if section == "LESSONS":
            lesson = _LESSON.match(line)
            if lesson and lesson.group(2).strip().rstrip(".").lower() != "none":
                raw_tags = (lesson.group(1) or "").split(",")
                tags = tuple(t.strip().lower() for t in raw_tags if t.strip())
                lessons.append((tags, lesson.group(2).strip()))
        elif section == "ANALYSIS" or section is None:
            analysis.append(line)
    text = " ".join(" ".join(analysis).split())
    return text, lessons[:_MAX_LESSONS]


class Analyzer:
    role = "analyzer"

    def __init__(
        self,
        client: LLMClient,
        stages_total: int,
        template: str = "analyzer.md",
        model: str = "",
    ):
        self.client = client
        self.stages_total = stages_total
        self.model = model
        self.template = load_template(template)

    def analyze(
        self,
        candidate: Candidate,
        parent: Candidate | None,
        baseline: Candidate | None,
        outcome: str = "ok",
    ) -> AnalystReport:
        diff = ""
        if parent is not None:
            diff = "".join(
                difflib.unified_diff(
                    parent.source.splitlines(keepends=True),
                    candidate.source.splitlines(keepends=True),
                    fromfile=parent.id,
                    tofile=candidate.id,
                )
            ).rstrip()
        prompt = self.template.render(
            candidate=candidate.brief(),
            parent=parent.brief() if parent is not None else None,
            baseline=baseline.brief() if baseline is not None else None,
            diff=diff or "(no textual change)",
            stages_passed=candidate.stages_passed,
            stages_total=self.stages_total,
            outcome=outcome,
        )
        completion = self.client.complete(self.role, prompt, model=self.model or None)
        text, parsed = parse_analysis(completion.text)
        delta = None
        if parent is not None and parent.result is not None and candidate.result is not None:
            delta = candidate.result.score - parent.result.score
        lessons = tuple(Lesson(t, tags, candidate.id, delta) for tags, t in parsed)
        return AnalystReport(candidate.id, text, lessons, completion.cost_usd, completion.call_id)
