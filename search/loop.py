"""The search loop: propose, compile, deduplicate, evaluate (a cascade), archive, analyse.

Everything the loop depends on is injected (Components), so the compiler, the evaluation
harness and the proposer can each be replaced, and tested, on their own. The loop keeps the
executor's workers busy: it proposes while a worker is free, and between proposals collects
finished stages. Every decision is journaled before it is applied (state.py), which is what
makes `--resume` exact after a crash or a `kill -9`.

A BudgetExhausted, EndpointDown or RequestRejected from an LLM role stops new proposals; the
evaluations already running finish and are recorded; then the run stops with that reason.
"""

from __future__ import annotations

import random
import sqlite3
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from linarch.search.config import SearchConfig
from linarch.search.engineer import CheckFn
from linarch.search.executor import Executor, JobResult, Outcome
from linarch.search.jsonl import JsonlWriter, read_jsonl
from linarch.search.ledger import BudgetExhausted, CostLedger, LLMError
from linarch.search.llm import EndpointDown, RequestRejected, tagged
from linarch.search.memory import Memory
from linarch.search.novelty import wl_features
from linarch.search.progress import NullProgress, Progress, Status
from linarch.search.proposer import Proposal, Proposer
from linarch.search.records import AnalysisLike, Candidate, EvalJob, EvalResult, Profile
from linarch.search.rundir import RunDir
from linarch.search.state import Pending, RunState
from linarch.search.store import record_candidate

if TYPE_CHECKING:
    from linarch.search.analyzer import Analyzer

EvaluateFn = Callable[[EvalJob], EvalResult]
AnalyzeFn = Callable[[str], AnalysisLike]


@dataclass(frozen=True)
class Components:
    proposer: Proposer
    check: CheckFn
    analyze: AnalyzeFn
    evaluate: EvaluateFn  # runs in executor workers: must be importable (a module function)
    analyst: Analyzer | None = None
    memory: Memory | None = None
    ledger: CostLedger | None = None  # for the progress display and the summary
    store: sqlite3.Connection | None = None  # the experiment store (search_candidates)


@dataclass(frozen=True)
class SeedProgram:
    name: str
    source: str


@dataclass(frozen=True)
class RunSummary:
    reason: str
    proposals: int
    evaluated: int
    rejected: int
    best_id: str | None
    best_score: float | None
    spent_usd: float


class SearchLoop:
    def __init__(
        self,
        config: SearchConfig,
        run: RunDir,
        components: Components,
        executor: Executor,
        *,
        seed_programs: Sequence[SeedProgram] = (),
        progress: Progress | None = None,
    ):
        self.config = config
        self.run_dir = run
        self.c = components
        self.executor = executor
        self.seed_programs = tuple(seed_programs)
        self.progress = progress or NullProgress()
        self.state = RunState.replay(config, read_jsonl(run.journal))
        self.resumed = self.state.starts > 0
        self._journal = JsonlWriter(run.journal)
        self._in_executor: set[str] = set()
        self._stop_reason: str | None = None
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ driver

    def run(self) -> RunSummary:
        self._emit("run_started", resumed=self.resumed)
        try:
            self._seed()
            for cid in list(self.state.pending):
                self._advance(self.state.pending[cid])
            self._analyze_backlog()
            while True:
                while self._may_propose():
                    self._propose_one()
                if not self.executor.pending:
                    if self._idle_done():
                        break
                    if self._may_propose():
                        continue
                    raise RuntimeError(f"search stuck with {sorted(self.state.pending)} pending")
                for result in self.executor.wait(timeout=0.5):
                    self._on_job(result)
                self.progress.status(self._status())
        except KeyboardInterrupt:
            self.executor.shutdown()
            self._emit("stopped", reason="interrupted")
            return self._summary("interrupted")
        reason = self._stop_reason or "max_candidates"
        self._emit("stopped", reason=reason)
        self.progress.status(self._status())
        return self._summary(reason)

    def _may_propose(self) -> bool:
        return (
            self._stop_reason is None
            and self.state.seeds_done
            and self.state.proposals < self.config.run.max_candidates
            and self.executor.free_slots > 0
        )

    def _idle_done(self) -> bool:
        return not self.state.pending and (
            self._stop_reason is not None
            or self.state.proposals >= self.config.run.max_candidates
        )

    # ------------------------------------------------------------------ proposals

    def _seed(self) -> None:
        known = {self.state.records[c].get("seed_name") for c in self.state.order}
        for i, seed in enumerate(self.seed_programs):
            if seed.name in known:
                continue
            cid = f"s{i:03d}"
            self._emit("proposed", id=cid, origin="seed", seed_name=seed.name, island=-1,
                       generation=0, parents=[], inspirations=[], source=seed.source,
                       motivation=f"seed program {seed.name}", cost_usd=0.0, repairs=0,
                       failure=None, diagnostics=[], prompt_versions=[])
            self._advance(self.state.pending[cid])
        if not self.state.order:
            raise RuntimeError("no seed programs: set run.seed_programs in the config")

    def _propose_one(self) -> None:
        index = self.state.proposals + 1
        cid = f"c{index:04d}"
        rng = random.Random(f"{self.config.run.seed}:{index}")
        archive = self.state.archive
        island = (index - 1) % len(archive.islands)
        try:
            parent = archive.sample_parent(island, rng)
        except LookupError as err:  # every seed failed its evaluation
            self._stop_reason = "no_parent"
            self.progress.event("run", f"stopping: {err}")
            return
        inspirations = archive.sample_inspirations(
            island, rng, self.config.islands.inspirations, exclude=[parent.id]
        )
        memory = self._recall([parent])
        try:
            with tagged(candidate=cid, run=self.run_dir.name):
                proposal = self.c.proposer.propose([parent], inspirations, memory)
        except LLMError as err:
            self._stop(err)
            return
        self._record_proposal(cid, island, parent, inspirations, proposal)

    def _record_proposal(
        self,
        cid: str,
        island: int,
        parent: Candidate,
        inspirations: Sequence[Candidate],
        proposal: Proposal,
    ) -> None:
        if proposal.source is not None:
            self.run_dir.write_program(cid, proposal.source)
        self._emit("proposed", id=cid, origin=proposal.origin, island=island,
                   generation=parent.generation + 1, parents=[parent.id],
                   inspirations=[c.id for c in inspirations], source=proposal.source,
                   motivation=proposal.motivation, cost_usd=proposal.cost_usd,
                   repairs=proposal.repairs, failure=proposal.failure,
                   diagnostics=list(proposal.diagnostics),
                   prompt_versions=list(proposal.prompt_versions))
        if proposal.source is None or proposal.failure is not None:
            self._reject(cid, proposal.failure or "no_program", "the proposer gave up")
            return
        self._advance(self.state.pending[cid])

    def _recall(self, parents: Sequence[Candidate]) -> list[Any]:
        if self.c.memory is None or self.config.memory.entries <= 0:
            return []
        query = " ".join(
            f"{p.profile.name} {' '.join(p.profile.transition_classes)} {p.motivation} "
            f"{p.analysis}" for p in parents
        )
        return self.c.memory.retrieve(query, self.config.memory.entries)

    # ------------------------------------------------------------------ one candidate

    def _advance(self, p: Pending) -> None:
        """Take a pending candidate one step further, whatever step it is at."""
        if p.profile is None:
            self._check_and_profile(p)
            return
        if p.id in self._in_executor:
            return
        if p.submitted_stage is not None:  # was running when the last process died
            self._submit(p, p.submitted_stage, journal=False)
            return
        stages = self.config.cascade
        done = p.stages
        if not done:
            self._submit(p, 0)
            return
        last = done[-1]
        i = len(done) - 1
        threshold = stages[i].min_score
        passed = last.outcome is Outcome.OK and last.result is not None and (
            threshold is None or last.result.score >= threshold
        )
        if passed and i + 1 < len(stages):
            self._submit(p, i + 1)
        else:
            self._finalize(p)

    def _check_and_profile(self, p: Pending) -> None:
        try:
            errors = [d.to_dict() for d in self.c.check(p.source) if d.severity == "error"]
        except Exception as err:
            self._reject(p.id, "check_crashed", _trace(err))
            return
        if errors:
            self._reject(p.id, "invalid", errors[0].get("message", ""), diagnostics=errors)
            return
        try:
            analysis = self.c.analyze(p.source)
            profile = Profile(
                name=analysis.name,
                structural_hash=analysis.structural_hash,
                flops_per_token=int(analysis.flops_per_token),
                state_bytes=int(analysis.state_bytes),
                transition_classes=tuple(analysis.transition_classes),
                num_paths=int(analysis.num_paths),
                wl_features=tuple(sorted(
                    wl_features(analysis.graph, self.config.islands.wl_iterations).items()
                )),
            )
        except Exception as err:
            self._reject(p.id, "analyze_crashed", _trace(err))
            return
        verdict = self.state.archive.check(profile)
        if verdict.rejection is not None:
            self._reject(p.id, verdict.rejection.value, f"like {verdict.nearest}",
                         nearest=verdict.nearest, similarity=verdict.similarity)
            return
        self._emit("accepted", id=p.id, profile=profile.to_dict(), nearest=verdict.nearest,
                   similarity=verdict.similarity)
        self._advance(p)

    def _submit(self, p: Pending, stage_index: int, *, journal: bool = True) -> None:
        stage = self.config.cascade[stage_index].stage
        job = EvalJob(
            key=f"{self.run_dir.name}/{p.id}/{stage}",
            candidate_id=p.id,
            source=p.source,
            stage=stage,
            preset=self.config.run.preset,
            seeds=tuple(self.config.run.seeds),
            run_path=str(self.run_dir.path.resolve()),
        )
        if journal:
            self._emit("submitted", id=p.id, stage=stage, stage_index=stage_index)
        self.executor.submit(f"{p.id}|{stage}", self.c.evaluate, job)
        self._in_executor.add(p.id)

    def _on_job(self, job: JobResult) -> None:
        cid, stage = job.job_id.split("|", 1)
        self._in_executor.discard(cid)
        outcome, value, error = job.outcome, job.value, job.error
        if outcome is Outcome.OK and not isinstance(value, EvalResult):
            error = f"evaluate returned {type(value).__name__}, not an EvalResult"
            outcome, value = Outcome.ERROR, None
        self._emit("stage_done", id=cid, stage=stage, outcome=outcome.value,
                   result=value.to_dict() if isinstance(value, EvalResult) else None,
                   error=error, wall_s=job.wall_s, peak_rss_mb=job.peak_rss_mb)
        if isinstance(value, EvalResult):
            self.progress.event(cid, f"{stage}: score {value.score:+.4f}")
        else:
            self.progress.event(cid, f"{stage}: {outcome.value} {_first_line(error)}")
        self._advance(self.state.pending[cid])

    def _finalize(self, p: Pending) -> None:
        self._emit("evaluated", id=p.id)
        c = self.state.archive.candidates[p.id]
        if c.result is None:
            self.progress.event(c.id, "evaluated: failed")
        else:
            self.progress.event(
                c.id, f"evaluated: score {c.score:+.4f} [{c.result.ci_low:+.4f}, "
                f"{c.result.ci_high:+.4f}], cell {c.profile.descriptor.label()}"
            )
        if self.c.store is not None:
            last = p.stages[-1].outcome.value if p.stages else "error"
            record_candidate(self.c.store, self.run_dir.name, c, last)
        interval = self.config.islands.migration_interval
        if interval > 0 and len(self.state.evaluated) % interval == 0:
            moves = self.state.archive.migration_moves(self.config.islands.migration_count)
            if moves:
                self._emit("migrated", moves=[list(m) for m in moves])
        self._analyze(c)

    # ------------------------------------------------------------------ analysis

    def _analyze_backlog(self) -> None:
        for cid in list(self.state.unanalyzed):
            self._analyze(self.state.archive.candidates[cid])

    def _analyze(self, candidate: Candidate) -> None:
        if self.c.analyst is None or self._stop_reason is not None:
            return
        if candidate.result is None or candidate.origin == "seed":  # nothing to compare
            return
        archive = self.state.archive
        parent = archive.candidates.get(candidate.parent_ids[0]) if candidate.parent_ids else None
        baseline = archive.candidates.get(archive.seeds[0]) if archive.seeds else None
        try:
            with tagged(candidate=candidate.id, run=self.run_dir.name):
                report = self.c.analyst.analyze(candidate, parent, baseline)
        except LLMError as err:
            self._stop(err)
            return
        self._emit("analyzed", id=candidate.id, text=report.text, cost_usd=report.cost_usd,
                   lessons=[{"text": x.text, "tags": list(x.tags)} for x in report.lessons])

    # ------------------------------------------------------------------ plumbing

    def _reject(self, cid: str, reason: str, detail: str, **extra: Any) -> None:
        self._emit("rejected", id=cid, reason=reason, detail=detail, **extra)
        self.progress.event(cid, f"rejected ({reason}): {_first_line(detail)}")

    def _stop(self, err: LLMError) -> None:
        if isinstance(err, BudgetExhausted):
            reason = "budget"
        elif isinstance(err, EndpointDown):
            reason = "endpoint_down"
        elif isinstance(err, RequestRejected):
            reason = "request_rejected"
        else:
            reason = "llm_error"
        self._stop_reason = reason
        self.progress.event("run", f"stopping ({reason}): {err}")

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "t": time.time(), **fields}
        self._journal.append(record)
        self.state.apply(record)

    def _status(self) -> Status:
        best = self.state.archive.best()
        ledger = self.c.ledger
        return Status(
            proposals=self.state.proposals,
            max_candidates=self.config.run.max_candidates,
            evaluated=len(self.state.evaluated),
            in_flight=len(self._in_executor),
            rejections=dict(self.state.rejections),
            outcomes=dict(self.state.outcomes),
            best_id=None if best is None else best.id,
            best_score=None if best is None or best.result is None else best.score,
            spent_usd=0.0 if ledger is None else ledger.total().usd,
            budget_usd=None if ledger is None else ledger.budget_usd,
            elapsed_s=time.monotonic() - self._t0,
        )

    def _summary(self, reason: str) -> RunSummary:
        s = self._status()
        return RunSummary(reason, s.proposals, s.evaluated, sum(s.rejections.values()),
                          s.best_id, s.best_score, s.spent_usd)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _trace(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))[-4000:]
