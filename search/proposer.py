"""The seam between the loop and whatever writes new programs.

The loop hands a Proposer one ProposalRequest: who the candidate will be (its id and index,
which seed a proposer's randomness, so a resumed run proposes the same program for the same
index and never repeats an earlier one), its parents and inspirations, memory entries, what
happened to the parent's last children, why the previous attempt was not evaluated ("already
tried: nearest c0007"), the task card, the model to use per role, and, for a runtime repair,
the failed candidate with its log tail. The LLM proposer (researcher drafts, engineer compiles
and repairs) lives here; the offline typed-mutation proposer plugs in through the same
protocol. The loop compiles every proposal again itself, so a proposer's own claim of
validity is never trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from linarch.search.cognition import MemoryEntry
from linarch.search.records import Candidate

if TYPE_CHECKING:  # the protocol and Proposal must not need the LLM stack (openai)
    from linarch.search.engineer import Engineer
    from linarch.search.researcher import Researcher


@dataclass(frozen=True)
class Sibling:
    """What became of an earlier child of the same parent (shown to the researcher)."""

    id: str
    motivation: str
    outcome: str  # "score +0.0123 [-0.01, +0.03]", "rejected (duplicate): like c0003", ...

    def brief(self) -> dict[str, str]:
        return {"id": self.id, "motivation": self.motivation, "outcome": self.outcome}


@dataclass(frozen=True)
class RuntimeFailure:
    """A candidate that compiled but failed in a worker: what to repair, and the evidence."""

    candidate_id: str
    source: str
    motivation: str
    stage: str  # the cascade stage (or "vet") that failed
    outcome: str  # the executor Outcome value: error, timeout, crash, oom
    log_tail: str  # the end of the worker's traceback or log

    def brief(self) -> dict[str, str]:
        return {"id": self.candidate_id, "source": self.source, "motivation": self.motivation,
                "stage": self.stage, "outcome": self.outcome, "log_tail": self.log_tail}


@dataclass(frozen=True)
class ProposalRequest:
    candidate_id: str  # "c0007": the id the program will have
    index: int  # 7: seeds the proposer's randomness (resume-safe)
    parents: tuple[Candidate, ...]
    inspirations: tuple[Candidate, ...] = ()
    memory: tuple[MemoryEntry, ...] = ()
    siblings: tuple[Sibling, ...] = ()
    feedback: tuple[str, ...] = ()  # why earlier attempts from this island were not evaluated
    task_card: str = ""
    models: Mapping[str, str] = field(default_factory=dict)  # role -> model, where chosen
    repair: RuntimeFailure | None = None


@dataclass(frozen=True)
class Proposal:
    source: str | None  # None: the proposer produced no program (see `failure`)
    motivation: str
    origin: str  # "llm", "mutation", ...
    cost_usd: float = 0.0
    repairs: int = 0
    failure: str | None = None  # e.g. "invalid", "python", "no_block", "request_rejected"
    diagnostics: tuple[dict[str, Any], ...] = ()
    prompt_versions: tuple[str, ...] = ()
    model: str = ""  # the model that wrote it (LLM proposers)


@runtime_checkable
class Proposer(Protocol):
    def propose(self, request: ProposalRequest) -> Proposal: ...


class LLMProposer:
    """Researcher drafts one program; the engineer compiles it and repairs it from diagnostics.
    A runtime failure (codegen, numerics, NaN, timeout) goes to the engineer with its log
    tail; an endpoint that refuses one request (a 4xx) makes this proposal fail, not the run."""

    repairs_runtime_failures = True

    def __init__(self, researcher: Researcher, engineer: Engineer):
        self.researcher = researcher
        self.engineer = engineer

    def propose(self, request: ProposalRequest) -> Proposal:
        from linarch.search.llm import RequestRejected

        try:
            if request.repair is not None:
                return self._repair(request)
            return self._draft(request)
        except RequestRejected as err:
            return Proposal(None, str(err), "llm", failure="request_rejected")

    def _draft(self, request: ProposalRequest) -> Proposal:
        model = request.models.get(self.researcher.role, "")
        draft = self.researcher.draft(request)
        build = self.engineer.build(draft, model=request.models.get(self.engineer.role, ""))
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
            model=model or draft.completion.model,
        )

    def _repair(self, request: ProposalRequest) -> Proposal:
        assert request.repair is not None
        build = self.engineer.repair_runtime(request.repair,
                                             model=request.models.get(self.engineer.role, ""))
        return Proposal(
            source=build.source,
            motivation=request.repair.motivation,
            origin="llm",
            cost_usd=build.cost_usd,
            repairs=build.repairs,
            failure=None if build.failure is None else build.failure.value,
            diagnostics=build.diagnostics,
            prompt_versions=(self.engineer.runtime_template.version,),
        )
