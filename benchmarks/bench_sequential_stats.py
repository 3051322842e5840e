"""What the sequential decision rule does under the null and under real differences, by simulation.

    python benchmarks/bench_sequential_stats.py --sd 0.04 [--preset proxy] [--trials 20000]

Draws per-seed paired differences from a normal distribution with the given SD (the spread
measured on the proxy) and runs the preset's own schedule and rule on them, exactly as
`compare` does (`linarch.evaluation.stats.paired_comparison` at every look). Prints, for a true
difference of 0 (an A/A test) and for a few true gains, how often the verdict is BETTER, WORSE
or INDISTINGUISHABLE, the mean number of seeds used, and the median interval half-width at the
cap. The rule's false-BETTER rate is the BETTER share at difference 0.
"""

from __future__ import annotations

import argparse
import random
from statistics import median

from linarch.evaluation.presets import Preset, TaskKind, budget_for
from linarch.evaluation.stats import Verdict, level, paired_comparison


def simulate(sd: float, delta: float, looks: tuple[int, ...], confidence: float,
             min_effect: float, trials: int, rng: random.Random) -> dict:
    counts = {v: 0 for v in Verdict}
    seeds_used, half_at_cap = [], []
    for _ in range(trials):
        diffs = [rng.gauss(delta, sd) for _ in range(looks[-1])]
        for n in looks:
            c = paired_comparison("x", True, diffs[:n], [0.0] * n, confidence, min_effect)
            if c.decided:
                break
        counts[c.verdict] += 1
        seeds_used.append(n)
        if n == looks[-1]:
            half_at_cap.append(c.half_width)
    return {"better": counts[Verdict.BETTER] / trials, "worse": counts[Verdict.WORSE] / trials,
            "indistinguishable": counts[Verdict.INDISTINGUISHABLE] / trials,
            "mean_seeds": sum(seeds_used) / trials,
            "median_half_width_at_cap": median(half_at_cap) if half_at_cap else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd", type=float, required=True, help="SD of a paired difference")
    parser.add_argument("--preset", default="proxy", choices=[p.value for p in Preset])
    parser.add_argument("--trials", type=int, default=20000)
    parser.add_argument("--gains", type=float, nargs="*", default=[0.02, 0.04, 0.08])
    args = parser.parse_args(argv)
    budget = budget_for(TaskKind.MQAR, Preset(args.preset))
    looks, rule = budget.schedule.looks, budget.rule
    print(f"preset {args.preset}: looks at {looks}, {level(rule.confidence)} intervals, minimum "
          f"effect {rule.min_effect}, paired SD {args.sd}, {args.trials} trials each")
    rng = random.Random(0)
    for delta in [0.0, *args.gains]:
        r = simulate(args.sd, delta, looks, rule.confidence, rule.min_effect, args.trials, rng)
        print(f"true difference {delta:+.3f}: BETTER {r['better']:.1%}, WORSE {r['worse']:.1%}, "
              f"INDISTINGUISHABLE {r['indistinguishable']:.1%}; {r['mean_seeds']:.1f} seeds on "
              f"average; half-width at the cap {r['median_half_width_at_cap']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
