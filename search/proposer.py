"""The seam between the loop and whatever writes new programs.

The loop asks a Proposer for one program given parents, inspirations and memory entries. The
LLM proposer (researcher drafts, engineer compiles and repairs) lives here; the offline
typed-mutation proposer on the IR plugs in through the same protocol. The loop compiles every
proposal again with `check` itself, so a proposer's own claim of validity is never trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from linarch.search.cognition import MemoryEntry
from linarch.search.records import Candidate

if TYPE_CHECKING:  # the protocol and Proposal must not need the LLM stack (openai)
    from linarch.search.engineer import Engineer
    from linarch.search.researcher import Researcher


@dataclass(frozen=True)
class Proposal:
    source: str | None  # None: the proposer produced no program (see `failure`)
    motivation: str
    origin: str  # "llm", "mutation", ...
    cost_usd: float = 0.0
    repairs: int = 0
    failure: str | None = None  # e.g. "invalid", "python", "no_block" (BuildFailure values)
    diagnostics: tuple[dict[str, Any], ...] = ()
    prompt_versions: tuple[str, ...] = ()


@runtime_checkable
class Proposer(Protocol):
    def propose(
        self,
        parents: Sequence[Candidate],
        inspirations: Sequence[Candidate],
        memory: Sequence[MemoryEntry],
    ) -> Proposal: ...


class LLMProposer:
    """Researcher drafts one program; the engineer compiles it and repairs it from diagnostics."""

    def __init__(self, researcher: Researcher, engineer: Engineer):
        self.researcher = researcher
        self.engineer = engineer

    def propose(
        self,
        parents: Sequence[Candidate],
        inspirations: Sequence[Candidate],
        memory: Sequence[MemoryEntry],
    ) -> Proposal:
        draft = self.researcher.draft(parents, inspirations, memory)
        build = self.engineer.build(draft)
        versions = [self.researcher.template.version]
        if build.repairs:
            versions.append(self.engineer.template.version)
        return Proposal(
            source=build.source,
            motivation=draft.extraction.motivation,
            origin="llm",
            cost_usd=draft.completion.cost_usd + build.cost_usd,
            repairs=build.repairs,
            failure=None if build.failure is None else build.failure.value,
            diagnostics=build.diagnostics,
            prompt_versions=tuple(versions),
        )
