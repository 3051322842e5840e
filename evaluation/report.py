"""A Comparison as text (what `linarch train` prints) and as JSON (metrics.json, the store)."""

from __future__ import annotations

import math

from .compare import Comparison, Role
from .param_match import MatchResult
from .stats import Verdict, level


def verdict_meaning(c: Comparison) -> str:
    """One line saying what the printed verdict means, in words."""
    s = c.stats
    if s is None:
        return ""
    m = c.budget.metric
    unit = m.name
    effect = f" by at least {s.min_effect:g} {unit}" if s.min_effect > 0 else ""
    at = level(s.confidence)
    if s.verdict is Verdict.BETTER:
        return (f"BETTER: the candidate's {unit} is {'higher' if m.higher_is_better else 'lower'}"
                f" than the baseline's on these seeds{effect}, and the {at} interval of the "
                f"paired difference excludes zero.")
    if s.verdict is Verdict.WORSE:
        return (f"WORSE: the candidate's {unit} is {'lower' if m.higher_is_better else 'higher'}"
                f" than the baseline's{effect}, and the {at} interval excludes zero.")
    if s.equivalent:
        return (f"INDISTINGUISHABLE: the {at} interval lies within +-{s.min_effect:g}: no "
                f"difference of that size between the two at this budget.")
    small = f", or the difference is under {s.min_effect:g}" if s.min_effect > 0 else ""
    return (f"INDISTINGUISHABLE: the {at} interval includes zero{small}: these seeds "
            f"cannot tell the two apart.")


def kept_hypers(c: Comparison, role: Role) -> str:
    """The learning-rate points an arm kept: 'lr 0.01' or, chosen per seed (or per problem),
    'lr 0.01 x3 / lr 0.003 x2' (a point's own label may hold a comma: 'lr 0.003, wd 0.1')."""
    seeds = set(c.seeds)
    kept = [ch.chosen.label() for ch in c.choices if ch.role is role
            and (ch.seed is None or ch.seed in seeds)]
    counts = {label: kept.count(label) for label in dict.fromkeys(kept)}
    if len(counts) == 1 and not any(ch.seed is not None for ch in c.choices):
        return next(iter(counts))
    return " / ".join(f"{label} x{n}" for label, n in counts.items())


def _arm_line(c: Comparison, role: Role, match: MatchResult) -> str:
    spec = c.candidate if role is Role.CANDIDATE else c.baseline
    arm = match.candidate if role is Role.CANDIDATE else match.baseline
    kwargs = dict(arm.shape.mixer_kwargs)
    width = ", ".join(f"{k} {v:g}" for k, v in kwargs.items()) or "declared width"
    lrs = kept_hypers(c, role)
    return (f"  {role.value:9s} {spec.name}: {arm.params.non_embedding:,} non-embedding / "
            f"{arm.params.total:,} total params, {arm.state_bytes:,} state bytes per sequence "
            f"({width}; d_model {arm.shape.hidden_size}); {lrs}; "
            f"{c.throughput(role):,.0f} tokens/s; {spec.flops_per_token:,} FLOPs/token at its "
            f"declared defaults")


def _value(score) -> str:
    if not score.failed:
        return f"{score.value:>12.4f}"
    return f"{score.outcome.value.upper() + ' ' + format(score.value, '.2f'):>12s}"


def summary(c: Comparison) -> str:
    """The human-readable report the CLI prints."""
    b = c.budget
    m = b.metric
    lines = [f"task {b.task.value}, preset {b.preset.value} (budget {b.key}), device {c.device}; "
             f"metric {m.name} ({'higher' if m.higher_is_better else 'lower'} is better)"]
    roles = [Role.CANDIDATE] + ([Role.BASELINE] if c.baseline is not None else [])
    first = next(iter(c.matches.values()))
    for role in roles:
        lines.append(_arm_line(c, role, first))
    if c.baseline is not None:
        for name, match in c.matches.items():
            lines.append(f"  params matched on {name}: {match.params_difference:+.2%} "
                         f"(tolerance {match.tolerance:.0%}, by {', '.join(match.knobs) or '-'}); "
                         f"state {match.state_difference:+.1%}")
    if any(ch.tried for ch in c.choices):
        per_seed = any(ch.seed is not None for ch in c.choices)
        lines.append("  learning rate: " + ("each seed keeps the grid point with the best "
                                             "validation metric" if per_seed else
                                             "the selection seeds choose one point") +
                     "; kept: " + "; ".join(f"{role.value} {kept_hypers(c, role)}"
                                            for role in roles))
    header = f"  {'seed':>4}  {'candidate':>12}"
    if c.baseline is not None:
        header += f"  {'baseline':>12}  {'difference':>12}"
    lines.append(header)
    for seed in c.seeds:
        cand = c.score(Role.CANDIDATE, seed)
        row = f"  {seed:>4}  {_value(cand)}"
        if c.baseline is not None:
            base = c.score(Role.BASELINE, seed)
            row += f"  {_value(base)}  {cand.value - base.value:>+12.4f}"
        lines.append(row)
    for seed, why in c.excluded:
        lines.append(f"  seed {seed} left out: the baseline failed twice ({why})")
    failed = c.failures(Role.CANDIDATE)
    if failed:
        lines.append(f"  {failed} candidate seed(s) failed: a failed run scores what a model "
                     f"that learned nothing scores ({'accuracy 0' if m.higher_is_better else ''}"
                     f"{'' if m.higher_is_better else 'the chance loss'}), a loss")
    if len(c.looks) > 1:
        lines.append("  looks: " + "; ".join(
            f"{lk.pairs} seeds [{lk.stats.ci_low:+.4f}, {lk.stats.ci_high:+.4f}]"
            for lk in c.looks))
    s = c.stats
    precision = c.schedule.precision if c.schedule is not None else None
    if s is not None and precision is not None:
        reached = s.half_width <= precision
        lines.append(f"  precision: half-width {s.half_width:.4f} after {s.pairs} seeds, "
                     + (f"at most the {precision:g} asked" if reached else
                        f"over the {precision:g} asked: the cap ({c.schedule.cap}) stopped it"))
    if s is not None:
        lines.append(f"  mean difference {s.mean_difference:+.4f} ({level(s.confidence)} CI "
                     f"[{s.ci_low:+.4f}, {s.ci_high:+.4f}], {s.pairs} pair(s), minimum effect "
                     f"{s.min_effect:g}): {s.verdict.value.upper()}")
        lines.append(f"  {verdict_meaning(c)}")
    cost = c.cost
    lines.append(f"  cost: {cost.runs_trained} run(s) trained ({cost.candidate_runs} candidate, "
                 f"{cost.baseline_runs} baseline), {cost.candidate_cached + cost.baseline_cached}"
                 f" reused from the cache; {cost.cpu_s:,.0f} CPU-s, {cost.wall_s:,.0f} s wall")
    return "\n".join(lines)


def _match_json(m: MatchResult) -> dict:
    def arm(a):
        return {"hidden_size": a.shape.hidden_size, "mixer_kwargs": dict(a.shape.mixer_kwargs),
                "params_total": a.params.total, "params_non_embedding": a.params.non_embedding,
                "state_bytes": a.state_bytes}

    return {"target": m.target.value, "knobs": list(m.knobs), "scale": m.scale,
            "candidate": arm(m.candidate), "baseline": arm(m.baseline),
            "params_difference": m.params_difference, "state_difference": m.state_difference,
            "tolerance": m.tolerance, "within_tolerance": m.within_tolerance}


def _stats_json(s) -> dict:
    return {"mean_difference": s.mean_difference, "ci_low": s.ci_low, "ci_high": s.ci_high,
            "half_width": s.half_width, "confidence": s.confidence, "min_effect": s.min_effect,
            "pairs": s.pairs, "verdict": s.verdict.value, "equivalent": s.equivalent}


def comparison_json(c: Comparison) -> dict:
    b = c.budget
    mixers = {Role.CANDIDATE.value: c.candidate}
    if c.baseline is not None:
        mixers[Role.BASELINE.value] = c.baseline
    return {
        "task": b.task.value, "preset": b.preset.value, "budget_key": b.key,
        "metric": b.metric.name, "higher_is_better": b.metric.higher_is_better,
        "device": c.device, "seeds": list(c.seeds),
        "excluded": [{"seed": s, "reason": r} for s, r in c.excluded],
        "scores": [{"role": s.role.value, "seed": s.seed, "value": _finite(s.value),
                    "outcome": s.outcome.value} for s in c.scores],
        "comparison": None if c.stats is None else _stats_json(c.stats),
        "looks": [{"pairs": lk.pairs, **_stats_json(lk.stats)} for lk in c.looks],
        "precision": None if c.schedule is None else c.schedule.precision,
        "learning_rates": [{"role": ch.role.value, "problem": ch.problem, "seed": ch.seed,
                            "lr": ch.chosen.lr,
                            "weight_decay": ch.chosen.weight_decay,
                            "tried": [{"lr": h.lr, "weight_decay": h.weight_decay,
                                       "valid": _finite(v)} for h, v in ch.tried]}
                           for ch in c.choices],
        "matching": {name: _match_json(m) for name, m in c.matches.items()},
        "runs": [{"role": r.role.value, "seed": r.seed, "problem": r.problem, "lr": r.hyper.lr,
                  "weight_decay": r.hyper.weight_decay, "cached": r.cached,
                  "attempt": r.attempt, "hidden_size": r.shape.hidden_size,
                  "mixer_kwargs": dict(r.shape.mixer_kwargs),
                  "outcome": r.result.outcome.value, "error": r.result.error,
                  "steps": r.result.steps, "metrics": r.result.metrics,
                  "timings": r.result.timings.to_json()} for r in c.runs],
        "mixers": {role: {"name": s.name, "structural_hash": s.structural_hash,
                          "code_hash": s.code_hash, "flops_per_token": s.flops_per_token,
                          "state_bytes_at_defaults": s.state_bytes}
                   for role, s in mixers.items()},
        "cost": {"candidate_runs": c.cost.candidate_runs,
                 "candidate_cached": c.cost.candidate_cached,
                 "baseline_runs": c.cost.baseline_runs, "baseline_cached": c.cost.baseline_cached,
                 "cpu_s": c.cost.cpu_s, "wall_s": c.cost.wall_s},
    }


def _finite(value: float):
    return value if math.isfinite(value) else str(value)
