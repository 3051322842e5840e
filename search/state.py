"""The state of a run, rebuilt from its journal: the archive, the candidates still in flight.

The loop writes an event to the journal first and then applies the same event to this state,
through the same `apply` that a resume uses to replay the journal. So the state after a
`kill -9` and a replay is the state the killed process had after its last durable event:
no candidate is lost (every proposal is journaled before anything is done with it), none is
evaluated twice (a stage whose result is journaled is never run again), and a proposal that
was being written when the process died is asked for again with the same id, index and
parents (the offline proposer then writes the same program).

Events (all carry "event" and, except run-level ones, "id"):
    proposal_started  a proposer was asked for candidate ID (index, island, parents, models)
    proposed    a program exists (or a proposer failure), with its lineage and cost
    rejected    dropped before training: invalid, duplicate, equivalent, crash... (free: it
                does not count against run.max_candidates)
    accepted    compiled, profiled, structurally novel: its hash is now taken (it counts)
    vet_submitted / vetted / vet_failed   the worker that measures the trained shape and the
                behavioural fingerprint
    submitted   a cascade stage was handed to the executor
    stage_done  that stage's Outcome and result
    evaluated   the cascade is over for it; it enters the archive
    analyzed    the analyst's text and lessons
    migrated    elites copied between islands
    rescored    a candidate's result changed (more seeds, a confirmation stage)
    race_submitted / race_done   racing: the candidate's result stage on more seeds; an OK
                result replaces its score (its seeds include the earlier ones)
    confirm_started   the final stage began: its finalists and fresh seeds (fixed from here)
    confirm_submitted / confirm_done   one finalist on the fresh seeds
    confirmed   every finalist's verdict after Holm's correction
    stopped     the run stopped (budget, endpoint down, done, interrupted)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from linarch.search.archive import Archive, Rejection
from linarch.search.bandit import ModelBandit
from linarch.search.config import SearchConfig
from linarch.search.records import Candidate, EvalResult, Profile, is_scored
from linarch.search.sandbox import Outcome

NOVELTY_REJECTIONS = frozenset(r.value for r in Rejection)
# proposer failures that the next proposal will most likely repeat (a refused request, a
# proposer's bug): llm.max_consecutive_rejections of them in a row stop the run
REPEATING_FAILURES = frozenset({"request_rejected", "proposer_crashed"})


@dataclass
class StageRecord:
    stage: str
    outcome: Outcome
    result: EvalResult | None
    error: str


@dataclass
class Pending:
    """A proposed candidate on its way through check, profile, vetting and the cascade."""

    id: str
    origin: str
    island: int
    generation: int
    parent_ids: tuple[str, ...]
    source: str
    motivation: str
    cost_usd: float
    profile: Profile | None = None
    vet: str = "todo"  # "todo" | "submitted" | "done" | "failed" | "skipped"
    vet_error: tuple[str, str] = ("", "")  # (outcome, error) of a failed vet job
    submitted_stage: int | None = None  # the stage handed to the executor, if any
    stages: list[StageRecord] = field(default_factory=list)


@dataclass
class Retry:
    """After a novelty rejection, the island's next proposal starts from the same parent."""

    parents: tuple[str, ...]
    inspirations: tuple[str, ...]
    count: int


class RunState:
    def __init__(self, config: SearchConfig):
        self.config = config
        isl = config.islands
        self.archive = Archive(
            isl.count,
            selection=isl.selection,
            ucb_c=isl.ucb_c,
            rank_exponent=isl.rank_exponent,
            weight_lambda=isl.weight_lambda,
            selection_z=isl.selection_z,
            near_duplicate=isl.near_duplicate,
            behaviour_tolerance=isl.behaviour_tolerance,
        )
        roles = ("researcher", "engineer", "analyzer")
        self.bandit = ModelBandit({r: config.llm.models_for(r) for r in roles
                                   if _has_model(config, r)})
        self.pending: dict[str, Pending] = {}
        self.records: dict[str, dict[str, Any]] = {}  # every journaled fact per candidate
        self.order: list[str] = []  # proposal order
        self.proposals = 0  # non-seed proposal attempts (ids handed out)
        self.max_index = 0
        self.in_flight: dict[str, dict[str, Any]] = {}  # proposal_started, no proposed yet
        self.charged = 0  # non-seed candidates accepted for evaluation (run.max_candidates)
        self.evaluated: list[str] = []  # in evaluation order
        self.rejections: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.unanalyzed: list[str] = []
        self.feedback: dict[int, list[str]] = {}  # island -> why its last attempts failed
        self.retry: dict[int, Retry] = {}
        self.repairable: list[str] = []  # failed candidates a runtime repair may fix
        self.repair_depth: dict[str, int] = {}
        self.refused_requests = 0  # refused or crashed proposals in a row
        self.facts: dict[str, Any] = {}  # the latest task facts from a vetting worker
        self.stopped: str | None = None
        self.starts = 0
        self.result_stage: dict[str, str] = {}  # the cascade stage behind each result
        self.racing: dict[str, tuple[str, tuple[int, ...]]] = {}  # in flight: (stage, seeds)
        self.race_stopped: set[str] = set()  # a race job failed: raced no further
        self.race_jobs = 0  # racing evaluations done (any outcome)
        self.confirm_plan: dict[str, Any] | None = None  # {ids, seeds, alpha, min_effect}
        self.confirm_running: set[str] = set()
        self.confirm_results: dict[str, EvalResult | None] = {}  # None: it failed
        self.confirmations: list[dict[str, Any]] | None = None  # the `confirmed` verdicts

    @classmethod
    def replay(cls, config: SearchConfig, events: Iterable[Mapping[str, Any]]) -> RunState:
        state = cls(config)
        for event in events:
            state.apply(event)
        return state

    @property
    def seeds_done(self) -> bool:
        return not any(p.origin == "seed" for p in self.pending.values())

    @property
    def committed(self) -> int:
        """Candidates that count against run.max_candidates, or may: the accepted ones and
        the proposals still being written (so concurrent proposals never overshoot)."""
        return self.charged + len(self.in_flight)

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

    def _on_proposal_started(self, ev: Mapping[str, Any]) -> None:
        cid = ev["id"]
        self.in_flight[cid] = dict(ev)
        self.proposals += 1
        self.max_index = max(self.max_index, int(ev["index"]))
        for parent in ev.get("parents", ()):
            self.archive.note_child(parent)
        self.bandit.start(ev.get("models") or {})
        repair_of = ev.get("repair_of")
        if repair_of in self.repairable:
            self.repairable.remove(repair_of)
        retry = self.retry.get(int(ev["island"]))
        if retry is not None and tuple(ev.get("parents", ())) == retry.parents:
            retry.count += 1

    def _on_proposed(self, ev: Mapping[str, Any]) -> None:
        cid = ev["id"]
        started = self.in_flight.pop(cid, None)
        self.order.append(cid)
        self.records[cid] = {**(started or {}), **ev, "status": "proposed"}
        if ev["origin"] != "seed" and started is None:  # a journal from before proposal_started
            self.proposals += 1
            self.max_index = max(self.max_index, _index(cid))
            for parent in ev.get("parents", ()):
                self.archive.note_child(parent)
        if ev.get("repair_of"):
            self.repair_depth[cid] = self.repair_depth.get(ev["repair_of"], 0) + 1
        if ev.get("failure") in REPEATING_FAILURES:
            self.refused_requests += 1
        elif ev["origin"] != "seed":
            self.refused_requests = 0
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
        was = self.pending.pop(cid, None)
        if was is not None and was.profile is not None and was.origin != "seed":
            self.charged -= 1  # rejected after it was accepted (equivalent): free again
        self.rejections[ev["reason"]] += 1
        record = self.records[cid]
        record.update(status="rejected", rejection=dict(ev))
        for parent in record.get("parents", ()):
            self.archive.credit(parent, None)
        self.bandit.record(record.get("models") or {}, 0.0)
        island = int(record.get("island", -1))
        if record.get("origin") == "seed" or island < 0:
            return
        self.feedback.setdefault(island, []).append(feedback_line(cid, ev))
        del self.feedback[island][:-3]
        parents = tuple(record.get("parents", ()))
        if ev["reason"] in NOVELTY_REJECTIONS and parents:
            retry = self.retry.get(island)
            if retry is None or retry.parents != parents:
                self.retry[island] = Retry(parents, tuple(record.get("inspirations", ())), 0)
        elif island in self.retry:
            del self.retry[island]

    def _on_accepted(self, ev: Mapping[str, Any]) -> None:
        p = self.pending[ev["id"]]
        p.profile = Profile.from_dict(ev["profile"])
        self.archive.reserve(p.id, p.profile)
        if p.origin != "seed":
            self.charged += 1
            self.feedback.pop(p.island, None)
            self.retry.pop(p.island, None)
        self.records[p.id].update(
            status="accepted", profile=ev["profile"], nearest=ev.get("nearest"),
            similarity=float(ev.get("similarity", 0.0)),
        )

    def _on_vet_submitted(self, ev: Mapping[str, Any]) -> None:
        self.pending[ev["id"]].vet = "submitted"

    def _on_vetted(self, ev: Mapping[str, Any]) -> None:
        p = self.pending[ev["id"]]
        p.vet = "done" if ev.get("profile") else "skipped"
        if ev.get("profile"):
            p.profile = Profile.from_dict(ev["profile"])
            self.archive.reserve(p.id, p.profile)
        if ev.get("facts"):
            self.facts = dict(ev["facts"])
        self.records[p.id].update(
            profile=ev.get("profile") or self.records[p.id].get("profile"),
            behaviour_nearest=ev.get("nearest"),
            behaviour_similarity=ev.get("similarity"), vet_note=ev.get("note", ""))

    def _on_vet_failed(self, ev: Mapping[str, Any]) -> None:
        p = self.pending[ev["id"]]
        p.vet = "failed"
        p.vet_error = (str(ev["outcome"]), str(ev.get("error", "")))
        self.records[p.id].update(vet_error=ev.get("error", ""))

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
        scored = [s for s in ok if is_scored(s.stage)]
        outcome, failure = Outcome.OK.value, ""
        if p.vet == "failed":
            outcome = p.vet_error[0]
            failure = f"vet: {outcome}: {first_line(p.vet_error[1])}"
        elif p.stages and p.stages[-1].outcome is not Outcome.OK:
            last = p.stages[-1]
            outcome = last.outcome.value
            failure = f"{last.stage}: {outcome}: {first_line(last.error)}"
        elif not p.stages:
            outcome, failure = Outcome.ERROR.value, "no stage ran"
        if scored:
            self.result_stage[p.id] = scored[-1].stage
        candidate = Candidate(
            id=p.id,
            source=p.source,
            motivation=p.motivation,
            parent_ids=p.parent_ids,
            island=p.island,
            generation=p.generation,
            origin=p.origin,
            profile=p.profile,
            result=scored[-1].result if scored else None,
            stages_passed=len(ok),
            cost_usd=p.cost_usd,
            outcome=outcome,
            failure=failure,
        )
        self.archive.add(candidate, seed=p.origin == "seed")
        parents = [self.archive.candidates.get(x) for x in p.parent_ids]
        for parent in p.parent_ids:
            self.archive.credit(parent, candidate if candidate.result is not None else None)
        beat = candidate.result is not None and any(
            q is not None and candidate.rank_key > q.rank_key for q in parents)
        self.bandit.record(self.records[p.id].get("models") or {}, 1.0 if beat else 0.0)
        self.evaluated.append(p.id)
        self.outcomes[outcome] += 1
        self.records[p.id].update(status="evaluated", outcome=outcome,
                                  stages_passed=len(ok), failure=failure)
        if p.origin != "seed":
            self.unanalyzed.append(p.id)
            depth = self.repair_depth.get(p.id, 0)
            if outcome != Outcome.OK.value and depth < self.config.engineer.max_runtime_repairs:
                self.repairable.append(p.id)

    def _on_analyzed(self, ev: Mapping[str, Any]) -> None:
        cid = ev["id"]
        if cid in self.unanalyzed:
            self.unanalyzed.remove(cid)
        old = self.archive.candidates[cid]
        self.archive.replace(replace(old, analysis=ev.get("text", ""),
                                     cost_usd=old.cost_usd + float(ev.get("cost_usd", 0.0))))
        self.records[cid].update(analysis=ev.get("text", ""), lessons=ev.get("lessons", []),
                                 analysis_cost_usd=float(ev.get("cost_usd", 0.0)))

    def _on_migrated(self, ev: Mapping[str, Any]) -> None:
        self.archive.apply_migration([tuple(m) for m in ev["moves"]])

    def _on_rescored(self, ev: Mapping[str, Any]) -> None:
        result = EvalResult.from_dict(ev["result"]) if ev.get("result") else None
        stages = ev.get("stages_passed")
        self.archive.rescore(ev["id"], result, None if stages is None else int(stages))
        self.records[ev["id"]].setdefault("rescored", []).append(dict(ev))

    def _on_race_submitted(self, ev: Mapping[str, Any]) -> None:
        self.racing[ev["id"]] = (str(ev["stage"]), tuple(int(x) for x in ev["seeds"]))

    def _on_race_done(self, ev: Mapping[str, Any]) -> None:
        cid = ev["id"]
        self.racing.pop(cid, None)
        self.race_jobs += 1
        self.records[cid].setdefault("races", []).append(dict(ev))
        result = EvalResult.from_dict(ev["result"]) if ev.get("result") else None
        if ev["outcome"] != Outcome.OK.value or result is None:
            self.race_stopped.add(cid)  # its first look stands; no more seeds for it
            return
        before = self.archive.candidates[cid].result
        if before is not None and len(result.seeds) <= len(before.seeds):
            self.race_stopped.add(cid)  # the evaluation did not add the seeds: stop asking
        self.archive.rescore(cid, result)

    def _on_confirm_started(self, ev: Mapping[str, Any]) -> None:
        self.confirm_plan = {"ids": list(ev["ids"]), "seeds": [int(x) for x in ev["seeds"]],
                             "alpha": float(ev["alpha"]),
                             "min_effect": float(ev.get("min_effect", 0.0))}

    def _on_confirm_submitted(self, ev: Mapping[str, Any]) -> None:
        self.confirm_running.add(ev["id"])

    def _on_confirm_done(self, ev: Mapping[str, Any]) -> None:
        cid = ev["id"]
        self.confirm_running.discard(cid)
        ok = ev["outcome"] == Outcome.OK.value and ev.get("result")
        self.confirm_results[cid] = EvalResult.from_dict(ev["result"]) if ok else None
        self.records[cid]["confirmation_run"] = dict(ev)

    def _on_confirmed(self, ev: Mapping[str, Any]) -> None:
        self.confirmations = [dict(x) for x in ev["verdicts"]]
        for verdict in self.confirmations:
            self.records[verdict["id"]]["confirmation"] = verdict

    def annotate(self, candidate: Candidate) -> None:
        """Swap in an updated copy of an archived candidate (same id) everywhere it is held."""
        self.archive.replace(candidate)

    def failure_of(self, cid: str) -> tuple[str, str, str]:
        """(stage, outcome, log tail) of a candidate whose evaluation failed."""
        record = self.records[cid]
        if record.get("vet_error"):
            return "vet", str(record.get("outcome", "error")), str(record["vet_error"])
        stages = record.get("stages") or [{}]
        last = stages[-1]
        return (str(last.get("stage", "?")), str(last.get("outcome", "error")),
                str(last.get("error") or ""))


def first_line(text: str) -> str:
    """The line of an error message that says what happened: the first line, or for a Python
    traceback its last line (the exception and its message)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].startswith("Traceback (most recent call last)"):
        tail = [line for line in lines if not line.startswith((" ", "\t"))]
        return tail[-1].strip()
    return lines[0].strip()


def feedback_line(cid: str, ev: Mapping[str, Any]) -> str:
    """What the proposer is told about an attempt that was not evaluated."""
    reason = ev["reason"]
    nearest = ev.get("nearest")
    sim = ev.get("similarity")
    like = f"nearest {nearest}" + (f", similarity {float(sim):.2f}" if sim is not None else "")
    if reason == Rejection.DUPLICATE:
        return f"{cid}: already tried: the same program as {nearest}"
    if reason == Rejection.EQUIVALENT:
        return (f"{cid}: already tried: computes the same function as {nearest} (a rewrite, "
                "not a new idea)")
    if reason == Rejection.NEAR_DUPLICATE:
        return f"{cid}: already tried: {like}"
    return f"{cid}: {reason}: {first_line(str(ev.get('detail', '')))[:300]}"


def _has_model(config: SearchConfig, role: str) -> bool:
    try:
        config.llm.models_for(role)
    except Exception:  # noqa: BLE001 - a role without a model simply has no bandit
        return False
    return True


def _index(cid: str) -> int:
    digits = "".join(ch for ch in cid if ch.isdigit())
    return int(digits) if digits else 0
