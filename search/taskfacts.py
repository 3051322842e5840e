"""What the evaluation will do with a candidate, as facts the search can show and use.

The search needs three things from the evaluation before it trains anything: the shape a
candidate is trained at (so that the MAP-Elites descriptors count FLOPs and state bytes as
trained, not at the program's declared defaults), a description of the task for the
researcher's task card, and which stages are trained. This module is the one seam where the
search reads the evaluation's budget definitions; everything else gets plain data from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from linarch.search.racing import DEFAULT_BASELINE_NAME

TRAINED_STAGES = ("mqar", "mad", "lm", "recall+lm", "scale")


def first_trained_stage(stages: Sequence[str]) -> str | None:
    return next((s for s in stages if s in TRAINED_STAGES), None)


def stage_problem(stage: str, preset: str) -> tuple[Any, Any, Any]:
    """(budget, first problem, its training config) of a trained stage at a preset."""
    from linarch.evaluation.presets import budget_for
    from linarch.search.evaluate import EvalJob, Stage, _task_and_preset

    # recall+lm trains the MQAR proxy first: its problem is the one shown and matched
    kind = Stage.MQAR if Stage(stage) is Stage.RECALL_LM else Stage(stage)
    budget = budget_for(*_task_and_preset(EvalJob("", "", "", stage, preset, ()), kind))
    problem, config = budget.problems[0]
    return budget, problem, config


def trained_shape(source: str, stage: str, preset: str,
                  baseline: str) -> dict[str, int | float]:
    """The hyper-parameters the evaluation builds the candidate with at `stage`: the model's
    hidden size and heads after matching the baseline's (a program's text) parameter count,
    and the head_dim that follows them (evaluation.problems.shape_kwargs)."""
    from linarch.evaluation.mixers import mixer_from_dsl
    from linarch.evaluation.param_match import match_width
    from linarch.evaluation.problems import shape_kwargs
    from linarch.search.records import hparam_value

    budget, problem, _ = stage_problem(stage, preset)
    candidate = mixer_from_dsl(source)
    shape = match_width(problem, candidate, mixer_from_dsl(baseline),
                        budget.tolerance).candidate_shape
    return {"hidden_size": shape.hidden_size, "num_heads": shape.num_heads,
            **{k: hparam_value(v) for k, v in shape_kwargs(candidate, shape).items()}}


def describe(stages: Sequence[str], preset: str, baseline_name: str) -> dict[str, Any]:
    """Task-card facts (JSON-ready) for the first trained stage of a cascade, compared with
    the baseline named `baseline_name`."""
    stage = first_trained_stage(stages)
    facts: dict[str, Any] = {"stages": " -> ".join(stages), "preset": preset,
                             "baseline_name": baseline_name}
    if stage is None:
        facts["task"] = "the cascade's checks only (no trained stage)"
        return facts
    budget, problem, config = stage_problem(stage, preset)
    shape = problem.shape
    metric = budget.metric
    facts.update(
        task=f"{budget.task.value} ({stage} stage, preset {preset})",
        metric=metric.name,
        higher_is_better=bool(metric.higher_is_better),
        problems=", ".join(p.name for p, _ in budget.problems),
        shape=f"{shape.num_layers} layers, d_model {shape.hidden_size}, "
              f"{shape.num_heads} heads, {'an MLP' if shape.use_mlp else 'no MLP'} per layer",
        training=f"{config.steps} steps of batch {config.batch_size}, learning rate the best "
                 f"of {', '.join(f'{h.lr:g}' for h in budget.hypers(config))} per arm, "
                 f"weight decay {config.weight_decay:g}",
    )
    return facts


def card_context(facts: Mapping[str, Any], *, seeds: Sequence[int], baseline: str, best: str,
                 budget: str) -> dict[str, Any]:
    """Everything task_card.md needs, with the values the evaluation could not know."""
    keys = ("task", "metric", "higher_is_better", "problems", "shape", "training", "stages",
            "baseline_name")
    out: dict[str, Any] = {k: facts.get(k, "") for k in keys}
    out["higher_is_better"] = bool(facts.get("higher_is_better", True))
    out["task"] = out["task"] or "the configured cascade"
    out["baseline_name"] = out["baseline_name"] or DEFAULT_BASELINE_NAME
    out.update(seeds=", ".join(map(str, seeds)), baseline=baseline, best=best, budget=budget)
    return out
