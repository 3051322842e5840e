"""The researcher role: from a ProposalRequest, ask for ONE new DSL program.

The prompt carries what a person designing the next experiment would want on the desk: the
task card (what is measured, at which shape, DeltaNet's absolute score, the budget left), the
language reference, the parents and inspirations with their per-seed scores and curves, what
became of the parent's last children (with the first line of any error), why earlier attempts
were not evaluated ("already tried: nearest c0007"), and the memory entries.

The researcher only drafts. Whether the draft holds a program at all, and whether it compiles,
is the engineer's business (engineer.py), so a draft is returned even when the answer was
prose, Python or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from linarch.search.extract import Extraction, extract_program
from linarch.search.llm import Completion, LLMClient
from linarch.search.proposer import ProposalRequest
from linarch.search.templates import load_template

DEFAULT_OBJECTIVE = (
    "Design a sequence mixer that beats {baseline}, trained under the same budget, on the "
    "evaluation preset {preset}. The score of a program is its paired difference to {baseline} "
    "over several seeds, with a 95% interval; programs are ranked by the interval's lower "
    "bound, so a gain must hold across seeds to count."
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

    def draft(self, request: ProposalRequest) -> Draft:
        if not request.parents:
            raise ValueError("the researcher needs at least one parent program")
        prompt = self.template.render(
            objective=self.objective,
            task_card=request.task_card,
            language_reference=self.language_reference,
            parents=[p.brief() for p in request.parents],
            inspirations=[c.brief() for c in request.inspirations],
            memory=[m.brief() for m in request.memory],
            siblings=[s.brief() for s in request.siblings],
            feedback=list(request.feedback),
        )
        completion = self.client.complete(self.role, prompt,
                                          model=request.models.get(self.role) or None)
        return Draft(extract_program(completion.text), completion)
