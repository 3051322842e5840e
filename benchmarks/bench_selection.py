"""Parent selection rules compared in a simulated search (tests/linarch_testing/selection_sim.py).

    python benchmarks/bench_selection.py                 # 200 repeats of a 40-step search
    python benchmarks/bench_selection.py --repeats 50 --steps 60 --noise 0.2

Every rule runs on the real Archive with the same simulated world per repeat (common random
numbers), so the differences are paired. Printed per rule: the mean true score of the parents
it chose (what issue 12 quotes: -0.26 under UCB, +0.04 under rank selection), the true score
of the candidate the archive ranks best at the end, and the selection inflation (that
candidate's reported score minus its true score); then each rule against UCB, paired, with a
95% interval over repeats. No timing: the figures are scores, not speeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from linarch_testing.selection_sim import Setting, compare, paired_interval  # noqa: E402

RULES = ("ucb", "weighted", "rank")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--noise", type=float, default=0.28, help="per-seed SD of a score")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    setting = Setting(steps=args.steps, noise_sd=args.noise, seeds=args.seeds)
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


if __name__ == "__main__":
    main()
