"""The state of a run, rebuilt from its journal: the archive, the candidates still in flight.

The loop writes an event to the journal first and then applies the same event to this state,
through the same `apply` that a resume uses to replay the journal. So the state after a
`kill -9` and a replay is the state the killed process had after its last durable event:
no candidate is lost (every proposal is journaled before anything is done with it) and none
is evaluated twice (a stage whose result is journaled is never run again).

Events (all carry "event" and, except run-level ones, "id"):
    proposed    a program exists (or a proposer failure), with its lineage and cost
    rejected    dropped before training: invalid, duplicate, near-duplicate, crash...
    accepted    compiled, profiled, novel enough: its hash is now taken
    submitted   a cascade stage was handed to the executor
    stage_done  that stage's Outcome and result
    evaluated   the cascade is over for it; it enters the archive
    analyzed    the analyst's text and lessons
    migrated    elites copied between islands
    stopped     the run stopped (budget, endpoint down, done, interrupted)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from linarch.search.archive import Archive
from linarch.search.config import SearchConfig
from linarch.search.records import Candidate, EvalResult, Profile
from linarch.search.sandbox import Outcome


@dataclass
class StageRecord:
    stage: str
    outcome: Outcome
    result: EvalResult | None
    error: str


@dataclass
class Pending:
    """A proposed candidate on its way through check, profile and the cascade."""

    id: str
    origin: str
    island: int
    generation: int
    parent_ids: tuple[str, ...]
    source: str
    motivation: str
    cost_usd: float
    profile: Profile | None = None
    submitted_stage: int | None = None  # the stage handed to the executor, if any
    stages: list[StageRecord] = field(default_factory=list)


class RunState:
    def __init__(self, config: SearchConfig):
        self.config = config
        isl = config.islands
        self.archive = Archive(
            isl.count,
            selection=isl.selection,
            ucb_c=isl.ucb_c,
            rank_exponent=isl.rank_exponent,
            near_duplicate=isl.near_duplicate,
        )
        self.pending: dict[str, Pending] = {}
        self.records: dict[str, dict[str, Any]] = {}  # every journaled fact per candidate
        self.order: list[str] = []  # proposal order
        self.proposals = 0  # non-seed proposals
        self.evaluated: list[str] = []  # in evaluation order
        self.rejections: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.unanalyzed: list[str] = []
        self.stopped: str | None = None
        self.starts = 0

    @classmethod
    def replay(cls, config: SearchConfig, events: Iterable[Mapping[str, Any]]) -> RunState:
        state = cls(config)
        for event in events:
            state.apply(event)
        return state

    @property
    def seeds_done(self) -> bool:
        return not any(p.origin == "seed" for p in self.pending.values())

    def apply(self, ev: Mapping[str, Any]) -> None:
        kind = ev["event"]
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            raise ValueError(f"unknown journal event {kind!r}")
        handler(ev)

    def _on_run_started(self, ev: Mapping[str, Any]) -> None:
        self.starts += 1
        self.stopped = None

    def _on_stopped(self, ev: Mapping[str, Any]) -> None:
        self.stopped = str(ev["reason"])

    def _on_proposed(self, ev: Mapping[str, Any]) -> None:
        cid = ev["id"]
        self.order.append(cid)
        self.records[cid] = {**ev, "status": "proposed"}
        if ev["origin"] != "seed":
            self.proposals += 1
        if ev.get("source") is None:  # a proposer failure: a rejected event follows
            return
        self.pending[cid] = Pending(
            id=cid,
            origin=ev["origin"],
            island=int(ev["island"]),
            generation=int(ev["generation"]),
            parent_ids=tuple(ev["parents"]),
            source=ev["source"],
            motivation=ev.get("motivation", ""),
            cost_usd=float(ev.get("cost_usd", 0.0)),
        )

    def _on_rejected(self, ev: Mapping[str, Any]) -> None:
        cid = ev["id"]
        self.pending.pop(cid, None)
        self.rejections[ev["reason"]] += 1
        self.records[cid].update(status="rejected", rejection=dict(ev))
        for parent in self.records[cid].get("parents", ()):
            self.archive.credit(parent, None)

    def _on_accepted(self, ev: Mapping[str, Any]) -> None:
        p = self.pending[ev["id"]]
        p.profile = Profile.from_dict(ev["profile"])
        self.archive.reserve(p.id, p.profile)
        self.records[p.id].update(
            status="accepted", profile=ev["profile"], nearest=ev.get("nearest"),
            similarity=float(ev.get("similarity", 0.0)),
        )

    def _on_submitted(self, ev: Mapping[str, Any]) -> None:
        self.pending[ev["id"]].submitted_stage = int(ev["stage_index"])

    def _on_stage_done(self, ev: Mapping[str, Any]) -> None:
        p = self.pending[ev["id"]]
        result = EvalResult.from_dict(ev["result"]) if ev.get("result") else None
        p.stages.append(StageRecord(ev["stage"], Outcome(ev["outcome"]), result, ev["error"]))
        p.submitted_stage = None
        self.records[p.id].setdefault("stages", []).append(dict(ev))

    def _on_evaluated(self, ev: Mapping[str, Any]) -> None:
        p = self.pending.pop(ev["id"])
        assert p.profile is not None
        ok = [s for s in p.stages if s.outcome is Outcome.OK and s.result is not None]
        candidate = Candidate(
            id=p.id,
            source=p.source,
            motivation=p.motivation,
            parent_ids=p.parent_ids,
            island=p.island,
            generation=p.generation,
            origin=p.origin,
            profile=p.profile,
            result=ok[-1].result if ok else None,
            stages_passed=len(ok),
            cost_usd=p.cost_usd,
        )
        self.archive.add(candidate, seed=p.origin == "seed")
        for parent in p.parent_ids:
            self.archive.credit(parent, candidate if candidate.result is not None else None)
        self.evaluated.append(p.id)
        final = p.stages[-1].outcome if p.stages else Outcome.ERROR
        self.outcomes[final.value] += 1
        self.records[p.id].update(status="evaluated", outcome=final.value,
                                  stages_passed=len(ok))
        if candidate.result is not None and p.origin != "seed":
            self.unanalyzed.append(p.id)

    def _on_analyzed(self, ev: Mapping[str, Any]) -> None:
        cid = ev["id"]
        if cid in self.unanalyzed:
            self.unanalyzed.remove(cid)
        old = self.archive.candidates[cid]
        self.annotate(replace(old, analysis=ev.get("text", ""),
                              cost_usd=old.cost_usd + float(ev.get("cost_usd", 0.0))))
        self.records[cid].update(analysis=ev.get("text", ""), lessons=ev.get("lessons", []),
                                 analysis_cost_usd=float(ev.get("cost_usd", 0.0)))

    def _on_migrated(self, ev: Mapping[str, Any]) -> None:
        self.archive.apply_migration([tuple(m) for m in ev["moves"]])

    def annotate(self, candidate: Candidate) -> None:
        """Swap in an updated copy of an archived candidate (same id) everywhere it is held."""
        self.archive.candidates[candidate.id] = candidate
        for island in self.archive.islands:
            for cell, elite in list(island.grid.items()):
                if elite.id == candidate.id:
                    island.grid[cell] = candidate
