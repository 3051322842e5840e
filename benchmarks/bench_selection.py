"""Parent selection rules, and racing with the final confirmation, in a simulated search
(tests/linarch_testing/selection_sim.py).

    python benchmarks/bench_selection.py                 # 200 repeats of a 40-step search
    python benchmarks/bench_selection.py --repeats 50 --steps 60 --noise 0.2
    python benchmarks/bench_selection.py --racing        # racing off against on (weighted)

Every rule runs on the real Archive with the same simulated world per repeat (common random
numbers), so the differences are paired. Printed per rule: the mean true score of the parents
it chose (what issue 12 quotes: -0.26 under UCB, +0.04 under rank selection), the true score
of the candidate the archive ranks best at the end, and the selection inflation (that
candidate's reported score minus its true score); then each rule against UCB, paired, with a
95% interval over repeats. With --racing: the weighted rule without racing, with
racing (racing.contenders after every child, up to --max-seeds), and with every candidate
on --max-seeds seeds from the start; the same figures, the seeds spent
per candidate, and what the final confirmation (the top 3 on 5 fresh seeds, Holm at 0.05)
calls BETTER: how often a candidate whose true score is <= 0 (no better than DeltaNet) is
called BETTER, against the selection's own interval and fresh seeds without Holm. No timing:
the figures are scores, not speeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from linarch_testing.selection_sim import (  # noqa: E402
    Setting,
    compare,
    compare_settings,
    paired_interval,
    proportion,
)

RULES = ("ucb", "weighted", "rank")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--noise", type=float, default=0.28, help="per-seed SD of a score")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--racing", action="store_true", help="racing off against on")
    parser.add_argument("--max-seeds", type=int, default=8)
    parser.add_argument("--z", default="1,2,t95",
                        help="racing intervals to try: z standard errors, or t95 (the 95%% t "
                             "intervals)")
    parser.add_argument("--uniform", default="",
                        help="also every candidate on these seed counts from the start "
                             "(default: --max-seeds), e.g. 5,8: racing against equal cost")
    args = parser.parse_args(argv)
    setting = Setting(steps=args.steps, noise_sd=args.noise, seeds=args.seeds,
                      max_seeds=args.max_seeds)
    if args.racing:
        racing(args, setting)
        return
    results = compare(RULES, args.repeats, setting)
    print(f"{args.repeats} repeats x {args.steps} proposals, {args.seeds} seeds of SD "
          f"{args.noise}; edits N({setting.mean_edit}, {setting.sd_edit})")
    print(f"{'rule':10s} {'parent true':>12s} {'best true':>10s} {'inflation':>10s}")
    for rule, outs in results.items():
        print(f"{rule:10s} {statistics.fmean(o.parent_true for o in outs):+12.3f} "
              f"{statistics.fmean(o.best_true for o in outs):+10.3f} "
              f"{statistics.fmean(o.inflation for o in outs):+10.3f}")
    base = results["ucb"]
    for rule in RULES[1:]:
        for what in ("parent_true", "best_true", "inflation"):
            mean, low, high = paired_interval([getattr(o, what) for o in results[rule]],
                                              [getattr(o, what) for o in base])
            print(f"{rule} - ucb, {what}: {mean:+.3f} [{low:+.3f}, {high:+.3f}]")


def racing(args: argparse.Namespace, setting: Setting) -> None:
    from dataclasses import replace

    arms = {"no racing": setting}
    for z in args.z.split(","):
        arms[f"race {z}"] = replace(setting, racing=True, z=None if z == "t95" else float(z))
    uniform = [int(n) for n in (args.uniform or str(args.max_seeds)).split(",")]
    for n in uniform:
        arms[f"all {n}"] = replace(setting, seeds=n)
    results = compare_settings(arms, "weighted", args.repeats)
    print(f"{args.repeats} repeats x {args.steps} proposals, first look {args.seeds} seeds of "
          f"SD {args.noise}, racing up to {args.max_seeds} seeds; weighted selection; "
          f"confirmation: top {setting.confirm_top} on {setting.confirm_seeds} fresh seeds, "
          f"Holm at {setting.alpha}")
    print(f"{'arm':10s} {'parent true':>11s} {'best true':>9s} {'inflation':>9s} "
          f"{'best seeds':>10s} {'seeds/cand':>10s} {'confirmed infl.':>15s}")
    for name, outs in results.items():
        print(f"{name:10s} {statistics.fmean(o.parent_true for o in outs):+11.3f} "
              f"{statistics.fmean(o.best_true for o in outs):+9.3f} "
              f"{statistics.fmean(o.inflation for o in outs):+9.3f} "
              f"{statistics.fmean(o.best_seeds for o in outs):10.2f} "
              f"{statistics.fmean(o.seeds for o in outs):10.2f} "
              f"{statistics.fmean(o.confirmed_inflation for o in outs):+15.3f}")
    for name in arms:
        if not name.startswith("race"):
            continue
        for other in ("no racing", *(f"all {n}" for n in uniform)):
            for what in ("best_true", "inflation", "seeds"):
                mean, low, high = paired_interval([getattr(o, what) for o in results[name]],
                                                  [getattr(o, what) for o in results[other]])
                print(f"{name} - {other}, {what}: {mean:+.3f} [{low:+.3f}, {high:+.3f}]")
    for name, outs in results.items():
        for what, label in (("naive_false_better", "best's selection interval > 0, true <= 0"),
                            ("uncorrected_false_better", "fresh seeds, p <= alpha, no Holm"),
                            ("false_better", "confirmation (Holm): BETTER, true <= 0"),
                            ("true_better", "confirmation (Holm): BETTER, true > 0")):
            rate, low, high = proportion([getattr(o, what) for o in outs])
            print(f"{name:10s} {label:45s} {rate:6.3f} [{low:.3f}, {high:.3f}] per run")


if __name__ == "__main__":
    main()
