"""The one evaluation path: a candidate mixer against a baseline under one budget.

    compare(candidate, baseline, budget, seeds, store, baseline_cache) -> Comparison

`linarch train` and the search both call it. In order:

1. Match: the candidate's own width is chosen so that its non-embedding parameters (or its
   state) equal the baseline's within the budget's tolerance (param_match.py).
2. Learning rate: with a grid in the budget, each arm trains every grid point on the selection
   seeds and keeps, per problem, the point with the best validation metric. The baseline's runs,
   like all runs, come from the cache when they were trained before under the same definition.
3. Seeds, sequentially: train the schedule's first look, compute the paired interval, stop when
   the rule has decided (a verdict, or an interval inside the minimum effect), else add seeds,
   up to the cap. A precision schedule stops on the interval's width instead (seeds.py).
4. Failures are counted, not dropped: a candidate run that fails (NaN, divergence, error, limit)
   scores the problem's failure value (accuracy 0, or the chance loss), so it is a loss. A
   baseline run that fails is trained again when the failure may be the machine's (timeout,
   memory, error); when it fails again, or fails deterministically (NaN, divergence: the same
   seed would fail the same way), that seed is left out of the pairs and a fresh seed takes its
   place: a failed baseline is never charged to the candidate.

Everything comes back as frozen, typed results: per-seed runs and scores, every look's
interval, the verdict, and what the evaluation cost (runs trained and reused, CPU seconds).
"""

from __future__ import annotations

import enum
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import fmean

import torch

from .mixers import MixerSpec
from .param_match import MatchResult, MatchTarget, match_width, unmatched
from .presets import Budget, Hyper
from .problems import ModelShape, Problem
from .results import Outcome, TrainResult
from .run_cache import RunCache, RunKey
from .seeds import SeedSchedule
from .stats import DecisionRule, PairedComparison, Verdict, paired_comparison
from .store import ExperimentRecord, ExperimentStore, RunRecord
from .trainer import default_device, train_problem


class Role(enum.Enum):
    CANDIDATE = "candidate"
    BASELINE = "baseline"


RETRIED = frozenset({Outcome.TIMEOUT, Outcome.OOM, Outcome.ERROR})  # may be the machine's fault


@dataclass(frozen=True)
class ArmRun:
    """One trained (or cached) model: role, problem, seed, learning-rate point, shape, result."""

    role: Role
    problem: str
    seed: int
    hyper: Hyper
    shape: ModelShape
    result: TrainResult
    cached: bool = False
    attempt: int = 0


@dataclass(frozen=True)
class HyperChoice:
    """The learning-rate point an arm kept for a problem (at one seed, or for all seeds when
    `seed` is None), and each point's validation metric."""

    role: Role
    problem: str
    chosen: Hyper
    tried: tuple[tuple[Hyper, float], ...]
    seed: int | None = None


@dataclass(frozen=True)
class SeedScore:
    """An arm's headline metric for one seed; a failed run counts as the failure value."""

    role: Role
    seed: int
    value: float
    outcome: Outcome

    @property
    def failed(self) -> bool:
        return self.outcome is not Outcome.OK


@dataclass(frozen=True)
class Look:
    """The interval after `pairs` seeds (the last look is the comparison's result)."""

    pairs: int
    stats: PairedComparison


@dataclass(frozen=True)
class EvaluationCost:
    """What a comparison trained and what it reused; CPU seconds of the runs it trained."""

    candidate_runs: int
    candidate_cached: int
    baseline_runs: int
    baseline_cached: int
    cpu_s: float
    wall_s: float

    @property
    def runs_trained(self) -> int:
        return self.candidate_runs + self.baseline_runs


@dataclass(frozen=True)
class Comparison:
    """The result of `compare`: everything measured, and the verdict it supports."""

    budget: Budget
    candidate: MixerSpec
    baseline: MixerSpec | None
    matches: dict[str, MatchResult]
    choices: tuple[HyperChoice, ...]
    runs: tuple[ArmRun, ...]
    scores: tuple[SeedScore, ...]
    seeds: tuple[int, ...]
    excluded: tuple[tuple[int, str], ...]
    looks: tuple[Look, ...]
    cost: EvaluationCost
    device: str
    experiment_id: int | None = None
    schedule: SeedSchedule | None = None  # what the seeds were asked for (None: not recorded)

    @property
    def stats(self) -> PairedComparison | None:
        return self.looks[-1].stats if self.looks else None

    @property
    def verdict(self) -> Verdict | None:
        return None if self.stats is None else self.stats.verdict

    def score(self, role: Role, seed: int) -> SeedScore:
        return next(s for s in self.scores if s.role is role and s.seed == seed)

    def role_scores(self, role: Role) -> tuple[SeedScore, ...]:
        return tuple(s for s in self.scores if s.role is role and s.seed in self.seeds)

    def mean(self, role: Role) -> float:
        values = [s.value for s in self.role_scores(role)]
        return fmean(values) if values else math.nan

    def failures(self, role: Role) -> int:
        return sum(s.failed for s in self.role_scores(role))

    def problem_means(self, role: Role) -> dict[str, float]:
        """Each problem's metric at the rate the arm kept, averaged over the seeds (a failed run
        counts as nothing learned): what a multi-problem score such as MAD's is made of."""
        kept = {(ch.problem, ch.seed): ch.chosen for ch in self.choices if ch.role is role}
        means = {}
        for problem, config in self.budget.problems:
            values = []
            for seed in self.seeds:
                hyper = kept.get((problem.name, seed), kept.get((problem.name, None))) \
                    or self.budget.hypers(config)[0]
                run = next(r for r in self.runs if r.role is role and r.seed == seed
                           and r.problem == problem.name and r.hyper == hyper)
                values.append(run_value(run.result, problem))
            means[problem.name] = fmean(values)
        return means

    def throughput(self, role: Role) -> float:
        rates = [r.result.timings.tokens_per_s for r in self.runs
                 if r.role is role and not r.cached and r.result.timings.train_s > 0]
        return fmean(rates) if rates else 0.0


class _Runner:
    """Trains (or fetches) runs for both arms, in this process or in worker processes."""

    def __init__(self, budget: Budget, specs: dict[Role, MixerSpec],
                 shapes: dict[tuple[Role, str], ModelShape], cache: RunCache | None,
                 device: torch.device, workers: int, log: Callable[[str], None],
                 progress: bool, checkpoints: Path | None) -> None:
        self.budget = budget
        self.specs = specs
        self.shapes = shapes
        self.cache = cache
        self.device = device
        self.workers = workers
        self.log = log
        self.progress = progress
        self.checkpoints = checkpoints
        self.runs: dict[tuple[Role, str, int, Hyper], ArmRun] = {}
        self.trained: list[ArmRun] = []
        self.pool: ProcessPoolExecutor | None = None  # kept for the whole comparison

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def problem(self, name: str) -> tuple[int, Problem]:
        return next((i, p) for i, (p, _) in enumerate(self.budget.problems) if p.name == name)

    def key(self, role: Role, problem: str, seed: int, hyper: Hyper) -> RunKey:
        return RunKey.of(self.specs[role], self.budget.key, problem, seed, hyper.lr,
                         hyper.weight_decay, self.shapes[(role, problem)], self.device.type)

    def ensure(self, wanted: Iterable[tuple[Role, str, int, Hyper]], attempt: int = 0) -> None:
        """Make sure each wanted run exists: from this comparison, the cache, or training.

        Two wanted runs with one key (a program compared with itself: a search's seed program
        that is also its baseline) are one run: trained once, the other arm reads it."""
        todo: list[tuple[Role, str, int, Hyper]] = []
        first: dict[str, tuple[Role, str, int, Hyper]] = {}  # run key -> the item that trains it
        twins: dict[tuple[Role, str, int, Hyper], tuple[Role, str, int, Hyper]] = {}
        for item in dict.fromkeys(wanted):
            if item in self.runs and self.runs[item].attempt >= attempt:
                continue
            role, problem, seed, hyper = item
            key = self.key(*item)
            cached = self.cache.get(key) if self.cache and attempt == 0 else None
            if cached is not None:
                self.runs[item] = ArmRun(role, problem, seed, hyper,
                                         self.shapes[(role, problem)], cached, cached=True)
            elif key.digest in first:
                twins[item] = first[key.digest]
            else:
                first[key.digest] = item
                todo.append(item)
        for item, result in zip(todo, self._train_all(todo)):
            role, problem, seed, hyper = item
            run = ArmRun(role, problem, seed, hyper, self.shapes[(role, problem)], result,
                         attempt=attempt)
            self.runs[item] = run
            self.trained.append(run)
            if self.cache is not None:
                self.cache.put(self.key(*item), result)
            metric = self.problem(problem)[1].metric.name
            self.log(f"[{problem}] seed {seed} {role.value} {self.specs[role].name} "
                     f"({hyper.label()}): {result.outcome.value} {metric}="
                     f"{result.metric(metric):.4f} ({result.timings.cpu_s:.0f} cpu-s)")
        for item, twin in twins.items():
            role, problem, seed, hyper = item
            self.runs[item] = ArmRun(role, problem, seed, hyper, self.shapes[(role, problem)],
                                     self.runs[twin].result, cached=True, attempt=attempt)

    def _train_all(self, items: list[tuple[Role, str, int, Hyper]]) -> Iterator[TrainResult]:
        """Results in the order of `items`, each as soon as it and those before it are done
        (so an interrupted comparison has cached every run that finished)."""
        jobs = [self._job(item) for item in items]
        if self.workers <= 1 or len(jobs) <= 1 and self.pool is None:
            return (_train_job(job) for job in jobs)
        if self.pool is None:  # spawned once: each worker imports torch and compiles once
            import multiprocessing as mp

            self.pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                            initializer=exit_with_parent,
                                            initargs=(os.getpid(),))
        return self.pool.map(_train_job, [replace(j, spec=None) for j in jobs])

    def _job(self, item: tuple[Role, str, int, Hyper]) -> _Job:
        role, problem, seed, hyper = item
        index, _ = self.problem(problem)
        _, config = self.budget.problems[index]
        config = replace(hyper.apply(config), seed=seed)
        ckpt = None
        if self.checkpoints is not None:
            ckpt = self.checkpoints / role.value / f"seed{seed}" / problem
            if len(self.budget.hypers(config)) > 1:  # one folder per learning-rate point
                ckpt = ckpt / hyper.label().replace(" ", "").replace(",", "-")
        spec = self.specs[role]
        return _Job(spec, spec.source, self.budget, index, self.shapes[(role, problem)], config,
                    str(self.device), self.progress, ckpt, spec.init_salt)


def exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """A worker's initializer: the worker ends once the process that started it is gone. A
    `kill` of `linarch train` or `calibrate` reaches only that process (Ctrl-C reaches the whole
    group), and its pool's workers would otherwise wait for work forever, each holding a model."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="linarch-exit-with-parent", daemon=True).start()


@dataclass(frozen=True)
class _Job:
    """One run, as a worker process receives it (the mixer by its source: compiled again)."""

    spec: MixerSpec | None
    source: str
    budget: Budget
    problem_index: int
    shape: ModelShape
    config: object
    device: str
    progress: bool
    checkpoint: Path | None
    init_salt: int = 0


def _train_job(job: _Job) -> TrainResult:
    if job.spec is None:
        torch.set_num_threads(1)
    from .mixers import load_mixer

    spec = job.spec or replace(load_mixer(job.source), init_salt=job.init_salt)
    problem, _ = job.budget.problems[job.problem_index]
    result, model = train_problem(problem, spec, job.shape, job.config,
                                  device=torch.device(job.device), progress=job.progress,
                                  checkpoint_dir=job.checkpoint)
    del model
    return result


def failure_score(problem: Problem) -> float:
    """What a failed run scores: nothing learned (accuracy 0, or a uniform guess's loss)."""
    return 0.0 if problem.metric.higher_is_better else problem.chance_loss


def run_value(result: TrainResult, problem: Problem) -> float:
    """A run's headline metric on its problem; a failed run counts as nothing learned."""
    return result.metric(problem.metric.name) if result.ok else failure_score(problem)


def _seed_score(runner: _Runner, role: Role, seed: int, chooser: _Chooser) -> SeedScore:
    values, outcome = [], Outcome.OK
    for problem, _ in runner.budget.problems:
        hyper = chooser.chosen(role, problem.name, seed)
        run = runner.runs[(role, problem.name, seed, hyper)]
        values.append(run_value(run.result, problem))
        if not run.result.ok and outcome is Outcome.OK:
            outcome = run.result.outcome
    return SeedScore(role, seed, fmean(values), outcome)


class _Chooser:
    """Which learning-rate point each arm keeps, by the validation metric (never the test).

    With `budget.selection_seeds` None, every seed trains the whole grid and keeps its best
    point (Zoology's best of its learning rates, per run): the kept score is then a maximum
    over the grid, steadier from seed to seed than one run at one fixed rate. With selection
    seeds, those seeds choose once for all seeds (cheaper, for budgets with many problems).
    """

    def __init__(self, runner: _Runner) -> None:
        self.runner = runner
        self.budget = runner.budget
        self.choices: dict[tuple[Role, str, int | None], HyperChoice] = {}

    @property
    def per_seed(self) -> bool:
        return self.budget.selection_seeds is None

    def wanted(self, role: Role, seed: int) -> list[tuple[Role, str, int, Hyper]]:
        """The runs seed `seed` needs: the grid (per seed), or the kept point."""
        out = []
        for problem, config in self.budget.problems:
            if self.per_seed:
                out += [(role, problem.name, seed, h) for h in self.budget.hypers(config)]
            else:
                out.append((role, problem.name, seed, self.chosen(role, problem.name, seed)))
        return out

    def prepare(self, roles: list[Role]) -> None:
        """With selection seeds, train them on the whole grid and choose (before any seed)."""
        if self.per_seed:
            return
        self.runner.ensure([(role, p.name, seed, h) for role in roles
                            for p, c in self.budget.problems for h in self.budget.hypers(c)
                            for seed in self.budget.selection_seeds])

    def forget(self, role: Role, seed: int) -> None:
        """Choose again after runs of `seed` were retrained."""
        for key in [k for k in self.choices if k[0] is role and k[2] in (seed, None)]:
            del self.choices[key]

    def chosen(self, role: Role, problem_name: str, seed: int) -> Hyper:
        key = (role, problem_name, seed if self.per_seed else None)
        if key not in self.choices:
            self.choices[key] = self._choose(role, problem_name, key[2])
        return self.choices[key].chosen

    def _choose(self, role: Role, problem_name: str, seed: int | None) -> HyperChoice:
        _, problem = self.runner.problem(problem_name)
        config = next(c for p, c in self.budget.problems if p.name == problem_name)
        hypers = self.budget.hypers(config)
        if len(hypers) == 1:
            return HyperChoice(role, problem_name, hypers[0], (), seed)
        seeds = (seed,) if seed is not None else self.budget.selection_seeds
        sign = 1.0 if problem.metric.higher_is_better else -1.0
        tried = []
        for h in hypers:
            vals = []
            for s in seeds:
                result = self.runner.runs[(role, problem_name, s, h)].result
                v = result.metric(f"valid_{problem.metric.name}")
                vals.append(v if result.ok and math.isfinite(v) else failure_score(problem))
            tried.append((h, fmean(vals)))
        best = max(tried, key=lambda t: sign * t[1])[0]  # the first of equals: grid order
        return HyperChoice(role, problem_name, best, tuple(tried), seed)


def compare(
    candidate: MixerSpec,
    baseline: MixerSpec | None,
    budget: Budget,
    seeds: SeedSchedule | Iterable[int] | None = None,
    store: ExperimentStore | None = None,
    baseline_cache: RunCache | None = None,
    *,
    device: torch.device | None = None,
    workers: int = 1,
    match: MatchTarget = MatchTarget.PARAMS,
    log: Callable[[str], None] = print,
    progress: bool = False,
    checkpoints: Path | None = None,
    run_dir: str = "",
    widths: Mapping[str, object] | None = None,
) -> Comparison:
    """Compare `candidate` with `baseline` (None: train the candidate alone) under `budget`.

    `seeds`: a SeedSchedule, a plain list of seeds (one look), or None for the budget's own
    schedule. `baseline_cache` memoises finished runs of both arms (the baseline's across
    candidates, the candidate's across calls with more seeds); `store` records the mixers, the
    runs trained here and the comparison. `workers` > 1 trains runs in that many processes
    (the mixers are compiled again there from their source). `widths`: the candidate's own
    keywords when `match` is NONE (a published configuration; see `match_width`).
    """
    started = time.perf_counter()
    device = device or default_device()
    schedule = seeds if isinstance(seeds, SeedSchedule) else \
        budget.schedule if seeds is None else SeedSchedule.fixed(seeds)
    specs = {Role.CANDIDATE: candidate}
    if baseline is not None:
        specs[Role.BASELINE] = baseline
    matches: dict[str, MatchResult] = {}
    shapes: dict[tuple[Role, str], ModelShape] = {}
    for problem, _ in budget.problems:
        m = match_width(problem, candidate, baseline, budget.tolerance, match, widths) \
            if baseline is not None else unmatched(problem, candidate, budget.tolerance)
        matches[problem.name] = m
        shapes[(Role.CANDIDATE, problem.name)] = m.candidate_shape
        shapes[(Role.BASELINE, problem.name)] = m.baseline_shape
    runner = _Runner(budget, specs, shapes, baseline_cache, device, workers, log, progress,
                     checkpoints)
    try:
        return _compare(runner, budget, schedule, specs, matches, store, started, log, run_dir)
    finally:
        runner.close()


def _compare(runner: _Runner, budget: Budget, schedule: SeedSchedule,
             specs: dict[Role, MixerSpec], matches: dict[str, MatchResult],
             store: ExperimentStore | None, started: float, log: Callable[[str], None],
             run_dir: str) -> Comparison:
    roles = list(specs)
    candidate, baseline = specs[Role.CANDIDATE], specs.get(Role.BASELINE)
    chooser = _Chooser(runner)
    chooser.prepare(roles)
    wanted = chooser.wanted

    pool = list(schedule.seeds)
    valid: list[int] = []
    excluded: list[tuple[int, str]] = []
    looks: list[Look] = []
    rule = _rule(budget, schedule)
    target: int | None = schedule.looks[0]
    while target is not None:
        while len(valid) < target:
            need = pool[len(valid) + len(excluded): len(valid) + len(excluded) +
                        (target - len(valid))]
            if not need:  # every seed of the pool is used: add fresh ones past it
                need = [max(pool) + 1]
                pool.append(need[0])
            runner.ensure([w for s in need for role in roles for w in wanted(role, s)])
            for seed in need:
                failed = _failed_baseline(runner, seed, chooser) if baseline is not None \
                    else None
                if failed is not None and failed.result.outcome in RETRIED:
                    runner.ensure([w for w in wanted(Role.BASELINE, seed)
                                   if not runner.runs[w].result.ok], attempt=1)
                    chooser.forget(Role.BASELINE, seed)
                    failed = _failed_baseline(runner, seed, chooser)
                if failed is None:
                    valid.append(seed)
                else:
                    why = f"{failed.problem}: {failed.result.outcome.value}"
                    excluded.append((seed, why))
                    log(f"seed {seed} left out: the baseline failed ({why}); a fresh seed "
                        f"takes its place")
        stats = None
        if baseline is not None:
            scores = [(_seed_score(runner, Role.CANDIDATE, s, chooser),
                       _seed_score(runner, Role.BASELINE, s, chooser)) for s in valid]
            stats = paired_comparison(budget.metric.name, budget.metric.higher_is_better,
                                      [c.value for c, _ in scores], [b.value for _, b in scores],
                                      rule.confidence, rule.min_effect)
            looks.append(Look(len(valid), stats))
        target = schedule.next_look(len(valid), stats)

    scores = tuple(_seed_score(runner, role, s, chooser) for s in valid for role in roles)
    trained = runner.trained
    cost = EvaluationCost(
        candidate_runs=sum(r.role is Role.CANDIDATE for r in trained),
        candidate_cached=sum(r.role is Role.CANDIDATE and r.cached for r in runner.runs.values()),
        baseline_runs=sum(r.role is Role.BASELINE for r in trained),
        baseline_cached=sum(r.role is Role.BASELINE and r.cached for r in runner.runs.values()),
        cpu_s=sum(r.result.timings.cpu_s for r in trained),
        wall_s=time.perf_counter() - started)
    result = Comparison(budget, candidate, baseline, matches, tuple(chooser.choices.values()),
                        tuple(runner.runs.values()), scores, tuple(valid), tuple(excluded),
                        tuple(looks), cost, str(runner.device), schedule=schedule)
    if store is not None:
        result = _record(store, result, trained, run_dir)
    return result


def _rule(budget: Budget, schedule: SeedSchedule) -> DecisionRule:
    """The budget's rule; for a precision schedule, at 1 - alpha/2 of the budget's error rate.

    The budget's per-look level spends its alpha over its own looks (Bonferroni: the proxy's
    97.5% at each of two). A precision schedule never stops on the mean, so it needs no such
    split, but stopping on a small-looking spread costs 1-2 points of coverage at 95%
    (seeds.py); at 1 - alpha/2 its interval covers more than 1 - alpha."""
    if schedule.precision is None:
        return budget.rule
    alpha = min(0.5, (1.0 - budget.rule.confidence) * len(budget.schedule.looks))
    return replace(budget.rule, confidence=1.0 - alpha / 2.0)


def _failed_baseline(runner: _Runner, seed: int, chooser: _Chooser) -> ArmRun | None:
    """The first kept baseline run at `seed` that did not end OK (None: all did). A grid point
    that failed is simply not kept; the seed fails when the kept point did, i.e. all did."""
    for problem, _ in runner.budget.problems:
        run = runner.runs[(Role.BASELINE, problem.name, seed,
                           chooser.chosen(Role.BASELINE, problem.name, seed))]
        if not run.result.ok:
            return run
    return None


def _record(store: ExperimentStore, result: Comparison, trained: list[ArmRun],
            run_dir: str) -> Comparison:
    from .environment import capture_environment
    from .report import comparison_json

    budget = result.budget
    environment = capture_environment(torch.device(result.device)).to_json()
    mixer_ids = {Role.CANDIDATE: store.add_mixer(result.candidate)}
    if result.baseline is not None:
        mixer_ids[Role.BASELINE] = store.add_mixer(result.baseline)
    run_ids = []
    for run in trained:
        m = result.matches[run.problem]
        arm = m.candidate if run.role is Role.CANDIDATE else m.baseline
        run_ids.append(store.add_run(RunRecord(
            mixer_id=mixer_ids[run.role], role=run.role.value, task=budget.task.value,
            preset=budget.preset.value, problem=run.problem, seed=run.seed,
            hidden_size=run.shape.hidden_size, params_total=arm.params.total,
            params_non_embedding=arm.params.non_embedding, outcome=run.result.outcome.value,
            steps=run.result.steps, metrics=run.result.metrics,
            curves=run.result.curves.to_json(), timings=run.result.timings.to_json(),
            config={"lr": run.hyper.lr, "weight_decay": run.hyper.weight_decay,
                    "attempt": run.attempt, "mixer_kwargs": dict(run.shape.mixer_kwargs)},
            environment=environment, error=run.result.error, budget_key=budget.key)))
    stats = result.stats
    experiment_id = store.add_experiment(ExperimentRecord(
        task=budget.task.value, preset=budget.preset.value,
        candidate_mixer_id=mixer_ids[Role.CANDIDATE],
        baseline_mixer_id=mixer_ids.get(Role.BASELINE), seeds=result.seeds,
        metric=budget.metric.name, higher_is_better=budget.metric.higher_is_better,
        mean_difference=stats.mean_difference if stats else None,
        ci_low=stats.ci_low if stats else None, ci_high=stats.ci_high if stats else None,
        verdict=stats.verdict.value if stats else None, report=comparison_json(result),
        run_dir=run_dir, environment=environment, budget_key=budget.key))
    store.link_runs(run_ids, experiment_id)
    return replace(result, experiment_id=experiment_id)
