"""The evaluation cascade as the search runs it: one function, one stage, one worker process.

    static    the compiler's checks (types, causality, cost); the analysis numbers
    numerics  the compiled layer: chunked form equals the recurrent form (fp64), and a causality
              probe (perturbing token t0 changes nothing before t0, not even gradients)
    mqar      the calibrated MQAR proxy (docs/evaluation.md): candidate against the baseline
    mad, lm   MAD's six tasks, or language modelling on the embedded corpus
    recall+lm both axes: the MQAR proxy and the LM proxy, each with its own interval and verdict
    scale     MQAR again at the next larger preset

Every trained stage is `linarch.evaluation.compare` (the path `linarch train` takes too): the
run's baseline (RUN/baseline.lin from `run.baseline`; DeltaNet, examples/deltanet.lin, by
default), compiled by the same compiler, at matched parameters, on the
same data and seeds, each arm at its own learning rate from the budget's grid. The run's seeds
(`run.seeds`) are the first look of the budget's sequential schedule: a clear result stops
there, a close one adds seeds up to the budget's cap. Every run goes into the run's experiment
store, and finished runs are cached there under a key of the whole budget definition: DeltaNet
is trained once per budget and seed for the whole search, and a failed DeltaNet run is trained
again, never charged to the candidate. The score is the mean paired difference to DeltaNet,
signed so that higher is better.
"""

from __future__ import annotations

import enum
import math
import os
from pathlib import Path

from linarch.search.records import EvalJob, EvalResult


class Stage(enum.Enum):
    """The cascade stages this evaluation knows (what `[[cascade]] stage` may name)."""

    STATIC = "static"
    NUMERICS = "numerics"
    MQAR = "mqar"
    MAD = "mad"
    LM = "lm"
    RECALL_LM = "recall+lm"
    SCALE = "scale"


TRAINED = (Stage.MQAR, Stage.MAD, Stage.LM, Stage.SCALE)
SCALE_UP = {"tiny": "proxy", "proxy": "quick", "quick": "standard", "standard": "paper",
            "paper": "paper"}


def evaluate(job: EvalJob) -> EvalResult:
    import torch

    torch.set_num_threads(int(os.environ.get("LINARCH_THREADS", "1")))
    try:
        stage = Stage(job.stage)
    except ValueError:
        raise ValueError(f"unknown cascade stage {job.stage!r}; stages: "
                         f"{', '.join(s.value for s in Stage)}") from None
    if stage is Stage.STATIC:
        return _static(job)
    if stage is Stage.NUMERICS:
        return _numerics(job)
    if stage is Stage.RECALL_LM:
        return _both_axes(job)
    return _trained(job, stage)


def _static(job: EvalJob) -> EvalResult:
    import linarch

    try:
        a = linarch.analyze(job.source)
    except linarch.LinarchError as err:
        errors = [d for d in err.diagnostics if d.is_error]
        raise ValueError("; ".join(d.render().splitlines()[0] for d in errors)) from None
    return EvalResult(0.0, 0.0, 0.0, "ok", metrics={
        "flops_per_token": float(a.flops_per_token), "state_bytes": float(a.state_bytes),
        "params": float(a.params)}, detail=", ".join(a.transition_classes))


def _numerics(job: EvalJob, hidden: int = 32, heads: int = 2, length: int = 24) -> EvalResult:
    import torch

    import linarch

    layer_cls = linarch.build(job.source).layer
    torch.manual_seed(0)
    layer = layer_cls(hidden_size=hidden, num_heads=heads).double()
    x = torch.randn(2, length, hidden, dtype=torch.float64, requires_grad=True)
    layer.mode = "chunk"
    chunked, _, _ = layer(x)
    layer.mode = "recurrent"
    recurrent, _, _ = layer(x)
    scale = max(1.0, float(recurrent.abs().max()))
    gap = float((chunked - recurrent).abs().max()) / scale
    if not math.isfinite(gap) or gap > 1e-8:
        raise ValueError(f"chunked and recurrent forms differ by {gap:.2e} (relative)")
    layer.mode = "chunk"
    t0 = length // 2
    y, _, _ = layer(x)
    y[:, :t0].sum().backward()
    leak = float(x.grad[:, t0:].abs().max())
    poked = x.detach().clone()
    poked[:, t0] += 1.0
    y2, _, _ = layer(poked)
    moved = float((y2[:, :t0] - y.detach()[:, :t0]).abs().max())
    if leak != 0.0 or moved != 0.0:
        raise ValueError(f"causality probe failed: outputs before t0 moved by {moved:.2e}, "
                         f"gradient from the future {leak:.2e}")
    return EvalResult(0.0, 0.0, 0.0, "ok", metrics={"chunk_vs_recurrent": gap},
                      detail="chunked == recurrent; causal")


def _task_and_preset(job: EvalJob, stage: Stage):
    from linarch.evaluation.presets import Preset, TaskKind

    if stage is Stage.SCALE:
        return TaskKind.MQAR, Preset(SCALE_UP[Preset(job.preset).value])
    return TaskKind(stage.value), Preset(job.preset)


def _store(job: EvalJob):
    """The run's experiment store (its config may name a shared one), or None outside a run."""
    from linarch.evaluation.store import ExperimentStore
    from linarch.search.rundir import RunDir

    if not job.run_path or not (Path(job.run_path) / "config.toml").exists():
        return None
    run = RunDir.open(job.run_path)
    return ExperimentStore(run.store_path(run.config()))


def _schedule(job: EvalJob, budget):
    """The run's seeds first (one look), then the rest of the budget's schedule; exactly the
    job's seeds when it says so (racing and the confirmation choose their own seeds)."""
    from linarch.evaluation.seeds import SeedSchedule

    first = tuple(job.seeds)
    if job.fixed_seeds and first:
        return SeedSchedule.fixed(first)
    if not first:
        return budget.schedule
    rest = tuple(s for s in budget.schedule.seeds if s not in first)
    looks = [len(first)] + [n for n in budget.schedule.looks if n > len(first)]
    seeds = first + rest[: max(0, budget.schedule.cap - len(first))]
    return SeedSchedule(seeds, tuple(n for n in looks if n <= len(seeds)))


def _compare(job: EvalJob, stage: Stage):
    from linarch.evaluation.compare import compare
    from linarch.evaluation.mixers import mixer_from_dsl
    from linarch.evaluation.presets import budget_for
    from linarch.evaluation.run_cache import RunCache
    from linarch.search.rundir import baseline_source

    task, preset = _task_and_preset(job, stage)
    budget = budget_for(task, preset)
    store = _store(job)
    candidate = mixer_from_dsl(job.source)
    baseline = mixer_from_dsl(baseline_source(job.run_path))
    return compare(candidate, baseline, budget, _schedule(job, budget), store,
                   RunCache(store) if store is not None else None, log=lambda line: None,
                   run_dir=job.run_path)


def _axis_metrics(prefix: str, c) -> dict[str, float]:
    """One axis's numbers in an EvalResult's metrics, signed so that higher is better."""
    from linarch.evaluation.compare import Role

    s = c.stats
    sign = 1.0 if s.higher_is_better else -1.0
    low, high = sorted((sign * s.ci_low, sign * s.ci_high))
    name = c.budget.metric.name
    cand = c.matches[c.budget.problems[0][0].name].candidate
    base = c.matches[c.budget.problems[0][0].name].baseline
    return {f"{prefix}score": sign * s.mean_difference, f"{prefix}ci_low": low,
            f"{prefix}ci_high": high, f"{prefix}pairs": float(s.pairs),
            f"{prefix}better": float(s.verdict.value == "better"),
            f"{prefix}worse": float(s.verdict.value == "worse"),
            f"{prefix}candidate_{name}": c.mean(Role.CANDIDATE),
            f"{prefix}baseline_{name}": c.mean(Role.BASELINE),
            f"{prefix}candidate_failures": float(c.failures(Role.CANDIDATE)),
            f"{prefix}cpu_s": c.cost.cpu_s,
            f"{prefix}params_candidate": float(cand.params.non_embedding),
            f"{prefix}params_baseline": float(base.params.non_embedding),
            f"{prefix}state_bytes_candidate": float(cand.state_bytes),
            f"{prefix}state_bytes_baseline": float(base.state_bytes)}


def _trained(job: EvalJob, stage: Stage) -> EvalResult:
    from linarch.evaluation.compare import Role

    c = _compare(job, stage)
    metrics = _axis_metrics("", c)
    metrics.update({"flops_per_token": float(c.candidate.flops_per_token),
                    "state_bytes": float(c.candidate.state_bytes)})
    name = c.budget.metric.name
    return EvalResult.from_comparison(
        c.stats, metrics=metrics, seeds=c.seeds,
        detail=f"{c.budget.task.value}@{c.budget.preset.value}: {name} candidate "
               f"{c.mean(Role.CANDIDATE):.4f} vs {c.baseline.name} "
               f"{c.mean(Role.BASELINE):.4f} over {len(c.seeds)} seeds; {c.stats.verdict.value}",
        candidate_per_seed=[s.value for s in c.role_scores(Role.CANDIDATE)],
        baseline_per_seed=[s.value for s in c.role_scores(Role.BASELINE)],
        curves=_candidate_curves(c))


def _candidate_curves(c) -> dict[str, list[tuple[int, float]]]:
    """The candidate's evaluation curve on the first problem, per seed, at the learning rate
    that seed kept (what the proposer is shown: still rising, or flat)."""
    from linarch.evaluation.compare import Role

    problem = c.budget.problems[0][0].name
    kept = {(h.seed, h.problem): h.chosen for h in c.choices if h.role is Role.CANDIDATE}
    curves = {}
    for run in c.runs:
        if run.role is not Role.CANDIDATE or run.problem != problem or run.seed not in c.seeds:
            continue
        chosen = kept.get((run.seed, problem), kept.get((None, problem)))
        if chosen is None or run.hyper == chosen:
            points = run.result.curves.eval.get(c.budget.metric.name, ())
            curves[f"seed {run.seed}"] = [(p.step, p.value) for p in points]
    return curves


def _both_axes(job: EvalJob) -> EvalResult:
    """Recall (the MQAR proxy) and LM loss (the LM proxy), each with its own interval and
    verdict in `metrics` ("recall_*", "lm_*"). The headline is the recall axis, unless the
    candidate is WORSE on LM loss: then the LM axis (a candidate that recalls better but
    models text worse does not pass as better)."""
    recall = _compare(job, Stage.MQAR)
    lm = _compare(job, Stage.LM)
    metrics = {**_axis_metrics("recall_", recall), **_axis_metrics("lm_", lm)}
    headline = lm if lm.stats.verdict.value == "worse" else recall
    return EvalResult.from_comparison(
        headline.stats, metrics=metrics, seeds=headline.seeds,
        detail=f"recall {recall.stats.verdict.value} "
               f"({metrics['recall_score']:+.4f}), LM loss {lm.stats.verdict.value} "
               f"({metrics['lm_score']:+.4f} nats, lower loss is positive)")
