"""The evaluation cascade as the search runs it: one function, one stage, one worker process.

    static    the compiler's checks (types, causality, cost); the analysis numbers
    numerics  the compiled layer: chunked form equals the recurrent form (fp64), and a causality
              probe (perturbing token t0 changes nothing before t0, not even gradients)
    mqar      a quick proxy: Zoology's MQAR, candidate against DeltaNet, paired by seed
    mad, lm   the next stages: MAD's six tasks, or language modelling on the embedded corpus
    scale     the candidate's best task again at the next larger preset

Every trained stage compares the candidate with DeltaNet (examples/deltanet.lin, compiled by the
same compiler) at matched parameter count, on the same data, seeds and budget. DeltaNet's runs
are cached per (problem, preset, seed, shape) in the run directory, so a search pays for them
once. The score is the mean paired difference to DeltaNet, signed so that higher is better.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

from linarch.search.records import EvalJob, EvalResult

PROXY = "proxy"  # the search's own MQAR proxy: seconds per seed on one CPU thread
TRAINED = ("mqar", "mad", "lm", "scale")
SCALE_UP = {"tiny": "quick", PROXY: "quick", "quick": "standard", "standard": "paper",
            "paper": "paper"}


def evaluate(job: EvalJob) -> EvalResult:
    import torch

    torch.set_num_threads(int(os.environ.get("LINARCH_THREADS", "1")))
    if job.stage == "static":
        return _static(job)
    if job.stage == "numerics":
        return _numerics(job)
    if job.stage in TRAINED:
        return _trained(job)
    raise ValueError(f"unknown cascade stage {job.stage!r}; stages: static, numerics, "
                     f"{', '.join(TRAINED)}")


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


def _budget(stage: str, preset: str, task: str):
    from linarch.evaluation.presets import Preset, TaskKind, budget_for

    if preset == PROXY:
        budget = budget_for(TaskKind(task), Preset.QUICK)
        if TaskKind(task) is TaskKind.MQAR:
            from linarch.evaluation.mqar import MQARSetting
            from linarch.evaluation.problems import MQARProblem

            problem, config = budget.problems[0]
            small = MQARProblem(MQARSetting(vocab_size=256, seq_len=64, num_kv_pairs=4),
                                problem.shape, 4096, 256)
            config = replace(config, steps=400, batch_size=32, lr=3e-3, eval_every=100)
            return replace(budget, problems=((small, config),))
        return budget
    return budget_for(TaskKind(task), Preset(preset))


def _task_and_preset(job: EvalJob) -> tuple[str, str]:
    if job.stage == "scale":
        return "mqar", SCALE_UP.get(job.preset, "quick")
    return job.stage, job.preset


def _trained(job: EvalJob) -> EvalResult:
    from linarch.api import example_path
    from linarch.evaluation.mixers import mixer_from_dsl
    from linarch.evaluation.param_match import match_width
    from linarch.evaluation.results import Outcome
    from linarch.evaluation.stats import paired_comparison
    from linarch.evaluation.trainer import train_problem

    task, preset = _task_and_preset(job)
    budget = _budget(job.stage, preset, task)
    candidate = mixer_from_dsl(job.source)
    baseline = mixer_from_dsl(example_path("deltanet"))
    cache = _BaselineCache(job)
    cand_scores: dict[int, list[float]] = {s: [] for s in job.seeds}
    base_scores: dict[int, list[float]] = {s: [] for s in job.seeds}
    curves: dict[str, list[tuple[int, float]]] = {}  # the candidate's, first problem, per seed
    metrics: dict[str, float] = {}
    for problem, config in budget.problems:
        match = match_width(problem, candidate, baseline)
        name = problem.metric.name
        for seed in job.seeds:
            seeded = replace(config, seed=seed)
            result, model = train_problem(problem, candidate, match.candidate_shape, seeded)
            del model
            if result.outcome is not Outcome.OK:
                raise RuntimeError(f"candidate {result.outcome.value} on {problem.name} seed "
                                   f"{seed}: {result.error or ''}".strip())
            cand_scores[seed].append(result.metric(name))
            if problem is budget.problems[0][0]:
                curves[f"seed {seed}"] = [(p.step, p.value)
                                          for p in result.curves.eval.get(name, ())]
            key = f"{budget.task.value}-{preset}-{problem.name}-{seed}-" \
                  f"{match.baseline_shape.hidden_size}-{baseline.structural_hash}"
            value = cache.get(key)
            if value is None:
                base, model = train_problem(problem, baseline, match.baseline_shape, seeded)
                del model
                if base.outcome is not Outcome.OK:
                    raise RuntimeError(f"baseline {base.outcome.value} on {problem.name}")
                value = base.metric(name)
                cache.put(key, value)
            base_scores[seed].append(value)
        metrics[f"params_candidate_{problem.name}"] = float(match.candidate_params.non_embedding)
        metrics[f"params_baseline_{problem.name}"] = float(match.baseline_params.non_embedding)
    cand = [sum(v) / len(v) for v in cand_scores.values()]
    base = [sum(v) / len(v) for v in base_scores.values()]
    comparison = paired_comparison(budget.metric.name, budget.metric.higher_is_better, cand, base)
    metrics.update({f"candidate_{budget.metric.name}": sum(cand) / len(cand),
                    f"baseline_{budget.metric.name}": sum(base) / len(base),
                    "flops_per_token": float(candidate.flops_per_token),
                    "state_bytes": float(candidate.state_bytes)})
    return EvalResult.from_comparison(
        comparison, metrics=metrics, seeds=job.seeds,
        detail=f"{task}@{preset}: {budget.metric.name} candidate {cand} vs DeltaNet {base}",
        candidate_per_seed=cand, baseline_per_seed=base, curves=curves)


class _BaselineCache:
    """DeltaNet's metric per (task, preset, problem, seed, width), one JSON file per entry
    (written atomically, so concurrent workers never see half a file)."""

    def __init__(self, job: EvalJob) -> None:
        self.root = Path(job.run_path or ".") / "baseline_cache"

    def get(self, key: str) -> float | None:
        path = self.root / f"{key}.json"
        if not path.exists():
            return None
        return float(json.loads(path.read_text())["value"])

    def put(self, key: str, value: float) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"value": value}))
        os.replace(tmp, self.root / f"{key}.json")
