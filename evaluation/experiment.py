"""Candidate against baseline: same problems, same budget, same seeds, matched parameters.

For every seed, both mixers train on every problem of the budget with the same data and batch
order; each seed's score is the task's headline metric (MAD: the mean over its six tasks). The
per-seed pairs give the comparison and its verdict. Every run goes to the store and the run
directory as it finishes, so an interrupted experiment keeps what it measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import fmean

import torch

from .environment import capture_environment
from .mixers import MixerSpec
from .param_match import MatchResult, ParamCount, match_width, shape_parameters
from .presets import Budget
from .problems import ModelShape
from .results import Metric, Outcome, TrainResult
from .rundir import RunDirectory
from .stats import PairedComparison, paired_comparison
from .store import ExperimentRecord, ExperimentStore, RunRecord
from .trainer import default_device, train_problem

CANDIDATE, BASELINE = "candidate", "baseline"


@dataclass(frozen=True)
class RoleRun:
    """One trained model: which mixer (role), seed and problem, its shape and its result."""

    role: str
    seed: int
    problem: str
    shape: ModelShape
    params: ParamCount
    result: TrainResult


@dataclass(frozen=True)
class SeedScore:
    """A role's headline metric for one seed (NaN unless every problem ended OK)."""

    role: str
    seed: int
    value: float
    outcome: Outcome


@dataclass(frozen=True)
class ExperimentReport:
    budget: Budget
    candidate: MixerSpec
    baseline: MixerSpec | None
    seeds: tuple[int, ...]
    matches: dict[str, MatchResult]
    runs: tuple[RoleRun, ...]
    scores: tuple[SeedScore, ...]
    comparison: PairedComparison | None
    device: str
    run_dir: Path | None = None
    experiment_id: int | None = None

    @property
    def metric(self) -> Metric:
        return self.budget.metric

    def score(self, role: str, seed: int) -> SeedScore:
        return next(s for s in self.scores if s.role == role and s.seed == seed)

    def throughput(self, role: str) -> float:
        """Mean training tokens per second over the role's runs."""
        rates = [r.result.timings.tokens_per_s for r in self.runs if r.role == role]
        return fmean(rates) if rates else 0.0

    def to_json(self) -> dict:
        c = self.comparison
        return {
            "task": self.budget.task.value,
            "preset": self.budget.preset.value,
            "metric": self.metric.name,
            "higher_is_better": self.metric.higher_is_better,
            "device": self.device,
            "seeds": list(self.seeds),
            "scores": [{"role": s.role, "seed": s.seed, "value": s.value,
                        "outcome": s.outcome.value} for s in self.scores],
            "comparison": None if c is None else {
                "mean_difference": c.mean_difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
                "confidence": c.confidence, "pairs": c.pairs, "verdict": c.verdict.value},
            "matching": {name: _match_json(m) for name, m in self.matches.items()},
            "runs": [{"role": r.role, "seed": r.seed, "problem": r.problem,
                      "hidden_size": r.shape.hidden_size,
                      "intermediate_size": r.shape.intermediate_size,
                      "params_total": r.params.total,
                      "params_non_embedding": r.params.non_embedding,
                      "outcome": r.result.outcome.value, "error": r.result.error,
                      "steps": r.result.steps, "metrics": r.result.metrics,
                      "timings": r.result.timings.to_json()} for r in self.runs],
            "mixers": {role: _mixer_json(spec) for role, spec in self._roles()},
            "throughput_tokens_per_s": {role: self.throughput(role) for role, _ in self._roles()},
        }

    def _roles(self) -> list[tuple[str, MixerSpec]]:
        roles = [(CANDIDATE, self.candidate)]
        if self.baseline is not None:
            roles.append((BASELINE, self.baseline))
        return roles

    def summary(self) -> str:
        """The human-readable report the CLI prints."""
        m = self.metric
        direction = "higher" if m.higher_is_better else "lower"
        lines = [f"task {self.budget.task.value}, preset {self.budget.preset.value}, "
                 f"{len(self.seeds)} seed(s), device {self.device}; metric {m.name} "
                 f"({direction} is better)"]
        for role, spec in self._roles():
            runs = [r for r in self.runs if r.role == role and r.seed == self.seeds[0]]
            params = ", ".join(f"{r.params.non_embedding:,} non-embedding / {r.params.total:,} "
                               f"total (width {r.shape.hidden_size})" for r in runs[:1])
            lines.append(f"  {role:9s} {spec.name}: {params}; {self.throughput(role):,.0f} "
                         f"tokens/s; at its declared defaults {spec.flops_per_token:,} "
                         f"FLOPs/token and {spec.state_bytes:,} state bytes")
        for name, match in self.matches.items():
            if self.baseline is not None:
                flag = "" if match.within_tolerance else "  NOT within tolerance"
                lines.append(f"  params matched on {name}: {match.relative_difference:+.2%} "
                             f"(tolerance {match.tolerance:.0%}){flag}")
        header = f"  {'seed':>4}  {'candidate':>12}"
        if self.baseline is not None:
            header += f"  {'baseline':>12}  {'difference':>12}"
        lines.append(header)
        for seed in self.seeds:
            cand = self.score(CANDIDATE, seed)
            row = f"  {seed:>4}  {_fmt(cand)}"
            if self.baseline is not None:
                base = self.score(BASELINE, seed)
                diff = cand.value - base.value
                shown = f"{diff:>+12.4f}" if math.isfinite(diff) else f"{'-':>12s}"
                row += f"  {_fmt(base)}  {shown}"
            lines.append(row)
        c = self.comparison
        if c is not None and c.pairs == 0:
            lines.append("  no seed where both runs ended OK: no comparison")
        elif c is not None:
            lines.append(f"  mean difference {c.mean_difference:+.4f} "
                         f"({c.confidence:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}], "
                         f"{c.pairs} pair(s)): {c.verdict.value.upper()}")
        return "\n".join(lines)


def _fmt(score: SeedScore) -> str:
    if score.outcome is Outcome.OK:
        return f"{score.value:>12.4f}"
    return f"{score.outcome.value.upper():>12s}"


def _match_json(m: MatchResult) -> dict:
    return {
        "baseline_hidden_size": m.baseline_shape.hidden_size,
        "candidate_hidden_size": m.candidate_shape.hidden_size,
        "candidate_intermediate_size": m.candidate_shape.intermediate_size,
        "baseline_params": vars(m.baseline_params),
        "candidate_params": vars(m.candidate_params),
        "relative_difference": m.relative_difference,
        "within_tolerance": m.within_tolerance,
    }


def _mixer_json(spec: MixerSpec) -> dict:
    return {"name": spec.name, "structural_hash": spec.structural_hash,
            "code_hash": spec.code_hash, "flops_per_token": spec.flops_per_token,
            "state_bytes": spec.state_bytes}


def run_experiment(
    candidate: MixerSpec,
    baseline: MixerSpec | None,
    budget: Budget,
    seeds: tuple[int, ...],
    *,
    out_dir: str | Path | None = None,
    store: ExperimentStore | None = None,
    device: torch.device | None = None,
    progress: bool = False,
    save_checkpoints: bool = False,
    tolerance: float = 0.05,
    log=print,
) -> ExperimentReport:
    """Train both mixers on every problem for every seed and compare them."""
    device = device or default_device()
    environment = capture_environment(device).to_json()
    roles = [(CANDIDATE, candidate)] + ([(BASELINE, baseline)] if baseline is not None else [])
    matches: dict[str, MatchResult] = {}
    shapes: dict[tuple[str, str], ModelShape] = {}
    for problem, _ in budget.problems:
        if baseline is not None:
            match = match_width(problem, candidate, baseline, tolerance)
        else:
            count = shape_parameters(problem, candidate, problem.shape)
            if count is None:
                raise ValueError(f"{candidate.name} cannot be built at {problem.shape}")
            match = MatchResult(problem.shape, problem.shape, count, count, tolerance)
        matches[problem.name] = match
        shapes[(CANDIDATE, problem.name)] = match.candidate_shape
        shapes[(BASELINE, problem.name)] = match.baseline_shape

    rundir = RunDirectory(out_dir) if out_dir is not None else None
    if rundir is not None:
        for role, spec in roles:
            rundir.write_mixer(role, spec)
        rundir.write_json("environment.json", environment)
        rundir.write_json("seeds.json", {"seeds": list(seeds)})
        rundir.write_json("config.json", _config_json(budget, seeds, matches, device))
    mixer_ids = {role: store.add_mixer(spec) for role, spec in roles} if store else {}

    runs: list[RoleRun] = []
    run_ids: list[int] = []
    for seed in seeds:
        for problem, config in budget.problems:
            data = problem.make_data(seed)
            for role, spec in roles:
                shape = shapes[(role, problem.name)]
                seeded = replace(config, seed=seed)
                ckpt = rundir.checkpoint_dir(role, seed, problem.name) \
                    if rundir is not None and save_checkpoints else None
                result, model = train_problem(problem, spec, shape, seeded, device=device,
                                              checkpoint_dir=ckpt, progress=progress, data=data)
                params = matches[problem.name].candidate_params if role == CANDIDATE \
                    else matches[problem.name].baseline_params
                del model
                runs.append(RoleRun(role, seed, problem.name, shape, params, result))
                log(f"[{problem.name}] seed {seed} {role} {spec.name}: "
                    f"{result.outcome.value} {problem.metric.name}="
                    f"{result.metric(problem.metric.name):.4f} "
                    f"({result.timings.train_s:.1f}s, "
                    f"{result.timings.tokens_per_s:,.0f} tokens/s)")
                if store is not None:
                    run_ids.append(store.add_run(RunRecord(
                        mixer_id=mixer_ids[role], role=role, task=budget.task.value,
                        preset=budget.preset.value, problem=problem.name, seed=seed,
                        hidden_size=shape.hidden_size, params_total=params.total,
                        params_non_embedding=params.non_embedding,
                        outcome=result.outcome.value, steps=result.steps,
                        metrics=result.metrics, curves=result.curves.to_json(),
                        timings=result.timings.to_json(),
                        config={"train": _train_json(seeded), "shape": vars(shape)},
                        environment=environment, error=result.error)))
            del data

    scores = tuple(_seed_score(runs, role, seed, budget) for seed in seeds for role, _ in roles)
    comparison = None
    if baseline is not None:
        pairs = [(next(s for s in scores if s.role == CANDIDATE and s.seed == seed),
                  next(s for s in scores if s.role == BASELINE and s.seed == seed))
                 for seed in seeds]
        valid = [(c.value, b.value) for c, b in pairs
                 if c.outcome is Outcome.OK and b.outcome is Outcome.OK]
        comparison = paired_comparison(budget.metric.name, budget.metric.higher_is_better,
                                       [c for c, _ in valid], [b for _, b in valid])
    report = ExperimentReport(budget, candidate, baseline, tuple(seeds), matches, tuple(runs),
                              scores, comparison, str(device),
                              run_dir=Path(out_dir) if out_dir is not None else None)
    if store is not None:
        experiment_id = store.add_experiment(ExperimentRecord(
            task=budget.task.value, preset=budget.preset.value,
            candidate_mixer_id=mixer_ids[CANDIDATE], baseline_mixer_id=mixer_ids.get(BASELINE),
            seeds=tuple(seeds), metric=budget.metric.name,
            higher_is_better=budget.metric.higher_is_better,
            mean_difference=comparison.mean_difference if comparison else None,
            ci_low=comparison.ci_low if comparison else None,
            ci_high=comparison.ci_high if comparison else None,
            verdict=comparison.verdict.value if comparison else None,
            report=report.to_json(), run_dir=str(out_dir or ""), environment=environment))
        store.link_runs(run_ids, experiment_id)
        report = replace(report, experiment_id=experiment_id)
    if rundir is not None:
        rundir.write_json("metrics.json", report.to_json())
        for problem, _ in budget.problems:
            rundir.write_curves(problem.name, [(r.role, r.seed, r.result.curves)
                                               for r in runs if r.problem == problem.name])
        rundir.write_text("report.txt", report.summary() + "\n")
    return report


def _seed_score(runs: list[RoleRun], role: str, seed: int, budget: Budget) -> SeedScore:
    mine = [r for r in runs if r.role == role and r.seed == seed]
    failed = [r.result.outcome for r in mine if r.result.outcome is not Outcome.OK]
    if failed:
        return SeedScore(role, seed, math.nan, failed[0])
    by_problem = {p.name: p.metric.name for p, _ in budget.problems}
    values = [r.result.metric(by_problem[r.problem]) for r in mine]
    return SeedScore(role, seed, fmean(values), Outcome.OK)


def _train_json(config) -> dict:
    data = dict(vars(config))
    data["betas"] = list(config.betas)
    return data


def _config_json(budget: Budget, seeds, matches: dict[str, MatchResult], device) -> dict:
    problems = []
    for problem, config in budget.problems:
        setting = getattr(problem, "setting", None) or getattr(problem, "text", None)
        problems.append({
            "name": problem.name,
            "metric": problem.metric.name,
            "setting": _setting_json(setting),
            "shape": vars(problem.shape),
            "train": _train_json(config),
            "matching": _match_json(matches[problem.name]),
        })
    return {"task": budget.task.value, "preset": budget.preset.value,
            "metric": budget.metric.name, "seeds": list(seeds), "device": str(device),
            "problems": problems}


def _setting_json(setting) -> dict:
    if setting is None:
        return {}
    return {k: (v.value if hasattr(v, "value") else v) for k, v in vars(setting).items()}
