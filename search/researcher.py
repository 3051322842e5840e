"""The researcher role: from parents, inspirations and memory, ask for ONE new DSL program.

The researcher only drafts. Whether the draft holds a program at all, and whether it compiles,
is the engineer's business (engineer.py), so a draft is returned even when the answer was
prose, Python or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from linarch.search.cognition import MemoryEntry
from linarch.search.extract import Extraction, extract_program
from linarch.search.llm import Completion, LLMClient
from linarch.search.records import Candidate
from linarch.search.templates import load_template

DEFAULT_OBJECTIVE = (
    "Design a sequence mixer that beats DeltaNet, trained under the same budget, on the "
    "evaluation preset {preset}. The score of a program is its paired difference to DeltaNet "
    "over several seeds, with a 95% interval."
)


@dataclass(frozen=True)
class Draft:
    extraction: Extraction
    completion: Completion


class Researcher:
    role = "researcher"

    def __init__(
        self,
        client: LLMClient,
        language_reference: str,
        objective: str,
        template: str = "researcher.md",
    ):
        self.client = client
        self.language_reference = language_reference
        self.objective = objective
        self.template = load_template(template)

    def draft(
        self,
        parents: Sequence[Candidate],
        inspirations: Sequence[Candidate],
        memory: Sequence[MemoryEntry],
    ) -> Draft:
        if not parents:
            raise ValueError("the researcher needs at least one parent program")
        prompt = self.template.render(
            objective=self.objective,
            language_reference=self.language_reference,
            parents=[p.brief() for p in parents],
            inspirations=[c.brief() for c in inspirations],
            memory=[m.brief() for m in memory],
        )
        completion = self.client.complete(self.role, prompt)
        return Draft(extract_program(completion.text), completion)
