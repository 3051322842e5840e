"""The search loop: propose, compile, deduplicate, vet, evaluate (a cascade), archive, analyse.

Everything the loop depends on is injected (Components), so the compiler, the evaluation
harness and the proposer can each be replaced, and tested, on their own. Proposals and
analyses are written in threads while the executor's workers evaluate (an LLM that takes a
minute does not leave the workers idle); only this loop's own thread writes the journal.
Every decision is journaled before it is applied (state.py), which is what makes `--resume`
exact after a crash or a `kill -9`.

The budget `run.max_candidates` counts candidates that reach evaluation: a proposal rejected
before training (invalid, a duplicate, a rewrite of an earlier program) is free, and the
proposer is told why ("already tried: nearest c0007"), up to `run.max_proposals` attempts.

A BudgetExhausted or EndpointDown from an LLM role stops new proposals; a refused request (a
4xx) fails that one proposal, and only `llm.max_consecutive_rejections` of them in a row stop
the run; the evaluations already running finish and are recorded; then the run stops with
that reason.
"""

from __future__ import annotations

import concurrent.futures
import random
import sqlite3
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from linarch.search.briefing import Briefing
from linarch.search.config import SearchConfig
from linarch.search.engineer import CheckFn
from linarch.search.executor import Executor, JobResult, Outcome
from linarch.search.frontend import FrontEnd, GuardError, GuardTimeout
from linarch.search.jsonl import JsonlWriter, read_jsonl
from linarch.search.ledger import BudgetExhausted, CostLedger, LLMError
from linarch.search.llm import EndpointDown, RequestRejected, tagged
from linarch.search.memory import Memory
from linarch.search.progress import NullProgress, Progress, Status
from linarch.search.proposer import Proposal, ProposalRequest, Proposer
from linarch.search.racing import (
    Confirmation,
    confirm,
    contenders,
    finalists,
    reused_seeds,
    selection_label,
)
from linarch.search.records import AnalysisLike, Candidate, EvalJob, EvalResult, Profile
from linarch.search.rundir import RunDir
from linarch.search.state import Pending, RunState, first_line
from linarch.search.store import record_candidate
from linarch.search.vet import VetJob, VetResult

if TYPE_CHECKING:
    from linarch.search.analyzer import Analyzer

EvaluateFn = Callable[[EvalJob], EvalResult]
AnalyzeFn = Callable[[str], AnalysisLike]
VetFn = Callable[[VetJob], VetResult]


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
    frontend: FrontEnd | None = None  # check/analyze behind the guard; None: in this process
    vet: VetFn | None = None  # runs in executor workers, before the cascade; None: skipped


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
    candidates: int = 0
    best_label: str = ""  # "promising" at most: only the confirmation says BETTER
    confirmations: tuple[Confirmation, ...] = ()
    race_jobs: int = 0  # racing evaluations (more seeds for contenders)


@dataclass(frozen=True)
class Prepared:
    """A proposal and what the front end made of it (computed in a proposal thread)."""

    proposal: Proposal
    profile: Profile | None = None
    rejection: str | None = None
    detail: str = ""
    diagnostics: tuple[dict[str, Any], ...] = ()


class _InlinePool:
    """`run.proposal_workers = 0`: proposals are written in the loop's thread, one at a time
    (deterministic; the loop's unit tests use it)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # noqa: BLE001 - delivered through the future
            future.set_exception(err)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


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
        self.frontend = components.frontend or FrontEnd(
            components.check, components.analyze, None, config.islands.wl_iterations)
        self.state = RunState.replay(config, read_jsonl(run.journal))
        self.resumed = self.state.starts > 0
        self._journal = JsonlWriter(run.journal)
        self._in_executor: set[str] = set()
        self._stop_reason: str | None = None
        self._t0 = time.monotonic()
        workers = config.run.proposal_workers
        self._pool: Any = (concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="linarch-propose") if workers > 0 else _InlinePool())
        self._lanes = max(1, workers)
        self._proposals: dict[str, concurrent.futures.Future] = {}
        self._extra_jobs: set[str] = set()  # racing and confirmation jobs in the executor
        self._analyses: dict[str, concurrent.futures.Future] = {}
        self._briefing = Briefing(config, self.state, components.memory, components.ledger)

    # ------------------------------------------------------------------ driver

    def run(self) -> RunSummary:
        self._emit("run_started", resumed=self.resumed)
        try:
            self._seed()
            for cid in list(self.state.pending):
                self._advance(self.state.pending[cid])
            for start in list(self.state.in_flight.values()):  # being written at the crash
                self._launch(start)
            for cid, (stage, seeds) in list(self.state.racing.items()):  # racing at the crash
                self._submit_extra(cid, "race", stage, seeds)
            self._analyze_backlog()
            while True:
                self._harvest()
                self._race()
                while self._may_propose():
                    self._start_proposal()
                self._final_stage()
                if self._finished():
                    break
                if not (self.executor.pending or self._proposals or self._analyses):
                    if self._may_propose():
                        continue
                    raise RuntimeError(f"search stuck with {sorted(self.state.pending)} pending")
                threads = list(self._proposals.values()) + list(self._analyses.values())
                for result in self.executor.wait(timeout=0.05 if threads else 0.5):
                    self._on_job(result)
                if threads and not self.executor.pending:
                    concurrent.futures.wait(threads, timeout=0.5,
                                            return_when=concurrent.futures.FIRST_COMPLETED)
                self.progress.status(self._status())
        except KeyboardInterrupt:
            self.executor.shutdown()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._emit("stopped", reason="interrupted")
            return self._summary("interrupted")
        self._pool.shutdown(wait=True)
        reason = self._stop_reason or self._done_reason()
        self._emit("stopped", reason=reason)
        self.progress.status(self._status())
        return self._summary(reason)

    def _may_propose(self) -> bool:
        """A proposal may start once a seed program has a score to start from (not when all
        have: a worker would idle while a slower seed trains), while the budget, the
        proposal lanes and the workers have room."""
        s = self.state
        workers = getattr(self.executor, "workers", 1)
        return (
            self._stop_reason is None
            and (s.seeds_done or bool(s.archive.seeds))
            and s.committed < self.config.run.max_candidates
            and s.proposals < self.config.max_proposals
            and len(self._proposals) < self._lanes
            and self.executor.pending + len(self._proposals) < workers + self._lanes
        )

    def _search_over(self) -> bool:
        """No proposal will be made any more, and every proposed candidate is evaluated."""
        if self.state.pending or self._proposals:
            return False
        return (self._stop_reason is not None
                or self.state.committed >= self.config.run.max_candidates
                or self.state.proposals >= self.config.max_proposals)

    def _finished(self) -> bool:
        if self._analyses or self.executor.pending or not self._search_over():
            return False
        if self._race_candidates():
            return False
        return self.config.confirm.top == 0 or self.state.confirmations is not None

    def _done_reason(self) -> str:
        if self.state.charged >= self.config.run.max_candidates:
            return "max_candidates"
        return "max_proposals"

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

    def _start_proposal(self) -> None:
        s = self.state
        index = s.max_index + 1
        cid = f"c{index:04d}"
        rng = random.Random(f"{self.config.run.seed}:{index}")
        archive = s.archive
        repair_of = self._next_repair()
        if repair_of is not None:
            failed = archive.candidates[repair_of]
            island, parents, inspirations = failed.island, list(failed.parent_ids), []
        elif (retry := self._retry()) is not None:  # the same parent, told what was tried
            island, parents, inspirations = retry[0], list(retry[1].parents), list(
                retry[1].inspirations)
        else:
            island = (index - 1) % len(archive.islands)
            try:
                parent = archive.sample_parent(island, rng)
            except LookupError as err:  # every seed failed its evaluation
                self._stop_reason = "no_parent"
                self.progress.event("run", f"stopping: {err}")
                return
            parents = [parent.id]
            inspirations = [c.id for c in archive.sample_inspirations(
                island, rng, self.config.islands.inspirations, exclude=[parent.id])]
        self._emit("proposal_started", id=cid, index=index, island=island, parents=parents,
                   inspirations=inspirations, models=s.bandit.choose(rng), repair_of=repair_of)
        self._launch(s.in_flight[cid])

    def _retry(self):
        """(island, Retry) of an island whose last attempt was a novelty rejection and whose
        parent has retries left; None when there is none."""
        for island, retry in sorted(self.state.retry.items()):
            if retry.count < self.config.islands.novelty_retries and all(
                    p in self.state.archive.candidates for p in retry.parents):
                return island, retry
        return None

    def _next_repair(self) -> str | None:
        if not getattr(self.c.proposer, "repairs_runtime_failures", False):
            return None
        for cid in self.state.repairable:
            if cid in self.state.archive.candidates:
                return cid
        return None

    def _launch(self, start: dict[str, Any]) -> None:
        """Hand a journaled proposal_started to a proposal thread."""
        request = self._briefing.request(start)
        self._proposals[start["id"]] = self._pool.submit(self._prepare, request)

    def _prepare(self, request: ProposalRequest) -> Prepared:
        """In a proposal thread: the proposal, then the front end's verdict on it."""
        with tagged(candidate=request.candidate_id, run=self.run_dir.name):
            proposal = self.c.proposer.propose(request)
        if proposal.source is None or proposal.failure is not None:
            return Prepared(proposal, rejection=proposal.failure or "no_program",
                            detail=proposal.motivation or "the proposer gave up")
        return self._vet_statically(proposal)

    def _vet_statically(self, proposal: Proposal) -> Prepared:
        source = proposal.source
        assert source is not None
        try:
            errors = [d.to_dict() for d in self.frontend.check(source) if d.severity == "error"]
        except GuardTimeout as err:
            return Prepared(proposal, rejection="check_timeout", detail=str(err))
        except (GuardError, Exception) as err:  # noqa: BLE001 - recorded, the run goes on
            return Prepared(proposal, rejection="check_crashed", detail=_trace(err))
        if errors:
            return Prepared(proposal, rejection="invalid", detail=errors[0].get("message", ""),
                            diagnostics=tuple(errors))
        try:
            profile = self.frontend.profile(source)
        except GuardTimeout as err:
            return Prepared(proposal, rejection="analyze_timeout", detail=str(err))
        except (GuardError, Exception) as err:  # noqa: BLE001
            return Prepared(proposal, rejection="analyze_crashed", detail=_trace(err))
        return Prepared(proposal, profile=profile)

    def _harvest(self) -> None:
        for cid, future in list(self._proposals.items()):
            if not future.done():
                continue
            del self._proposals[cid]
            start = self.state.in_flight[cid]
            try:
                prepared = future.result()
            except RequestRejected as err:
                prepared = Prepared(Proposal(None, str(err), "llm", failure="request_rejected"),
                                    rejection="request_rejected", detail=str(err))
            except LLMError as err:
                self._stop(err)  # left in flight: a resume asks for it again
                continue
            except Exception as err:  # noqa: BLE001 - a proposer's bug fails one proposal
                prepared = Prepared(Proposal(None, f"the proposer raised {err!r}", "unknown",
                                             failure="proposer_crashed"),
                                    rejection="proposer_crashed", detail=_trace(err))
            self._record_proposal(cid, start, prepared)
        for cid, future in list(self._analyses.items()):
            if future.done():
                del self._analyses[cid]
                self._record_analysis(cid, future)

    def _record_proposal(self, cid: str, start: dict[str, Any], prepared: Prepared) -> None:
        proposal = prepared.proposal
        archive = self.state.archive
        parents = [archive.candidates[p] for p in start["parents"] if p in archive.candidates]
        generation = max((p.generation for p in parents), default=0) + 1
        if proposal.source is not None:
            self.run_dir.write_program(cid, proposal.source)
        self._emit("proposed", id=cid, origin=proposal.origin, island=int(start["island"]),
                   generation=generation, parents=list(start["parents"]),
                   inspirations=list(start.get("inspirations", ())), source=proposal.source,
                   motivation=proposal.motivation, cost_usd=proposal.cost_usd,
                   repairs=proposal.repairs, failure=proposal.failure,
                   diagnostics=list(proposal.diagnostics),
                   prompt_versions=list(proposal.prompt_versions), model=proposal.model,
                   repair_of=start.get("repair_of"))
        if prepared.rejection is not None:
            extra = {"diagnostics": list(prepared.diagnostics)} if prepared.diagnostics else {}
            self._reject(cid, prepared.rejection, prepared.detail, **extra)
            if self.state.refused_requests >= self.config.llm.max_consecutive_rejections:
                self._stop_reason = prepared.rejection
                self.progress.event("run", f"stopping: {self.state.refused_requests} proposals "
                                    f"in a row failed ({prepared.rejection})")
            return
        assert prepared.profile is not None
        self._accept(self.state.pending[cid], prepared.profile)

    def _accept(self, p: Pending, profile: Profile) -> None:
        verdict = self.state.archive.check(profile)
        if verdict.rejection is not None and p.origin != "seed":
            self._reject(p.id, verdict.rejection.value, f"like {verdict.nearest}",
                         nearest=verdict.nearest, similarity=verdict.similarity)
            return
        self._emit("accepted", id=p.id, profile=profile.to_dict(), nearest=verdict.nearest,
                   similarity=verdict.similarity)
        self._advance(p)

    # ------------------------------------------------------------------ one candidate

    def _advance(self, p: Pending) -> None:
        """Take a pending candidate one step further, whatever step it is at."""
        if p.profile is None:  # proposed before a crash, never checked: check it now
            prepared = self._vet_statically(Proposal(p.source, p.motivation, p.origin))
            if prepared.rejection is not None:
                self._reject(p.id, prepared.rejection, prepared.detail)
                return
            assert prepared.profile is not None
            self._accept(p, prepared.profile)
            return
        if p.id in self._in_executor:
            return
        if p.vet in ("todo", "submitted"):
            self._submit_vet(p, journal=p.vet == "todo")
            return
        if p.vet == "failed":
            self._finalize(p)
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

    def _submit_vet(self, p: Pending, *, journal: bool) -> None:
        if self.c.vet is None:
            self._emit("vetted", id=p.id, profile=None, note="vetting is off")
            self._advance(p)
            return
        job = VetJob(p.id, p.source, self.config.run.preset,
                     tuple(s.stage for s in self.config.cascade),
                     str(self.run_dir.path.resolve()))
        if journal:
            self._emit("vet_submitted", id=p.id)
        self.executor.submit(f"{p.id}|vet", self.c.vet, job)
        self._in_executor.add(p.id)

    def _on_vet(self, p: Pending, job: JobResult) -> None:
        value = job.value
        if job.outcome is not Outcome.OK or not isinstance(value, VetResult):
            error = job.error or f"vet returned {type(value).__name__}, not a VetResult"
            outcome = job.outcome if job.outcome is not Outcome.OK else Outcome.ERROR
            self._emit("vet_failed", id=p.id, outcome=outcome.value, error=error,
                       wall_s=job.wall_s)
            self.progress.event(p.id, f"vet: {outcome.value} {first_line(error)}")
            self._advance(p)
            return
        assert p.profile is not None
        profile = replace(p.profile, shape=value.shape, flops_per_token=value.flops_per_token,
                          state_bytes=value.state_bytes, fingerprint=value.fingerprint)
        verdict = self.state.archive.check_behaviour(value.fingerprint) \
            if value.fingerprint else None
        if verdict is not None and verdict.rejection is not None and p.origin != "seed":
            self._reject(p.id, verdict.rejection.value, f"computes the same function as "
                         f"{verdict.nearest}", nearest=verdict.nearest,
                         similarity=verdict.similarity)
            return
        self._emit("vetted", id=p.id, profile=profile.to_dict(),
                   nearest=None if verdict is None else verdict.nearest,
                   similarity=None if verdict is None else verdict.similarity,
                   facts=dict(value.facts), note=value.note, wall_s=job.wall_s)
        self._advance(p)

    # ------------------------------------------------------------------ racing, confirmation

    def _race_candidates(self) -> list[tuple[Candidate, tuple[int, ...]]]:
        """Candidates still in the race (racing.py), with their next seeds; none once the
        confirmation has begun (its finalists are fixed)."""
        r = self.config.racing
        s = self.state
        if not r.enabled or s.confirm_plan is not None:
            return []
        baseline = s.archive.seeds[:1]
        exclude = {*s.racing, *s.race_stopped, *baseline}
        exclude.update(c for c in s.archive.candidates if c not in s.result_stage)
        pool = tuple(self.config.run.seeds) + tuple(r.seeds)
        return contenders(s.archive.candidates.values(), pool, step=r.step,
                          max_seeds=r.max_seeds, exclude=exclude, z=r.z or None)

    def _race(self) -> None:
        """Give the candidates in the race their next seeds, leaders first, in free workers."""
        free = getattr(self.executor, "workers", 1) - self.executor.pending
        if free <= 0:
            return
        for c, seeds in self._race_candidates()[:free]:
            stage = self.state.result_stage[c.id]
            self._emit("race_submitted", id=c.id, stage=stage, seeds=list(seeds))
            self.progress.event(c.id, f"racing: {len(c.result.seeds) if c.result else 0} -> "
                                f"{len(seeds)} seeds (interval reaches the leader's bound)")
            self._submit_extra(c.id, "race", stage, seeds)

    def _submit_extra(self, cid: str, kind: str, stage: str, seeds: Sequence[int]) -> None:
        """A racing or confirmation job: the candidate's result stage on exactly `seeds`."""
        c = self.state.archive.candidates[cid]
        job = EvalJob(key=f"{self.run_dir.name}/{cid}/{stage}/{kind}-" +
                      "-".join(map(str, seeds)), candidate_id=cid, source=c.source,
                      stage=stage, preset=self.config.run.preset, seeds=tuple(seeds),
                      run_path=str(self.run_dir.path.resolve()), fixed_seeds=True)
        self.executor.submit(f"{cid}|{kind}", self.c.evaluate, job,
                             limits=self._extra_limits(kind, len(seeds)))
        self._extra_jobs.add(f"{cid}|{kind}")

    def _extra_limits(self, kind: str, seeds: int):
        """The executor's limits with the time scaled to the job's runs: executor.time_limit_s
        is sized for a first look (run.seeds), a racing job trains `seeds` seeds, and a
        confirmation trains the baseline's fresh seeds too. Unscaled, a confirmation on 6
        seeds at both learning rates needs more than the limit that fits a 3-seed look."""
        base = getattr(self.executor, "limits", None)
        if base is None:
            return None
        runs = seeds * (2 if kind == "confirm" else 1)
        scale = max(1.0, runs / max(1, len(self.config.run.seeds)))
        return replace(base, time_s=base.time_s * scale)

    def _on_extra(self, cid: str, kind: str, job: JobResult) -> None:
        self._extra_jobs.discard(job.job_id)
        outcome, value, error = job.outcome, job.value, job.error
        if outcome is Outcome.OK and not isinstance(value, EvalResult):
            error = f"evaluate returned {type(value).__name__}, not an EvalResult"
            outcome, value = Outcome.ERROR, None
        result = value.to_dict() if isinstance(value, EvalResult) else None
        if kind == "race":
            self._emit("race_done", id=cid, stage=self.state.racing[cid][0],
                       outcome=outcome.value, result=result, error=error, wall_s=job.wall_s)
            c = self.state.archive.candidates[cid]
            if c.result is not None and outcome is Outcome.OK:
                self.progress.event(cid, f"raced: score {c.score:+.4f} [{c.result.ci_low:+.4f}"
                                    f", {c.result.ci_high:+.4f}] over {len(c.result.seeds)} "
                                    "seeds")
                if self.c.store is not None:
                    record_candidate(self.c.store, self.run_dir.name, c, c.outcome)
            else:
                self.progress.event(cid, f"racing: {outcome.value} {first_line(error)}")
        else:
            self._emit("confirm_done", id=cid, outcome=outcome.value, result=result,
                       error=error, wall_s=job.wall_s)

    def _final_stage(self) -> None:
        """Once the search is over and the race settled: the finalists on fresh seeds, then
        Holm's correction (racing.confirm). Resumable at every step."""
        s = self.state
        cfg = self.config.confirm
        if cfg.top == 0 or s.confirmations is not None or self._stop_reason == "interrupted":
            return
        if not self._search_over() or s.racing or self._race_candidates():
            return
        if s.confirm_plan is None:
            finals = finalists(s.archive.candidates.values(), cfg.top, exclude=s.archive.seeds)
            used = {x for c in s.archive.candidates.values() if c.result is not None
                    for x in c.result.seeds}
            reused = reused_seeds(cfg.seeds, used | set(self.config.run.seeds))
            if reused or not finals:
                why = (f"confirm.seeds {reused} were used for selection" if reused
                       else "no candidate has a score")
                self.progress.event("run", f"no confirmation: {why}")
                self._emit("confirmed", verdicts=[], note=why)
                return
            self._emit("confirm_started", ids=[c.id for c in finals], seeds=list(cfg.seeds),
                       alpha=cfg.alpha, min_effect=cfg.min_effect)
            self.progress.event("run", f"confirmation: {', '.join(c.id for c in finals)} on "
                                f"fresh seeds {list(cfg.seeds)}")
        plan = s.confirm_plan
        assert plan is not None
        for cid in plan["ids"]:
            if cid in s.confirm_results or f"{cid}|confirm" in self._extra_jobs:
                continue
            if cid not in s.confirm_running:
                self._emit("confirm_submitted", id=cid)
            self._submit_extra(cid, "confirm", s.result_stage[cid], plan["seeds"])
        if all(cid in s.confirm_results for cid in plan["ids"]):
            finals = [s.archive.candidates[cid] for cid in plan["ids"]]
            verdicts = confirm(finals, s.confirm_results, alpha=plan["alpha"],
                               min_effect=plan["min_effect"],
                               baseline=self.run_dir.baseline_name())
            self._emit("confirmed", verdicts=[v.to_dict() for v in verdicts])
            for v in verdicts:
                self.progress.event("confirm", v.line())

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
            # racing decides who gets more seeds: the first look is exactly run.seeds, not the
            # evaluation's own sequential schedule (which would extend every close result)
            fixed_seeds=self.config.racing.enabled,
        )
        if journal:
            self._emit("submitted", id=p.id, stage=stage, stage_index=stage_index)
        self.executor.submit(f"{p.id}|{stage}", self.c.evaluate, job)
        self._in_executor.add(p.id)

    def _on_job(self, job: JobResult) -> None:
        cid, stage = job.job_id.split("|", 1)
        if stage in ("race", "confirm"):
            self._on_extra(cid, stage, job)
            return
        self._in_executor.discard(cid)
        p = self.state.pending[cid]
        if stage == "vet":
            self._on_vet(p, job)
            return
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
            self.progress.event(cid, f"{stage}: {outcome.value} {first_line(error)}")
        self._advance(p)

    def _finalize(self, p: Pending) -> None:
        self._emit("evaluated", id=p.id)
        c = self.state.archive.candidates[p.id]
        if c.result is None:
            self.progress.event(c.id, f"evaluated: failed ({c.failure or c.outcome})")
        else:
            self.progress.event(
                c.id, f"evaluated: score {c.score:+.4f} [{c.result.ci_low:+.4f}, "
                f"{c.result.ci_high:+.4f}], cell {c.profile.descriptor.label()}"
            )
        if self.c.store is not None:
            record_candidate(self.c.store, self.run_dir.name, c, c.outcome)
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
        if candidate.origin == "seed" or candidate.id in self._analyses:
            return
        archive = self.state.archive
        parent = archive.candidates.get(candidate.parent_ids[0]) if candidate.parent_ids else None
        baseline = archive.candidates.get(archive.seeds[0]) if archive.seeds else None
        analyst = self.c.analyst

        def work():
            with tagged(candidate=candidate.id, run=self.run_dir.name):
                return analyst.analyze(candidate, parent, baseline, candidate.outcome)

        self._analyses[candidate.id] = self._pool.submit(work)

    def _record_analysis(self, cid: str, future: concurrent.futures.Future) -> None:
        try:
            report = future.result()
        except RequestRejected as err:
            self.progress.event(cid, f"analysis refused: {err}")
            return
        except LLMError as err:
            self._stop(err)
            return
        if self.c.memory is not None:
            for lesson in report.lessons:
                self.c.memory.remember(lesson)
        self._emit("analyzed", id=cid, text=report.text, cost_usd=report.cost_usd,
                   lessons=[{"text": x.text, "tags": list(x.tags)} for x in report.lessons])

    # ------------------------------------------------------------------ plumbing

    def _reject(self, cid: str, reason: str, detail: str, **extra: Any) -> None:
        self._emit("rejected", id=cid, reason=reason, detail=detail, **extra)
        self.progress.event(cid, f"rejected ({reason}): {first_line(detail)}")

    def _stop(self, err: LLMError) -> None:
        if isinstance(err, BudgetExhausted):
            reason = "budget"
        elif isinstance(err, EndpointDown):
            reason = "endpoint_down"
        elif isinstance(err, RequestRejected):
            reason = "request_rejected"
        else:
            reason = "llm_error"
        if self._stop_reason is None:
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
            candidates=self.state.charged,
            proposing=len(self._proposals),
        )

    def _summary(self, reason: str) -> RunSummary:
        s = self._status()
        best = self.state.archive.best()
        label = selection_label(best.result) if best is not None else ""
        verdicts = tuple(Confirmation.from_dict(v) for v in self.state.confirmations or ())
        return RunSummary(reason, s.proposals, s.evaluated, sum(s.rejections.values()),
                          s.best_id, s.best_score, s.spent_usd, s.candidates, label,
                          verdicts, self.state.race_jobs)


def _trace(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))[-4000:]
